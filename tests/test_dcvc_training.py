"""One training step on CPU from each DCVC-RT / DCVC-UF config, on random codec weights in
the official layout (needs the submodule and DCVC-RT's coder; skips without them)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from conftest import REPO, SHARED_DATA, requires_shared_data
from test_dcvc_rt_uf import needs, random_weights

from enhancer.train import Trainer, load_train_config

VIDEO = SHARED_DATA / "video" / "vmaf" / "src01_ref_160x90_48f.yuv"
CONFIGS = {"dcvc_rt_frozen": "dcvc-rt", "dcvc_uf_frozen": "dcvc-uf", "dcvc_uf_e2e": "dcvc-uf"}

pytestmark = [requires_shared_data, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]


def one_step_config(config: str, weights: Path, cache: Path):
    overrides = [f"model.codec.checkpoint={weights}", "model.unet=tiny", f"data.train=[{VIDEO}]",
                 "data.val=null", "data.crop_size=64", "data.batch_size=1", "data.clip_len=2",
                 "data.samples_per_video=1", "data.max_frames_per_video=2", "iterations=1",
                 "device=cpu", "amp=false", "log_every=1", "val_every=100", "ckpt_every=100",
                 "rollout_steps=1"]
    if config.endswith("frozen"):
        overrides.append(f"data.codec_cache={cache}")
    return load_train_config(REPO / "configs" / "video" / f"{config}.yaml", overrides)


@pytest.mark.parametrize("config", [pytest.param(c, marks=needs(n).marks) for c, n in
                                    CONFIGS.items()])
def test_one_training_step_from_the_config(config: str, tmp_path: Path):
    weights = tmp_path / "weights"
    weights.mkdir()
    for filename, model in random_weights(CONFIGS[config]).items():
        torch.save(model.state_dict(), weights / filename)
    cfg = one_step_config(config, weights, tmp_path / "cache")
    trainer = Trainer(cfg, tmp_path / "run")
    codec = trainer.enhancer.codec
    assert codec.name == CONFIGS[config]
    before = {k: v.clone() for k, v in codec.state_dict().items()}
    trainer.run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    (row,) = [r for r in rows if r["kind"] == "train"]
    assert math.isfinite(row["loss"]) and math.isfinite(row["dist"])
    changed = [k for k, v in codec.state_dict().items() if not torch.equal(v, before[k])]
    if cfg.mode == "frozen":
        assert not changed and row["bitrate"] == 0
        assert any((tmp_path / "cache").iterdir())  # trained from the codec-output cache
    else:
        assert changed and row["bitrate"] > 0 and row["decoder"] > 0
