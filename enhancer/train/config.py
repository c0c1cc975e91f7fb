"""Training configs: frozen dataclasses in sections, loaded from YAML, unknown keys rejected.

::

    model:            # an EnhancerConfig (codec, unet, diffusion, temporal)
      codec: {name: ssf, quality: 3, checkpoint: null}
      unet: tiny
    mode: frozen      # frozen | e2e | codec
    iterations: 1000  # optimisation steps (not sampling steps)
    data: {train: [../shared/data/video/intel], val: ..., clip_len: 3, crop_size: 64}
    loss: {lmbda: 0.01, rho: 0.9}     # LossConfig: the terms and weights of ClipLoss
    optim: {lr: 1.0e-4}               # OptimConfig: optimisers, schedule, EMA
    logging: {val_every: 200}         # LoggingConfig: log rows, validation, checkpoints
    student: {steps: 1, gamma: 0.3}   # a Sampling: train a few-step student (or null)

Files and checkpoints written before the sections name their keys flat (``rho: 0.9``,
``lr: 1e-4``, ``val_every: 200``); those still load (:data:`FLAT_KEYS`), and a flat key is
applied over its section's value, so ``--set rho=0.5`` overrides a file's ``loss.rho``.

Modes:

- ``frozen``: the codec is fixed (eval mode, no gradients); only the denoiser trains.
  ``L = (1 - rho) L_dist + rho L_perc``; the bitstream cannot change.
- ``e2e``: codec and denoiser train jointly with the full loss
  ``L = lmbda L_bitrate + (1 - rho) L_dist + rho L_perc + L_decoder``.
- ``codec``: a codec pretraining stage (no denoiser): ``L = lmbda L_bitrate + L_decoder``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from enhancer.config import ConfigError, EnhancerConfig, load_yaml
from enhancer.diffusion import Sampling

MODES = ("frozen", "e2e", "codec")
MIN_CROP = 32  # LPIPS (AlexNet: an 11x11 stride-4 stem, then two 3x3 stride-2 pools) needs 31
ROLLOUTS = ("self", "teacher")
DATA_KINDS = ("video", "image")
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DataConfig:
    """Where the training clips come from and how they are cut.

    train:          video files / folders of videos (kind video) or image files / folders
                    (kind image); folders are searched recursively.
    val:            one small video (or image) scored every ``val_every`` steps; None: no val.
    clip_len:       frames per training clip (image kind: always 1).
    crop_size:      side of the random square crop.
    batch_size:     clips per step (per process under DDP).
    kind:           ``video`` or ``image``.
    samples_per_video: clips drawn from each video per epoch.
    max_frames_per_video: only the first this-many frames of each video are used.
    val_frames:     frames of the validation clip that are coded and enhanced.
    val_crop:       centre crop of the validation frames (None: full frame).
    num_workers:    DataLoader worker processes (0: load in the training process).
    cache_images:   decode once and crop from memory: every image (kind image; the crops
                    are the same as without the cache), or the first
                    ``max_frames_per_video`` frames of every video as 8-bit YUV (kind
                    video; crops start on even pixels).
    codec_cache:    a folder for the frozen codec's outputs (kind video, mode frozen):
                    the first ``max_frames_per_video`` frames of every training video are
                    coded once, at full size, and training crops them from disk with no
                    codec in the loop (:mod:`enhancer.train.cache`). None: code every
                    training crop on the fly.
    codec_qualities: with ``codec_cache``, a conventional codec (x264, x265) codes the
                    training videos at each of these qualities (CRFs) and training draws
                    clips from all of them, so one enhancer learns a range of rates.
                    None: the model's own quality only.
    texture_candidates: with ``codec_cache``, draw this many crop positions per clip and keep
                    the one where the codec lost most (1: a plain random crop).
    pack:           a data pack (a folder or its ``pack.npz``, :mod:`enhancer.train.pack`):
                    uint8 crops of the frozen codec's decodes, moved to the training device
                    once. It replaces ``train``, ``codec_cache``, ``codec_qualities`` and
                    ``soften_scales`` (leave them empty): a GPU machine without PyAV or
                    CompressAI trains from it (tools/train_gpu.sh).
    soften_scales:  with ``codec_cache``, also train on copies of every training video made
                    soft at the source (each frame area-downscaled by s and bicubic-
                    upscaled back, then coded; :func:`enhancer.train.cache.soften_frame`),
                    one copy per scale: old film, upscaled or defocused footage, where a
                    soft decode must stay soft. None: the videos as they are.
    """

    train: list[str] = field(default_factory=list)
    val: str | None = None
    clip_len: int = 3
    crop_size: int = 64
    batch_size: int = 2
    kind: str = "video"
    samples_per_video: int = 8
    max_frames_per_video: int | None = 300
    val_frames: int = 3
    val_crop: int | None = 128
    num_workers: int = 0
    cache_images: bool = False
    codec_cache: str | None = None
    codec_qualities: list[int] | None = None
    soften_scales: list[float] | None = None
    texture_candidates: int = 1
    pack: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in DATA_KINDS:
            raise ConfigError(f"data.kind must be one of {DATA_KINDS}, got {self.kind!r}")
        for name in ("clip_len", "crop_size", "batch_size", "samples_per_video", "val_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.texture_candidates < 1:
            raise ConfigError(f"data.texture_candidates must be >= 1, got {self.texture_candidates}")
        if self.num_workers < 0:
            raise ConfigError(f"data.num_workers must be >= 0, got {self.num_workers}")
        for scale in self.soften_scales or []:
            if not scale > 1:
                raise ConfigError(f"data.soften_scales: every scale must be > 1 (1 is the "
                                  f"video itself), got {scale}")


@dataclass(frozen=True)
class LossConfig:
    """The loss terms and their weights (:class:`enhancer.train.losses.ClipLoss` takes it).

    lmbda:          rate weight (L_bitrate is bits per pixel); unused when frozen.
    rho:            perceptual weight in [0, 1] (CDC uses 0.9); 0 trains on L_dist alone.
    lpips_net:      LPIPS trunk for L_perc and the logged LPIPS ("alex" or "vgg").
    dists_weight:   > 0 adds this weight x DISTS to L_perc (:class:`enhancer.train.losses.
                    PerceptualMix`; with ``relative_loss`` the mix is taken relative to the
                    decode's). DISTS is a VGG16: a step of 4 clips of 3 crops of 128 px
                    took 6 s instead of 0.8 s on one CPU thread; 0: LPIPS alone.
    temporal_weight: weight of the temporal term (consecutive enhanced frames change as the
                    ground truth does; :class:`enhancer.train.losses.ClipLoss`). 0: off.
    rollout:        previous enhanced frame during training: ``self`` samples it from the
                    model (no gradient, ``rollout_steps`` DDIM steps), ``teacher`` uses the
                    ground-truth previous frame.
    relative_loss:  (students) each clip's L_dist and L_perc as log-ratios to its decode's
                    own MSE and LPIPS: every clip and rate counts by its improvement over the
                    decode, as the evaluation's ratios do.
    consistency_weight: (students, ``eta: 0``) weight of L_consistency: the student's output
                    should stay the same when sampled with more steps (the denoiser at a
                    random point of its own DDIM path returns it; enhancer.train.losses).
                    0: off (a one-step student then falls apart at 10 steps).
    harm_weight:    (``relative_loss``) a clip's L_dist and L_perc log-ratios count
                    ``1 + harm_weight`` times where they are positive (the clip ends up worse
                    than its decode): the evaluation asks every clip to improve. 0: off.
    signalled:      (``relative_loss``) the model is for streams with strength maps
                    (:mod:`enhancer.strength`): the encoder turns it down wherever it would
                    make LPIPS worse, so a clip's perceptual log-ratio counts only where it
                    gains, ``min(r, 0)``, and its capacity goes to what can be restored. The
                    MSE log-ratio still counts whole (the map's PSNR floor spends it).
    """

    lmbda: float = 0.01
    rho: float = 0.9
    lpips_net: str = "alex"
    dists_weight: float = 0.0
    temporal_weight: float = 0.0
    rollout: str = "self"
    rollout_steps: int = 1
    relative_loss: bool = False
    consistency_weight: float = 0.0
    harm_weight: float = 0.0
    signalled: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.rho <= 1.0:
            raise ConfigError(f"loss.rho must be in [0, 1], got {self.rho}")
        if self.lmbda < 0:
            raise ConfigError(f"loss.lmbda must be >= 0, got {self.lmbda}")
        if self.lpips_net not in ("alex", "vgg"):
            raise ConfigError(f"loss.lpips_net must be 'alex' or 'vgg', got {self.lpips_net!r}")
        if self.rollout not in ROLLOUTS:
            raise ConfigError(f"loss.rollout must be one of {ROLLOUTS}, got {self.rollout!r}")
        if self.rollout_steps < 1:
            raise ConfigError(f"loss.rollout_steps must be >= 1, got {self.rollout_steps}")
        for name in ("dists_weight", "temporal_weight", "consistency_weight", "harm_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"loss.{name} must be >= 0, got {getattr(self, name)}")
        if self.harm_weight > 0 and not self.relative_loss:
            raise ConfigError(f"loss.harm_weight {self.harm_weight} weighs clips by their "
                              "log-ratio to the decode; set relative_loss: true or harm_weight: 0")
        if self.signalled and not self.relative_loss:
            raise ConfigError("loss.signalled counts a clip's LPIPS log-ratio to its decode only "
                              "where it gains; set relative_loss: true or signalled: false")


@dataclass(frozen=True)
class OptimConfig:
    """The optimisers, their schedule and the EMA.

    lr / codec_lr:  AdamW learning rates of the denoiser and (e2e, codec modes) the codec.
    aux_lr:         learning rate of CompressAI's auxiliary (entropy bottleneck) optimizer.
    warmup_steps:   linear learning-rate warm-up; constant afterwards (so a run stopped and
                    resumed sees exactly the schedule of an uninterrupted one).
    grad_clip:      gradient-norm clip (None: none).
    ema_decay:      decay of the EMA copy of the denoiser weights (used at inference).
    """

    lr: float = 1e-4
    codec_lr: float = 1e-5
    aux_lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999

    def __post_init__(self) -> None:
        for name in ("lr", "codec_lr", "aux_lr"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"optim.{name} must be > 0, got {getattr(self, name)}")
        if self.weight_decay < 0 or self.warmup_steps < 0:
            raise ConfigError(f"optim.weight_decay and optim.warmup_steps must be >= 0, got "
                              f"{self.weight_decay} and {self.warmup_steps}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ConfigError(f"optim.grad_clip must be > 0 or null, got {self.grad_clip}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(f"optim.ema_decay must be in [0, 1), got {self.ema_decay}")


@dataclass(frozen=True)
class LoggingConfig:
    """What a run writes, and when.

    log_every / val_every / ckpt_every: steps between log rows, validations and saves.
    ckpt_every_s:   also save ``last.pt`` (atomically) whenever this many seconds have passed
                    since the last save; None: every ``ckpt_every`` steps only.
    val_steps:      DDIM steps when enhancing the validation clip. A student is scored at its
                    own sampling and, when ``val_steps`` differs from its steps, also at
                    ``val_steps`` (its other settings kept; ``val_*_multistep`` columns).
    tensorboard:    also log every train and val row as TensorBoard scalars (same names) in
                    ``<run_dir>/tensorboard/``, and at every validation the validation
                    clip's last frame as an image, truth | decoded | enhanced side by side
                    (``val/truth_decoded_enhanced``; rank 0; needs the ``tensorboard`` package).
    """

    log_every: int = 10
    val_every: int = 200
    ckpt_every: int = 200
    ckpt_every_s: float | None = None
    val_steps: int = 4
    tensorboard: bool = True

    def __post_init__(self) -> None:
        for name in ("log_every", "val_every", "ckpt_every", "val_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"logging.{name} must be >= 1, got {getattr(self, name)}")
        if self.ckpt_every_s is not None and not self.ckpt_every_s > 0:
            raise ConfigError(f"logging.ckpt_every_s must be > 0 or null, got {self.ckpt_every_s}")


SECTIONS = {"loss": LossConfig, "optim": OptimConfig, "logging": LoggingConfig}
# The flat keys of configs and checkpoints written before the sections: key -> section.key.
FLAT_KEYS = {name: f"{section}.{name}" for section, cls in SECTIONS.items()
             for name in cls.__dataclass_fields__}


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored as JSON next to and inside its checkpoints.

    iterations:     optimisation steps (sampling steps are ``logging.val_steps`` / Sampling).
    seed:           seeds every random draw of the run.
    device:         ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
    amp:            bfloat16 autocast for the denoiser and LPIPS (CUDA, or a CPU with
                    AVX512-BF16/AMX: fewer s per step; loss, optimiser and weights stay fp32).
    time_limit_s:   stop (and save) after this many seconds of training even before
                    ``iterations``; None: no limit. A run stopped so can be resumed.
    init_from:      an enhancer checkpoint (or bundled model name) whose weights start this
                    run: its EMA denoiser (else its denoiser) and its codec weights, if
                    stored, unless ``model.codec.checkpoint`` is set: that codec wins (to
                    adapt an enhancer to a retrained codec). Optimizer, EMA and step start
                    fresh (unlike ``--resume``).
    student:        train a few-step *student* for this sampling (``{steps, gamma, eta,
                    t_start, noise}``, as stored in checkpoints): every loss term is taken
                    on what that sampler produces (gradients through its ``steps`` denoiser
                    calls) instead of on one denoising step at a random time, the previous
                    enhanced frame is the student's own output, and the checkpoint stores
                    it as its ``sampling`` default. None: the diffusion training.
    data, loss, optim, logging: the sections (:class:`DataConfig`, :class:`LossConfig`,
                    :class:`OptimConfig`, :class:`LoggingConfig`).
    """

    model: EnhancerConfig = field(default_factory=EnhancerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    mode: str = "frozen"
    iterations: int = 1000
    seed: int = 0
    device: str = "auto"
    amp: bool = False
    time_limit_s: float | None = None
    init_from: str | None = None
    student: Sampling | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    # Older configs and checkpoints call ``iterations`` "steps" and name the sections' keys
    # flat; from_dict reads both.
    LEGACY_KEYS = {"steps": "iterations", **FLAT_KEYS}

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {DEVICES}, got {self.device!r}")
        if self.time_limit_s is not None and not self.time_limit_s >= 0:
            raise ConfigError(f"time_limit_s must be >= 0 or null, got {self.time_limit_s}")
        if self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        self._check_crops()
        if self.data.pack is not None:
            self._check_pack()
        self._check_data()
        self._check_student()
        loss = self.loss
        if loss.dists_weight > 0 and (loss.rho == 0 or self.mode == "codec"):
            raise ConfigError(f"loss.dists_weight {loss.dists_weight} adds to L_perc, which "
                              f"rho={loss.rho} in mode {self.mode!r} does not use; set rho > 0 "
                              "or dists_weight: 0")

    def _check_data(self) -> None:
        data = self.data
        if data.codec_cache is not None and (self.mode != "frozen" or data.kind != "video"):
            raise ConfigError(
                f"data.codec_cache caches a frozen codec's video decodes; it does not fit mode "
                f"{self.mode!r} with data.kind {data.kind!r} (set it to null)"
            )
        if data.soften_scales and data.codec_cache is None:
            raise ConfigError("data.soften_scales needs data.codec_cache (the softened copies "
                              "are coded once into the cache); set data.codec_cache or remove it")
        if data.codec_qualities is not None and data.codec_cache is None:
            raise ConfigError("data.codec_qualities needs data.codec_cache (the qualities are "
                              "coded once into the cache); set data.codec_cache or remove it")
        if not data.train and data.pack is None:
            raise ConfigError("data.train is empty; list the training video/image files or folders")
        if data.kind == "image" and self.model.temporal:
            raise ConfigError(
                "data.kind is 'image' but model.temporal is true; image training needs "
                "model.temporal: false (there is no previous frame)"
            )

    def _check_student(self) -> None:
        """The student and the loss terms that exist only for students."""
        student, loss = self.student, self.loss
        if student is not None and student.residual_scale != 1.0:
            raise ConfigError(
                f"student.residual_scale is {student.residual_scale}, but a student learns "
                "the whole residual; drop it and choose a scale after training with "
                "tools/tune_sampling.py --residual-scale 1 0.75 0.5 --write")
        if loss.relative_loss and student is None:
            raise ConfigError("relative_loss is for few-step students; set student (e.g. "
                              "{steps: 1, gamma: 0, t_start: 0.35}) or drop relative_loss")
        if loss.consistency_weight > 0 and (student is None or student.eta != 0):
            raise ConfigError(
                f"consistency_weight {loss.consistency_weight} trains a student along its "
                "deterministic DDIM path; set student with eta: 0 (e.g. {steps: 1, gamma: 0.3, "
                "eta: 0, t_start: 0.6}) or consistency_weight: 0")

    def _check_pack(self) -> None:
        """A pack holds a frozen codec's video decodes and replaces the other data sources."""
        if self.mode != "frozen" or self.data.kind != "video":
            raise ConfigError(f"data.pack holds a frozen codec's video decodes; it does not fit "
                              f"mode {self.mode!r} with data.kind {self.data.kind!r}")
        for name in ("train", "codec_cache", "codec_qualities", "soften_scales"):
            if getattr(self.data, name):
                raise ConfigError(f"data.pack replaces data.{name} (the pack holds its clips); "
                                  f"set data.{name} to {'[]' if name == 'train' else 'null'}")

    def _check_crops(self) -> None:
        """Crops the network and LPIPS can take: at least MIN_CROP, a multiple of the U-Net's
        size multiple (its downsamplings)."""
        multiple = self.model.unet_config().size_multiple
        for name, size in (("data.crop_size", self.data.crop_size),
                           ("data.val_crop", self.data.val_crop)):
            if size is None:
                continue
            if size < MIN_CROP or size % multiple:
                fixed = -(-max(MIN_CROP, size) // multiple) * multiple
                raise ConfigError(
                    f"{name} must be at least {MIN_CROP} and a multiple of {multiple} (the "
                    f"U-Net's size multiple), got {size}; use e.g. {fixed}"
                )


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a :class:`TrainConfig` from YAML with ``key.sub=value`` overrides."""
    return load_yaml(TrainConfig, path, overrides)
