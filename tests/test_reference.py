"""CompressAI's published UVG 1080p curves (enhancer.eval.references): the bundled files,
the names, the plots they are drawn on and ``tools/eval_uvg.py --reference``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from enhancer.cli import run_cli
from enhancer.commands import eval_uvg
from enhancer.eval.plots import plot_curves, read_curves
from enhancer.eval.references import (
    ALIASES,
    REFERENCE_DIR,
    available_references,
    load_reference,
    load_references,
)

STEMS = sorted(p.stem for p in REFERENCE_DIR.glob("*.json"))
X264 = "x264-medium-tune-zerolatency (CompressAI, UVG 1080p)"


def test_the_bundled_files_and_their_attribution():
    assert STEMS == ["VTM-v15.0-lowdelay", "ssf2020-from-authors", "ssf2020-mse-ans-vimeo",
                     "x264-medium-tune-zerolatency", "x265-medium-tune-zerolatency"]
    readme = (REFERENCE_DIR / "README.md").read_text()
    assert "https://github.com/InterDigitalInc/CompressAI/tree/master/results/video/UVG-1080p" \
        in readme and "BSD 3-Clause Clear" in readme
    assert all(f"`{stem}.json`" in readme for stem in STEMS)
    licence = (REFERENCE_DIR / "LICENSE").read_text()
    assert licence.startswith("Copyright (c) 2021-2024, InterDigital Communications, Inc")
    assert "NO EXPRESS OR IMPLIED LICENSES TO ANY PARTY'S PATENT RIGHTS" in licence
    assert set(ALIASES.values()) <= set(STEMS)
    assert available_references() == [*ALIASES, *STEMS]


@pytest.mark.parametrize("stem", STEMS)
def test_every_bundled_curve_loads_in_bpp_order(stem):
    curve = load_reference(stem)
    raw = json.loads((REFERENCE_DIR / f"{stem}.json").read_text())["results"]
    assert curve.name == stem and len(curve.bpp) == len(raw["bitrate"]) >= 7
    assert all(math.isfinite(b) and 0.0005 < b < 1 for b in curve.bpp)
    assert list(curve.bpp) == sorted(set(curve.bpp))  # strictly increasing
    assert "psnr_rgb" in curve.metrics and set(curve.metrics) <= {"psnr_rgb", "ms_ssim"}
    for metric, values in curve.metrics.items():
        assert len(values) == len(curve.bpp) and all(math.isfinite(v) for v in values)
        # the values were reordered with their rates: quality rises with bpp
        assert list(values) == sorted(values), metric
    assert all(25 < v < 45 for v in curve.metrics["psnr_rgb"])
    assert all(0.8 < v < 1 for v in curve.metrics.get("ms_ssim", ()))


def test_bpp_from_the_published_kbps():
    vtm = load_reference("vtm")  # aliases and any case
    assert vtm is not None and load_reference("VTM").name == "VTM-v15.0-lowdelay"
    # QP 37: 1379.0738 kbit/s over 1920x1080 pixels at 120 fps
    index = vtm.metrics["psnr_rgb"].index(33.19583619300572)
    assert vtm.bpp[index] == pytest.approx(1379.0738285714287e3 / (1920 * 1080 * 120))
    assert load_reference("ssf2020-paper").metrics.keys() == {"psnr_rgb"}
    assert [c.name for c in load_references(["vtm", "VTM-v15.0-lowdelay", "x264"])] == [
        "VTM-v15.0-lowdelay", "x264-medium-tune-zerolatency"]


def test_an_unknown_name_lists_the_available_ones():
    with pytest.raises(ValueError, match="unknown reference curve 'h266'") as error:
        load_reference("h266")
    assert all(name in str(error.value) for name in available_references())


def _averages() -> list[dict]:
    rows = []
    for quality, bpp in ((32, 0.02), (27, 0.05)):
        for variant, enhancer in (("decoded", None), ("enhanced", "ours")):
            rows.append({"codec": "x264", "quality": quality, "variant": variant,
                         "enhancer": enhancer, "steps": 1, "sampling": None,
                         "residual_scale": 1.0, "untrained": False, "bpp": bpp,
                         "psnr_rgb": 30 + 100 * bpp, "ms_ssim": 0.9 + bpp,
                         "lpips_alex": 0.2 - bpp, "psnr_yuv": None})
    return rows


def test_reference_curves_are_drawn_on_the_plots_of_their_metrics(tmp_path):
    references = load_references(["x264", "ssf2020-paper"])
    written = plot_curves(_averages(), tmp_path / "with", "x264, UVG", references)
    assert sorted(p.name for p in written) == ["rd_ms_ssim.png", "rd_psnr_rgb.png",
                                               "rp_lpips_alex.png"]
    ours = ["x264 decoded", "x264 ours 1 steps"]
    plots = tmp_path / "with"
    assert read_curves(plots / "rd_psnr_rgb.png") == [
        *ours, X264, "ssf2020-from-authors (CompressAI, UVG 1080p)"]
    assert read_curves(plots / "rd_ms_ssim.png") == [*ours, X264]  # the paper gives no MS-SSIM
    assert read_curves(plots / "rp_lpips_alex.png") == ours  # no published LPIPS
    # without references: the same plots, our curves only
    plot_curves(_averages(), tmp_path / "without", "x264, UVG")
    assert read_curves(tmp_path / "without" / "rd_psnr_rgb.png") == ours
    from PIL import Image

    with Image.open(plots / "rd_psnr_rgb.png") as with_reference, \
            Image.open(tmp_path / "without" / "rd_psnr_rgb.png") as without:
        assert with_reference.size == without.size
        assert not np.array_equal(np.asarray(with_reference), np.asarray(without))


def _noise_clip(folder: Path) -> Path:
    """A 64x48, 2-frame UVG-named 8-bit YUV 4:2:0 clip (a smooth ramp plus noise)."""
    rng = np.random.default_rng(0)
    frames = []
    for index in range(2):
        luma = (np.add.outer(np.arange(48), np.arange(64)) * 2 + 8 * index
                + rng.integers(0, 16, (48, 64))).clip(0, 255)
        chroma = np.full((2, 24, 32), 128)
        frames.append(np.concatenate([luma.ravel(), chroma.ravel()]).astype(np.uint8))
    path = folder / "Ramp_64x48_30fps_420_8bit_YUV.yuv"
    path.write_bytes(b"".join(f.tobytes() for f in frames))
    return path


def test_eval_uvg_reference_option(tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    _noise_clip(root)
    out = tmp_path / "out"
    base = ["--root", str(root), "--codec", "x264", "--quality", "30", "40", "--frames", "2",
            "--metrics", "psnr_rgb", "--quiet", "--out", str(out)]
    assert run_cli(eval_uvg.main, [*base, "--reference", "h266"]) == 2
    assert "unknown reference curve 'h266'; choose from ssf2020" in capsys.readouterr().err
    assert not (out / "results.json").exists()  # refused before any work
    assert run_cli(eval_uvg.main, ["--demo", "--reference", "x264"]) == 2
    assert "--reference draws CompressAI's UVG 1080p curves" in capsys.readouterr().err

    assert run_cli(eval_uvg.main, [*base, "--reference", "x264"]) == 0
    assert read_curves(out / "plots" / "rd_psnr_rgb.png") == ["x264 decoded", X264]
    assert json.loads((out / "settings.json").read_text())["references"] == [X264]
    assert X264 in (out / "report.html").read_text()
