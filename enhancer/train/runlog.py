"""The run log: ``log.jsonl`` and ``log.csv`` rows (fixed columns) and, when the package is
installed, the same numbers as TensorBoard scalars, cut back to the checkpoint's step when a
run resumes (:class:`RunLog`)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from torch import Tensor
from tqdm import tqdm

from enhancer.data.paths import write_atomic_text
from enhancer.train.losses import METRICS, TERMS

LOG_COLUMNS = ("kind", "step", *TERMS, "aux", *METRICS, "lr", "seconds",
               "val_bpp", "val_psnr_decoded", "val_psnr_enhanced", "val_lpips_decoded",
               "val_lpips_enhanced", "val_psnr_multistep", "val_lpips_multistep")



def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


class RunLog:
    """Appends rows to ``log.jsonl`` and ``log.csv`` (fixed columns) in the run directory,
    and with ``tensorboard`` each number of a row as a TensorBoard scalar of the same name
    (``<run_dir>/tensorboard/``; skipped, with one line saying so, without the package).

    Rows after ``step`` (the checkpoint a resumed run starts from) are dropped first:
    those steps run again, and would otherwise be logged twice. TensorBoard hides its
    events after ``step`` the same way (``purge_step``).
    """

    def __init__(self, run_dir: Path, step: int = 0, tensorboard: bool = False):
        self.jsonl_path, self.csv_path = run_dir / "log.jsonl", run_dir / "log.csv"
        self._truncate(step)
        if not self.csv_path.exists():
            with self.csv_path.open("w", newline="") as handle:
                csv.writer(handle).writerow(LOG_COLUMNS)
        self.tensorboard = (_tensorboard_writer(run_dir / "tensorboard", step) if tensorboard
                            else None)

    def _truncate(self, step: int) -> None:
        def kept(lines: list[str], step_of) -> list[str]:
            out = []
            for line in lines:
                try:
                    if step_of(line) > step:
                        continue
                except (ValueError, TypeError, KeyError, IndexError):
                    pass  # keep what cannot be read (the CSV header, a damaged line)
                out.append(line)
            return out

        step_at = LOG_COLUMNS.index("step")
        for path, step_of in ((self.jsonl_path, lambda line: int(json.loads(line)["step"])),
                              (self.csv_path, lambda line: int(line.split(",")[step_at]))):
            if not path.is_file():
                continue
            lines = path.read_text().splitlines(keepends=True)
            remaining = kept(lines, step_of)
            if len(remaining) != len(lines):
                write_atomic_text(path, "".join(remaining))

    def write(self, row: dict[str, Any]) -> None:
        row = {k: _finite_or_none(v) if isinstance(v, float) else v for k, v in row.items()}
        with self.jsonl_path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        with self.csv_path.open("a", newline="") as handle:
            csv.writer(handle).writerow(["" if row.get(c) is None else row[c] for c in LOG_COLUMNS])
        if self.tensorboard is not None:
            for name, value in row.items():
                if name not in ("kind", "step") and value is not None:
                    self.tensorboard.add_scalar(name, value, row["step"])
            self.tensorboard.flush()  # every row on disk, as in the JSONL

    def write_image(self, tag: str, image: Tensor, step: int) -> None:
        """``image`` (3, H, W) in [0, 1] as a TensorBoard image (nothing without TensorBoard)."""
        if self.tensorboard is not None:
            self.tensorboard.add_image(tag, image.clamp(0, 1).float().cpu(), step)
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


def _tensorboard_writer(log_dir: Path, step: int):
    """A ``SummaryWriter`` that hides earlier runs' events after ``step``; None (and one
    line saying how to get it) without the ``tensorboard`` package."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        tqdm.write("tensorboard is not installed: the training log is log.jsonl and log.csv "
                   "only (pip install tensorboard for TensorBoard curves, or set "
                   "tensorboard: false to silence this)")
        return None
    # TensorBoard keeps events before purge_step: the rows up to the checkpoint stay.
    return SummaryWriter(log_dir=str(log_dir), purge_step=step + 1 if step else None)
