"""Training: configs, the clip loss, the resumable loop (frozen / end-to-end / codec stage)."""

from enhancer.train.config import DataConfig, TrainConfig, load_train_config
from enhancer.train.export import export_checkpoint
from enhancer.train.losses import ClipLoss
from enhancer.train.plot import plot_log, read_log
from enhancer.train.trainer import Trainer, train

__all__ = [
    "ClipLoss",
    "DataConfig",
    "TrainConfig",
    "Trainer",
    "export_checkpoint",
    "load_train_config",
    "plot_log",
    "read_log",
    "train",
]
