"""DCVC-FM adapter: real bytes vs the training path, official checkpoint layout, clear errors.

The ``needs_dcvc`` tests need the submodule (``git submodule update --init
third_party/DCVC``) and its C++ coder (``bash tools/build_dcvc.sh``); they skip
without them (CI does not check out submodules). They run DCVC-FM with random
weights saved in the official checkpoint layout on a real 3-frame crop.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, decode_chunks, forward_clip

from enhancer.codecs import dcvc
from enhancer.codecs.base import CodecError, bpp_from_likelihoods
from enhancer.codecs.dcvc_adapter import CODER_IDS, INTRA_FLAG
from enhancer.codecs.dcvc_common import FM, ROOT_ENV
from enhancer.codecs.registry import available_codecs, load_codec
from enhancer.data.color import planes_to_rgb, rgb_to_yuv444

DATA = SHARED_DATA
CLIP = DATA / "video" / "openh264" / "CiscoVT2people_160x96_6fps.yuv"  # I420 160x96, 5 frames
HEIGHT, WIDTH = 60, 72  # crop, padded to 64x80 by the adapter
QUALITY = 42

DCVC_MISSING = FM.missing_entropy_coder()  # None when the submodule and its coder are there


def needs_dcvc(test):
    """Mark ``test`` needs_dcvc and skip it, with the setup commands, when DCVC-FM is missing."""
    test = pytest.mark.needs_dcvc(test)
    return pytest.mark.skipif(DCVC_MISSING is not None, reason=str(DCVC_MISSING))(test)


def real_clip(frames: int = 3) -> list[torch.Tensor]:
    """``frames`` (1, 3, 60, 72) RGB crops in [0, 1] of a real camera clip."""
    if not CLIP.is_file():
        pytest.skip(f"test clip {CLIP} is missing (shared/data not laid out)")
    width, height = 160, 96
    frame_bytes = width * height * 3 // 2
    raw = np.fromfile(CLIP, dtype=np.uint8)[: frames * frame_bytes].reshape(frames, frame_bytes)
    clip = []
    for planes in raw:
        luma = planes[: width * height].reshape(height, width)
        chroma = planes[width * height:].reshape(2, height // 2, width // 2)
        rgb = planes_to_rgb(luma, chroma[0], chroma[1])  # (1, 3, 96, 160), DCVC's BT.709
        clip.append(rgb[:, :, 20:20 + HEIGHT, 40:40 + WIDTH].contiguous())
    return clip


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random DCVC-FM weights in the official files (one plain, one wrapped as DCVC allows)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("dcvc_weights")
    image = FM.module("models.image_model").DMCI().state_dict()
    torch.save(image, folder / dcvc.IMAGE_CHECKPOINT)
    video = FM.module("models.video_model").DMC().state_dict()
    video = {f"module.{k}": v for k, v in video.items()}
    torch.save({"state_dict": video}, folder / dcvc.VIDEO_CHECKPOINT)
    return folder


@pytest.fixture(scope="module")
def codec(checkpoint_dir: Path) -> dcvc.DCVCFM:
    return load_codec("dcvc", quality=QUALITY, checkpoint=checkpoint_dir)


@pytest.fixture(scope="module")
def coded(codec: dcvc.DCVCFM) -> dict:
    """Training path, encoder and decoder outputs of the same 3-frame clip, with timings."""
    clip = real_clip(3)
    with torch.no_grad():
        forward = forward_clip(codec, torch.stack(clip, 1))
    codec.update()
    start = time.perf_counter()
    encoded = list(codec.encode_sequence(clip))
    encode_s = time.perf_counter() - start
    chunks = [data for data, _ in encoded]
    start = time.perf_counter()
    decoded = list(decode_chunks(codec, chunks, (HEIGHT, WIDTH)))
    decode_s = time.perf_counter() - start
    print(f"dcvc {WIDTH}x{HEIGHT} x3 on random weights: encode {encode_s:.2f} s, "
          f"decode {decode_s:.2f} s, bytes {[len(c) for c in chunks]}")
    return {"clip": clip, "forward": forward, "encoded": encoded, "decoded": decoded}


# --- without the submodule (always run) ------------------------------------------------------
def test_registered_and_missing_sources_give_the_setup_commands(monkeypatch, tmp_path):
    assert "dcvc" in available_codecs()
    monkeypatch.setenv(ROOT_ENV, str(tmp_path / "no_dcvc_here"))
    assert "git submodule update --init third_party/DCVC" in FM.missing_sources()
    with pytest.raises(CodecError, match="git submodule update --init third_party/DCVC") as err:
        load_codec("dcvc", quality=QUALITY)
    assert "tools/build_dcvc.sh" in str(err.value)
    assert "no_dcvc_here" in str(err.value)


def test_quality_outside_q_index_range_is_rejected():
    with pytest.raises(CodecError, match="no quality 64"):
        load_codec("dcvc", quality=64)


# --- with DCVC-FM and its C++ coder --------------------------------------------------------------
@needs_dcvc
@pytest.mark.parametrize("index", [0, 1, 2], ids=["I", "P1", "P2"])
def test_decoded_bytes_equal_training_path(coded: dict, index: int):
    forward = coded["forward"][index]
    data, encoder_view = coded["encoded"][index]
    decoded = coded["decoded"][index]
    # header: coder byte, intra flag, q_index, CRC
    assert data[:3] == bytes([CODER_IDS["dcvc"], INTRA_FLAG if index == 0 else 0, QUALITY])
    assert decoded.decoded.shape == (1, 3, HEIGHT, WIDTH)
    # bit exact on CPU: the decoder rebuilds exactly what the encoder and the training path saw
    assert torch.equal(decoded.decoded, forward.decoded)
    assert torch.equal(encoder_view.decoded, forward.decoded)
    assert torch.equal(decoded.latent, forward.latent)
    for key, value in forward.state.dpb.items():
        if value is not None:
            assert torch.equal(decoded.state.dpb[key], value), key
    # the real bytes agree with DCVC-FM's estimate (+7 header bytes and rANS flush overhead)
    padded_pixels = 64 * 80
    estimated_bpp = float(bpp_from_likelihoods(forward.likelihoods, padded_pixels))
    estimated_bytes = estimated_bpp * padded_pixels / 8
    assert abs(len(data) - estimated_bytes) < 0.1 * estimated_bytes + 16


@needs_dcvc
def test_decoding_twice_is_identical(codec: dcvc.DCVCFM, coded: dict):
    chunks = [data for data, _ in coded["encoded"]]
    again = list(decode_chunks(codec, chunks, (HEIGHT, WIDTH)))
    for old, new in zip(coded["decoded"], again):
        assert torch.equal(old.decoded, new.decoded)
        assert torch.equal(old.latent, new.latent)


@needs_dcvc
def test_latent_shape_and_layout(codec: dcvc.DCVCFM, coded: dict):
    intra, inter = coded["decoded"][0].latent, coded["decoded"][1].latent
    expected = (1, codec.latent_channels, 64 // codec.latent_stride, 80 // codec.latent_stride)
    assert intra.shape == inter.shape == expected == (1, 384, 4, 5)
    assert intra[:, :256].abs().sum() > 0 and intra[:, 256:].abs().sum() == 0
    assert inter[:, :256].abs().sum() == 0 and inter[:, 256:].abs().sum() > 0
    assert coded["decoded"][2].state.frame_index == 2


@needs_dcvc
def test_training_path_equals_dcvc_forward_one_frame(codec: dcvc.DCVCFM, coded: dict):
    """The adapter's own forward is DCVC-FM's forward_one_frame, with per-element likelihoods."""
    clip = [torch.cat(rgb_to_yuv444(frame), 1) for frame in coded["clip"][:2]]
    padded = [torch.nn.functional.pad(frame, (0, 8, 0, 4), mode="replicate") for frame in clip]
    ours = coded["forward"]
    with torch.no_grad():
        intra = codec.intra_model.forward_one_frame(padded[0], QUALITY)
        dpb = {"ref_frame": intra["x_hat"].clamp(0, 1), "ref_feature": None,
               "ref_mv_feature": None, "ref_y": None, "ref_mv_y": None}
        inter = codec.inter_model.forward_one_frame(padded[1], dpb, QUALITY, fa_idx=1)
    torch.testing.assert_close(ours[0].state.dpb["ref_frame"], dpb["ref_frame"], atol=0, rtol=0)
    torch.testing.assert_close(ours[1].state.dpb["ref_frame"], inter["dpb"]["ref_frame"],
                               atol=0, rtol=0)
    for out, reference in ((ours[0], intra), (ours[1], inter)):
        bits = float(bpp_from_likelihoods(out.likelihoods, 1))
        assert bits == pytest.approx(float(reference["bit"]), rel=1e-4)


@needs_dcvc
def test_weights_come_from_the_checkpoint_files(codec: dcvc.DCVCFM, checkpoint_dir: Path):
    image = torch.load(checkpoint_dir / dcvc.IMAGE_CHECKPOINT, weights_only=True)
    video = torch.load(checkpoint_dir / dcvc.VIDEO_CHECKPOINT, weights_only=True)["state_dict"]
    assert torch.equal(codec.intra_model.q_scale_enc, image["q_scale_enc"])
    assert torch.equal(codec.inter_model.y_q_dec, video["module.y_q_dec"])


@needs_dcvc
def test_training_path_has_gradients():
    with pytest.warns(UserWarning, match="random weights"):
        codec = dcvc.DCVCFM(quality=QUALITY).train()
    clip = torch.rand(1, 2, 3, 32, 32)
    outputs = forward_clip(codec, clip)
    loss = sum(
        torch.mean((out.decoded - clip[:, t]) ** 2)
        + 0.01 * bpp_from_likelihoods(out.likelihoods, 32 * 32)
        for t, out in enumerate(outputs)
    )
    loss.backward()
    # rounding is straight-through, so the analysis transforms learn too
    assert codec.intra_model.enc.enc_1[0].down.weight.grad.abs().sum() > 0
    assert codec.inter_model.contextual_encoder.conv1.weight.grad.abs().sum() > 0


@needs_dcvc
def test_missing_or_mismatched_weights_give_clear_errors(tmp_path: Path, checkpoint_dir: Path):
    with pytest.raises(CodecError, match="must be a folder"):
        load_codec("dcvc", quality=QUALITY, checkpoint=tmp_path / "nowhere")
    with pytest.raises(CodecError, match=f"{dcvc.IMAGE_CHECKPOINT} not found.*README"):
        load_codec("dcvc", quality=QUALITY, checkpoint=tmp_path)
    image = torch.load(checkpoint_dir / dcvc.IMAGE_CHECKPOINT, weights_only=True)
    image["q_scale_enc"] = image["q_scale_enc"][:4]
    del image["q_scale_dec"]
    torch.save(image, tmp_path / dcvc.IMAGE_CHECKPOINT)
    with pytest.raises(CodecError, match=r"1 missing keys.*q_scale_dec.*wrong shape.*q_scale_enc"):
        load_codec("dcvc", quality=QUALITY, checkpoint=tmp_path)


@needs_dcvc
def test_bytes_for_another_quality_or_frame_type_are_refused(codec: dcvc.DCVCFM, coded: dict):
    intra_bytes, p_bytes = coded["encoded"][0][0], coded["encoded"][1][0]
    with pytest.raises(CodecError, match="q_index 41"):
        codec.decompress(intra_bytes[:2] + bytes([41]) + intra_bytes[3:], (HEIGHT, WIDTH))
    # damaged bytes never reach DCVC's C++ decoder (which has no bounds checks)
    damaged = intra_bytes[:-1] + bytes([intra_bytes[-1] ^ 1])
    for bad, reason in ((intra_bytes[:1], "truncated"), (intra_bytes[:5], "truncated"),
                        (intra_bytes[:-3], "damaged"), (damaged, "damaged")):
        with pytest.raises(CodecError, match=reason):
            codec.decompress(bad, (HEIGHT, WIDTH))
    with pytest.raises(CodecError, match="a P-frame but no reference state"):
        codec.decompress(p_bytes, (HEIGHT, WIDTH))
    with pytest.raises(CodecError, match="expects the state"):
        codec.decompress(p_bytes, (HEIGHT, WIDTH), state=torch.zeros(1))

