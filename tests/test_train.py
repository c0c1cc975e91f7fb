"""Training: frozen codec stays bit-exact, e2e trains the codec, resume is bit-for-bit, config errors."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO, SHARED_DATA, requires_shared_data

from enhancer.codecs import load_codec
from enhancer.config import ConfigError
from enhancer.data.datasets import ImageFolderDataset
from enhancer.data.sequence import open_sequence
from enhancer.metrics.psnr import psnr
from enhancer.pipeline import Sampling, load_enhancer, read_checkpoint
from enhancer.train import Trainer, export_checkpoint, load_train_config, plot_log, train
from enhancer.train.data import CachedImageDataset

pytestmark = [requires_shared_data, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

VIDEO = SHARED_DATA / "video" / "vmaf" / "src01_ref_160x90_48f.yuv"  # raw: fast to read
IMAGES = SHARED_DATA / "images" / "standard"
VAL_IMAGE = SHARED_DATA / "images" / "stmalo_fracape.png"

# A U-Net far smaller than the "tiny" preset: these tests check plumbing, not quality.
MICRO_UNET = {"dim": 8, "dim_mults": [1, 2], "res_blocks": 1, "cond_levels": 2,
              "attn_levels": [1], "pixel_unshuffle": 2, "latent_dim": 8, "stem_kernel": 3,
              "groups": 4}


def video_config(**overrides) -> dict:
    config = {
        "model": {"codec": {"name": "ssf", "quality": 3}, "unet": MICRO_UNET, "temporal": True},
        "mode": "frozen",
        "data": {"train": [str(VIDEO)], "val": str(VIDEO), "clip_len": 2, "crop_size": 64,
                 "batch_size": 1, "kind": "video", "samples_per_video": 4, "val_frames": 2,
                 "val_crop": 64},
        "iterations": 2, "lr": 1e-3, "log_every": 1, "val_every": 100, "ckpt_every": 100,
        "rollout": "self", "rollout_steps": 1, "val_steps": 1, "device": "cpu",
    }
    return _merge(config, overrides)


def image_config(**overrides) -> dict:
    config = {
        "model": {"codec": {"name": "bmshj2018-hyperprior", "quality": 1}, "unet": MICRO_UNET,
                  "temporal": False},
        "mode": "e2e",
        "data": {"train": [str(IMAGES)], "val": str(VAL_IMAGE), "crop_size": 64,
                 "batch_size": 2, "kind": "image", "val_crop": 64},
        "iterations": 2, "lr": 1e-3, "codec_lr": 1e-3, "log_every": 1, "val_every": 100,
        "ckpt_every": 100, "val_steps": 1, "device": "cpu",
    }
    return _merge(config, overrides)


def _merge(base: dict, overrides: dict) -> dict:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def write_config(path: Path, config: dict, overrides: list[str] | None = None):
    path.write_text(yaml.safe_dump(config))
    return load_train_config(path, overrides)


def state_hash(state: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for name in sorted(state):
        digest.update(name.encode())
        digest.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def clip_bytes(codec, frames: list[torch.Tensor]) -> list[bytes]:
    return [data for data, _ in codec.encode_sequence(frames)]


def real_frames(count: int = 2, size: int = 64) -> list[torch.Tensor]:
    with open_sequence(VIDEO) as video:
        return [frame[..., :size, :size].contiguous() for frame in video.frames(0, count)]


def read_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


# --- frozen / e2e ---------------------------------------------------------------------------
def test_frozen_mode_keeps_codec_bit_exact_and_trains_denoiser(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", video_config(val_every=2))
    trainer = Trainer(cfg, tmp_path / "run")
    codec = trainer.enhancer.codec
    frames = real_frames()
    codec_before, bytes_before = state_hash(codec.state_dict()), clip_bytes(codec, frames)
    denoiser_before = {k: v.clone() for k, v in trainer.enhancer.diffusion.state_dict().items()}
    assert not any(p.requires_grad for p in codec.parameters())
    trainer.run()

    assert state_hash(codec.state_dict()) == codec_before
    assert clip_bytes(codec, frames) == bytes_before
    changed = [k for k, v in trainer.enhancer.diffusion.state_dict().items()
               if not torch.equal(v, denoiser_before[k])]
    assert len(changed) > 10
    rows = read_rows(tmp_path / "run")
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train_rows] == [1, 2]
    assert all(r["bitrate"] == 0 and r["decoder"] == 0 for r in train_rows)  # not computed
    assert all(math.isfinite(r["dist"]) and r["perc"] > 0 for r in train_rows)
    (val,) = [r for r in rows if r["kind"] == "val"]
    assert val["val_bpp"] > 0 and math.isfinite(val["val_psnr_enhanced"])
    # The checkpoint restores the same codec (and its bytes) and the EMA denoiser.
    payload = read_checkpoint(tmp_path / "run" / "last.pt")
    assert payload["step"] == 2 and set(payload) >= {"ema", "optimizer", "rng", "train_config"}
    restored = load_enhancer(tmp_path / "run" / "last.pt")
    assert clip_bytes(restored.codec, frames) == bytes_before
    assert all(torch.equal(v, payload["ema"][k])
               for k, v in restored.diffusion.state_dict().items())
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert json.loads((tmp_path / "run" / "train_config.json").read_text())["mode"] == "frozen"


def test_e2e_mode_trains_codec_and_aux_loss(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", image_config())
    trainer = Trainer(cfg, tmp_path / "run")
    codec = trainer.enhancer.codec
    before = {k: v.clone() for k, v in codec.state_dict().items()}
    trainer.run()
    after = codec.state_dict()
    changed = {k for k, v in codec.weights().items() if not torch.equal(v, before[k])}
    assert any(k.startswith("model.g_a") for k in changed)  # the encoder trains
    assert any(k.endswith("quantiles") for k in changed)  # the aux optimizer steps
    assert after.keys() == before.keys()
    rows = [r for r in read_rows(tmp_path / "run") if r["kind"] == "train"]
    for row in rows:
        assert all(math.isfinite(row[k]) for k in ("loss", "bitrate", "dist", "perc", "decoder"))
        assert row["bitrate"] > 0 and row["decoder"] > 0 and row["aux"] > 0
        expected = (cfg.loss.lmbda * row["bitrate"] + (1 - cfg.loss.rho) * row["dist"]
                    + cfg.loss.rho * row["perc"] + row["decoder"])
        assert row["loss"] == pytest.approx(expected, rel=1e-5)
    # codec.pth.tar is a CompressAI-style file a later stage loads as model.codec.checkpoint.
    reloaded = load_codec("bmshj2018-hyperprior", 1, checkpoint=tmp_path / "run" / "codec.pth.tar")
    sidecar = json.loads((tmp_path / "run" / "codec.pth.tar.json").read_text())
    assert sidecar == {"codec": "bmshj2018-hyperprior", "quality": 1}  # what the weights are
    assert state_hash(reloaded.weights()) == state_hash(codec.weights())


def test_rho_zero_trains_on_diffusion_loss_alone(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", image_config(mode="frozen", rho=0.0, iterations=1))
    train(cfg, tmp_path / "run")
    (row,) = [r for r in read_rows(tmp_path / "run") if r["kind"] == "train"]
    assert row["perc"] == 0 and row["loss"] == pytest.approx(row["dist"])


def test_resume_is_bit_for_bit(tmp_path):
    config = image_config(iterations=4, data={"val": None})
    straight = train(write_config(tmp_path / "a.yaml", config), tmp_path / "straight")
    half = write_config(tmp_path / "b.yaml", config, ["iterations=2"])
    train(half, tmp_path / "resumed")
    resumed = train(write_config(tmp_path / "b.yaml", config), tmp_path / "resumed", resume=True)
    assert resumed.step == straight.step == 4
    for name, part in (("denoiser", "diffusion"), ("codec", "codec")):
        a = getattr(straight.enhancer, part).state_dict()
        b = getattr(resumed.enhancer, part).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} weights differ after resume"
    assert all(torch.equal(straight.ema[k], resumed.ema[k]) for k in straight.ema)
    steps = [r["step"] for r in read_rows(tmp_path / "resumed") if r["kind"] == "train"]
    assert steps == [1, 2, 3, 4]
    losses = [[r["loss"] for r in read_rows(tmp_path / run) if r["kind"] == "train"]
              for run in ("straight", "resumed")]
    assert losses[0] == losses[1]


# --- bad input: clear errors before any step ------------------------------------------------
def test_unknown_or_mistyped_key_is_rejected(tmp_path):
    with pytest.raises(ConfigError, match="unknown keys.*'lamda'"):
        write_config(tmp_path / "c.yaml", video_config(lamda=0.1))
    with pytest.raises(ConfigError, match="unknown keys.*'crop'"):
        write_config(tmp_path / "c.yaml", video_config(data={"crop": 64}))
    with pytest.raises(ConfigError, match="rho.*expected float"):
        write_config(tmp_path / "c.yaml", video_config(rho="high"))
    with pytest.raises(ConfigError, match="mode must be one of"):
        write_config(tmp_path / "c.yaml", video_config(mode="finetune"))


def test_bad_codec_checkpoint_and_data_fail_before_training(tmp_path):
    image_codec = tmp_path / "bmshj.pth.tar"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(load_codec("bmshj2018-hyperprior", 1).model.state_dict(), image_codec)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no videos here")
    cases = [
        (video_config(model={"codec": {"checkpoint": str(image_codec)}}), "does not fit codec"),
        (video_config(data={"train": [str(empty)]}), "holds no usable videos"),
        (video_config(data={"train": [str(tmp_path / "missing")]}), "does not exist"),
        (video_config(data={"crop_size": 256}), "smaller than the 256x256 crop"),
        (video_config(data={"train": [str(SHARED_DATA / "video" / "intel" / "walk.mkv")]}),
         "held-out test set"),
        (image_config(data={"train": [str(SHARED_DATA / "images")]}), "held-out test set"),
        (video_config(model={"codec": {"name": "x264", "quality": 30}}, mode="e2e"),
         "has no weights"),
    ]
    for number, (config, message) in enumerate(cases):
        cfg = write_config(tmp_path / f"{number}.yaml", config)
        with pytest.raises(ConfigError, match=message):
            train(cfg, tmp_path / f"run{number}")
        assert not (tmp_path / f"run{number}").exists()


# --- tools ----------------------------------------------------------------------------------
def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plot_log_writes_png(tmp_path):
    log = tmp_path / "log.jsonl"
    rows = [{"kind": "train", "step": s, "loss": 1 / s, "dist": 0.5 / s, "perc": 0.3,
             "bitrate": 0.0, "decoder": 0.0, "psnr_decoded": 30.0, "lpips_onestep": 0.2}
            for s in range(1, 6)]
    rows.append({"kind": "val", "step": 5, "val_psnr_enhanced": 29.0, "val_lpips_enhanced": 0.1})
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert _tool("plot_log").main([str(log), str(tmp_path / "curves.png")]) == 0
    png = (tmp_path / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with pytest.raises(FileNotFoundError, match="no training log"):
        plot_log(tmp_path / "missing.jsonl", tmp_path / "x.png")


def test_train_cli_end_to_end_on_tiny_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)  # configs name the data relative to the repository root
    tool = _tool("train")
    run_dir = tmp_path / "run"
    args = ["configs/image/hyperprior_residual_tiny.yaml", "--run-dir", str(run_dir),
            "--set", "steps=4", "data.batch_size=2", "val_every=4", "val_steps=1",
            "data.val_crop=64"]
    assert tool.main(args) == 0
    assert "trained to step 4" in capsys.readouterr().out
    assert read_checkpoint(run_dir / "last.pt")["step"] == 4
    rows = read_rows(run_dir)
    assert [r["step"] for r in rows if r["kind"] == "val"] == [4]
    assert (run_dir / "log.csv").read_text().startswith("kind,step,loss")
    # A second run into the same folder is refused; --resume continues it.
    assert tool.run_cli(tool.main, args) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert tool.main(["--resume", str(run_dir), "--set", "iterations=5"]) == 0
    assert read_checkpoint(run_dir / "last.pt")["step"] == 5
    assert tool.run_cli(tool.main, [*args[:3], "--set", "rhoo=1"]) == 2
    assert "unknown keys ['rhoo']" in capsys.readouterr().err


def test_export_init_from_and_time_limit(tmp_path):
    config = image_config(mode="frozen", iterations=1, data={"val": None})
    trainer = train(write_config(tmp_path / "a.yaml", config), tmp_path / "run")
    exported = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "small.pt", half=True)
    assert exported.stat().st_size < (tmp_path / "run" / "last.pt").stat().st_size / 2
    payload = read_checkpoint(exported)
    assert "optimizer" not in payload and payload["codec"]["model.g_a.0.weight"].dtype == torch.half
    loaded = load_enhancer(exported)
    for name, value in loaded.diffusion.state_dict().items():
        assert torch.equal(value, trainer.ema[name].half().float()), name
    # init_from starts a new run from those weights; time_limit_s=0 stops before any step.
    cfg = write_config(tmp_path / "b.yaml", config, [f"init_from={exported}", "time_limit_s=0"])
    second = train(cfg, tmp_path / "second")
    assert second.step == 0 and read_checkpoint(tmp_path / "second" / "last.pt")["step"] == 0
    for name, value in second.enhancer.diffusion.state_dict().items():
        assert torch.equal(value, loaded.diffusion.state_dict()[name]), name
    # A quality-conditioned run may start from it: the new embedding starts at zero.
    cfg = write_config(tmp_path / "q.yaml", config, [f"init_from={exported}", "time_limit_s=0",
                                                     "model.quality_conditioning=true"])
    conditioned = train(cfg, tmp_path / "conditioned").enhancer.diffusion.state_dict()
    assert set(conditioned) - set(loaded.diffusion.state_dict()) == {
        k for k in conditioned if k.startswith("network.quality_embed.")}
    for name, value in loaded.diffusion.state_dict().items():
        assert torch.equal(conditioned[name], value), name
    assert conditioned["network.quality_embed.mlp.2.weight"].abs().max() == 0
    # model.codec.checkpoint names a retrained codec: it wins over init_from's codec.
    e2e = train(write_config(tmp_path / "e.yaml", image_config(iterations=1, data={"val": None})),
                tmp_path / "e2e")
    retrained = e2e.enhancer.codec.weights()
    assert any(not torch.equal(v, payload["codec"][k].float()) for k, v in retrained.items())
    cfg = write_config(tmp_path / "r.yaml", config, [
        f"init_from={exported}", "time_limit_s=0",
        f"model.codec.checkpoint={tmp_path / 'e2e' / 'codec.pth.tar'}"])
    adapted = train(cfg, tmp_path / "adapted")
    for name, value in adapted.enhancer.codec.weights().items():
        assert torch.equal(value, retrained[name]), name
    for name, value in adapted.enhancer.diffusion.state_dict().items():
        assert torch.equal(value, loaded.diffusion.state_dict()[name]), name
    other = write_config(tmp_path / "c.yaml", image_config(data={"val": None}),
                         [f"init_from={exported}", "model.unet=tiny"])
    with pytest.raises(ConfigError, match="does not fit"):
        train(other, tmp_path / "third")


def test_cached_images_give_the_same_crops():
    plain = ImageFolderDataset(IMAGES, 48, seed=3)
    cached = CachedImageDataset(IMAGES, 48, seed=3)
    for epoch in (0, 1):
        plain.set_epoch(epoch)
        cached.set_epoch(epoch)
        for index in range(len(plain)):
            assert torch.equal(plain[index], cached[index])


# --- few-step students ----------------------------------------------------------------------
STUDENT = {"steps": 2, "gamma": 0.5, "eta": 0.0, "t_start": 0.6, "noise": "shared"}


def test_a_student_trains_on_exactly_what_inference_samples(tmp_path):
    """The student's training estimate is the inference output (same weights, same start
    noise), and the loss reaches the network through both sampler steps."""
    x264 = {"codec": {"name": "x264", "quality": 32}}  # no latent, no canvas padding at 64 px
    cfg = write_config(tmp_path / "s.yaml", video_config(student=STUDENT, model=x264))
    trainer = Trainer(cfg, tmp_path / "run")
    enhancer, loss_fn = trainer.enhancer, trainer.loss_fn
    assert enhancer.sampling == Sampling.from_dict(STUDENT)  # what the checkpoint will store
    torch.manual_seed(0)
    with torch.no_grad():  # a fresh network's zero output layer would hide a mismatch
        for param in enhancer.diffusion.parameters():
            param.add_(0.05 * torch.randn_like(param))
    frames = real_frames(2)
    coded = [out for _, out in enhancer.codec.encode_sequence(frames)]
    decoded, latent = [out.decoded for out in coded], coded[1].latent
    noise = torch.randn(frames[0].shape, generator=torch.Generator().manual_seed(1))
    cond = enhancer.diffusion.condition(decoded[1], latent, decoded[0])
    enhancer.eval()
    with torch.no_grad():
        trained = enhancer.diffusion.decode_target(
            loss_fn._student_sample(cond, decoded[1], noise), decoded[1]).clamp(0, 1)
        inferred = enhancer.enhance_frame(decoded[1], latent, decoded[0], start_noise=noise)
    torch.testing.assert_close(trained, inferred, rtol=0, atol=1e-6)
    assert not torch.allclose(inferred, decoded[1])  # the sample is not just the decode
    enhancer.diffusion.train()
    clip = torch.stack(frames, dim=1)  # (1, T, 3, H, W)
    terms = loss_fn(clip)
    terms["loss"].backward()
    grads = [p.grad for p in enhancer.diffusion.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0
    assert all(torch.isfinite(terms[name]) for name in ("dist", "perc", "temporal"))


def test_a_students_checkpoint_carries_its_sampling_and_warns_past_it(tmp_path):
    cfg = write_config(tmp_path / "s.yaml", video_config(student=STUDENT, iterations=2))
    train(cfg, tmp_path / "run")
    exported = export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "student.pt")
    student = load_enhancer(exported)
    assert student.sampling == Sampling.from_dict(STUDENT) and student.student == student.sampling
    frames = real_frames(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # its own sampling: no warning
        list(student.enhance(frames))
    with pytest.warns(UserWarning, match="2-step student"):
        list(student.enhance(frames, steps=4))  # allowed, never silently changed
    teacher = train(write_config(tmp_path / "t.yaml", video_config(iterations=1)), tmp_path / "t")
    assert teacher.enhancer.student is None
    assert not student.student_any_steps and teacher.enhancer.trained_for_steps(10)


def test_a_student_trained_along_its_ddim_path_runs_any_steps_without_warning(tmp_path):
    """consistency_weight trains the student at every time below its start, so more steps
    are trained too: loading it says so, and sampling it with them does not warn."""
    cfg = write_config(tmp_path / "s.yaml", video_config(
        student=STUDENT, iterations=1, relative_loss=True, consistency_weight=1.0))
    train(cfg, tmp_path / "run")
    student = load_enhancer(export_checkpoint(tmp_path / "run" / "last.pt", tmp_path / "s.pt"))
    assert student.student == Sampling.from_dict(STUDENT) and student.student_any_steps
    assert student.trained_for_steps(10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        list(student.enhance(real_frames(2), steps=10))


def test_a_checkpoint_in_the_flat_layout_loads_resumes_and_exports(tmp_path):
    """Checkpoints written before the config sections (a flat ``train_config``: ``rho``,
    ``lr``, ``val_every``, ... and no ``student`` key of their own, like the bundled models
    and runs started before) load with their student, resume and export."""
    config = video_config(student=STUDENT, iterations=1, relative_loss=True,
                          consistency_weight=1.0, data={"val": None})
    cfg = write_config(tmp_path / "s.yaml", config)
    train(cfg, tmp_path / "run")
    last = tmp_path / "run" / "last.pt"
    payload = torch.load(last, weights_only=True)
    nested = payload["train_config"]
    assert {"loss", "optim", "logging"} <= set(nested) and "rho" not in nested
    flat = {k: v for k, v in nested.items() if k not in ("loss", "optim", "logging")}
    for section in ("loss", "optim", "logging"):
        flat |= nested[section]
    payload["train_config"] = flat | {"steps": flat.pop("iterations")}  # the oldest name
    del payload["student"], payload["student_any_steps"]
    torch.save(payload, last)
    loaded = load_enhancer(last)
    assert loaded.student == Sampling.from_dict(STUDENT) and loaded.student_any_steps
    more = write_config(tmp_path / "s.yaml", config, ["iterations=2"])
    assert train(more, tmp_path / "run", resume=True).step == 2
    exported = load_enhancer(export_checkpoint(last, tmp_path / "e.pt", half=True))
    assert exported.student == loaded.student and exported.student_any_steps


def test_a_students_validation_also_scores_it_at_val_steps(tmp_path):
    """A student is validated at its own sampling and, when val_steps differs, at val_steps
    too: the multistep columns are the same clip enhanced with more steps."""
    rows = {}
    for val_steps in (2, 6):  # STUDENT has 2 steps
        cfg = write_config(tmp_path / f"s{val_steps}.yaml", video_config(
            student=STUDENT, iterations=1, val_every=1, val_steps=val_steps))
        trainer = train(cfg, tmp_path / f"run{val_steps}")
        lines = (tmp_path / f"run{val_steps}" / "log.jsonl").read_text().splitlines()
        rows[val_steps] = [row for row in map(json.loads, lines) if row["kind"] == "val"][-1]
    assert "val_psnr_multistep" not in rows[2]  # its own steps: nothing more to score
    own, multi = rows[6]["val_psnr_enhanced"], rows[6]["val_psnr_multistep"]
    assert own == pytest.approx(rows[2]["val_psnr_enhanced"])  # the same weights and noise
    assert math.isfinite(multi) and multi != own  # 6 steps is another sample
    with torch.no_grad():
        trainer.enhancer.diffusion.load_state_dict(trainer.ema)
        frames = [frame[None] for frame in trainer.val_clip]
        again = torch.cat([out.enhanced for out in trainer.enhancer.enhance(frames, steps=6)])
    assert float(psnr(again, torch.cat(frames)).mean()) == pytest.approx(multi, abs=1e-4)


@pytest.mark.parametrize("student, message", [
    ({"steps": 1, "gamma": 2.0}, "gamma"),
    ({"steps": 0}, "steps"),
    ({"steps": 1, "noise": "pink"}, "noise"),
    ({"steps": 1, "lr": 1}, "unknown"),
    ({"steps": 1, "residual_scale": 0.5}, "a student learns the whole residual"),
])
def test_bad_student_settings_are_config_errors(tmp_path, student, message):
    with pytest.raises(ConfigError, match=message):
        write_config(tmp_path / "s.yaml", video_config(student=student))


def test_a_relative_student_loss_is_zero_for_the_decode_itself(tmp_path):
    """relative_loss: each clip's terms are log-ratios to its decode's own, so leaving the
    decode as it is (a fresh network predicts no residual) costs exactly 0 per term."""
    x264 = {"codec": {"name": "x264", "quality": 32}}
    student = dict(STUDENT, gamma=0.0)  # deterministic: the fresh network returns the decode
    cfg = write_config(tmp_path / "s.yaml", video_config(student=student, model=x264,
                                                         relative_loss=True, rho=0.5))
    trainer = Trainer(cfg, tmp_path / "run")
    clip = torch.stack(real_frames(2), dim=1)
    terms = trainer.loss_fn(clip)
    assert terms["dist"].item() == pytest.approx(0.0, abs=1e-5)
    assert terms["perc"].item() == pytest.approx(0.0, abs=1e-4)
    terms["loss"].backward()  # and both terms train the network
    out_conv = trainer.enhancer.diffusion.network.out_conv
    assert out_conv.weight.grad is not None and out_conv.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="relative_loss is for few-step students"):
        write_config(tmp_path / "t.yaml", video_config(relative_loss=True))


def test_harm_weight_and_signalled_weigh_the_clips_made_worse(tmp_path, monkeypatch):
    """harm_weight k: a clip's log-ratio r to its decode counts r + k * max(r, 0), so clips
    the student improves (r < 0) count as before and the ones it harms count 1 + k times."""
    x264 = {"codec": {"name": "x264", "quality": 32}}
    student = dict(STUDENT, gamma=0.0)
    clip = torch.stack(real_frames(2), dim=1).expand(2, -1, -1, -1, -1)  # two clips
    ratios = {"dist": torch.tensor([-0.5, 0.4]), "perc": torch.tensor([0.2, -0.1])}
    terms = {}
    for harm in (0.0, 2.0, "signalled"):
        extra = ({"signalled": True} if harm == "signalled" else {"harm_weight": harm})
        cfg = write_config(tmp_path / f"h{harm}.yaml", video_config(
            student=student, model=x264, relative_loss=True, rho=0.5, **extra))
        loss_fn = Trainer(cfg, tmp_path / f"run{harm}").loss_fn
        monkeypatch.setattr(loss_fn, "_relative_to_decode",
                            lambda *args: (ratios["dist"].clone(), ratios["perc"].clone()))
        with torch.no_grad():
            terms[harm] = loss_fn(clip)
    assert terms[0.0]["dist"].item() == pytest.approx((-0.5 + 0.4) / 2)
    assert terms[2.0]["dist"].item() == pytest.approx((-0.5 + 3 * 0.4) / 2)
    assert terms[0.0]["perc"].item() == pytest.approx((0.2 - 0.1) / 2)
    assert terms[2.0]["perc"].item() == pytest.approx((3 * 0.2 - 0.1) / 2)
    # signalled: the map switches LPIPS harm off, so only the gain counts; MSE counts whole
    assert terms["signalled"]["perc"].item() == pytest.approx((0.0 - 0.1) / 2)
    assert terms["signalled"]["dist"].item() == pytest.approx((-0.5 + 0.4) / 2)
    with pytest.raises(ConfigError, match="set relative_loss: true or signalled: false"):
        write_config(tmp_path / "bad_s.yaml", video_config(student=student, model=x264,
                                                           signalled=True))
    with pytest.raises(ConfigError, match="set relative_loss: true or harm_weight: 0"):
        write_config(tmp_path / "bad.yaml", video_config(student=student, model=x264,
                                                         harm_weight=1.0))
    with pytest.raises(ConfigError, match="harm_weight must be >= 0"):
        write_config(tmp_path / "neg.yaml", video_config(student=student, model=x264,
                                                         relative_loss=True, harm_weight=-1.0))


def test_consistency_trains_the_student_along_its_own_ddim_path(tmp_path):
    """consistency_weight: L_consistency is the denoiser's error, at a point of the
    student's own DDIM path, against its one-step output; it is 0 when off, and
    optimising it alone brings the 10-step sample towards the one-step one."""
    x264 = {"codec": {"name": "x264", "quality": 32}}
    student = dict(STUDENT, steps=1)
    cfg = write_config(tmp_path / "s.yaml", video_config(
        student=student, model=x264, relative_loss=True, consistency_weight=1.0, lr=3e-3))
    trainer = Trainer(cfg, tmp_path / "run")
    enhancer, loss_fn = trainer.enhancer, trainer.loss_fn
    torch.manual_seed(0)
    with torch.no_grad():  # a fresh network's zero output layer is consistent already
        for param in enhancer.diffusion.parameters():
            param.add_(0.05 * torch.randn_like(param))
    frames = real_frames(2)
    clip = torch.stack(frames, dim=1)
    decoded = torch.stack([out.decoded for _, out in enhancer.codec.encode_sequence(frames)],
                          dim=1)
    coded = {"decoded": decoded}
    noise = torch.randn(frames[0].shape, generator=torch.Generator().manual_seed(1))

    def gap() -> float:  # the 10-step sample's distance from the 1-step one, frame 0
        cond = enhancer.diffusion.condition(decoded[:, 0], None, decoded[:, 0])
        denoise = lambda x, t: enhancer.diffusion.denoise(x, t, cond)
        with torch.no_grad():
            one, ten = (enhancer.diffusion.sample(denoise, decoded[:, 0],
                                                  Sampling(steps=steps, gamma=0.5, t_start=0.6),
                                                  start_noise=noise)
                        for steps in (1, 10))
        return float((one - ten).pow(2).mean())

    terms = loss_fn(clip, coded=coded)
    assert terms["consistency"].item() > 0
    terms["consistency"].backward()  # through the denoiser at the path point only
    out_conv = enhancer.diffusion.network.out_conv
    assert out_conv.weight.grad is not None and out_conv.weight.grad.abs().sum() > 0
    before = gap()
    optimizer = torch.optim.Adam(enhancer.diffusion.parameters(), lr=3e-3)
    for _ in range(25):
        optimizer.zero_grad()
        loss_fn(clip, coded=coded)["consistency"].backward()
        optimizer.step()
    assert gap() < 0.5 * before
    loss_fn.config = dataclasses.replace(loss_fn.config, consistency_weight=0.0)
    assert loss_fn(clip, coded=coded)["consistency"].item() == 0.0


@pytest.mark.parametrize("overrides, message", [
    ({"consistency_weight": -1.0}, "consistency_weight must be >= 0"),
    ({"consistency_weight": 1.0}, "set student with eta: 0"),
    ({"consistency_weight": 1.0, "student": dict(STUDENT, eta=0.5)}, "set student with eta: 0"),
])
def test_bad_consistency_settings_are_config_errors(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        write_config(tmp_path / "s.yaml", video_config(**overrides))


def test_dists_weight_adds_dists_to_the_perceptual_term(tmp_path):
    """dists_weight: L_perc is LPIPS + w * DISTS (relative to the decode's mix with
    relative_loss), gradients reach the network through both, and the logged LPIPS is
    LPIPS alone."""
    from enhancer.metrics import get_dists_model
    from enhancer.metrics.lpips import get_lpips_model
    from enhancer.train.losses import PerceptualMix

    x264 = {"codec": {"name": "x264", "quality": 32}}
    cfg = write_config(tmp_path / "s.yaml", video_config(
        student=dict(STUDENT, gamma=0.0), model=x264, rho=0.5, dists_weight=2.0))
    trainer = Trainer(cfg, tmp_path / "run")
    mix = trainer.loss_fn.perceptual
    assert isinstance(mix, PerceptualMix) and mix.dists_weight == 2.0
    clip = torch.stack(real_frames(2), dim=1)  # (1, 2, 3, H, W)
    with torch.no_grad():
        noisy = (clip[:, 0] + 0.05 * torch.randn_like(clip[:, 0])).clamp(0, 1)
        expected = (get_lpips_model("alex")(noisy, clip[:, 0])
                    + 2.0 * get_dists_model("cpu")(noisy, clip[:, 0]))
        torch.testing.assert_close(mix(noisy, clip[:, 0]), expected)
    terms = trainer.loss_fn(clip, with_metrics=True)
    assert terms["perc"].item() > 0  # absolute: the decode's own mix, not zero
    terms["loss"].backward()
    out_conv = trainer.enhancer.diffusion.network.out_conv
    assert out_conv.weight.grad is not None and out_conv.weight.grad.abs().sum() > 0
    decoded_lpips = terms["lpips_decoded"].item()
    assert 0 < decoded_lpips < terms["perc"].item()  # logged: LPIPS, below the mix
    relative = write_config(tmp_path / "r.yaml", video_config(
        student=dict(STUDENT, gamma=0.0), model=x264, rho=0.5, dists_weight=2.0,
        relative_loss=True))
    terms = Trainer(relative, tmp_path / "run2").loss_fn(clip)
    assert terms["perc"].item() == pytest.approx(0.0, abs=1e-4)  # the decode: log(1) = 0
    for bad, message in (({"dists_weight": -1.0}, "dists_weight must be >= 0"),
                         ({"dists_weight": 1.0, "rho": 0.0}, "does not use")):
        with pytest.raises(ConfigError, match=message):
            write_config(tmp_path / "bad.yaml", video_config(model=x264, **bad))


# --- TensorBoard ----------------------------------------------------------------------------
def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir))
    accumulator.Reload()
    return {tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
            for tag in accumulator.Tags()["scalars"]}


def tensorboard_images(log_dir: Path, tag: str) -> list[tuple[int, np.ndarray]]:
    """(step, (H, W, 3) uint8) of every image logged under ``tag``."""
    from PIL import Image
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(log_dir), size_guidance={"images": 0})
    accumulator.Reload()
    return [(event.step, np.asarray(Image.open(io.BytesIO(event.encoded_image_string))))
            for event in accumulator.Images(tag)]


def rows_as_scalars(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard should hold for these JSONL rows (it stores float32)."""
    scalars: dict[str, list[tuple[int, float]]] = {}
    for row in rows:
        for name, value in row.items():
            if name not in ("kind", "step") and value is not None:
                scalars.setdefault(name, []).append((row["step"], float(np.float32(value))))
    return scalars


def test_tensorboard_scalars_are_the_log_rows_and_a_resume_replaces_what_it_reruns(tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is not installed (pip install "
                                              "tensorboard, or the project's test extra)")
    config = image_config(mode="frozen", val_every=2, ckpt_every=2, data={"val_crop": 32,
                                                                          "crop_size": 32})
    run = tmp_path / "run"
    train(write_config(tmp_path / "c.yaml", config), run)  # steps 1, 2 (val at 2)
    step_two = (run / "last.pt").read_bytes()
    train(write_config(tmp_path / "c.yaml", config, ["iterations=3"]), run, resume=True)
    # A crash after step 3 was logged but before its checkpoint: resume from step 2 again.
    (run / "last.pt").write_bytes(step_two)
    trainer = train(write_config(tmp_path / "c.yaml", config, ["iterations=4"]), run, resume=True)

    rows = read_rows(run)
    assert [(r["kind"], r["step"]) for r in rows] == [
        ("train", 1), ("train", 2), ("val", 2), ("train", 3), ("train", 4), ("val", 4)]
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 3
    scalars = tensorboard_scalars(run / "tensorboard")
    assert scalars == rows_as_scalars(rows)  # the rerun step 3 once, with its new numbers
    assert {"loss", "dist", "perc", "lr", "val_psnr_enhanced", "val_bpp"} <= scalars.keys()
    images = tensorboard_images(run / "tensorboard", "val/truth_decoded_enhanced")
    assert [step for step, _ in images] == [2, 4]  # one picture per validation
    truth = trainer.val_clip[-1]  # (3, 32, 32)
    for _, picture in images:  # truth | decoded | enhanced, 8-bit PNG
        assert picture.shape == (32, 96, 3)
        np.testing.assert_allclose(picture[:, :32] / 255, truth.permute(1, 2, 0).numpy(),
                                   atol=1 / 255 + 1e-6)
        assert not np.array_equal(picture[:, 32:64], picture[:, :32])  # a lossy decode


def test_without_tensorboard_one_line_and_no_crash_and_it_can_be_turned_off(
        tmp_path, monkeypatch, capsys):
    config = image_config(mode="frozen", iterations=1, data={"val": None})
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import fails
        train(write_config(tmp_path / "a.yaml", config), tmp_path / "missing")
    lines = [line for line in capsys.readouterr().out.splitlines() if "tensorboard" in line]
    assert len(lines) == 1 and "pip install tensorboard" in lines[0]
    assert read_rows(tmp_path / "missing") and not (tmp_path / "missing" / "tensorboard").exists()
    train(write_config(tmp_path / "b.yaml", config, ["tensorboard=false"]), tmp_path / "off")
    assert "tensorboard" not in capsys.readouterr().out
    assert read_rows(tmp_path / "off") and not (tmp_path / "off" / "tensorboard").exists()


def test_training_settings_are_parsed_as_numbers_and_range_checked(tmp_path):
    config = REPO / "configs/video/x264_frozen_tiny.yaml"
    assert load_train_config(config, ["lr=1e-4"]).optim.lr == 1e-4  # flat key, read into optim
    for override, message in (("lr=-1", "lr must be > 0"), ("ema_decay=1", r"ema_decay"),
                              ("data.crop_size=12", "at least 32 and a multiple of 8"),
                              ("data.crop_size=7", "use e.g. 32"),
                              ("lr=[1", "not valid YAML")):
        with pytest.raises(ConfigError, match=message):
            load_train_config(config, [override])
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_train_config(broken)


def test_resume_drops_log_rows_after_the_checkpoint(tmp_path):
    from enhancer.train.trainer import RunLog

    log = RunLog(tmp_path)
    for step in (10, 20, 30):
        log.write({"kind": "train", "step": step, "loss": 1.0})
    RunLog(tmp_path, step=20)  # resumed from the step-20 checkpoint
    steps = [json_row["step"] for json_row in map(json.loads, (tmp_path / "log.jsonl").open())]
    assert steps == [10, 20]
    csv_lines = (tmp_path / "log.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in csv_lines[1:]] == ["10", "20"]
