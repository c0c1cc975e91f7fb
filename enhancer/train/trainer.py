"""The training loop: frozen-codec, end-to-end and codec-pretraining runs, resumable bit for bit.

::

    cfg = load_train_config("configs/video/ssf_frozen_tiny.yaml", ["iterations=100"])
    train(cfg, "runs/ssf_frozen_tiny")                # writes config.yaml, log.jsonl, last.pt
    train(cfg, "runs/ssf_frozen_tiny", resume=True)   # continues from last.pt

A run directory holds ``config.yaml`` and ``train_config.json`` (written at the
start), ``log.jsonl`` / ``log.csv`` (loss terms every ``log_every`` steps,
validation scores every ``val_every``; the same rows as TensorBoard scalars in
``tensorboard/`` when the ``tensorboard`` package is installed, with a picture of the
validation clip's last frame, truth | decoded | enhanced, at every validation) and ``last.pt``: an
enhancer checkpoint (:func:`enhancer.pipeline.save_enhancer`) with the training state
in its extra keys (``train_config``, ``ema``, ``optimizer``, ``aux_optimizer``,
``step``, ``rng``). Codec-training modes also write ``codec.pth.tar``, a CompressAI-style
state dict that ``model.codec.checkpoint`` of a later stage can point at.

Multi-GPU: launch with ``torchrun --nproc_per_node N tools/train.py ...``; the
process group is only initialised when ``WORLD_SIZE > 1``.

Over 400 lines on purpose: the loop and the few pieces that make it resumable bit for bit
(every RNG's state, the device and process group) are one run's lifecycle, and are read
together; losses, data, config and the run log (:mod:`enhancer.train.runlog`) live apart.
"""

from __future__ import annotations

import io
import json
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch import Tensor, nn
from torch.utils.data import Dataset
from tqdm import tqdm

from enhancer.codecs.base import CodecError
from enhancer.config import ConfigError, EnhancerConfig, from_dict, to_dict
from enhancer.data.paths import write_atomic
from enhancer.metrics.dists import get_dists_model
from enhancer.metrics.lpips import get_lpips_model
from enhancer.metrics.psnr import psnr
from enhancer.pipeline.checkpoint import denoiser_weights, read_checkpoint, save_enhancer
from enhancer.pipeline.codec_files import write_codec_sidecar
from enhancer.pipeline.enhancer import Enhancer
from enhancer.train.config import TrainConfig
from enhancer.train.data import (
    build_cached_dataset,
    build_train_dataset,
    load_val_clip,
    train_loader,
    training_files,
)
from enhancer.train.losses import METRICS, TERMS, ClipLoss, PerceptualMix
from enhancer.train.pack import PackDataset, pack_batches
from enhancer.train.runlog import RunLog
from enhancer.utils.rate import bpp_from_bytes


# --- small pieces ---------------------------------------------------------------------------
def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device: cuda requested but no CUDA device is available; use cpu")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def rng_state() -> dict[str, Any]:
    """Every global RNG state, in a form ``torch.load(weights_only=True)`` accepts."""
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)),
                  "pos": int(np_pos), "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["name"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["pos"], numpy_state["has_gauss"], numpy_state["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rank_seed(seed: int, step: int, rank: int) -> int:
    """The seed of rank ``rank``'s own draws (diffusion times, noise, quantisation noise)
    from ``step`` on: every rank must draw its own numbers, or the ranks of a data-parallel
    run train on the same noise and the global batch holds ``world_size`` times fewer
    distinct draws. A function of ``(seed, step, rank)``, so a resumed rank is reproducible."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


# --- the trainer ----------------------------------------------------------------------------
class Trainer:
    """Builds everything from a :class:`TrainConfig` (checking it first), then :meth:`run`."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, resume: bool = False):
        self.cfg, self.run_dir = cfg, Path(run_dir)
        use_cuda = cfg.device == "cuda" or (cfg.device == "auto" and torch.cuda.is_available())
        self.rank, self.world_size, local_rank = _init_distributed(use_cuda)
        self.is_main = self.rank == 0
        self.device = resolve_device(cfg.device, local_rank)
        if self.device.type == "cuda":  # tuned kernels and TF32 matmuls: speed over bit-exactness
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True

        # Everything that can be wrong with the config fails here, before any step. The order
        # is part of a run's reproducibility: LPIPS draws random numbers before the seeding.
        self.dataset = self._build_data()
        self.val_clip = load_val_clip(cfg.data)
        self.perceptual, perceptual_loss = self._build_metric_nets()
        seed_everything(cfg.seed)
        self.enhancer = self._build_enhancer(init=not resume)
        if cfg.data.codec_cache is not None:  # needs the (frozen) codec's final weights
            with torch.random.fork_rng():  # coding must not shift the seeded run
                self.dataset = build_cached_dataset(cfg.data, cfg.seed, self.enhancer.codec,
                                                    cfg.model.codec.intra_period)
        self.optimizer, self.aux_optimizer = self._build_optimisers()
        self.loss_fn = self._build_loss(perceptual_loss)
        self.model = self._wrap_distributed(self.loss_fn)
        self.ema = {k: v.detach().clone() for k, v in self.enhancer.diffusion.state_dict().items()}
        self.step = 0
        self.saved_at = time.time()
        if resume:
            self._load(self.run_dir / "last.pt")
        if self.rank > 0:  # rank 0 keeps the seeded stream: one process is unchanged by DDP
            seed_everything(rank_seed(cfg.seed, self.step, self.rank))

    # --- the builders, in the order __init__ calls them -------------------------------------
    def _build_data(self) -> Dataset | PackDataset | None:
        """The training clips (None for a codec cache: built once the codec is)."""
        data = self.cfg.data
        if data.pack is not None:  # uint8 crops, on the device once (enhancer.train.pack)
            dataset = PackDataset(data.pack, self.device)
            dataset.check_fits(self.cfg)
            return dataset
        if data.codec_cache is None:
            return build_train_dataset(data, self.cfg.seed)
        training_files(data)  # bad paths fail before the codec is built
        return None

    def _build_metric_nets(self) -> tuple[Callable | None, Callable | None]:
        """``(lpips, perceptual_loss)``: the logged LPIPS (the metric itself, never the mix)
        and L_perc's network (LPIPS, or LPIPS + DISTS with ``loss.dists_weight``)."""
        cfg, loss = self.cfg, self.cfg.loss
        lpips = None
        try:
            lpips = get_lpips_model(loss.lpips_net, self.device)
        except FileNotFoundError as err:
            if loss.rho > 0 and cfg.mode != "codec":
                raise ConfigError(f"rho={loss.rho} needs LPIPS weights: {err}") from err
        if loss.dists_weight == 0:
            return lpips, lpips
        try:
            return lpips, PerceptualMix(lpips, get_dists_model(self.device), loss.dists_weight)
        except FileNotFoundError as err:
            raise ConfigError(f"dists_weight={loss.dists_weight} needs the DISTS (VGG16) "
                              f"weights: {err}") from err

    def _build_enhancer(self, init: bool) -> Enhancer:
        """The enhancer to train (with ``init``: from ``init_from``'s weights), its parts
        set to train or not by the mode. A student's sampling is its default, and stored."""
        cfg = self.cfg
        enhancer = Enhancer.from_config(
            cfg.model, device=self.device, sampling=cfg.student, student=cfg.student,
            student_any_steps=cfg.student is not None and cfg.loss.consistency_weight > 0)
        codec = enhancer.codec
        if cfg.mode in ("e2e", "codec") and not codec.learned:
            raise ConfigError(
                f"mode {cfg.mode!r} trains the codec, but {codec.name!r} has no weights; "
                "use mode: frozen"
            )
        self.codec_trains = cfg.mode in ("e2e", "codec")
        if cfg.init_from is not None and init:
            self._init_weights(enhancer, cfg.init_from)
        enhancer.diffusion.train(cfg.mode != "codec").requires_grad_(cfg.mode != "codec")
        codec.train(self.codec_trains).requires_grad_(self.codec_trains)
        return enhancer

    def _build_optimisers(self) -> tuple[torch.optim.Optimizer, torch.optim.Optimizer | None]:
        """AdamW over the denoiser and (e2e, codec) the codec, and the codec's auxiliary
        Adam (CompressAI's entropy bottlenecks) when it has one."""
        cfg, optim = self.cfg, self.cfg.optim
        codec = self.enhancer.codec
        aux_names = codec.aux_parameter_names() if self.codec_trains else set()
        groups = []
        if cfg.mode != "codec":
            groups.append({"params": list(self.enhancer.diffusion.parameters()), "lr": optim.lr,
                           "base_lr": optim.lr})
        if self.codec_trains:
            codec_params = [p for n, p in codec.named_parameters() if n not in aux_names]
            lr = optim.lr if cfg.mode == "codec" else optim.codec_lr
            groups.append({"params": codec_params, "lr": lr, "base_lr": lr})
        self.trainable = [p for group in groups for p in group["params"]]
        self.aux_params = [p for n, p in codec.named_parameters() if n in aux_names]
        aux = torch.optim.Adam(self.aux_params, lr=optim.aux_lr) if self.aux_params else None
        return torch.optim.AdamW(groups, weight_decay=optim.weight_decay), aux

    def _build_loss(self, perceptual: Callable | None) -> ClipLoss:
        cfg = self.cfg
        return ClipLoss(self.enhancer.codec, self.enhancer.diffusion, perceptual, cfg.loss,
                        mode=cfg.mode, student=cfg.student,
                        intra_period=cfg.model.codec.intra_period,
                        min_snr_gamma=cfg.model.diffusion.min_snr_gamma, amp=cfg.amp)

    def _wrap_distributed(self, loss_fn: ClipLoss) -> nn.Module:
        """``loss_fn``, wrapped for data-parallel training when there are several ranks."""
        if self.world_size == 1:
            return loss_fn
        return nn.parallel.DistributedDataParallel(
            loss_fn, device_ids=[self.device.index] if self.device.type == "cuda" else None,
            find_unused_parameters=True)

    def _init_weights(self, enhancer: Enhancer, checkpoint: str) -> None:
        """Start from another run's weights (``init_from``): EMA denoiser and codec, unless
        ``model.codec.checkpoint`` names the codec: then that codec stays (an enhancer
        adapted to a retrained codec starts from the enhancer of the old one)."""
        try:
            payload = read_checkpoint(checkpoint)
        except (ValueError, FileNotFoundError) as err:
            raise ConfigError(f"init_from: {err}") from err
        denoiser = denoiser_weights(payload)
        try:
            # A quality-conditioned model may start from an unconditioned one: its quality
            # embedding ends in zeros, so it starts as exactly that model.
            missing, unexpected = enhancer.diffusion.load_state_dict(denoiser, strict=False)
            new = [k for k in missing if not k.startswith("network.quality_embed.")]
            if new or unexpected:
                raise RuntimeError(f"missing keys {new}, unexpected keys {unexpected}")
            if payload.get("codec") is not None and self.cfg.model.codec.checkpoint is None:
                enhancer.codec.load_weights(payload["codec"])
        except (RuntimeError, CodecError) as err:
            raise ConfigError(
                f"init_from {checkpoint!r} does not fit model (its config: "
                f"{payload['enhancer_config']}): {err}"
            ) from err

    # --- state ------------------------------------------------------------------------------
    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: {path} does not exist")
        payload = read_checkpoint(path)
        stored_model = from_dict(EnhancerConfig, payload["enhancer_config"], where=str(path))
        if stored_model != self.cfg.model:
            raise ConfigError(
                f"cannot resume from {path}: its model config differs from this config's; "
                "change only training settings (iterations, lr, ...) when resuming"
            )
        stored = from_dict(TrainConfig, payload["train_config"], where="checkpoint train_config")
        if stored.mode != self.cfg.mode:
            raise ConfigError(f"cannot resume a {stored.mode!r} run as mode {self.cfg.mode!r}")
        self.enhancer.diffusion.load_state_dict(payload["denoiser"])
        if payload.get("codec") is not None:
            self.enhancer.codec.load_weights(payload["codec"])
        self.ema = {k: v.to(self.device) for k, v in payload["ema"].items()}
        self.optimizer.load_state_dict(payload["optimizer"])
        if self.aux_optimizer is not None and payload.get("aux_optimizer"):
            self.aux_optimizer.load_state_dict(payload["aux_optimizer"])
        self.step = int(payload["step"])
        set_rng_state(payload["rng"])

    def save(self) -> None:
        """Write ``last.pt`` atomically (and ``codec.pth.tar`` when the codec trains)."""
        if not self.is_main:
            return
        if self.codec_trains:
            self.enhancer.codec.update()  # entropy tables must follow the weights
        extra = {
            "train_config": to_dict(self.cfg),
            "ema": self.ema,
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict() if self.aux_optimizer else None,
            "step": self.step,
            "rng": rng_state(),
        }
        save_enhancer(self.run_dir / "last.pt", self.enhancer, extra=extra)
        self.saved_at = time.time()
        model = getattr(self.enhancer.codec, "model", None)
        if self.codec_trains and model is not None:
            buffer = io.BytesIO()
            torch.save(model.state_dict(), buffer)
            write_atomic(self.run_dir / "codec.pth.tar", buffer.getvalue())
            write_codec_sidecar(self.run_dir / "codec.pth.tar", self.enhancer.codec)

    # --- one step ---------------------------------------------------------------------------
    def _set_lr(self) -> float:
        warmup = self.cfg.optim.warmup_steps
        factor = min(1.0, (self.step + 1) / warmup) if warmup > 0 else 1.0
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        return self.optimizer.param_groups[0]["lr"]

    @torch.no_grad()
    def _update_ema(self) -> None:
        decay = self.cfg.optim.ema_decay
        for name, value in self.enhancer.diffusion.state_dict().items():
            if value.is_floating_point():
                self.ema[name].lerp_(value, 1 - decay)
            else:
                self.ema[name].copy_(value)

    def train_step(self, clip: Tensor | dict[str, Tensor], with_metrics: bool) -> dict[str, float]:
        """One optimisation step on ``clip`` (B, T, 3, H, W), or a batch of cached codec
        outputs ``{"frames", "decoded"[, "latent"], "quality_level"}``; returns the logged
        numbers."""
        lr = self._set_lr()
        coded = None
        if isinstance(clip, dict):
            coded = {k: v.to(self.device, non_blocking=True) for k, v in clip.items()
                     if k != "frames"}
            clip = clip["frames"]
        terms = self.model(clip.to(self.device, non_blocking=True), with_metrics=with_metrics,
                           coded=coded)
        loss = terms["loss"]
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss is {loss.item()} at step {self.step + 1} "
                f"({ {k: round(float(v), 5) for k, v in terms.items()} }); lower lr or check data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.optim.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.trainable, self.cfg.optim.grad_clip)
        self.optimizer.step()
        aux = 0.0
        if self.aux_optimizer is not None:
            aux_loss = self.enhancer.codec.aux_loss()
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux_loss.backward()
            if self.world_size > 1:
                for param in self.aux_params:
                    if param.grad is not None:
                        dist.all_reduce(param.grad)
                        param.grad /= self.world_size
            self.aux_optimizer.step()
            aux = float(aux_loss.detach())
        if self.cfg.mode != "codec":
            self._update_ema()
        self.step += 1
        numbers = {name: float(value.detach()) for name, value in terms.items()}
        return numbers | {"aux": aux, "lr": lr}

    # --- validation -------------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> tuple[dict[str, float], Tensor] | None:
        """Code the validation clip for real, enhance it with the EMA weights, score it.

        Returns the scores and a picture of the last frame, ground truth | decoded |
        enhanced side by side (3, h, 3w), or None without a validation clip."""
        if self.val_clip is None or not self.is_main:
            return None
        codec, diffusion = self.enhancer.codec, self.enhancer.diffusion
        if self.codec_trains:
            codec.update()
        was_training = (codec.training, diffusion.training)
        codec.eval()
        diffusion.eval()
        live = {k: v.clone() for k, v in diffusion.state_dict().items()}
        diffusion.load_state_dict(self.ema)
        frames = [frame[None].to(self.device) for frame in self.val_clip]  # each (1, 3, h, w)
        student = self.cfg.student
        residual_scale = 0.0 if self.cfg.mode == "codec" else 1.0
        intra_period = self.cfg.model.codec.intra_period
        outputs = list(self.enhancer.enhance(
            frames, steps=None if student is not None else self.cfg.logging.val_steps,
            residual_scale=residual_scale, seed=0, intra_period=intra_period))
        multistep = None  # a student sampled with val_steps: do more steps land where its own do?
        if student is not None and self.cfg.logging.val_steps != student.steps:
            with warnings.catch_warnings():  # past the student's steps: asked for here
                warnings.simplefilter("ignore")
                multistep = torch.cat([out.enhanced for out in self.enhancer.enhance(
                    frames, steps=self.cfg.logging.val_steps, seed=0, intra_period=intra_period)])
        diffusion.load_state_dict(live)
        codec.train(was_training[0])
        diffusion.train(was_training[1])
        original = torch.cat(frames)
        decoded = torch.cat([out.decoded for out in outputs])
        enhanced = torch.cat([out.enhanced for out in outputs])
        scores = {"val_bpp": bpp_from_bytes(sum(out.num_bytes for out in outputs),
                                            original.shape[-2], original.shape[-1],
                                            original.shape[0])}
        for name, images in (("decoded", decoded), ("enhanced", enhanced),
                             ("multistep", multistep)):
            if images is None:
                continue
            scores[f"val_psnr_{name}"] = float(psnr(images, original).mean())
            if self.perceptual is not None:
                scores[f"val_lpips_{name}"] = float(self.perceptual(images, original).mean())
        side_by_side = torch.cat([original[-1], decoded[-1], enhanced[-1]], dim=-1)
        return scores, side_by_side

    def _out_of_time(self, started: float) -> bool:
        """Whether ``time_limit_s`` has passed (on any rank: all ranks stop together)."""
        if self.cfg.time_limit_s is None:
            return False
        late = torch.tensor(float(time.time() - started > self.cfg.time_limit_s),
                            device=self.device)
        if self.world_size > 1:
            dist.all_reduce(late, op=dist.ReduceOp.MAX)
        return bool(late.item())

    def validate_and_save(self, log: RunLog | None, progress: tqdm, save: bool = True) -> None:
        result = self.validate()
        if result is not None and log is not None:
            scores, side_by_side = result
            log.write({"kind": "val", "step": self.step} | scores)
            log.write_image("val/truth_decoded_enhanced", side_by_side, self.step)
            progress.write(f"step {self.step}: " + ", ".join(
                f"{k}={v:.4f}" for k, v in scores.items()))
        if save:
            self.save()

    # --- the loop ---------------------------------------------------------------------------
    def run(self) -> dict[str, float]:
        """Train until ``cfg.iterations``; returns the last logged row."""
        cfg = self.cfg
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
            (self.run_dir / "train_config.json").write_text(json.dumps(to_dict(cfg), indent=2))
        log = RunLog(self.run_dir, self.step, cfg.logging.tensorboard) if self.is_main else None
        if isinstance(self.dataset, PackDataset):
            loader = pack_batches(self.dataset, cfg.data.batch_size, cfg.seed, self.step,
                                  self.rank, self.world_size)
        else:
            loader = train_loader(self.dataset, cfg.data, cfg.seed, self.step, self.rank,
                                  self.world_size)
        progress = tqdm(total=cfg.iterations, initial=self.step, disable=not self.is_main,
                        desc=f"train {cfg.mode}", dynamic_ncols=True, mininterval=1.0)
        sums: dict[str, float] = {}
        count, last_row, started = 0, {}, time.time()
        printed_at, printed_step = None, self.step  # steps/s: the first log row, then every 30 s
        self.saved_at = started
        batches = iter(loader)
        every = cfg.logging
        while self.step < cfg.iterations:
            if self._out_of_time(started):
                progress.write(f"time limit of {cfg.time_limit_s} s reached at step {self.step}")
                self.validate_and_save(log, progress)
                break
            clip = next(batches)
            is_log_step = (self.step + 1) % every.log_every == 0 or self.step + 1 == cfg.iterations
            numbers = self.train_step(clip, with_metrics=is_log_step)
            for name in (*TERMS, "aux"):
                sums[name] = sums.get(name, 0.0) + numbers[name]
            count += 1
            progress.update(1)
            progress.set_postfix(loss=f"{numbers['loss']:.4f}")
            if is_log_step and log is not None:
                row = {"kind": "train", "step": self.step}
                row |= {name: sums[name] / count for name in sums}
                row |= {name: numbers[name] for name in METRICS if name in numbers}
                row |= {"lr": numbers["lr"], "seconds": time.time() - started}
                log.write(row)
                last_row, sums, count = row, {}, 0
                now = time.time()
                if printed_at is None or now - printed_at >= 30:
                    rate = (self.step - printed_step) / max(now - (printed_at or started), 1e-9)
                    progress.write(f"step {self.step}: loss {row['loss']:.4f}, {rate:.2f} steps/s")
                    printed_at, printed_step = now, self.step
            if self.step % every.val_every == 0 or self.step == cfg.iterations:
                self.validate_and_save(log, progress, save=self.step % every.ckpt_every == 0
                                       or self.step == cfg.iterations)
            elif self.step % every.ckpt_every == 0 or (every.ckpt_every_s is not None and (
                    time.time() - self.saved_at >= every.ckpt_every_s)):
                self.save()
        progress.close()
        if log is not None:
            log.close()
        if self.world_size > 1:
            dist.barrier()
        return last_row


def _init_distributed(use_cuda: bool) -> tuple[int, int, int]:
    """(rank, world size, local rank); a process group only when torchrun set WORLD_SIZE > 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return dist.get_rank(), dist.get_world_size(), local_rank


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False) -> Trainer:
    """Build a :class:`Trainer` (config checked first) and run it to ``cfg.iterations``."""
    try:
        trainer = Trainer(cfg, run_dir, resume=resume)
    except CodecError as err:
        raise ConfigError(f"model.codec: {err}") from err
    trainer.run()
    return trainer
