"""One clip, one roll-out: inference (``Enhancer.enhance``), the evaluation runner and the
eval-mode training path (``ClipLoss``) see the same decodes, latents and conditioning;
inference, evaluation and a few-step student's training give bit-identical enhanced frames."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import SHARED_DATA, requires_shared_data

from enhancer.config import EnhancerConfig, from_dict
from enhancer.data.padding import centre_crop
from enhancer.data.sequence import open_sequence
from enhancer.eval import EnhancerSpec, EvalSettings, evaluate_sequences
from enhancer.eval.sequences import SequenceSpec
from enhancer.pipeline import Enhancer, Sampling
from enhancer.train.config import LossConfig
from enhancer.train.losses import ClipLoss

pytestmark = requires_shared_data

CISCO = SHARED_DATA / "video/openh264/CiscoVT2people_160x96_6fps.yuv"
CROP = (64, 128)  # (H, W): a multiple of the canvas, so training and inference see no padding
SEED, FRAMES = 5, 3
SAMPLING = Sampling(steps=2, gamma=0.7, t_start=0.8, noise="shared")


@pytest.fixture(scope="module")
def enhancer() -> Enhancer:
    config = from_dict(EnhancerConfig, {"codec": {"name": "bmshj2018-hyperprior", "quality": 1},
                                        "unet": "tiny", "temporal": True})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random codec weights
        enhancer = Enhancer.from_config(config)
    torch.nn.init.normal_(enhancer.diffusion.network.out_conv.weight, std=0.05)  # not "no residual"
    enhancer.sampling = SAMPLING  # the checkpoint's defaults, which every path uses
    assert enhancer.canvas_shape(torch.zeros(1, 3, *CROP))[-2:] == CROP
    return enhancer


@pytest.fixture(scope="module")
def frames() -> list[torch.Tensor]:
    """Three real frames, centre-cropped as the evaluation crops them: (1, 3, 64, 128)."""
    with open_sequence(CISCO) as video:
        return [centre_crop(frame, *CROP).contiguous() for frame in video.frames(0, FRAMES)]


def _record(monkeypatch, obj, name: str) -> list[tuple]:
    """Spy on ``obj.name(...)``: each call's positional and keyword arguments and result."""
    calls, original = [], getattr(obj, name)

    def spy(*args, **kwargs):
        result = original(*args, **kwargs)
        calls.append((args, kwargs, result))
        return result

    monkeypatch.setattr(obj, name, spy)
    return calls


def _same(a, b) -> bool:
    """Equal tensors (bit for bit), dicts of them, or equal plain values."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    return a == b


def _inference(enhancer, frames, monkeypatch):
    with monkeypatch.context() as patch:
        steps = _record(patch, enhancer, "sample_residual")
        conds = _record(patch, enhancer.diffusion, "condition")
        outputs = list(enhancer.enhance(frames, seed=SEED, intra_period=-1))
    return outputs, steps, conds


def test_inference_and_evaluation_give_the_same_frames(enhancer, frames, monkeypatch, tmp_path):
    outputs, inference_steps, _ = _inference(enhancer, frames, monkeypatch)
    spec = EnhancerSpec(enhancer, "contract")
    settings = EvalSettings(frames=FRAMES, intra_period=-1, out_dir=tmp_path, crop=CROP,
                            seed=SEED, metrics=("psnr_rgb",), write_videos=False, quiet=True)
    with monkeypatch.context() as patch:
        eval_steps = _record(patch, enhancer, "sample_residual")
        report = evaluate_sequences([SequenceSpec("cisco", CISCO)], "bmshj2018-hyperprior", [1],
                                    spec, settings, log=lambda _: None)
    assert not report.errors
    assert len(inference_steps) == len(eval_steps) == len(outputs) == FRAMES
    scale = enhancer.sampling.residual_scale
    for out, (args, kwargs, residual), (args_ref, kwargs_ref, residual_ref) in zip(
            outputs, eval_steps, inference_steps):
        assert all(_same(a, b) for a, b in zip(args, args_ref))  # decoded, latent, prev, sampling
        assert kwargs.keys() == kwargs_ref.keys()
        assert all(_same(kwargs[k], kwargs_ref[k]) for k in kwargs if k != "generator")
        assert torch.equal(kwargs["generator"].get_state(), kwargs_ref["generator"].get_state())
        assert torch.equal(residual, residual_ref)
        assert torch.equal(out.enhanced, (args[0] + scale * residual).clamp(0, 1))
    assert not torch.equal(outputs[0].enhanced, outputs[0].decoded)  # the enhancer really ran


@pytest.mark.parametrize("student", [None, SAMPLING], ids=["diffusion", "student"])
def test_training_path_sees_the_same_roll_out(enhancer, frames, monkeypatch, student):
    """The eval-mode training path (``ClipLoss``, frozen codec) codes the clip as the
    receiver decodes it and conditions frame 0 as inference does.

    A few-step student trains on the inference roll-out itself: its shared start noise,
    drawn once per clip from the global generator seeded as the roll-out's, gives the
    same enhanced frames, so every frame is conditioned exactly as at inference. A
    diffusion-trained model's self roll-out samples ``rollout_steps`` from pure noise with
    the global generator (which the diffusion loss also draws from), so from frame 1 on
    only the decode and the latent are compared.
    """
    outputs, _, inference_conds = _inference(enhancer, frames, monkeypatch)
    weights = LossConfig(lmbda=0.0, rho=0.0, rollout="self", rollout_steps=SAMPLING.steps)
    loss = ClipLoss(enhancer.codec, enhancer.diffusion, None, weights, mode="frozen",
                    student=student)
    clip = torch.stack(frames, dim=1)  # (1, T, 3, H, W)
    torch.manual_seed(SEED)
    with monkeypatch.context() as patch, torch.no_grad():
        training_conds = _record(patch, enhancer.diffusion, "condition")
        loss(clip)
    assert len(training_conds) == len(inference_conds) == FRAMES
    for index, ((_, _, cond), (_, _, cond_ref), out) in enumerate(
            zip(training_conds, inference_conds, outputs)):
        assert torch.equal(cond["decoded"], out.decoded)  # the training path = the bytes' decode
        assert torch.equal(cond["latent"], cond_ref["latent"])
        if index == 0 or student is not None:
            assert _same(cond, cond_ref)  # frame 0: prev_enhanced = the decode, on both sides
        if index > 0 and student is not None:
            assert torch.equal(cond["prev_enhanced"], outputs[index - 1].enhanced)
