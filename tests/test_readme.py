"""Every ```python block of README.md runs as written (```python no-run blocks are skipped).

Each block runs on its own (a fresh namespace, the repository root on ``sys.path``) in a
scratch folder laid out like the repository's: it holds ``clip.bin`` (x264 CRF 28, as the
README's ``tools/codec.py encode`` example makes it, 3 frames) and ``../shared/data`` (the
test material), so a block may use the paths the README's commands use.
"""

from __future__ import annotations

import re
import textwrap
import warnings

import pytest
from conftest import REPO, SHARED_DATA, requires_shared_data

README = REPO / "README.md"
# An opening fence "```python" (any indent, an optional info string such as "no-run"),
# the code, and the closing fence at the same indent.
_BLOCK = re.compile(r"^(?P<indent>[ \t]*)```python(?P<info>[^\n`]*)\n"
                    r"(?P<code>.*?)^(?P=indent)```[ \t]*$", re.DOTALL | re.MULTILINE)
README_CLIP = SHARED_DATA / "video" / "openh264" / "CiscoVT2people_320x192_12fps.yuv"


def readme_blocks() -> list:
    """One pytest param per ```python block, named by its line in README.md."""
    text = README.read_text(encoding="utf-8") if README.is_file() else ""
    params = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        code = textwrap.dedent(match.group("code"))
        marks = []
        if "no-run" in match.group("info").split():
            marks.append(pytest.mark.skip(reason="fenced as ```python no-run"))
        params.append(pytest.param(line, code, id=f"README.md:{line}", marks=marks))
    return params


def test_the_block_pattern_reads_fences_and_info_strings():
    text = "a\n```python\nx = 1\n```\n  ```python no-run\n  y = 2\n  ```\n```bash\nls\n```\n"
    found = [(m.group("info").split(), textwrap.dedent(m.group("code")))
             for m in _BLOCK.finditer(text)]
    assert found == [([], "x = 1\n"), (["no-run"], "y = 2\n")]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    from enhancer.pipeline.codec_files import encode_file

    root = tmp_path_factory.mktemp("readme")
    (root / "shared").mkdir()
    (root / "shared" / "data").symlink_to(SHARED_DATA, target_is_directory=True)
    work = root / "work"
    work.mkdir()
    encode_file(README_CLIP, work / "clip.bin", "x264", 28, frames=3, progress=False)
    return work


@requires_shared_data
@pytest.mark.parametrize(("line", "code"), readme_blocks())
def test_readme_python_block_runs(line, code, scratch, monkeypatch):
    monkeypatch.chdir(scratch)
    monkeypatch.syspath_prepend(str(REPO))
    compiled = compile(code, f"README.md (block at line {line})", "exec")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch's jit deprecation notice
        exec(compiled, {"__name__": "__readme__"})  # noqa: S102  (the point)
