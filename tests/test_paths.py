"""Where outputs may go and what inputs may be (enhancer/data/paths.py): regular files or
new paths only, no FIFO, device or symlink loop, no stray folders from ``..``; an output
never replaces its input, and nothing half-written stays behind (SIGTERM, a failed rename)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
from conftest import REPO, SHARED_DATA, leftovers, requires_shared_data, run_codec

from enhancer.cli import run_cli
from enhancer.codecs.container import Container
from enhancer.commands.codec import main as codec_main
from enhancer.data.paths import check_file_target, special_file_kind, write_atomic
from enhancer.data.sequence import open_sequence, open_writer

CLIP = SHARED_DATA / "video/openh264/CiscoVT2people_160x96_6fps.yuv"


def _encode(*paths) -> int:
    return run_cli(codec_main, ["encode", "--codec", "x264", "--quality", "40", "--frames", "1",
                                *map(str, paths)])


@requires_shared_data
@pytest.mark.skipif(not os.path.exists("/dev/null"), reason="no /dev/null here")
def test_a_device_node_or_fifo_is_never_replaced_by_an_output(tmp_path, capsys):
    fifo = tmp_path / "pipe.bin"
    os.mkfifo(fifo)
    link = tmp_path / "null.bin"
    link.symlink_to("/dev/null")
    for target, kind in ((fifo, "a FIFO"), (link, "a character device")):
        assert _encode(CLIP, target) == 2
        assert f"{target} is {kind}" in capsys.readouterr().err
    assert special_file_kind(fifo) == "a FIFO (named pipe)" and link.is_symlink()
    assert special_file_kind("/dev/null") == "a character device"
    with pytest.raises(ValueError, match="is a character device; outputs are regular files"):
        write_atomic(link, b"x")
    video_fifo = tmp_path / "pipe.y4m"
    os.mkfifo(video_fifo)
    with pytest.raises(ValueError, match="pipe.y4m is a FIFO"):
        open_writer(video_fifo, width=16, height=16)
    check_file_target(tmp_path / "new.bin")  # a new path is fine, and so is a regular file
    (tmp_path / "old.bin").write_bytes(b"old")
    check_file_target(tmp_path / "old.bin")


def test_fifos_and_symlink_loops_as_inputs_are_named(tmp_path):
    fifo = tmp_path / "clip.y4m"
    os.mkfifo(fifo)  # opening it to read would block for ever
    with pytest.raises(ValueError, match="the video .*clip.y4m is a FIFO .*, not a regular file"):
        open_sequence(fifo)
    with pytest.raises(ValueError, match="the bitstream .* is a FIFO"):
        Container.load(fifo)
    loop = tmp_path / "loop.y4m"
    loop.symlink_to(tmp_path / "other.y4m")
    (tmp_path / "other.y4m").symlink_to(loop)
    with pytest.raises(OSError, match="loop.y4m is a symlink loop"):
        open_sequence(loop)


@requires_shared_data
def test_a_symlink_loop_input_is_a_one_line_error(tmp_path, capsys):
    loop = tmp_path / "a.yuv"
    loop.symlink_to(tmp_path / "b.yuv")
    (tmp_path / "b.yuv").symlink_to(loop)
    assert _encode(loop, tmp_path / "o.bin") == 2  # was a RuntimeError traceback
    assert "a.yuv is a symlink loop" in capsys.readouterr().err


def test_dot_dot_in_an_output_leaves_no_empty_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_atomic(tmp_path / "newdir" / ".." / "x.bin", b"data")
    with open_writer(tmp_path / "other" / ".." / "y.y4m", width=16, height=16) as writer:
        writer.write(torch.rand(1, 3, 16, 16))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.bin", "y.y4m"]
    write_atomic(tmp_path / "a" / "b" / "z.bin", b"data")  # new folders are still made
    assert (tmp_path / "a" / "b" / "z.bin").read_bytes() == b"data"


def test_a_file_size_limit_names_the_file_and_leaves_nothing(tmp_path):
    """Disk full / file too large once said only '[Errno 27] File too large'."""
    probe = (
        "import resource, signal, sys, torch\n"
        "from pathlib import Path\n"
        "from enhancer.data.paths import write_atomic\n"
        "from enhancer.data.sequence import open_writer\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4000, 4000))\n"
        "folder = Path(sys.argv[1])\n"
        "try:\n    write_atomic(folder / 'big.bin', bytes(5000))\n"
        "except OSError as err:\n    print(err)\n"
        "try:\n"
        "    with open_writer(folder / 'big.y4m', width=64, height=64) as writer:\n"
        "        for _ in range(3):\n            writer.write(torch.rand(1, 3, 64, 64))\n"
        "except OSError as err:\n    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=False)
    lines = done.stdout.splitlines()
    assert len(lines) == 2, done.stderr
    assert f"could not write {tmp_path / 'big.bin'}: File too large" in lines[0]
    assert f"could not write {tmp_path / 'big.y4m'}: File too large" in lines[1]
    assert list(tmp_path.iterdir()) == []  # no partial or temporary file left


def test_atomic_files_get_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.bin", b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644


# An output never overwrites its input.
@requires_shared_data
def test_encoding_a_file_onto_itself_is_refused(tmp_path, capsys):
    clip = tmp_path / "clip_160x96.yuv"
    clip.write_bytes(CLIP.read_bytes()[: 160 * 96 * 3 // 2 * 2])
    before = clip.read_bytes()
    assert run_codec(["encode", "--codec", "x264", "--quality", "28", str(clip), str(clip)]) == 2
    assert "would destroy the input" in capsys.readouterr().err
    link = tmp_path / "link.bin"
    os.link(clip, link)  # same inode, another name
    assert run_codec(["encode", "--codec", "x264", "--quality", "28", str(clip), str(link)]) == 2
    assert clip.read_bytes() == before
    bitstream = tmp_path / "c.bin"
    assert run_codec(["encode", "--codec", "x264", "--quality", "28", str(clip),
                      str(bitstream)]) == 0
    kept = bitstream.read_bytes()
    assert run_codec(["decode", str(bitstream), str(bitstream)]) == 2
    assert bitstream.read_bytes() == kept


# No partial output on SIGTERM or a failed rename.
@pytest.mark.parametrize("name", ["o.y4m", "frames"])
def test_sigterm_aborts_the_open_writer(tmp_path, capsys, name):
    def main(argv):
        with open_writer(tmp_path / name, width=16, height=16) as writer:
            writer.write(torch.rand(1, 3, 16, 16))
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler raises at the next bytecode
                writer.write(torch.rand(1, 3, 16, 16))
        return 0

    before = signal.getsignal(signal.SIGTERM)
    assert run_cli(main, []) == 128 + signal.SIGTERM
    assert "terminated" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before


@requires_shared_data
def test_decoding_into_a_folder_named_like_a_file(tmp_path, capsys):
    bitstream = tmp_path / "c.bin"
    assert run_codec(["encode", "--codec", "x264", "--quality", "40", "--frames", "1",
                      str(CLIP), str(bitstream)]) == 0
    (tmp_path / "d.y4m").mkdir()
    assert run_codec(["decode", str(bitstream), str(tmp_path / "d.y4m")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert leftovers(tmp_path) == [] and list((tmp_path / "d.y4m").iterdir()) == []
    # A folder appearing while the writer is open: the rename fails, the temporary goes.
    target = tmp_path / "late.y4m"
    with pytest.raises(OSError, match="could not write"), \
            open_writer(target, width=16, height=16) as writer:
        writer.write(torch.rand(1, 3, 16, 16))
        target.mkdir()
        (target / "x").write_text("x")
    assert leftovers(tmp_path) == []
    # A .bin output that is a folder, and a non-empty PNG folder, are refused before coding.
    assert run_codec(["encode", "--codec", "x264", "--quality", "40", "--frames", "1",
                      str(CLIP), str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert run_codec(["decode", str(bitstream), str(tmp_path / "d.y4m")]) == 2
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "keep.txt").write_text("x")
    assert run_codec(["decode", str(bitstream), str(tmp_path / "frames")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match=r"cannot write .*o\.y4m: .*file is not a writable"):
        open_writer(tmp_path / "file" / "o.y4m", width=16, height=16)
    assert run_codec(["encode", "--codec", "x264", "--quality", "30", str(CLIP),
                      str(tmp_path / "file" / "o.bin")]) == 2
    assert "is not a writable folder" in capsys.readouterr().err
