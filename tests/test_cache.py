"""The codec-output cache: what it stores is the codec's real decode, it is reused, it is
rebuilt for other weights or damaged files, and training from it is the same computation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import yaml
from conftest import SHARED_DATA, requires_shared_data

from enhancer.codecs import CodecStream, load_codec
from enhancer.config import ConfigError
from enhancer.data.sequence import open_sequence
from enhancer.pipeline.enhancer import build_diffusion
from enhancer.train import Trainer, load_train_config
from enhancer.train import cache as cache_module
from enhancer.train.cache import (
    CachedClipDataset,
    CacheError,
    cache_videos,
    plan_sources,
    soften_frame,
)
from enhancer.train.config import DataConfig, LossConfig
from enhancer.train.losses import ClipLoss

pytestmark = [requires_shared_data, pytest.mark.filterwarnings("ignore::UserWarning")]

CLIP = SHARED_DATA / "video" / "vmaf" / "src01_ref_160x90_48f.yuv"  # raw, 160x90, 48 frames
MICRO_UNET = {"dim": 8, "dim_mults": [1, 2], "res_blocks": 1, "cond_levels": 2,
              "attn_levels": [1], "pixel_unshuffle": 2, "latent_dim": 8, "stem_kernel": 3,
              "groups": 4}


def _sources(frames: int):
    return plan_sources([CLIP], frames)


def _random_codec(name: str, quality: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        return load_codec(name, quality).eval()


def test_cache_holds_the_real_decode_and_is_reused(tmp_path, monkeypatch):
    codec = load_codec("x264", 32)
    (entry,) = cache_videos(codec, _sources(5), tmp_path, show_progress=False)
    assert entry.original.shape == entry.decoded.shape == (5, 90, 160, 3)
    with open_sequence(CLIP) as video:
        frames = list(video.frames(0, 5))
    coded = list(codec.encode_sequence(frames))
    assert entry.frame_bytes == [len(data) for data, _ in coded]
    for index, (_, out) in enumerate(coded):
        expected = (out.decoded[0] * 255).round().byte().permute(1, 2, 0).numpy()
        assert np.array_equal(entry.decoded[index], expected)
        truth = (frames[index][0] * 255).round().byte().permute(1, 2, 0).numpy()
        assert np.array_equal(entry.original[index], truth)
    assert 0 < entry.bpp < 24
    # A second call reuses the entry: no coding at all.
    monkeypatch.setattr(cache_module, "_code_video", lambda *a, **k: pytest.fail("re-coded"))
    (again,) = cache_videos(codec, _sources(5), tmp_path, show_progress=False)
    assert again.folder == entry.folder and np.array_equal(again.decoded, entry.decoded)


def test_softened_copies_are_entries_of_their_own_holding_the_soft_source(tmp_path):
    """A softened copy's ground truth is the softened source (what the model must
    reproduce), and its decode is that source's real decode, in an entry of its own."""
    codec = load_codec("x264", 26)
    (plain,) = cache_videos(codec, _sources(3), tmp_path, show_progress=False)
    (soft,) = cache_videos(codec, _sources(3), tmp_path, show_progress=False, soften=2.0)
    assert soft.folder != plain.folder and soft.folder.name.endswith("-soft2")
    with open_sequence(CLIP) as video:
        frames = [soften_frame(frame, 2.0) for frame in video.frames(0, 3)]
    for index, frame in enumerate(frames):
        truth = (frame[0] * 255).round().byte().permute(1, 2, 0).numpy()
        assert np.array_equal(soft.original[index], truth)
    coded = list(codec.encode_sequence(frames))
    assert soft.frame_bytes == [len(data) for data, _ in coded]

    def detail(video: np.ndarray) -> float:  # mean absolute horizontal gradient
        return float(np.abs(np.diff(video.astype(np.float32), axis=2)).mean())

    assert detail(soft.original) < 0.8 * detail(plain.original)
    assert sum(soft.frame_bytes) < sum(plain.frame_bytes)  # less detail, fewer bits
    with pytest.raises(CacheError, match="soften scale must be > 1"):
        cache_videos(codec, _sources(3), tmp_path, show_progress=False, soften=1.0)


def test_other_settings_get_their_own_entry_and_damage_is_rebuilt(tmp_path):
    (crf32,) = cache_videos(load_codec("x264", 32), _sources(3), tmp_path, show_progress=False)
    (crf40,) = cache_videos(load_codec("x264", 40), _sources(3), tmp_path, show_progress=False)
    assert crf32.folder != crf40.folder
    assert sum(crf40.frame_bytes) < sum(crf32.frame_bytes)
    # Other codec weights (same codec, same quality): another entry, never the stale one.
    first = _random_codec("bmshj2018-hyperprior", 1)
    (a,) = cache_videos(first, _sources(2), tmp_path, show_progress=False)
    with torch.no_grad():
        next(first.parameters()).add_(0.01)
    (b,) = cache_videos(first, _sources(2), tmp_path, show_progress=False)
    assert a.folder != b.folder
    # A damaged array is detected by its checksum and the entry is coded again.
    decoded_path = crf32.folder / "decoded.npy"
    before = decoded_path.read_bytes()
    damaged = bytearray(before)
    damaged[-1] ^= 0xFF
    decoded_path.write_bytes(bytes(damaged))
    (rebuilt,) = cache_videos(load_codec("x264", 32), _sources(3), tmp_path, show_progress=False)
    assert (rebuilt.folder / "decoded.npy").read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_quality_conditioned_training_from_a_cache_of_two_crfs(tmp_path, monkeypatch):
    """Every cached clip carries its CRF's quality level into training, and the quality
    embedding (zeros at the start) learns from it."""
    config = {
        "model": {"codec": {"name": "x264", "quality": 32}, "unet": MICRO_UNET,
                  "temporal": True, "quality_conditioning": True},
        "mode": "frozen", "rho": 0.0,
        "data": {"train": [str(CLIP)], "val": None, "clip_len": 2, "crop_size": 64,
                 "batch_size": 2, "kind": "video", "samples_per_video": 2,
                 "max_frames_per_video": 3, "codec_cache": str(tmp_path / "cache"),
                 "codec_qualities": [28, 40], "soften_scales": [2.0]},
        "iterations": 2, "lr": 1e-3, "log_every": 1, "val_every": 100, "ckpt_every": 100,
        "device": "cpu",
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    hashed = []
    real = cache_module.file_digest
    monkeypatch.setattr(cache_module, "file_digest", lambda *a: hashed.append(a[0]) or real(*a))
    trainer = Trainer(load_train_config(path), tmp_path / "run")
    assert hashed.count(CLIP) == 1  # the source is hashed once for all four entries
    names = sorted(video.folder.name for video in trainer.dataset.videos)  # 2 CRFs x 2 copies
    assert len(names) == 4 and sum(name.endswith("-soft2") for name in names) == 2
    levels = sorted({round(float(trainer.dataset[i]["quality_level"]), 6)
                     for i in range(len(trainer.dataset))})
    assert levels == [round(1 - 40 / 51, 6), round(1 - 28 / 51, 6)]
    last = trainer.enhancer.diffusion.network.quality_embed.mlp[-1].weight
    assert last.abs().max() == 0
    trainer.run()
    assert last.abs().max() > 0


def test_soften_scales_are_checked_before_any_work():
    with pytest.raises(ConfigError, match="every scale must be > 1.*got 0.5"):
        DataConfig(soften_scales=[2.0, 0.5])


def test_unwritable_cache_path_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CacheError, match="not a writable folder"):
        cache_videos(load_codec("x264", 32), _sources(2), blocker / "cache", show_progress=False)


def test_crops_align_with_the_latent(tmp_path):
    codec = _random_codec("bmshj2018-hyperprior", 1)
    with torch.no_grad():
        (entry,) = cache_videos(codec, _sources(3), tmp_path, show_progress=False)
    assert entry.latent.shape == (3, 192, 128 // 16, 192 // 16)  # the padded canvas / 16
    dataset = CachedClipDataset([entry], clip_len=2, crop_size=32, samples_per_video=8,
                                latent_stride=16)
    for index in range(len(dataset)):
        item = dataset[index]
        assert item["frames"].shape == item["decoded"].shape == (2, 3, 32, 32)
        assert item["latent"].shape == (2, 192, 2, 2)
    with pytest.raises(ConfigError, match="multiple of 16"):
        CachedClipDataset([entry], clip_len=2, crop_size=40, latent_stride=16)


def test_cached_loss_equals_the_loss_through_the_codec():
    """The cached path feeds the network exactly what the codec path would."""
    codec = _random_codec("bmshj2018-hyperprior", 1)
    from enhancer.config import CodecConfig, EnhancerConfig

    config = EnhancerConfig(codec=CodecConfig(name="bmshj2018-hyperprior", quality=1),
                            unet="tiny", temporal=True)
    torch.manual_seed(1)
    diffusion = build_diffusion(config, codec)
    with open_sequence(CLIP) as video:
        clip = torch.cat([f[..., :64, :64] for f in video.frames(0, 2)])[None]  # (1, 2, 3, 64, 64)
    stream = CodecStream(codec)
    with torch.no_grad():
        outs = [stream(clip[:, i]) for i in range(2)]
    coded = {"decoded": torch.stack([o.decoded for o in outs], 1),
             "latent": torch.stack([o.latent for o in outs], 1)}
    loss = ClipLoss(codec, diffusion, None, LossConfig(lmbda=0.0, rho=0.0, temporal_weight=1.0),
                    mode="frozen")
    torch.manual_seed(2)
    through_codec = loss(clip)
    torch.manual_seed(2)
    from_cache = loss(clip, coded=coded)
    for name in ("loss", "dist", "temporal"):
        torch.testing.assert_close(from_cache[name], through_codec[name])
    assert from_cache["temporal"] > 0
    with pytest.raises(ValueError, match="only fit mode 'frozen'"):
        ClipLoss(codec, diffusion, None, LossConfig(lmbda=0.0, rho=0.0), mode="e2e")(clip,
                                                                             coded=coded)


def test_frozen_training_from_the_cache(tmp_path):
    config = {
        "model": {"codec": {"name": "x264", "quality": 32}, "unet": MICRO_UNET, "temporal": True},
        "mode": "frozen", "rho": 0.0, "temporal_weight": 1.0,
        "data": {"train": [str(CLIP)], "val": None, "clip_len": 2, "crop_size": 64,
                 "batch_size": 2, "kind": "video", "samples_per_video": 4,
                 "max_frames_per_video": 6, "codec_cache": str(tmp_path / "cache")},
        "iterations": 3, "lr": 1e-3, "log_every": 1, "val_every": 100, "ckpt_every": 100,
        "device": "cpu",
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    trainer = Trainer(load_train_config(path), tmp_path / "run")
    assert isinstance(trainer.dataset, CachedClipDataset)
    before = {k: v.clone() for k, v in trainer.enhancer.diffusion.state_dict().items()}
    row = trainer.run()
    assert trainer.step == 3 and np.isfinite(row["loss"]) and row["temporal"] > 0
    after = trainer.enhancer.diffusion.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    # The cache only fits a frozen codec.
    config["mode"] = "e2e"
    config["model"]["codec"] = {"name": "bmshj2018-hyperprior", "quality": 1}
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConfigError, match="codec_cache"):
        load_train_config(path)
