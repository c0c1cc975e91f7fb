"""``tools/train.py --export``: an inference checkpoint is written, and never over its own
input or any other training checkpoint (which would destroy a run's optimizer/EMA/RNG)."""

from __future__ import annotations

import torch

from enhancer.cli import run_cli
from enhancer.commands.train import main as train_main
from enhancer.pipeline.checkpoint import CHECKPOINT_FORMAT, read_checkpoint


def _training_checkpoint(path):
    """A file shaped like a run's last.pt: the state an export must never overwrite."""
    torch.save({"format": CHECKPOINT_FORMAT, "step": 7, "optimizer": {"state": {}},
                "ema": {"w": torch.ones(3)}, "rng": {}}, path)
    return path.read_bytes()


def test_export_refuses_its_own_input_and_other_training_checkpoints(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    last = run / "last.pt"
    before = _training_checkpoint(last)
    assert run_cli(train_main, ["--export", str(last), str(last)]) == 2
    assert "is the input" in capsys.readouterr().err
    # The same file by another name (a symlink to it) is the input too.
    (tmp_path / "alias.pt").symlink_to(last)
    assert run_cli(train_main, ["--export", str(last), str(tmp_path / "alias.pt")]) == 2
    assert "is the input" in capsys.readouterr().err
    other = run / "step_100.pt"
    other_before = _training_checkpoint(other)
    assert run_cli(train_main, ["--export", "x264_temporal_tiny", str(other)]) == 2
    assert f"{other} is a training checkpoint" in capsys.readouterr().err
    assert last.read_bytes() == before and other.read_bytes() == other_before


def test_export_writes_a_new_file_or_replaces_an_exported_one(tmp_path, capsys):
    out = tmp_path / "small.pt"
    for _ in range(2):  # the second run replaces the first export (no training state)
        assert run_cli(train_main, ["--export", "x264_temporal_tiny", str(out), "--half"]) == 0
        assert "wrote" in capsys.readouterr().out
    payload = read_checkpoint(out)
    assert "denoiser" in payload and not {"optimizer", "ema", "rng"} & set(payload)
