"""``enhancer-tune`` (tools/tune_sampling.py): the flags of the other tools, the held-out
test set refused, a bundled model protected, an all-black clip (issue 37, cases 7 and 8)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from conftest import SHARED_DATA, requires_shared_data

import enhancer.commands.tune_sampling as tune_command
import enhancer.pipeline.checkpoint as checkpoint_module
from enhancer.cli import run_cli
from enhancer.config import CodecConfig, EnhancerConfig
from enhancer.eval.tuning import Sweep, code_clip, score_ratio, write_sweep
from enhancer.pipeline import Enhancer, Sampling, save_enhancer
from enhancer.pipeline.checkpoint import read_checkpoint

TEST_CLIP = SHARED_DATA / "video" / "intel" / "walk.mkv"
FRIDAY = SHARED_DATA / "video" / "mdn" / "friday.mp4"


def _random_enhancer() -> Enhancer:
    torch.manual_seed(0)
    config = EnhancerConfig(codec=CodecConfig(name="x264", quality=32), unet="tiny")
    enhancer = Enhancer.from_config(config)
    with torch.no_grad():  # a random but non-zero output layer, so noise reaches the output
        for parameter in enhancer.diffusion.network.out_conv.parameters():
            parameter.normal_(0, 0.05)
    return enhancer


def _tune(argv: list[str]) -> int:
    return run_cli(tune_command.main, argv)


@requires_shared_data
def test_a_held_out_test_clip_is_refused_before_any_work(tmp_path, capsys):
    save_enhancer(tmp_path / "e.pt", _random_enhancer())
    assert _tune(["--enhancer", str(tmp_path / "e.pt"), "--val", str(FRIDAY), str(TEST_CLIP),
                  "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "walk.mkv" in err and "held-out test set" in err
    assert not (tmp_path / "out").exists()


@requires_shared_data
def test_write_on_a_bundled_model_needs_force_and_keeps_a_backup(tmp_path, monkeypatch, capsys):
    bundled_dir = tmp_path / "weights"
    bundled_dir.mkdir()
    monkeypatch.setattr(checkpoint_module, "BUNDLED_DIR", bundled_dir)
    monkeypatch.setattr(tune_command, "BUNDLED_DIR", bundled_dir)
    save_enhancer(bundled_dir / "packaged.pt", _random_enhancer())
    original = (bundled_dir / "packaged.pt").read_bytes()
    argv = ["--enhancer", "packaged", "--val", str(FRIDAY), "--crop", "64x64", "--frames", "2",
            "--steps", "1", "--gamma", "0", "--t-start", "0.3", "--out", str(tmp_path / "out"),
            "--write"]
    assert _tune(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert (bundled_dir / "packaged.pt").read_bytes() == original
    assert _tune([*argv, "--force"]) == 0
    backup = tmp_path / "out" / "packaged.before-tune.pt"
    assert backup.read_bytes() == original
    stored = read_checkpoint(bundled_dir / "packaged.pt")
    sweep = json.loads((tmp_path / "out" / "sweep.json").read_text())
    assert stored["sampling"] == sweep["chosen"]


def test_the_old_grid_flags_are_gone_with_a_suggestion(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        tune_command.main(["--enhancer", "x", "--val", "y", "--gammas", "0.5"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "--gammas" in err and "did you mean '--gamma'?" in err
    assert len(err.strip().splitlines()) == 2  # the error and where help is; no usage dump


def test_a_mistyped_bundled_name_gets_a_suggestion(capsys):
    assert _tune(["--enhancer", "x264_temporal_tiyn", "--val", "clip.mp4"]) == 2
    assert "did you mean 'x264_temporal_tiny'?" in capsys.readouterr().err


def test_an_all_black_clip_is_no_division_by_zero(tmp_path):
    """Issue 37 case 8: the decode of an all-black clip is perfect (LPIPS 0); a ratio to it
    was a ZeroDivisionError. Now: equal is a ratio of 1, any worse output an infinite one,
    written as null in the sweep JSON."""
    enhancer = _random_enhancer()
    # A flat clip decoded losslessly, as the all-black clip was (mid-grey here, so that a
    # harmful candidate's output is not clamped back to the truth).
    flat = [torch.full((1, 3, 64, 64), 0.5) for _ in range(2)]
    coded = code_clip(enhancer.codec, "flat", flat)
    clip = replace(coded, decoded=[frame.clone() for frame in flat])
    sweep = Sweep(enhancer, [clip], log=lambda _: None)
    assert sweep.decoded_scores[0]["lpips_alex"] == 0.0
    chosen, results = sweep.tune([Sampling(steps=1, gamma=1.0, t_start=1.0),
                                  Sampling(steps=1, residual_scale=0.0)], show_progress=False)
    harmful, unchanged = results
    assert harmful.lpips_ratio == math.inf and not harmful.admissible
    assert unchanged.lpips_ratio == 1.0
    assert chosen is unchanged
    write_sweep(tmp_path / "sweep.json", chosen, results, {})
    payload = json.loads((tmp_path / "sweep.json").read_text())  # strict JSON: no Infinity
    assert payload["candidates"][0]["lpips_ratio"] is None
    assert score_ratio(0.2, 0.1) == pytest.approx(2.0)


def test_out_is_a_folder(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text("{}")
    save_enhancer(tmp_path / "e.pt", _random_enhancer())
    assert _tune(["--enhancer", str(tmp_path / "e.pt"), "--val", "clip.mp4",
                  "--out", str(tmp_path / "sweep.json")]) == 2
    err = capsys.readouterr().err
    assert "sweep.json is a file" in err and "--out is a folder" in err
