"""Sampling settings: validation, late start, shared start noise, checkpoint defaults, the
roll-out's single frame loop, the sweep that picks the defaults, and the CLI flags."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import REPO, SHARED_DATA, requires_shared_data

from enhancer.codecs.container import Container
from enhancer.config import CodecConfig, EnhancerConfig
from enhancer.data.sequence import open_sequence
from enhancer.diffusion import ddim_path, ddim_start, sample_ddim
from enhancer.diffusion.schedule import alpha_sigma
from enhancer.pipeline import Enhancer, Rollout, Sampling, load_enhancer, save_enhancer
from enhancer.pipeline.checkpoint import read_checkpoint, store_sampling

CISCO = SHARED_DATA / "video" / "openh264" / "CiscoVT2people_160x96_6fps.yuv"
FRIDAY = SHARED_DATA / "video" / "mdn" / "friday.mp4"  # a validation clip (tuning refuses test clips)


def _shrink_denoiser(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    alpha, sigma = (v.reshape(-1, 1, 1, 1) for v in alpha_sigma(t))
    return alpha * 0.25 / (alpha**2 * 0.25 + sigma**2) * x_t


def _enhancer(temporal: bool = True) -> Enhancer:
    config = EnhancerConfig(codec=CodecConfig(name="x264", quality=32), unet="tiny",
                            temporal=temporal)
    torch.manual_seed(0)
    enhancer = Enhancer.from_config(config)
    with torch.no_grad():  # a random but non-zero output layer, so noise reaches the output
        for p in enhancer.diffusion.network.out_conv.parameters():
            p.normal_(0, 0.05)
    return enhancer


def _frames(count: int) -> list[torch.Tensor]:
    with open_sequence(CISCO) as video:
        return list(video.frames(0, count))


@pytest.mark.parametrize("values, message", [
    ({"gamma": 1.6}, r"gamma .* \[0.0, 1.5\]"), ({"gamma": -0.1}, "gamma"),
    ({"t_start": 0.0}, r"t_start must be in \(0, 1\]"), ({"t_start": 1.2}, "t_start"),
    ({"eta": 2.0}, "eta"), ({"steps": 0}, "steps"), ({"noise": "pink"}, "noise"),
    ({"residual_scale": 1.2}, r"residual_scale must be in \[0, 1\]"),
    ({"residual_scale": -0.1}, "residual_scale"),
    ({"hold": 1.5}, r"hold must be in \[0, 1\]"), ({"hold": -0.01}, "hold"),
])
def test_bad_sampling_settings_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        Sampling(**values)


def test_override_keeps_what_is_none_and_roundtrips():
    tuned = Sampling(steps=2, gamma=0.5, t_start=0.6, noise="shared")
    assert tuned.override(steps=None, gamma=0.0) == Sampling(2, 0.0, 0.0, 0.6, "shared")
    assert Sampling.from_dict(tuned.to_dict()) == tuned
    assert Sampling.from_dict(None) == Sampling()
    with pytest.raises(ValueError, match="unknown sampling settings"):
        Sampling.from_dict({"steps": 2, "cfg_scale": 3})


def test_late_start_stays_near_the_start_mean():
    start = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    mean = torch.full((1, 3, 8, 8), 0.3)
    full = sample_ddim(_shrink_denoiser, start.shape, 4, start_noise=start)
    late = sample_ddim(_shrink_denoiser, start.shape, 4, start_noise=start, t_start=0.2,
                       start_mean=mean)
    # From t = 1 the shrink denoiser forgets the mean; from t = 0.2 the sample keeps most of it.
    assert (late - mean * 0.8).abs().mean() < (full - mean * 0.8).abs().mean()
    assert late.mean() > 0.15
    # gamma = 0 with a late start is deterministic and needs no noise at all.
    a = sample_ddim(_shrink_denoiser, start.shape, 3, gamma=0.0, t_start=0.5, start_mean=mean,
                    generator=torch.Generator().manual_seed(1))
    b = sample_ddim(_shrink_denoiser, start.shape, 3, gamma=0.0, t_start=0.5, start_mean=mean,
                    generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b)


@pytest.mark.parametrize("steps, t_start", [(1, 0.6), (3, 0.6), (10, 0.6), (4, 1.0)])
def test_ddim_path_is_where_a_constant_denoiser_takes_the_sampler(steps, t_start):
    """ddim_path (what L_consistency trains on) is exactly the input the sampler hands its
    denoiser at every step when the denoiser keeps returning the same x0."""
    gen = torch.Generator().manual_seed(0)
    noise, x0, mean = (torch.randn(2, 3, 8, 8, generator=gen) for _ in range(3))
    seen = []

    def constant(x, t):
        seen.append((x.clone(), t.clone()))
        return x0

    out = sample_ddim(constant, noise.shape, steps, gamma=0.3, start_noise=noise,
                      t_start=t_start, start_mean=mean)
    torch.testing.assert_close(out, x0)
    x_start = ddim_start(noise, 0.3, t_start, mean)
    assert len(seen) == steps
    torch.testing.assert_close(seen[0][0], x_start)
    for x, t in seen:
        torch.testing.assert_close(x, ddim_path(x0, x_start, t_start, t), rtol=1e-5, atol=1e-5)
    # ... and it moves: half-way it is neither the start nor x0.
    half = ddim_path(x0, x_start, t_start, torch.full((2,), t_start / 2))
    assert (half - x0).abs().mean() > 0.05 and (half - x_start).abs().mean() > 0.05


@requires_shared_data
def test_shared_noise_repeats_and_fresh_noise_does_not():
    enhancer = _enhancer(temporal=False)  # no previous frame: only the noise can differ
    frame = _frames(1)[0]
    for noise, same in (("shared", True), ("fresh", False)):
        rollout = Rollout(enhancer, Sampling(steps=2, noise=noise), seed=3)
        first, second = rollout.enhance(frame, None), rollout.enhance(frame, None)
        assert torch.equal(first, second) == same
    # ... and the seed decides the shared field.
    one = Rollout(enhancer, Sampling(steps=2, noise="shared"), seed=1).enhance(frame, None)
    two = Rollout(enhancer, Sampling(steps=2, noise="shared"), seed=2).enhance(frame, None)
    assert not torch.equal(one, two)


@requires_shared_data
def test_hold_keeps_the_residual_where_the_decode_is_still():
    enhancer = _enhancer(temporal=False)  # fresh noise: every frame's residual differs
    still = _frames(1)[0]
    moved = still.clone()
    moved[..., :80] = (moved[..., :80] + 0.2).clamp(0, 1)  # the left half changes
    for hold in (0.0, 0.01):
        rollout = Rollout(enhancer, Sampling(steps=2, noise="fresh", hold=hold), seed=3)
        first, again, after = (rollout.enhance(f, None) for f in (still, still, moved))
        # hold: a still frame keeps its residual, so the output does not change either
        assert torch.equal(first, again) == (hold > 0)
        if hold > 0:  # the still right half keeps it; the moved left half gets a new one
            assert torch.equal(after[..., 80:], first[..., 80:])
            assert not torch.allclose((after - moved)[..., :80], (first - still)[..., :80])


@requires_shared_data
def test_frames_and_bytes_give_the_same_enhanced_sequence():
    """One roll-out: enhancing frames (encoder side) equals enhancing their bitstream."""
    enhancer = _enhancer()
    frames = _frames(3)
    sampling = dict(steps=2, gamma=0.7, t_start=0.8, noise="shared")
    from_frames = list(enhancer.enhance(frames, seed=5, intra_period=2, **sampling))
    container = Container(enhancer.codec.name, enhancer.codec.quality, 160, 96, 2, 6.0,
                          frames=[data for data, _ in enhancer.codec.encode_sequence(frames, 2)],
                          padded_sizes=[enhancer.codec.padded_size((96, 160))] * 3)
    from_bytes = list(enhancer.enhance(container, seed=5, **sampling))
    for a, b in zip(from_frames, from_bytes):
        assert torch.equal(a.decoded, b.decoded) and torch.equal(a.enhanced, b.enhanced)
        assert a.num_bytes == b.num_bytes
    # The evaluation's path (a Rollout over decodes made elsewhere) gives the same frames.
    rollout = Rollout(enhancer, enhancer.sampling.override(**sampling), seed=5)
    for a in from_frames:
        assert torch.equal(rollout.enhance(a.decoded, None), a.enhanced)


@requires_shared_data
def test_checkpoint_carries_its_sampling_defaults(tmp_path):
    enhancer = _enhancer()
    save_enhancer(tmp_path / "e.pt", enhancer)
    assert load_enhancer(tmp_path / "e.pt").sampling == Sampling()  # the historical default
    tuned = Sampling(steps=1, gamma=0.0, t_start=0.6, noise="shared")
    store_sampling(tmp_path / "e.pt", tuned, {"val": ["clip"]})
    loaded = load_enhancer(tmp_path / "e.pt")
    assert loaded.sampling == tuned
    assert read_checkpoint(tmp_path / "e.pt")["sampling_provenance"] == {"val": ["clip"]}
    # The defaults are what enhance() uses when nothing is overridden.
    frames = _frames(2)
    default = [f.enhanced for f in loaded.enhance(frames)]
    explicit = [f.enhanced for f in loaded.enhance(frames, steps=1, gamma=0.0, t_start=0.6,
                                                   noise="shared")]
    other = [f.enhanced for f in loaded.enhance(frames, steps=3)]
    assert all(torch.equal(a, b) for a, b in zip(default, explicit))
    assert not torch.equal(default[1], other[1])
    payload = read_checkpoint(tmp_path / "e.pt")
    payload["sampling"] = {"steps": 1, "gamma": 9.0}
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="sampling settings in .*bad.pt.* are invalid"):
        load_enhancer(tmp_path / "bad.pt")


@requires_shared_data
def test_a_stored_residual_scale_is_the_default_and_can_be_overridden(tmp_path):
    enhancer = _enhancer(temporal=False)  # each frame on its own: the blend is exact
    save_enhancer(tmp_path / "e.pt", enhancer)
    half = Sampling(steps=1, gamma=0.0, t_start=0.6, noise="shared", residual_scale=0.5)
    assert half.label() == "1st g0 t0.6 shared s0.5" and Sampling().label() == "10st g1 fresh"
    store_sampling(tmp_path / "e.pt", half, {"val": ["clip"]})
    loaded = load_enhancer(tmp_path / "e.pt")
    assert loaded.sampling == half
    frames = _frames(2)
    default = [f for f in loaded.enhance(frames)]
    full = [f.enhanced for f in loaded.enhance(frames, residual_scale=1.0)]
    none = [f.enhanced for f in loaded.enhance(frames, residual_scale=0.0)]
    for out, whole, zero in zip(default, full, none):
        assert torch.equal(zero, out.decoded)  # 0: the decode, bit for bit
        inside = (whole > 0) & (whole < 1)  # where clamping did not cut the whole residual
        assert inside.float().mean() > 0.9
        blended = out.decoded + 0.5 * (whole - out.decoded)
        torch.testing.assert_close(out.enhanced[inside], blended[inside], atol=1e-5, rtol=0)
        assert (whole - out.decoded).abs().mean() > 1e-4  # the two really differ
    # The evaluation's specs take the stored scale unless one is asked for.
    from enhancer.eval.specs import EnhancerSpec

    spec = EnhancerSpec(loaded, "half", steps=[None], residual_scales=[None, 1.0])
    assert [v.residual_scale for v in spec.variants()] == [0.5, 1.0]
    assert spec.variants()[0] == half


def test_the_sweep_grid_spans_residual_scales_and_holds():
    from enhancer.eval.tuning import candidate_grid

    grid = candidate_grid([1], [0.0], [0.6], [1.0, 0.5])
    assert [c.residual_scale for c in grid] == [1.0, 0.5]
    assert all(c.noise == "shared" and c.steps == 1 and c.hold == 0 for c in grid)
    assert {c.residual_scale for c in candidate_grid([1, 2])} == {1.0}  # the default grid
    held = candidate_grid([1], [0.0], [0.6], [0.5], [0.0, 0.01])
    assert [(c.hold, c.label()) for c in held] == [(0.0, "1st g0 t0.6 shared s0.5"),
                                                   (0.01, "1st g0 t0.6 shared s0.5 h0.01")]


@requires_shared_data
def test_tuning_picks_an_admissible_candidate_when_one_exists():
    from enhancer.eval.tuning import Sweep, code_clip

    enhancer = _enhancer()
    clips = [code_clip(enhancer.codec, "cisco", _frames(3))]
    # t_start 0.05, gamma 0: hardly changes the decode; gamma 1.5 from pure noise: far off.
    candidates = [Sampling(steps=1, gamma=1.5), Sampling(steps=1, gamma=0.0, t_start=0.05)]
    chosen, results = Sweep(enhancer, clips, max_psnr_drop=0.5,
                            log=lambda _: None).tune(candidates, show_progress=False)
    assert len(results) == 2 and results[0].violation > results[1].violation
    assert chosen is min(results, key=lambda r: (r.violation, r.lpips_ratio))


def test_cli_refuses_out_of_range_sampling_flags(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("eval_uvg", REPO / "tools" / "eval_uvg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for flag, value, message in (("--gamma", "1.7", "--gamma must be in [0, 1.5]"),
                                 ("--t-start", "0", "--t-start must be in (0, 1]"),
                                 ("--eta", "x", "--eta must be a number"),
                                 ("--steps", "0", "steps must be >= 1"),
                                 ("--steps", "many", "a number or 'default'"),
                                 ("--residual-scale", "1.5", "--residual-scale must be in [0, 1]"),
                                 ("--hold", "2", "--hold must be in [0, 1]")):
        with warnings.catch_warnings(), pytest.raises(SystemExit) as exit_info:
            module.main(["--root", str(REPO), flag, value])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


@requires_shared_data
def test_tune_sampling_writes_the_chosen_residual_scale_into_the_checkpoint(tmp_path, capsys):
    """The tool end to end: a sweep over residual scales on a real clip, the choice (and
    the grid it came from) written into the checkpoint, and every candidate in the JSON."""
    import json

    from enhancer.commands.tune_sampling import main

    save_enhancer(tmp_path / "e.pt", _enhancer())
    out = tmp_path / "tune"
    assert main(["--enhancer", str(tmp_path / "e.pt"), "--val", str(FRIDAY), "--crop", "160x96",
                 "--frames", "2", "--steps", "1", "--gamma", "0.5", "--t-start", "0.6",
                 "--residual-scale", "1", "0", "--out", str(out), "--write"]) == 0
    sweep = json.loads((out / "sweep.json").read_text())
    scales = [c["sampling"]["residual_scale"] for c in sweep["candidates"][:2]]
    assert scales == [1.0, 0.0]
    payload = read_checkpoint(tmp_path / "e.pt")
    assert payload["sampling"] == sweep["chosen"]
    assert payload["sampling_provenance"]["grid"]["residual_scales"] == [1.0, 0.0]
    # Random weights: the whole residual harms; scale 0 (the decode itself) breaks the
    # limits least (LPIPS and DISTS only equal the decode's), so it is the choice.
    assert sweep["chosen"]["residual_scale"] == 0.0 and not sweep["chosen_meets_all_limits"]
    assert "s0" in capsys.readouterr().out
