"""Signalled strength: the map's coding, expansion, the encoder's choice, the roll-out on both
sides of the channel, and SEI carriage in H.264/HEVC."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from enhancer.strength import (
    DEFAULT_SCALES,
    MapChooser,
    SignalConfig,
    StrengthMap,
    StrengthMapError,
    decode_map,
    encode_map,
)
from enhancer.strength.sei import find_sei, insert_sei, sei_nal, split_annexb

SCALES = DEFAULT_SCALES


def random_map(rng, rows, cols, block=64):
    return StrengthMap(block, SCALES, rng.integers(0, len(SCALES), (rows, cols)).astype(np.uint8))


def test_map_coding_round_trip_in_every_mode():
    rng = np.random.default_rng(0)
    previous = None
    for trial in range(20):
        rows, cols = (int(v) for v in rng.integers(1, 18, 2))
        strength = random_map(rng, rows, cols)
        data = encode_map(strength)  # intra
        assert data[0] == 1
        decoded = decode_map(data)
        assert np.array_equal(decoded.indices, strength.indices) and decoded.scales == SCALES
        # inter: 10 % of the blocks change
        changed = np.where(rng.random((rows, cols)) < 0.1,
                           rng.integers(0, len(SCALES), (rows, cols)), strength.indices)
        nxt = StrengthMap(64, SCALES, changed.astype(np.uint8))
        inter = encode_map(nxt, strength)
        assert np.array_equal(decode_map(inter, decoded).indices, nxt.indices)
        # repeat: two bytes
        same = encode_map(nxt, nxt)
        assert len(same) == 2 and decode_map(same, nxt) is nxt
        previous = nxt
    assert previous is not None


def test_the_model_tag_rides_on_intra_maps_and_older_maps_still_read():
    rng = np.random.default_rng(3)
    untagged = random_map(rng, 4, 5)
    tagged = StrengthMap(64, SCALES, untagged.indices, model_tag=0xBEEF)
    data = encode_map(tagged)
    assert data[0] == 3 and len(data) == len(encode_map(untagged)) + 2
    first = decode_map(data)
    assert first.model_tag == 0xBEEF and np.array_equal(first.indices, untagged.indices)
    changed = untagged.indices.copy()
    changed[0, 0] = (changed[0, 0] + 1) % len(SCALES)
    nxt = StrengthMap(64, SCALES, changed, model_tag=0xBEEF)
    inter = encode_map(nxt, first)
    assert inter[0] == 2 and decode_map(inter, first).model_tag == 0xBEEF  # inherited
    assert decode_map(encode_map(nxt, nxt), first).model_tag == 0xBEEF
    # a map written before the tag (mode 1) reads as before, with no tag
    assert decode_map(encode_map(untagged)).model_tag is None


def test_a_typical_map_costs_few_bytes():
    indices = np.full((8, 10), 4, np.uint8)  # 640x480 in 64-px blocks, mostly full strength
    indices[2:4, 3:6] = 0
    data = encode_map(StrengthMap(64, SCALES, indices))
    assert len(data) < 24  # 14 bytes of header and check, the rest the 80 blocks


def test_every_damaged_byte_is_refused():
    strength = random_map(np.random.default_rng(1), 5, 7)
    data = encode_map(strength)
    for position in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[position] ^= flip
            with pytest.raises(StrengthMapError):
                decode_map(bytes(damaged))
    with pytest.raises(StrengthMapError, match="truncated|damaged"):
        decode_map(data[:3])


def test_map_for_another_frame_size_or_without_its_reference_is_refused():
    strength = StrengthMap.uniform(480, 640, 64, SCALES, 4)
    with pytest.raises(StrengthMapError, match="another stream or frame size"):
        decode_map(encode_map(strength), frame_size=(360, 640))
    with pytest.raises(StrengthMapError, match="previous frame"):
        decode_map(encode_map(strength, strength))  # a repeat with nothing to repeat
    with pytest.raises(StrengthMapError, match="block size"):
        StrengthMap.uniform(64, 64, 50, SCALES, 0)
    with pytest.raises(StrengthMapError, match="multiple of 0.25"):
        SignalConfig(scales=(0.0, 0.3))


def test_expanded_map_is_smooth_and_keeps_block_values():
    indices = np.array([[0, 4], [4, 5]], np.uint8)
    strength = StrengthMap(64, SCALES, indices)
    scale = strength.expand(100, 120)[0, 0]  # odd crop of the 128x128 grid
    assert scale.shape == (100, 120)
    assert scale[16, 16] == 0.0 and scale[16, 100] == 1.0 and scale[90, 110] == 1.25
    steps = max(float(scale.diff(dim=0).abs().max()), float(scale.diff(dim=1).abs().max()))
    assert steps <= 1.0 / 32  # a jump of 1 spread over a 33-px ramp: no seam


def _x264_pair(crf=40, frames=2):
    from enhancer.codecs import load_codec
    from enhancer.codecs.stream import CodecStream
    from enhancer.data import open_sequence

    with open_sequence("../shared/data/video/intel/walk.mkv") as seq:
        source = [f[..., 96:288, 160:416] for f in seq.frames(0, frames)]  # 256x192
    stream = CodecStream(load_codec("x264", crf), -1)
    coded = [stream.compress(f) for f in source]
    return source, [(data, out.decoded) for data, out in coded]


@pytest.mark.parametrize("objective", ["lpips", "mse", "mix"])
def test_chosen_map_is_never_worse_than_the_decode(objective):
    from enhancer.metrics.dists import dists
    from enhancer.metrics.lpips import lpips
    from enhancer.metrics.psnr import psnr

    source, coded = _x264_pair()
    truth, decoded = source[0], coded[0][1]
    # A residual that helps on the left half (the true error) and harms on the right.
    residual = truth - decoded
    residual[..., 128:] = -3 * residual[..., 128:] + 0.05
    chooser = MapChooser(SignalConfig(objective, block=32, keep_dists=True))
    strength = chooser.choose(truth, decoded, residual)
    enhanced = (decoded + strength.expand(192, 256) * residual).clamp(0, 1)
    assert float(psnr(enhanced, truth)) >= float(psnr(decoded, truth)) - 0.05 - 1e-6
    assert float(lpips(enhanced, truth)) <= float(lpips(decoded, truth)) + 1e-6
    assert float(dists(enhanced, truth)) <= float(dists(decoded, truth)) + 1e-6  # keep_dists
    grid = strength.scale_grid()
    assert grid[:, :4].mean() > grid[:, 4:].mean()  # it acts where the residual helps
    assert grid[:, 4:].max() == 0.0 or objective == "lpips"


def test_keep_dists_refuses_maps_that_raise_dists(monkeypatch):
    """With keep_dists a map whose blended frame scores worse than the decode on DISTS is
    never sent, however much it gains on LPIPS: here a stand-in DISTS calls every change
    from the decode worse, so only the all-zero map passes."""
    import enhancer.strength.choose as choose

    source, coded = _x264_pair()
    truth, decoded = source[0], coded[0][1]
    residual = truth - decoded  # the true error: LPIPS and PSNR both gain everywhere
    monkeypatch.setattr(choose, "_dists_to",
                        lambda src: lambda frame: float((frame - decoded).abs().mean()))
    chosen = {keep: MapChooser(SignalConfig("lpips", block=32, keep_dists=keep)).choose(
        truth, decoded, residual) for keep in (False, True)}
    assert chosen[False].scale_grid().max() > 0  # without the check it acts
    assert chosen[True].scale_grid().max() == 0.0  # with it, the decode itself


def test_the_default_strength_everywhere_is_a_fallback(monkeypatch):
    """When no per-block map passes the whole-frame checks, a uniform map at the enhancer's
    default strength (what a stream without maps gets) is sent where it passes, rather than
    the plain decode: here a stand-in DISTS passes only that frame."""
    import enhancer.strength.choose as choose

    source, coded = _x264_pair()
    truth, decoded = source[0], coded[0][1]
    residual = truth - decoded
    at_default = (decoded + 0.25 * residual).clamp(0, 1)

    def fake_dists_to(src):
        return lambda frame: (0.0 if torch.allclose(frame, at_default, atol=1e-5)
                              else 0.5 if torch.equal(frame, decoded) else 1.0)

    monkeypatch.setattr(choose, "_dists_to", fake_dists_to)
    config = SignalConfig("lpips", block=32, keep_dists=True)
    without = MapChooser(config).choose(truth, decoded, residual)
    with_default = MapChooser(config, default_scale=0.25).choose(truth, decoded, residual)
    assert without.scale_grid().max() == 0.0
    assert (with_default.scale_grid() == 0.25).all()


def _still_scene():
    """One frame, its decode, a residual, and the same residual with a little noise (what
    consecutive frames of a still scene give the chooser)."""
    source, coded = _x264_pair()
    truth, decoded = source[0], coded[0][1]
    residual = (truth - decoded) * 0.8
    noisy = residual + 0.004 * torch.randn(residual.shape,
                                           generator=torch.Generator().manual_seed(0))
    return truth, decoded, residual, noisy


def test_hysteresis_keeps_the_map_still_on_a_still_scene():
    truth, decoded, residual, noisy = _still_scene()
    kept = {}
    for hysteresis in (0.0, 0.1):
        chooser = MapChooser(SignalConfig("lpips", block=32, hysteresis=hysteresis,
                                             max_flicker_rise=None))
        first = chooser.choose(truth, decoded, residual)
        second = chooser.choose(truth, decoded, noisy)
        kept[hysteresis] = float(np.mean(first.indices == second.indices))
    assert kept[0.1] > kept[0.0] + 0.05


def test_signalled_rollout_decodes_to_the_encoders_frames_exactly():
    from enhancer.pipeline import load_enhancer
    from enhancer.pipeline.rollout import Rollout

    enhancer = load_enhancer("x264_temporal_tiny")
    source, coded = _x264_pair(crf=40, frames=3)
    encoder = Rollout(enhancer, seed=0, quality=40, signal=SignalConfig("lpips", block=64))
    decoder = Rollout(enhancer, seed=0, quality=40)
    sent = []
    for truth, (_, decoded) in zip(source, coded):
        enhanced, strength_bytes, _ = encoder.signal(truth, decoded, None)
        sent.append(strength_bytes)
        received = decoder.enhance(decoded, None, strength_bytes=strength_bytes)
        assert torch.equal(received, enhanced)
    assert len(sent[0]) >= 2  # the first map is sent whole
    # A map persists: a frame without one keeps the last (the encoder sends nothing while
    # its choice does not change).
    encoder_again = Rollout(enhancer, seed=0, quality=40, signal=SignalConfig("lpips"))
    decoder_again = Rollout(enhancer, seed=0, quality=40)
    for truth, (_, decoded) in zip(source, coded):
        enhanced, strength_bytes, _ = encoder_again.signal(truth, decoded, None)
        received = decoder_again.enhance(decoded, None, strength_bytes=strength_bytes or None)
        assert torch.equal(received, enhanced)
    # Maps chosen for one model are refused by another (they name the model they are for).
    other = load_enhancer("x264_temporal_tiny")
    with torch.no_grad():
        next(other.diffusion.network.parameters()).add_(1e-2)
    assert other.model_tag != enhancer.model_tag
    with pytest.raises(StrengthMapError, match="chosen for another enhancer"):
        Rollout(other, seed=0, quality=40).enhance(coded[0][1], None, strength_bytes=sent[0])
    # A model that does not know a map's scales refuses it instead of guessing.
    enhancer.signal_scales = (0.0, 0.5, 1.0)
    with pytest.raises(StrengthMapError, match="not\\s+validated"):
        Rollout(enhancer, seed=0, quality=40).enhance(coded[0][1], None, strength_bytes=sent[0])


def test_unsignalled_rollout_equals_enhance_frame_at_the_checkpoints_scale():
    from enhancer.pipeline import load_enhancer
    from enhancer.pipeline.rollout import Rollout

    enhancer = load_enhancer("x264_temporal_tiny")
    assert 0 < enhancer.sampling.residual_scale < 1 and enhancer.sampling.noise == "shared"
    _, coded = _x264_pair(crf=36, frames=1)
    decoded = coded[0][1]
    via_rollout = Rollout(enhancer, seed=0, quality=36).enhance(decoded, None)
    generator = torch.Generator().manual_seed(0)
    start_noise = torch.randn(enhancer.canvas_shape(decoded), generator=generator)
    direct = enhancer.enhance_frame(decoded, None, None, generator=generator,
                                    start_noise=start_noise, quality=36)
    assert torch.equal(via_rollout, direct)
    assert not torch.equal(direct, decoded)
    off = enhancer.sampling.override(residual_scale=0.0)
    assert torch.equal(enhancer.enhance_frame(decoded, None, sampling=off), decoded)


@pytest.mark.parametrize("codec", ["x264", "x265"])
def test_sei_carries_the_map_and_leaves_the_decode_unchanged(codec):
    from enhancer.codecs import load_codec
    from enhancer.codecs.conventional import decoded_rgb
    from enhancer.codecs.stream import CodecStream
    from enhancer.data.video import pyav

    source, _ = _x264_pair(frames=1)
    stream = CodecStream(load_codec(codec, 36), -1)
    data, out = stream.compress(source[0])
    nal_codec = "h264" if codec == "x264" else "hevc"
    payload = bytes([0, 0, 0, 1, 0, 0, 3, 0, 0, 2]) + bytes(range(256)) * 2  # needs escaping
    marked = insert_sei(data, payload, nal_codec)
    assert len(marked) > len(data) + len(payload)
    assert find_sei(marked, nal_codec) == payload
    assert find_sei(data, nal_codec) is None
    decoder = pyav().CodecContext.create("h264" if codec == "x264" else "hevc", "r")
    frames = decoder.decode(pyav().Packet(marked))
    assert torch.equal(decoded_rgb(frames[0]), out.decoded)
    # Length-prefixed (MP4) access units are read too.
    units = split_annexb(marked)
    prefixed = b"".join(len(u).to_bytes(4, "big") + u for u in units)
    assert find_sei(prefixed, nal_codec) == payload
    assert sei_nal(b"", nal_codec).startswith(b"\x00\x00\x01")


def test_signalled_bin_round_trip_through_encode_file_and_enhance(tmp_path):
    """tools/codec.py encode --signal: the maps ride in the H.264 frames as SEI (counted in
    bpp), the plain decode is unchanged, and the enhancer applies them from the file."""
    from enhancer.codecs.container import Container
    from enhancer.pipeline import load_enhancer
    from enhancer.pipeline.codec_files import decode_file, encode_file
    from enhancer.strength.sei import find_sei

    clip = "../shared/data/video/openh264/CiscoVT2people_160x96_6fps.yuv"
    plain, signalled = tmp_path / "plain.bin", tmp_path / "signalled.bin"
    encode_file(clip, plain, "x264", 40, frames=3, progress=False)
    report = encode_file(clip, signalled, "x264", 40, frames=3, progress=False,
                         signal=SignalConfig("lpips", block=32), enhancer="x264_temporal_tiny")
    without, with_maps = Container.load(plain), Container.load(signalled)
    assert report.strength_bytes > 0 and find_sei(with_maps.frames[0], "h264") is not None
    assert with_maps.num_bytes == without.num_bytes + report.strength_bytes
    assert with_maps.bpp > without.bpp
    decode_file(plain, tmp_path / "plain.y4m", progress=False)
    decode_file(signalled, tmp_path / "signalled.y4m", progress=False)
    assert (tmp_path / "plain.y4m").read_bytes() == (tmp_path / "signalled.y4m").read_bytes()
    enhancer = load_enhancer("x264_temporal_tiny")
    default = [f.enhanced for f in enhancer.enhance(plain)]
    mapped = list(enhancer.enhance(signalled))
    assert mapped[0].strength_bytes  # read back from the SEI
    assert any(not torch.equal(a, b.enhanced) for a, b in zip(default, mapped))


def test_a_stream_with_maps_is_enhanced_by_the_model_they_were_chosen_for(tmp_path):
    """encode --signal picks the bundled model made for maps; enhance picks, by the maps'
    model tag, the model they were chosen for (a stream without maps: the default one),
    from a .bin and from a bare H.264 stream alike."""
    from enhancer.codecs.base import CodecError
    from enhancer.codecs.container import Container
    from enhancer.pipeline.codec_files import encode_file
    from enhancer.pipeline.stream import (
        bundled_model_tag,
        default_enhancer,
        enhance_file,
        open_bitstream,
        stream_model_tag,
    )

    assert default_enhancer("x264", 40) == "x264_temporal_tiny"  # no maps: the safe one
    assert default_enhancer("x264", 40, signalled=True) == "x264_signalled"
    assert default_enhancer("x264", 44, signalled=True) == "x264_signalled"  # only it: 22-44
    with pytest.raises(CodecError, match="serves x264 q44 without strength maps"):
        default_enhancer("x264", 44)
    clip = "../shared/data/video/openh264/CiscoVT2people_160x96_6fps.yuv"
    plain, signalled = tmp_path / "plain.bin", tmp_path / "signalled.bin"
    encode_file(clip, plain, "x264", 40, frames=2, progress=False)
    encode_file(clip, signalled, "x264", 40, frames=2, progress=False,
                signal=SignalConfig("lpips", block=32))
    tag = stream_model_tag(Container.load(signalled))
    assert tag == bundled_model_tag("x264_signalled") != bundled_model_tag("x264_temporal_tiny")
    assert stream_model_tag(Container.load(plain)) is None
    annexb = tmp_path / "signalled.264"  # the same frames, SEI and all, as a bare stream
    annexb.write_bytes(b"".join(Container.load(signalled).frames))
    assert stream_model_tag(open_bitstream(annexb, quality=40)) == tag
    for source, model in ((signalled, "x264_signalled"), (plain, "x264_temporal_tiny"),
                          (annexb, "x264_signalled")):
        report = enhance_file(source, tmp_path / f"{source.name}.y4m", progress=False,
                              quality=40 if source == annexb else None)
        assert report.enhancer == model
        assert (report.mapped_frames > 0) == (source != plain)  # and the output says so
        assert ("no strength maps" in report.summary()) == (source == plain)
    with pytest.raises(CodecError, match=f"model tag {tag ^ 1:04x}"):
        default_enhancer("x264", 40, model_tag=tag ^ 1)


def test_evaluation_runs_signalled_variants_beside_the_unsignalled(tmp_path):
    """tools/eval_uvg.py --signal: a row per signalled enhancer, its maps' bytes in its bpp,
    never worse than the decode on LPIPS, PSNR within the floor."""
    from enhancer.eval.runner import EvalSettings, evaluate_sequences
    from enhancer.eval.sequences import SequenceSpec
    from enhancer.eval.specs import load_enhancer_spec

    spec = load_enhancer_spec("x264_temporal_tiny", "x264", [None], [None])
    specs = [spec, spec.signalled(SignalConfig("lpips", block=32))]
    settings = EvalSettings(frames=2, intra_period=-1, out_dir=tmp_path,
                            metrics=("psnr_rgb", "lpips_alex"), write_videos=False, quiet=True)
    clip = "../shared/data/video/openh264/CiscoVT2people_160x96_6fps.yuv"
    report = evaluate_sequences([SequenceSpec("cisco", clip)], "x264", [40], specs, settings,
                                log=lambda _: None)
    assert not report.errors
    rows = {(r["variant"], r["enhancer"]): r for r in report.rows}
    decoded = rows[("decoded", None)]
    plain = rows[("enhanced", "x264_temporal_tiny")]
    mapped = rows[("enhanced", "x264_temporal_tiny + lpips map")]
    assert mapped["strength_bytes"] > 0 and plain.get("strength_bytes") is None
    assert mapped["bpp"] > decoded["bpp"] == plain["bpp"]
    assert mapped["lpips_alex"] <= decoded["lpips_alex"]
    assert mapped["psnr_rgb"] >= decoded["psnr_rgb"] - 0.05
    assert mapped["residual_scale"] == 1.0


def test_a_new_map_is_sent_only_when_it_gains_enough():
    truth, decoded, residual, noisy = _still_scene()
    for min_gain, expect_same in ((1.0, True), (0.0, False)):
        chooser = MapChooser(SignalConfig("lpips", block=32, hysteresis=0.0, min_gain=min_gain,
                                             max_flicker_rise=None))
        first = chooser.choose(truth, decoded, residual)
        second = chooser.choose(truth, decoded, noisy)
        # min_gain 1: no new map gains a whole decode's cost, so the first one persists
        assert second.same_as(first) == expect_same


def test_the_flicker_bound_keeps_the_video_as_steady_as_its_decode():
    from enhancer.metrics.temporal import temporal_consistency

    source, coded = _x264_pair(frames=4)
    decoded = [out for _, out in coded]
    noise = torch.randn(decoded[0].shape, generator=torch.Generator().manual_seed(0))
    # A model whose residual helps (the true error) but also flickers from frame to frame.
    residuals = [0.8 * (truth - dec) + 0.03 * (-1) ** t * noise
                 for t, (truth, dec) in enumerate(zip(source, decoded))]

    def run(max_flicker_rise):
        """Temporal consistency of the frames the decoder makes, from frame 1 on (the first
        frame has nothing to be steady with, and the jump after it is bounded from frame 2)."""
        chooser = MapChooser(SignalConfig("lpips", block=32, max_flicker_rise=max_flicker_rise))
        frames = []
        for truth, dec, residual in zip(source, decoded, residuals):
            strength = chooser.choose(truth, dec, residual)
            frames.append((dec + strength.expand(*dec.shape[-2:]) * residual).clamp(0, 1))
        return temporal_consistency(torch.cat(frames[1:]), torch.cat(source[1:]))

    decode_tc = temporal_consistency(torch.cat(decoded[1:]), torch.cat(source[1:]))
    free, bounded = run(None), run(0.0)
    assert free > decode_tc * 1.5  # without the bound the flicker shows
    assert bounded <= decode_tc * 1.001
