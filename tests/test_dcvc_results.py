"""DCVC-layout result files: built from evaluation rows, and read by DCVC's own
``compare_bd_rate.py`` against its VTM-17.0 anchors (that test needs the submodule and the
``bd-metric`` package, and skips without them)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SHARED_DATA, requires_shared_data

from enhancer.cli import run_cli
from enhancer.codecs.dcvc_common import dcvc_root
from enhancer.eval.dcvc_results import dcvc_results, intra_frame_count, write_dcvc_results

ANCHOR = dcvc_root() / "anchors" / "vtm_17.0_yuv420_LB_allf_ip0.json"
CISCO = SHARED_DATA / "video" / "openh264" / "CiscoVT2people_160x96_6fps.yuv"


def row(sequence: str, quality: int, bpp: float, psnr: float, variant: str = "decoded",
        frames: int = 3, intra_period: int = -1) -> dict:
    enhanced = variant == "enhanced"
    return {"sequence": sequence, "codec": "dcvc-rt", "quality": quality, "variant": variant,
            "enhancer": "tiny" if enhanced else None, "steps": 2 if enhanced else None,
            "sampling": None, "residual_scale": 1.0 if enhanced else None, "frames": frames,
            "bpp": bpp, "psnr_rgb": psnr - 1.0, "psnr_yuv": psnr, "ms_ssim": 0.95,
            "lpips_alex": 0.1, "width": 66, "height": 50, "intra_period": intra_period,
            "encode_s_per_frame": 0.5, "decode_s_per_frame": 0.25,
            "enhance_s_per_frame": 1.0 if enhanced else None}


def test_one_file_per_curve_in_dcvcs_layout(tmp_path: Path):
    files = {"Beauty": tmp_path / "UVG" / "Beauty_1920x1080_120fps_420_8bit_YUV.yuv"}
    rows = [row("Beauty", 42, 0.2, 35.0), row("Beauty", 21, 0.1, 32.0),
            row("Beauty", 21, 0.1, 32.5, "enhanced"), row("Other", 21, 0.1, 30.0),
            {**row("Beauty", 63, 0.3, 0.0), "variant": "error", "bpp": None}]
    results = dcvc_results(rows, files)
    assert sorted(results) == ["dcvc-rt-decoded.json", "dcvc-rt-tiny_2_steps.json"]
    decoded = results["dcvc-rt-decoded.json"]
    points = decoded["UVG"]["Beauty_1920x1080_120fps_420_8bit_YUV.yuv"]
    assert list(points) == ["000", "001"]  # in order of increasing bpp
    low, high = points["000"], points["001"]
    assert (low["qp_i"], high["qp_i"]) == (21, 42)
    assert low["ave_all_frame_bpp"] == rows[1]["bpp"]
    assert low["ave_all_frame_psnr"] == rows[1]["psnr_yuv"]  # DCVC's 6:1:1 YUV PSNR
    assert low["ave_all_frame_msssim"] == rows[1]["ms_ssim"]
    assert (low["i_frame_num"], low["p_frame_num"]) == (1, 2)
    assert low["ave_i_frame_bpp"] == 0 and low["ave_p_frame_psnr"] == 0  # split not measured
    assert low["frame_pixel_num"] == 66 * 50
    assert (low["ds_name"], low["seq"], low["rate_idx"]) == (
        "UVG", "Beauty_1920x1080_120fps_420_8bit_YUV.yuv", 0)
    enhanced = results["dcvc-rt-tiny_2_steps.json"]["UVG"][
        "Beauty_1920x1080_120fps_420_8bit_YUV.yuv"]["000"]
    assert enhanced["ave_all_frame_psnr"] == rows[2]["psnr_yuv"]
    assert enhanced["avg_frame_decoding_time"] == rows[2]["decode_s_per_frame"] + rows[2][
        "enhance_s_per_frame"]
    written = write_dcvc_results(tmp_path / "dcvc", rows, files)
    assert [json.loads(p.read_text()) for p in written] == list(results.values())


def test_all_intra_rows_fill_the_i_frame_fields():
    files = {"a": Path("HEVC_B/a.yuv")}
    entry = dcvc_results([row("a", 5, 0.4, 33.0, frames=4, intra_period=1)], files)[
        "dcvc-rt-decoded.json"]["HEVC_B"]["a.yuv"]["000"]
    assert (entry["i_frame_num"], entry["p_frame_num"]) == (4, 0)
    assert entry["ave_i_frame_bpp"] == entry["ave_all_frame_bpp"] == 0.4
    assert [intra_frame_count(96, p) for p in (-1, 32, 1)] == [1, 3, 96]


@pytest.mark.needs_dcvc
@pytest.mark.skipif(not ANCHOR.is_file(), reason=f"DCVC's anchors not found ({ANCHOR}); set up "
                    "with: git submodule update --init third_party/DCVC")
@pytest.mark.skipif(importlib.util.find_spec("bd_metric") is None,
                    reason="compare_bd_rate.py needs bd-metric: pip install bd-metric")
def test_dcvcs_compare_bd_rate_reads_our_files_against_its_anchors(tmp_path: Path):
    """Our files at 90 % of the anchor's bits for the anchor's quality: DCVC's own tool must
    report about -10 % BD-rate for all frames on UVG."""
    anchor = json.loads(ANCHOR.read_text())["UVG"]
    rows, files = [], {}
    for file_name, points in anchor.items():
        name = file_name.split("_")[0]
        files[name] = tmp_path / "UVG" / file_name
        for key in ("022", "028", "034", "040", "046"):
            point = points[key]
            rows.append(row(name, int(key), 0.9 * point["ave_all_frame_bpp"],
                            point["ave_all_frame_psnr"],
                            frames=point["i_frame_num"] + point["p_frame_num"]))
    (ours,) = write_dcvc_results(tmp_path / "dcvc", rows, files)
    result = subprocess.run(
        [sys.executable, "compare_bd_rate.py", "--base_method", "VTM", "--log_paths", "VTM",
         str(ANCHOR), "ours", str(ours), "--compare_frame_type", "all", "--plot_rd_curve", "0"],
        check=False, cwd=dcvc_root(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("ours"))
    values = re.findall(r"-?\d+\.\d", line)  # only UVG has a value: the other datasets are blank
    assert len(values) == 1 and abs(float(values[0]) + 10.0) < 1.0, result.stdout


@requires_shared_data
def test_an_evaluation_writes_dcvc_files_beside_its_rows(tmp_path: Path):
    """tools/eval_uvg.py (x264, two rate points, decode only) leaves out/dcvc/x264-decoded.json
    with every row's numbers, under the sequences' folder and file names."""
    sys.path.insert(0, str(REPO / "tools"))
    import eval_uvg

    root = tmp_path / "UVG"
    root.mkdir()
    frame_bytes = 160 * 96 * 3 // 2
    (root / "Talk_160x96_6fps_420_8bit_YUV.yuv").write_bytes(CISCO.read_bytes()[:2 * frame_bytes])
    out = tmp_path / "out"
    argv = ["--root", str(root), "--codec", "x264", "--quality", "30", "40", "--frames", "2",
            "--intra-period", "-1", "--out", str(out), "--metrics", "psnr_rgb", "psnr_yuv"]
    assert run_cli(eval_uvg.main, argv) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    (written,) = json.loads((out / "dcvc" / "x264-decoded.json").read_text()).items()
    dataset, sequences = written
    assert dataset == "UVG" and list(sequences) == ["Talk_160x96_6fps_420_8bit_YUV.yuv"]
    points = sequences["Talk_160x96_6fps_420_8bit_YUV.yuv"]
    by_quality = {r["quality"]: r for r in rows if r["variant"] == "decoded"}
    assert sorted(p["qp_i"] for p in points.values()) == sorted(by_quality)
    for point in points.values():
        source = by_quality[point["qp_i"]]
        assert point["ave_all_frame_bpp"] == source["bpp"]
        assert point["ave_all_frame_psnr"] == source["psnr_yuv"]
        assert point["i_frame_num"] + point["p_frame_num"] == source["frames"] == 2
