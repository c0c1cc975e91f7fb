"""Checks on output paths, made before any work so that a run never fails at its end."""

from __future__ import annotations

import errno
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path

_SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_file_kind(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder (``"a
    FIFO (named pipe)"``, ``"a character device"``, ...); None otherwise. Symlinks are
    followed; a symlink loop raises ``OSError`` naming the path."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None  # a new path (its folder checks come later)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(f"{path} is a symlink loop (too many levels of symbolic links); "
                          "give the file itself") from None
        raise
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), None)


def check_regular_input(path: str | Path, what: str = "input") -> None:
    """Refuse an input that is a FIFO, device, socket or symlink loop, naming what it is
    (reading one would block forever or read a stream that never ends)."""
    kind = special_file_kind(path)
    if kind is not None:
        raise ValueError(f"the {what} {path} is {kind}, not a regular file; give a file")


def check_writable_parent(path: str | Path) -> None:
    """Raise ``PermissionError`` naming ``path`` when the folder it would go in (or the
    nearest existing folder above it) is not a writable folder."""
    path = Path(path)
    parent = next((p for p in (path.parent, *path.parent.parents) if p.exists()), None)
    if parent is not None and (not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK)):
        raise PermissionError(f"cannot write {path}: {parent} is not a writable folder")


def check_file_target(path: str | Path, what: str = "output") -> None:
    """``path`` can become a file: it is not a folder and its folder is writable."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give a file name for the {what}")
    kind = special_file_kind(path)
    if kind is not None:  # writing would replace the node (or block on a FIFO)
        raise ValueError(f"the {what} {path} is {kind}; outputs are regular files: give a "
                         "new path or a regular file")
    check_writable_parent(path)


def fill_quality(template: str | Path, quality: int) -> str:
    """``template`` with ``{quality}`` replaced by ``quality``; a file that exists under the
    literal name (one whose name holds ``{quality}``) is taken as it is."""
    text = str(template)
    if "{quality}" not in text or Path(text).exists():
        return text
    return text.replace("{quality}", str(quality))


def names_one_file(template: str | Path) -> bool:
    """Whether ``template`` is one file for every quality (no ``{quality}`` to fill in, or
    an existing file whose name holds it literally)."""
    return "{quality}" not in str(template) or Path(str(template)).exists()


STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def is_storage_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk, quota or file-size limit is exhausted: a problem of
    where outputs go, not of the data being processed."""
    return isinstance(err, OSError) and err.errno in STORAGE_FULL_ERRNOS


def naming_the_file(err: OSError, path: str | Path) -> OSError:
    """``err`` again with the file it was writing in its message (a full disk or a file-size
    limit otherwise says only ``[Errno 28] No space left on device``)."""
    return OSError(err.errno, f"could not write {path}: {err.strerror or err}")


def check_not_input(output: str | Path, *inputs: str | Path) -> None:
    """Refuse an output that is one of the inputs (same path or same file, e.g. a hard
    link): writing it would destroy the input."""
    output = Path(output)
    for source in inputs:
        source = Path(source)
        same = os.path.realpath(output) == os.path.realpath(source)  # no error on a loop
        if not same and output.exists() and source.exists():
            same = os.path.samefile(output, source)
        if same:
            raise ValueError(
                f"the output {output} is the input {source}; writing it would destroy the "
                "input: pick another output name"
            )


def make_parent(path: str | Path) -> Path:
    """Create the folder ``path`` goes in, ``..`` resolved first (``new/../x.bin`` creates
    no ``new`` folder); returns ``path`` with its folder resolved, to write to."""
    parent = Path(os.path.realpath(Path(path).parent))
    parent.mkdir(parents=True, exist_ok=True)
    return parent / Path(path).name


def current_umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# The hidden temporaries write_atomic (``.NAME.XXXXXXXX.tmp``) and open_writer
# (``.NAME.partial-XXXXXXXX``) write beside their targets; a killed process leaves them.
_TEMPORARY = re.compile(r"\..+\.(partial-[0-9a-f]{8}|[a-z0-9_]{8}\.tmp)")


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporaries a killed writer left anywhere below ``folder`` (files, or the
    folders of PNG writers); returns what was removed. Call it only while no other process
    writes there (a resumed run that holds the folder's lock)."""
    stale = sorted(p for p in Path(folder).rglob(".*") if _TEMPORARY.fullmatch(p.name))
    for path in stale:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return stale


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a crash never leaves a half-written file there.

    The file gets the mode ``open()`` would give it (0666 less the umask), not mkstemp's 0600.
    """
    check_file_target(path)
    path = make_parent(path)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            os.fchmod(handle.fileno(), 0o666 & ~current_umask())
        os.replace(tmp_name, path)
    except BaseException as err:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(err, OSError) and not err.filename:
            raise naming_the_file(err, path) from err
        raise


def write_atomic_text(path: Path, text: str) -> None:
    """:func:`write_atomic` for text (UTF-8)."""
    write_atomic(path, text.encode())
