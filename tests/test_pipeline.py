"""The Enhancer pipeline: residual scale, seeds, steps, tiling, temporal input, bitstreams, learning."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from conftest import SHARED_DATA, requires_shared_data

from enhancer.codecs import CodecError
from enhancer.codecs.container import Container, weights_fingerprint
from enhancer.config import EnhancerConfig, from_dict
from enhancer.data.images import read_image
from enhancer.data.sequence import open_sequence
from enhancer.pipeline import Enhancer, Rollout, Sampling, load_enhancer, save_enhancer

pytestmark = requires_shared_data


def make_enhancer(codec: str, quality: int, temporal: bool = True, seed: int = 0) -> Enhancer:
    config = from_dict(
        EnhancerConfig,
        {"codec": {"name": codec, "quality": quality}, "unet": "tiny", "temporal": temporal},
    )
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random codec weights
        enhancer = Enhancer.from_config(config)
    # The output layer starts at zero (predicts "no residual"); give it weights so that
    # the tests below can see the inputs reach the output.
    torch.nn.init.normal_(enhancer.diffusion.network.out_conv.weight, std=0.05)
    return enhancer


@pytest.fixture(scope="module")
def frames() -> list[torch.Tensor]:
    """Three real 96x160 frames (1, 3, 96, 160)."""
    with open_sequence(SHARED_DATA / "video/openh264/CiscoVT2people_160x96_6fps.yuv") as reader:
        return list(reader.frames(count=3))


@pytest.fixture(scope="module")
def hyperprior_enhancer() -> Enhancer:
    return make_enhancer("bmshj2018-hyperprior", 1)


def test_residual_scale_zero_returns_the_decoded_frames_exactly(hyperprior_enhancer, frames):
    outputs = list(hyperprior_enhancer.enhance(frames, steps=2, residual_scale=0.0))
    reference = list(hyperprior_enhancer.codec.encode_sequence(frames))
    for out, (data, coded) in zip(outputs, reference):
        assert torch.equal(out.enhanced, coded.decoded)
        assert out.num_bytes == len(data)


def test_residual_scale_moves_continuously(hyperprior_enhancer, frames):
    distance = []
    for scale in (0.0, 0.5, 1.0):
        out = next(hyperprior_enhancer.enhance(frames[:1], steps=2, residual_scale=scale, seed=3))
        distance.append((out.enhanced - out.decoded).abs().mean().item())
    assert distance[0] == 0.0 < distance[1] < distance[2]
    with pytest.raises(ValueError, match="residual_scale must be in"):
        next(hyperprior_enhancer.enhance(frames[:1], residual_scale=1.5))


def test_seed_fixes_the_output(hyperprior_enhancer, frames):
    def run(seed):
        return [f.enhanced for f in hyperprior_enhancer.enhance(frames[:2], steps=3, seed=seed)]

    first, again, other = run(7), run(7), run(8)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], other[0])


@pytest.mark.parametrize("steps", [1, 10, 100])
def test_step_counts_run(steps, frames):
    enhancer = make_enhancer("x264", 35)
    small = [frame[..., :32, :48] for frame in frames[:1]]
    out = next(enhancer.enhance(small, steps=steps))
    assert out.enhanced.shape == small[0].shape
    assert torch.isfinite(out.enhanced).all()
    assert 0 <= out.enhanced.min() and out.enhanced.max() <= 1


def test_previous_enhanced_frame_reaches_the_network(hyperprior_enhancer, frames):
    coded = next(hyperprior_enhancer.codec.encode_sequence(frames[:1]))[1]

    def enhance(prev):
        generator = torch.Generator().manual_seed(0)
        return hyperprior_enhancer.enhance_frame(coded.decoded, coded.latent, prev, Sampling(steps=2),
                                                 generator=generator)

    assert not torch.equal(enhance(frames[0]), enhance(frames[0].flip(-1)))
    assert torch.equal(enhance(frames[0]), enhance(frames[0].clone()))


def test_latent_reaches_the_network(hyperprior_enhancer, frames):
    coded = next(hyperprior_enhancer.codec.encode_sequence(frames[:1]))[1]

    def enhance(latent):
        generator = torch.Generator().manual_seed(0)
        return hyperprior_enhancer.enhance_frame(coded.decoded, latent, coded.decoded, Sampling(steps=2),
                                                 generator=generator)

    other_latent = coded.latent + torch.randn_like(coded.latent)  # random codecs give ~0 latents
    assert not torch.equal(enhance(coded.latent), enhance(other_latent))


def test_a_quality_conditioned_enhancer_is_told_the_stream_quality(frames):
    """x264 at CRF 26 and at CRF 40 is enhanced differently by a quality-conditioned
    model; the roll-out passes the quality of the stream it enhances (not the model's
    label), and an x264 model tiles with the quality level on every tile."""
    config = from_dict(EnhancerConfig, {"codec": {"name": "x264", "quality": 32},
                                        "unet": "tiny", "quality_conditioning": True})
    torch.manual_seed(0)
    enhancer = Enhancer.from_config(config)
    network = enhancer.diffusion.network
    torch.nn.init.normal_(network.out_conv.weight, std=0.05)
    torch.nn.init.normal_(network.quality_embed.mlp[-1].weight, std=0.5)
    decoded = frames[0][..., :64, :96]

    late_start = Sampling(steps=1, gamma=0.0, t_start=0.35)

    def rollout_output(quality):
        return Rollout(enhancer, late_start, quality=quality).enhance(decoded, None)

    crf26, crf40 = rollout_output(26), rollout_output(40)
    assert not torch.allclose(crf26, crf40)
    direct = enhancer.enhance_frame(decoded, None, sampling=late_start, quality=26)
    assert torch.equal(crf26, direct)
    assert torch.equal(rollout_output(None), rollout_output(32))  # default: the model's codec
    enhancer.memory_budget_mb = 64 * 64 * enhancer.activation_bytes_per_pixel() / 2**20
    enhancer.tile_overlap = 16
    assert len(enhancer.tile_plan(64, 96)[2]) == 2
    tiled = enhancer.enhance_frame(decoded, None, sampling=late_start, quality=26)
    assert tiled.shape == direct.shape and not torch.equal(tiled, direct)
    with pytest.raises(CodecError, match="has no quality 60"):
        Rollout(enhancer, quality=60)


def test_tiled_and_untiled_agree_away_from_the_seams(frames):
    enhancer = make_enhancer("bmshj2018-hyperprior", 1, temporal=False)
    frame = torch.cat([frames[0], frames[1]], dim=-1)[..., :96, :256]  # (1, 3, 96, 256)
    _, coded = enhancer.codec.compress(frame)

    def enhance():
        generator = torch.Generator().manual_seed(0)
        return enhancer.enhance_frame(coded.decoded, coded.latent, sampling=Sampling(steps=3),
                                      generator=generator)

    whole = enhance()
    enhancer.memory_budget_mb = 128 * 128 * enhancer.activation_bytes_per_pixel() / 2**20
    _, tile_w, tiles, batch = enhancer.tile_plan(128, 256)
    assert (tile_w, len(tiles), batch) == (128, 3, 1)  # the fewest 128-px tiles, 64 px overlap
    tiled = enhance()
    # 128-wide tiles with a 64-px overlap start at x = 0, 64, 128 on the 256-wide canvas;
    # away from the seams the blended tiles see almost the same context as the whole frame.
    residual_whole, residual_tiled = whole - coded.decoded, tiled - coded.decoded
    interior = (..., slice(16, 80), slice(16, 240))
    error = (residual_whole - residual_tiled)[interior].abs().mean()
    scale = residual_whole[interior].abs().mean()
    assert error < 0.25 * scale, (error.item(), scale.item())
    assert not torch.equal(whole, tiled)  # tiling really ran


def test_enhances_a_bitstream_like_the_frames(hyperprior_enhancer, frames, tmp_path):
    codec = hyperprior_enhancer.codec
    container = Container("bmshj2018-hyperprior", 1, 160, 96, intra_period=-1,
                          weights_fingerprint=weights_fingerprint(codec))
    container.frames = [data for data, _ in codec.encode_sequence(frames)]
    container.padded_sizes = [codec.padded_size((96, 160))] * len(container.frames)
    container.save(tmp_path / "clip.bin")
    from_bytes = list(hyperprior_enhancer.enhance(tmp_path / "clip.bin", steps=2, seed=1))
    from_frames = list(hyperprior_enhancer.enhance(frames, steps=2, seed=1))
    for a, b in zip(from_bytes, from_frames):
        assert torch.equal(a.enhanced, b.enhanced)
    wrong = Container("x264", 30, 160, 96, intra_period=-1, frames=[b"x"])
    with pytest.raises(ValueError, match="the bitstream is x264 q30, but the decoder is"):
        next(hyperprior_enhancer.enhance(wrong))
    # Bytes made with other codec weights are refused, as tools/codec.py decode does.
    container.weights_fingerprint = bytes(8)
    with pytest.raises(ValueError, match="encoded with other bmshj2018-hyperprior weights"):
        next(hyperprior_enhancer.enhance(container))


def test_checkpoint_round_trip(hyperprior_enhancer, frames, tmp_path):
    path = tmp_path / "enhancer.pt"
    save_enhancer(path, hyperprior_enhancer, extra={"step": 5})
    loaded = load_enhancer(path)
    a = next(hyperprior_enhancer.enhance(frames[:1], steps=2)).enhanced
    b = next(loaded.enhance(frames[:1], steps=2)).enhanced
    assert torch.equal(a, b)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="could not read enhancer checkpoint"):
        load_enhancer(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="not a bundled model"):
        load_enhancer(tmp_path / "missing.pt")


def _degrade(frames: torch.Tensor) -> torch.Tensor:
    """A codec-like degradation: 2x area downsampling, bilinear upsampling, flattened tones."""
    blurred = F.interpolate(F.avg_pool2d(frames, 2), scale_factor=2.0, mode="bilinear",
                            align_corners=False)
    return (0.05 + 0.9 * blurred).clamp(0, 1)


def _random_crops(images: list[torch.Tensor], count: int, size: int,
                  generator: torch.Generator) -> torch.Tensor:
    """``count`` random ``size x size`` crops ``(count, 3, size, size)`` of ``(3, H, W)`` images."""
    crops = []
    for _ in range(count):
        image = images[int(torch.randint(len(images), (1,), generator=generator))]
        top = int(torch.randint(image.shape[1] - size + 1, (1,), generator=generator))
        left = int(torch.randint(image.shape[2] - size + 1, (1,), generator=generator))
        crops.append(image[:, top:top + size, left:left + size])
    return torch.stack(crops)


def test_enhancer_learns_to_enhance_real_crops():
    """300 steps on degraded real photo crops: the loss falls, and the enhancer's 10-step
    output (``Enhancer.enhance_frame``) beats the degraded frame on the crops it trained on
    and on held-out ones.

    With gamma = 0 (no start noise) DDIM gives the posterior-mean-like decode, which must
    have lower MSE than its input; at CDC's gamma = 0.8 samples trade MSE for detail but
    must stay close to the frame. (On real x264 decodes a few hundred CPU steps only
    memorise the training crops, and do not carry to held-out ones; the bundled models'
    tests cover real codecs.)
    """
    kodak = sorted((SHARED_DATA / "images" / "kodak").glob("kodim0*.png"))
    if len(kodak) < 8:
        pytest.skip(f"needs the Kodak images under {SHARED_DATA / 'images' / 'kodak'}")
    config = from_dict(EnhancerConfig, {"codec": {"name": "x264", "quality": 40},
                                        "unet": "tiny", "temporal": False})
    torch.manual_seed(0)
    enhancer = Enhancer.from_config(config)  # the output layer starts at zero: "no residual"
    generator = torch.Generator().manual_seed(0)
    images = [torch.from_numpy(read_image(path)).permute(2, 0, 1).float() / 255.0
              for path in kodak[:8]]  # (3, H, W) in [0, 1]
    train_crops = _random_crops(images, 512, 64, generator)  # (512, 3, 64, 64)
    test_crops = _random_crops(images, 16, 64, torch.Generator().manual_seed(1))

    diffusion = enhancer.diffusion.train()
    optimizer = torch.optim.Adam(diffusion.parameters(), lr=1e-3)
    losses = []
    for _ in range(300):
        frames = train_crops[torch.randint(len(train_crops), (8,), generator=generator)]
        decoded = _degrade(frames)
        out = diffusion.training_loss(diffusion.encode_target(frames, decoded),
                                      {"decoded": decoded})
        optimizer.zero_grad()
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20
    print(f"training loss: first 20 steps {first:.4f}, last 20 {last:.4f}")
    assert last < 0.5 * first
    assert sum(losses[-25:]) < 0.8 * sum(losses[:25])

    diffusion.eval()

    def mse_ratio(crops: torch.Tensor, gamma: float) -> float:
        """MSE of the enhanced crops over the MSE of their degraded input."""
        decoded = _degrade(crops)
        enhanced = enhancer.enhance_frame(decoded, None, sampling=Sampling(steps=10, gamma=gamma),
                                          generator=torch.Generator().manual_seed(0))
        return (F.mse_loss(enhanced, crops) / F.mse_loss(decoded, crops)).item()

    held_out_mean, held_out_cdc = mse_ratio(test_crops, 0.0), mse_ratio(test_crops, 0.8)
    trained_mean = mse_ratio(train_crops[:16], 0.0)
    print(f"MSE / degraded MSE: held out, gamma 0: {held_out_mean:.3f}, gamma 0.8: "
          f"{held_out_cdc:.3f}; trained on, gamma 0: {trained_mean:.3f}")
    assert trained_mean < 1.0
    assert held_out_mean < 0.85
    assert held_out_cdc < 1.3


def test_tiles_only_when_the_memory_budget_needs_them():
    """A 1280x720 ssf-small decode (canvas 1280x768) runs in one forward; a cdc-preset
    1080p canvas is split into the fewest tiles that fit, which cover every pixel."""
    import warnings

    from enhancer.config import CodecConfig, EnhancerConfig
    from enhancer.pipeline import Enhancer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = Enhancer.from_config(EnhancerConfig(codec=CodecConfig(name="ssf-small", quality=1),
                                                    unet="tiny"))
        cdc = Enhancer.from_config(EnhancerConfig(codec=CodecConfig(name="x264", quality=32),
                                                  unet="cdc"))
    canvas = small.canvas_shape(torch.zeros(1, 3, 720, 1280))
    assert canvas == (1, 3, 768, 1280)
    assert len(small.tile_plan(*canvas[-2:])[2]) == 1
    height, width = cdc.canvas_shape(torch.zeros(1, 3, 1080, 1920))[-2:]
    tile_h, tile_w, tiles, batch = cdc.tile_plan(height, width)
    assert 1 < len(tiles) <= 16 and batch >= 1
    assert tile_h * tile_w * batch * cdc.activation_bytes_per_pixel() <= cdc.memory_budget_mb * 2**20
    covered = torch.zeros(height, width, dtype=torch.bool)
    for rows, cols in tiles:
        assert (rows.stop - rows.start, cols.stop - cols.start) == (tile_h, tile_w)
        covered[rows, cols] = True
    assert covered.all()
    # A budget below what the overlap alone needs is an error that names the fix.
    cdc.memory_budget_mb, cdc.tile_overlap = 0.01, 256
    with pytest.raises(ValueError, match="raise memory_budget_mb or lower tile_overlap"):
        cdc.tile_plan(height, width)


def test_bf16_precision_stays_close_to_fp32_and_bad_precisions_are_refused(frames):
    enhancer = make_enhancer("x264", 32)
    fp32 = next(enhancer.enhance(frames[:1], steps=2, seed=1)).enhanced
    enhancer.precision = "bf16"
    bf16 = next(enhancer.enhance(frames[:1], steps=2, seed=1)).enhanced
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, fp32)  # bf16 really ran
    assert (bf16 - fp32).abs().max() < 4 / 255
    enhancer.precision = "fp16"
    with pytest.raises(ValueError, match="needs a CUDA device; on a CPU use 'bf16'"):
        next(enhancer.enhance(frames[:1], steps=1))
    enhancer.precision = "int8"
    with pytest.raises(ValueError, match="precision must be one of"):
        next(enhancer.enhance(frames[:1], steps=1))
