"""One evaluation shared by several processes (ranks), as ``torchrun`` starts them.

    torchrun --nproc_per_node 4 tools/eval_uvg.py --root /data/UVG --codec x264 \\
        --quality 22 27 32 37 --enhancer x264_temporal_tiny --device cuda --out out/uvg

Every rank runs the same command; the ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK`` (and
``MASTER_ADDR``/``MASTER_PORT``) that torchrun sets say which share is whose:

- **device**: on CUDA rank r uses ``cuda:LOCAL_RANK``; on a CPU all ranks share it, each
  with ``max(1, cores // ranks on the node)`` torch threads (:meth:`Ranks.place`).
- **units**: the (sequence, rate point) units, sorted by name and rate, are dealt round
  robin: rank r takes units r, r + N, r + 2N, ... of *all* of them (done or not), so a
  rerun deals the same way (:meth:`Ranks.share`).
- **files**: a rank writes its rows to ``<out>/partial/rank<r>/results.json`` after every
  unit (a :class:`~enhancer.eval.results.ResultsStore` of its own); crops, videos and
  features go where one process would put them (each unit has its own names).
- **the folder's lock**: rank 0 takes ``<out>``'s lock for the whole job, before any rank
  writes; the other ranks are in the job by the rendezvous of a gloo process group
  (:class:`RankGroup`), and when rank 0 is refused (a second evaluation on the same
  ``--out``) they are refused with the same message.
- **merge**: when every rank is done, rank 0 folds the partial rows into ``results.json``
  in the order one process would have written them, deletes ``partial/`` and writes
  ``summary.json``, plots, ``compressai/``, FID/KID and ``report.html`` once. Error rows
  of any rank are in the merged rows.
- **resume**: a job that stopped leaves its ``partial/`` files; the next run (any number
  of ranks, or one process) folds them into ``results.json`` first, so whatever any rank
  finished is skipped.

The process group only coordinates (two small messages per job); the work needs none.
A rank that dies closes its connections and the others stop at their next message with
gloo's "Connection reset by peer" (torchrun also stops the job); only a rank that hangs
is waited for, up to :data:`RANK_WAIT`.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from enhancer.eval.results import stored_rows

PARTIAL_DIR = "partial"
# How long the ranks that finished wait for the others (and for the rendezvous): shares
# differ by a unit or two in a fresh run, by all of a resumed run's remaining ones.
RANK_WAIT = timedelta(hours=48)

T = TypeVar("T")


def cpu_threads(ranks_on_node: int) -> int:
    """Torch threads for each of ``ranks_on_node`` processes sharing this machine's CPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // ranks_on_node)


@dataclass(frozen=True)
class Ranks:
    """Which process of a shared evaluation this is (``size`` 1: the only one)."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_size: int = 1  # ranks on this machine

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Ranks:
        """The ranks torchrun describes in ``env``; one process when ``WORLD_SIZE`` is unset."""

        def number(name: str, default: int) -> int:
            text = env.get(name)
            if text is None or text == "":
                return default
            try:
                return int(text)
            except ValueError:
                raise ValueError(f"{name}={text!r} is not a whole number; start the ranks "
                                 "with torchrun, which sets it") from None

        size = number("WORLD_SIZE", 1)
        rank = number("RANK", 0)
        local_rank = number("LOCAL_RANK", rank)
        local_size = number("LOCAL_WORLD_SIZE", size)
        if size < 1 or not 0 <= rank < size:
            raise ValueError(f"RANK={rank} with WORLD_SIZE={size}: expected 0 <= RANK < "
                             "WORLD_SIZE; start the ranks with torchrun")
        if not 0 <= local_rank < max(local_size, 1):
            raise ValueError(f"LOCAL_RANK={local_rank} with LOCAL_WORLD_SIZE={local_size}: "
                             "expected 0 <= LOCAL_RANK < LOCAL_WORLD_SIZE")
        if size > 1:
            missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
            if missing:
                raise ValueError(f"WORLD_SIZE={size} but {' and '.join(missing)} unset: the "
                                 "ranks cannot meet; start them with torchrun --nproc_per_node "
                                 f"{size} tools/eval_uvg.py ...")
        return cls(size, rank, local_rank, local_size)

    @property
    def shared(self) -> bool:
        return self.size > 1

    def place(self, device: str) -> str:
        """This rank's device for ``--device``: ``cuda`` -> ``cuda:LOCAL_RANK``; on a CPU,
        also sets torch's threads to this rank's share of the cores."""
        if not self.shared:
            return device
        try:
            torch_device = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"unknown device {device!r}: {err}; use cpu or cuda") from err
        if torch_device.type == "cpu":
            torch.set_num_threads(cpu_threads(self.local_size))
            return device
        if torch_device.type != "cuda":
            raise ValueError(f"--device {device} with {self.size} ranks: only cpu and cuda "
                             "are shared between ranks")
        if torch_device.index is not None:
            raise ValueError(f"--device {device} with {self.size} ranks: each rank takes "
                             "cuda:LOCAL_RANK; pass --device cuda")
        count = torch.cuda.device_count()
        if self.local_rank >= count:
            raise ValueError(f"rank {self.rank} has LOCAL_RANK {self.local_rank} but this "
                             f"machine has {count} CUDA device(s); start at most {count} ranks "
                             "per machine (--nproc_per_node)")
        torch.cuda.set_device(self.local_rank)
        return f"cuda:{self.local_rank}"

    def share(self, units: Iterable[T], key: Callable[[T], Any]) -> list[T]:
        """This rank's units: every ``size``-th of ``units`` sorted by ``key``, from
        ``rank`` on, in the order given (the same deal for the same units, done or not)."""
        units = list(units)
        dealt = sorted(range(len(units)), key=lambda index: key(units[index]))
        mine = set(dealt[self.rank::self.size])
        return [unit for index, unit in enumerate(units) if index in mine]

    def log(self, log: Callable[[str], None]) -> Callable[[str], None]:
        """``log`` with ``[rank r/N]`` in front of every line (unchanged for one process)."""
        if not self.shared:
            return log
        prefix = f"[rank {self.rank}/{self.size}] "
        return lambda message: log(prefix + message)


class RankGroup:
    """The ranks' gloo process group (nothing for one process): rank 0 does the folder's
    work once, the others wait for it (:meth:`on_rank0`); rank 0 collects (:meth:`gather`)."""

    def __init__(self, ranks: Ranks):
        self.ranks = ranks
        self.group = None
        self._owns_default = False
        if not ranks.shared:
            return
        if dist.is_initialized():  # inside a job that already has one (e.g. NCCL)
            self.group = dist.new_group(backend="gloo", timeout=RANK_WAIT)
        else:
            dist.init_process_group("gloo", init_method="env://", rank=ranks.rank,
                                    world_size=ranks.size, timeout=RANK_WAIT)
            self.group, self._owns_default = dist.group.WORLD, True

    def __enter__(self) -> RankGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_default and dist.is_initialized():
            dist.destroy_process_group()
        self.group, self._owns_default = None, False

    def on_rank0(self, work: Callable[[], T]) -> T | None:
        """Run ``work`` on rank 0 only and make every rank wait for it; its result on rank
        0, None elsewhere. If it raises, every rank raises: rank 0 the error itself, the
        others a ``ValueError`` (for a user error) or ``RuntimeError`` with its message."""
        result, failure = None, None
        if self.ranks.rank == 0:
            try:
                result = work()
            except Exception as err:  # noqa: BLE001 - passed to the other ranks, then raised
                failure = err
        if self.ranks.shared:
            message = [None if failure is None else
                       (isinstance(failure, (ValueError, OSError)), str(failure))]
            dist.broadcast_object_list(message, src=0, group=self.group)
            if self.ranks.rank != 0 and message[0] is not None:
                user_error, text = message[0]
                raise (ValueError if user_error else RuntimeError)(
                    text if user_error else f"rank 0 failed: {text}")
        if failure is not None:
            raise failure
        return result

    def gather(self, value: T) -> list[T] | None:
        """Every rank's ``value`` in rank order on rank 0 (None elsewhere); waits for all."""
        if not self.ranks.shared:
            return [value]
        values = [None] * self.ranks.size if self.ranks.rank == 0 else None
        dist.gather_object(value, values, dst=0, group=self.group)
        return values


def partial_dir(out_dir: str | Path, rank: int) -> Path:
    """The folder of rank ``rank``'s own ``results.json`` (and ``.csv``)."""
    return Path(out_dir) / PARTIAL_DIR / f"rank{rank}"


def partial_rows(out_dir: str | Path) -> list[dict[str, Any]]:
    """The rows of every rank's partial results in ``out_dir`` (rank order)."""
    folders = sorted((Path(out_dir) / PARTIAL_DIR).glob("rank*"),
                     key=lambda p: (len(p.name), p.name))
    return [row for folder in folders for row in stored_rows(folder)]


def remove_partials(out_dir: str | Path) -> None:
    """Delete ``out_dir/partial`` (after its rows are in ``results.json``)."""
    shutil.rmtree(Path(out_dir) / PARTIAL_DIR, ignore_errors=True)
