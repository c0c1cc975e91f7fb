"""The temporal, latent-conditioned U-Net: shapes, conditioning, latent alignment, presets."""

import pytest
import torch

from enhancer.models import (
    PRESETS,
    ResidualUNet,
    UNetConfig,
    align_latent,
    build_unet,
    count_parameters,
)


def _live(model: ResidualUNet) -> ResidualUNet:
    """The output conv starts at zero (predicts "no residual"); give it weights so
    that every input reaches the output."""
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        model.out_conv.weight.copy_(torch.randn(model.out_conv.weight.shape, generator=generator))
    return model.eval()


def _frames(batch: int, height: int, width: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    noisy = torch.randn(batch, 3, height, width, generator=generator)
    decoded = torch.rand(batch, 3, height, width, generator=generator)
    prev_enhanced = torch.rand(batch, 3, height, width, generator=generator)
    return noisy, decoded, prev_enhanced


@pytest.mark.parametrize(
    ("latent_channels", "latent_stride", "latent_hw"),
    [
        (192, 16, (5, 6)),  # ceil(70 / 16), ceil(90 / 16)
        (384, 16, (8, 8)),  # a codec that padded 70x90 to 128x128 (SSF)
        (320, 64, (2, 2)),  # hyper-latent at 1/64
        (None, 16, None),  # x264: decoded frame only
    ],
)
@pytest.mark.parametrize("temporal", [True, False])
def test_odd_sizes_give_input_shape(latent_channels, latent_stride, latent_hw, temporal):
    model = build_unet("tiny", latent_channels, latent_stride, temporal)
    noisy, decoded, prev_enhanced = _frames(2, 70, 90)
    latent = None if latent_channels is None else torch.randn(2, latent_channels, *latent_hw)
    with torch.no_grad():
        out = model(noisy, torch.rand(2), decoded, prev_enhanced if temporal else None, latent)
    assert out.shape == (2, 3, 70, 90)
    assert torch.isfinite(out).all()


def test_starts_by_predicting_zero():
    model = build_unet("tiny", 192, 16).eval()
    noisy, decoded, prev_enhanced = _frames(1, 32, 48)
    with torch.no_grad():
        out = model(noisy, torch.tensor([0.3]), decoded, prev_enhanced, torch.randn(1, 192, 2, 3))
    assert out.abs().max() == 0


def test_temporal_requires_prev_enhanced():
    model = build_unet("tiny", None, temporal=True)
    noisy, decoded, _ = _frames(1, 32, 32)
    with pytest.raises(ValueError, match="prev_enhanced"):
        model(noisy, torch.rand(1), decoded)
    image_model = build_unet("tiny", None, temporal=False)
    with pytest.raises(ValueError, match="temporal=False"):
        image_model(noisy, torch.rand(1), decoded, decoded)


def test_prev_enhanced_latent_decoded_and_time_change_output():
    model = _live(build_unet("tiny", 192, 16, temporal=True))
    noisy, decoded, prev_enhanced = _frames(1, 48, 64)
    latent = torch.randn(1, 192, 3, 4)
    t = torch.tensor([0.5])
    with torch.no_grad():
        base = model(noisy, t, decoded, prev_enhanced, latent)
        variants = {
            "prev_enhanced": model(noisy, t, decoded, prev_enhanced.flip(-1), latent),
            "latent": model(noisy, t, decoded, prev_enhanced, latent + torch.randn_like(latent)),
            "decoded": model(noisy, t, decoded.flip(-2), prev_enhanced, latent),
            "t": model(noisy, torch.tensor([0.9]), decoded, prev_enhanced, latent),
        }
        again = model(noisy, t, decoded, prev_enhanced, latent)
    assert torch.equal(base, again)
    for name, out in variants.items():
        change = (out - base).abs().mean().item()
        assert change > 1e-3 * base.abs().mean().item(), f"output ignores {name}"


def test_batch_items_are_independent():
    model = _live(build_unet("tiny", 64, 16))
    noisy, decoded, prev_enhanced = _frames(2, 40, 56)
    latent = torch.randn(2, 64, 3, 4)
    t = torch.tensor([0.2, 0.7])
    with torch.no_grad():
        both = model(noisy, t, decoded, prev_enhanced, latent)
        second = model(noisy[1:], t[1:], decoded[1:], prev_enhanced[1:], latent[1:])
    torch.testing.assert_close(both[1:], second, atol=1e-4, rtol=1e-3)


def test_scalar_time_is_broadcast():
    model = _live(build_unet("tiny", None, temporal=False))
    noisy, decoded, _ = _frames(2, 32, 32)
    with torch.no_grad():
        scalar = model(noisy, torch.tensor(0.4), decoded)
        vector = model(noisy, torch.full((2,), 0.4), decoded)
    torch.testing.assert_close(scalar, vector)


def test_latent_is_aligned_to_the_frame_area_it_codes():
    # One active latent pixel at row 1, col 2 of a stride-16 latent covers frame rows
    # 16..31 and cols 32..47; at a level of stride 2 that is rows 8..15, cols 16..23.
    latent = torch.zeros(1, 1, 5, 6)
    latent[0, 0, 1, 2] = 1.0
    level = align_latent(latent, scale=16 / 2, height=35, width=45)  # crop: 40x48 -> 35x45
    assert level.shape == (1, 1, 35, 45)
    # Bilinear upsampling spreads the pixel, but it stays centred on its area ...
    rows, cols = torch.meshgrid(torch.arange(35.0), torch.arange(45.0), indexing="ij")
    weight = level[0, 0] / level.sum()
    assert (weight * rows).sum().item() == pytest.approx(11.5, abs=1e-4)
    assert (weight * cols).sum().item() == pytest.approx(19.5, abs=1e-4)
    # ... and is strongest there.
    assert level[0, 0, 8:16, 16:24].max() == level.max()
    # A latent smaller than the level is edge-padded; a coarser level averages.
    assert align_latent(latent, 8.0, 50, 50).shape == (1, 1, 50, 50)
    coarse = align_latent(latent, 16 / 32, 3, 3)  # each cell averages 2x2 latent pixels
    assert coarse.shape == (1, 1, 3, 3) and coarse[0, 0, 0, 1] == pytest.approx(0.25)
    assert coarse.sum() == pytest.approx(0.25)


def test_wrong_latent_gives_clear_errors():
    model = build_unet("tiny", 192, 16)
    noisy, decoded, prev_enhanced = _frames(1, 32, 32)
    with pytest.raises(ValueError, match="192"):
        model(noisy, torch.rand(1), decoded, prev_enhanced, torch.randn(1, 128, 2, 2))
    with pytest.raises(ValueError, match="latent"):
        model(noisy, torch.rand(1), decoded, prev_enhanced, None)
    no_latent = build_unet("tiny", None)
    with pytest.raises(ValueError, match="latent_channels=None"):
        no_latent(noisy, torch.rand(1), decoded, prev_enhanced, torch.randn(1, 192, 2, 2))
    with pytest.raises(ValueError, match="must match"):
        model(noisy, torch.rand(1), decoded[..., :16], prev_enhanced, torch.randn(1, 192, 2, 2))


def test_config_validation_and_round_trip():
    config = PRESETS["tiny"]
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown UNetConfig keys"):
        UNetConfig.from_dict({"dim": 8, "channels": 3})
    with pytest.raises(ValueError, match="cond_levels"):
        UNetConfig(dim_mults=(1, 2), cond_levels=3, attn_levels=())
    with pytest.raises(ValueError, match="unknown U-Net preset"):
        build_unet("huge", None)
    assert config.size_multiple == 8  # 2 downsamplings x pixel_unshuffle 2
    assert PRESETS["cdc"].size_multiple == 32


def test_tiny_preset_is_small():
    with_latent = count_parameters(build_unet("tiny", 192, 16))
    without = count_parameters(build_unet("tiny", None))
    print(f"tiny U-Net: {with_latent:,} parameters with a 192-channel latent, {without:,} without")
    assert 300_000 < without < with_latent < 1_000_000


def test_cdc_preset_builds_and_runs():
    model = build_unet("cdc", 192, 16)
    params = count_parameters(model)
    print(f"cdc U-Net: {params:,} parameters")
    assert 30_000_000 < params < 80_000_000
    noisy, decoded, prev_enhanced = _frames(1, 64, 64)
    with torch.no_grad():
        out = model(noisy, torch.rand(1), decoded, prev_enhanced, torch.randn(1, 192, 4, 4))
    assert out.shape == (1, 3, 64, 64)


def test_conditioning_once_per_frame_matches_the_fused_stem():
    """The stem split (noisy part per step, conditioning part once per frame) is the same
    linear map as the original fused stem over the concatenated input."""
    import torch.nn.functional as F

    from enhancer.data.padding import pad_to_multiple

    model = _live(build_unet("tiny", 192, 16, temporal=True)).eval()
    noisy, decoded, prev = _frames(1, 50, 70)
    latent = torch.randn(1, 192, 4, 5, generator=torch.Generator().manual_seed(2))
    t = torch.tensor([0.4])
    with torch.no_grad():
        features = model.encode_condition(decoded, prev, latent)
        fused_input = pad_to_multiple(torch.cat([noisy, decoded * 2 - 1, prev * 2 - 1], 1),
                                      model.size_multiple)
        fused = model.stem(F.pixel_unshuffle(fused_input, model.config.pixel_unshuffle))
        p2 = 3 * model.config.pixel_unshuffle**2
        split = F.conv2d(F.pixel_unshuffle(pad_to_multiple(noisy, model.size_multiple), 2),
                         model.stem.weight[:, :p2], None, padding=model.stem.padding) + features.stem
        torch.testing.assert_close(split, fused, atol=1e-5, rtol=1e-5)
        # Reusing the features over steps changes nothing; other conditioning does.
        once = model(noisy, t, decoded, prev, latent, features=features)
        assert torch.equal(once, model(noisy, t, decoded, prev, latent))
        other = model.encode_condition(decoded.flip(-1), prev, latent)
        assert not torch.allclose(model(noisy, t, decoded, prev, latent, features=other), once)


def test_quality_conditioning_starts_as_the_plain_network_then_tells_qualities_apart():
    """An x264 model that knows the CRF: built from an unconditioned model's weights it
    computes exactly what that model does (its embedding ends in zeros); once that layer
    has weights, each batch item answers to its own quality level."""
    plain = _live(build_unet("tiny", None, temporal=True))
    conditioned = build_unet("tiny", None, temporal=True, quality_conditioned=True).eval()
    missing, unexpected = conditioned.load_state_dict(plain.state_dict(), strict=False)
    assert missing and all(k.startswith("quality_embed.") for k in missing) and not unexpected
    noisy, decoded, prev = _frames(2, 40, 56)
    t = torch.tensor([0.35, 0.35])
    levels = torch.tensor([0.2, 0.9])
    with torch.no_grad():
        assert torch.equal(conditioned(noisy, t, decoded, prev, quality_level=levels),
                           plain(noisy, t, decoded, prev))
        torch.nn.init.normal_(conditioned.quality_embed.mlp[-1].weight, std=0.5)  # "trained"
        both = conditioned(noisy, t, decoded, prev, quality_level=levels)
        swapped = conditioned(noisy, t, decoded, prev, quality_level=levels.flip(0))
        assert not torch.allclose(both, swapped)
        single = conditioned(noisy[:1], t[:1], decoded[:1], prev[:1], quality_level=0.2)
        torch.testing.assert_close(single, both[:1], rtol=1e-5, atol=1e-4)  # batch rounding
        features = conditioned.encode_condition(decoded, prev, None, levels)  # once per frame
        assert torch.equal(conditioned(noisy, t, decoded, prev, features=features), both)
    with pytest.raises(ValueError, match="quality-conditioned: pass quality_level"):
        conditioned(noisy, t, decoded, prev)
    with pytest.raises(ValueError, match=r"quality_level must be a scalar or \(B=2,\)"):
        conditioned(noisy, t, decoded, prev, quality_level=torch.tensor([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="quality_conditioned=False"):
        plain(noisy, t, decoded, prev, quality_level=0.5)
