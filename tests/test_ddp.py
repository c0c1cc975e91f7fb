"""Data-parallel training (DDP, gloo on CPU): two ranks of batch 1 train as one process of batch 2.

Two processes are forked on this machine (forked, not spawned: they inherit the
imported modules and start at once, instead of re-importing torch for twenty seconds)
and run :class:`enhancer.train.Trainer` under the environment torchrun gives them
(``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), so the
real path is tested: ``_init_distributed``, the loader's sharding, DistributedDataParallel's
gradient averaging, the hand-made all-reduce of the auxiliary (entropy bottleneck)
gradients and the EMA. Each rank saves its final weights; the test compares them with
each other (bit for bit) and with one process of the same global batch (to rounding).

Random draws: one process draws its diffusion times, noise and quantisation noise once
for its whole batch, while every rank draws for its own share, from its own seed
(:func:`enhancer.train.trainer.rank_seed`; checked: the ranks' next draws differ). No
data-parallel run can draw what one process
draws, so the equivalence is checked with draws that are the same for every sample
(:func:`sample_independent_draws`); everything else runs as in training.

What rounding leaves: the denoiser and its EMA agree to 1e-5 (checked to 2e-5; the
weights move by 1e-3). A batch of 2 rounds its sums differently from two of 1 (1e-7
apart), and in the codec a few weights sit where CompressAI's gradients are tiny or at
a kink (GDN's and the likelihoods' LowerBound, ``|.|`` in the aux loss, where a median
quantile starts): Adam normalises each step, so there the 1e-7 becomes up to a step of
``lr`` either way. The codec is therefore checked as a whole: at most 0.5% of its
entries more than 1e-5 apart (0.05% here), none more than ``2 * codec_lr`` per step.
A rank-blind sharding moves nearly every entry by a step and fails both checks;
unsynchronised gradients fail the bit-for-bit one.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from compressai.entropy_models import EntropyBottleneck, EntropyModel
from conftest import requires_shared_data
from test_train import image_config, write_config

from enhancer.diffusion import ResidualDiffusion
from enhancer.train import Trainer, load_train_config
from enhancer.train.data import StepSampler

pytestmark = [requires_shared_data, pytest.mark.filterwarnings("ignore::UserWarning"),
              pytest.mark.filterwarnings("ignore::FutureWarning")]

WORLD_SIZE = 2
ITERATIONS = 3


def _fixed_field(like: torch.Tensor, per_sample: tuple[int, ...], normal: bool) -> torch.Tensor:
    """One random field of shape ``per_sample`` broadcast to ``like``: the same for every
    sample (standard normal, or uniform in [-0.5, 0.5))."""
    generator = torch.Generator().manual_seed(math.prod(per_sample))
    field = (torch.randn if normal else torch.rand)(per_sample, generator=generator)
    return (field if normal else field - 0.5).to(like).expand_as(like)


@contextlib.contextmanager
def sample_independent_draws():
    """The diffusion time and noise, and CompressAI's training quantisation noise, become
    the same for every sample of a batch (not drawn from the global RNG): then a batch of
    2 sees exactly what two batches of 1 see."""
    training_loss, quantize = ResidualDiffusion.training_loss, EntropyModel.quantize

    def fixed_training_loss(self, clean, cond, t=None, noise=None, **kwargs):
        times = torch.full((clean.shape[0],), 0.37, device=clean.device)
        noise = _fixed_field(clean, (1, *clean.shape[1:]), normal=True)  # clean: (B, 3, H, W)
        return training_loss(self, clean, cond, times, noise, **kwargs)

    def fixed_quantize(self, inputs, mode, means=None):
        if mode != "noise":
            return quantize(self, inputs, mode, means)
        if isinstance(self, EntropyBottleneck):  # (C, 1, B*h*w): the batch is in the last axis
            return inputs + _fixed_field(inputs, (inputs.shape[0], 1, 1), normal=False)
        return inputs + _fixed_field(inputs, (1, *inputs.shape[1:]), normal=False)  # (B, C, h, w)

    ResidualDiffusion.training_loss, EntropyModel.quantize = fixed_training_loss, fixed_quantize
    try:
        yield
    finally:
        ResidualDiffusion.training_loss, EntropyModel.quantize = training_loss, quantize


def final_state(trainer: Trainer) -> dict[str, dict[str, torch.Tensor]]:
    """What training changes: denoiser, codec (with the aux-trained quantiles), EMA."""
    parts = {"denoiser": trainer.enhancer.diffusion.state_dict(),
             "codec": trainer.enhancer.codec.weights(), "ema": trainer.ema}
    return {part: {k: v.detach().clone() for k, v in state.items()}
            for part, state in parts.items()}


def train_rank(rank: int, port: int, config_path: str, out_dir: str) -> None:
    """One torchrun-like rank: environment, a Trainer run, its final state to rank{r}.pt."""
    torch.set_num_threads(1)  # first thing in a forked child, as DataLoader workers do
    os.environ.update(WORLD_SIZE=str(WORLD_SIZE), RANK=str(rank), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    warnings.simplefilter("ignore")
    with sample_independent_draws():
        trainer = Trainer(load_train_config(config_path), Path(out_dir) / "ddp_run")
        trainer.run()
    # The next draw of this rank's global RNG: the ranks must not share one noise stream.
    state = final_state(trainer) | {"next_draw": {"randn": torch.randn(8)}}
    torch.save(state, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_each_step_of_the_ranks_holds_the_single_process_batch():
    """Rank r of w reads items ``(k * w + r) * B + j`` at step k: the ranks' batches of 1
    at step k are together the batch of 2 that one process reads at step k."""
    def first(sampler, count):
        items = iter(sampler)
        return [next(items) for _ in range(count)]

    ranks = [first(StepSampler(1, 0, rank, WORLD_SIZE), ITERATIONS) for rank in range(WORLD_SIZE)]
    single = first(StepSampler(WORLD_SIZE, 0), WORLD_SIZE * ITERATIONS)
    for step in range(ITERATIONS):
        assert sorted(r[step] for r in ranks) == single[step * WORLD_SIZE:(step + 1) * WORLD_SIZE]
    resumed = first(StepSampler(1, 2, 1, WORLD_SIZE), 1)  # a resumed rank picks up its share
    assert resumed == [ranks[1][2]]


def test_two_ranks_train_as_one_process_with_their_global_batch(tmp_path, monkeypatch):
    """e2e (denoiser, codec, aux optimizer, EMA): both ranks end bit-identical, and equal
    (to float rounding) to one process reading both ranks' samples in one batch."""
    config = image_config(iterations=ITERATIONS, lr=1e-3, codec_lr=1e-3, ema_decay=0.5,
                          data={"val": None, "batch_size": 1})
    ddp_config = write_config(tmp_path / "ddp.yaml", config)
    single_config = write_config(tmp_path / "single.yaml", config, ["data.batch_size=2"])

    started = time.time()
    mp.start_processes(train_rank, args=(_free_port(), str(tmp_path / "ddp.yaml"),
                                         str(tmp_path)),
                       nprocs=WORLD_SIZE, join=True, start_method="fork")
    ddp_seconds = time.time() - started
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    assert ddp_config.data.batch_size == 1 and single_config.data.batch_size == 2

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the ranks' kernels: a thread count of its own rounds otherwise
    try:
        with sample_independent_draws():
            single = Trainer(single_config, tmp_path / "single_run")
            initial = final_state(single)
            single.run()
    finally:
        torch.set_num_threads(threads)
    expected = final_state(single)

    for part in ("denoiser", "codec", "ema"):
        for name, value in ranks[0][part].items():
            assert torch.equal(value, ranks[1][part][name]), f"ranks differ in {part} {name}"
    assert not torch.allclose(ranks[0]["next_draw"]["randn"], ranks[1]["next_draw"]["randn"]), \
        "both ranks draw the same noise: each rank must seed its own draws (rank_seed)"
    moved = {part: max(float((expected[part][k] - v).abs().max()) for k, v in initial[part].items())
             for part in expected}
    assert all(change > 1e-3 for change in moved.values()), moved  # training did move them
    assert any(not torch.equal(ranks[0]["codec"][k], v) for k, v in initial["codec"].items()
               if k.endswith("quantiles"))  # the aux optimizer stepped
    for part in ("denoiser", "ema"):
        for name, value in expected[part].items():
            torch.testing.assert_close(ranks[0][part][name], value, rtol=1e-4, atol=2e-5,
                                       msg=lambda m, p=part, n=name: f"{p} {n}: {m}")
    apart = torch.cat([(ranks[0]["codec"][k] - v).abs().flatten()
                       for k, v in expected["codec"].items() if v.is_floating_point()])
    assert (apart > 1e-5).float().mean() < 0.005, "codec: see the module notes"
    assert apart.max() <= 2 * ITERATIONS * single_config.optim.codec_lr, "codec: see the module notes"
    assert ddp_seconds < 60, f"the two ranks took {ddp_seconds:.0f} s"
