"""DCVC-RT and DCVC-UF (low delay) adapters: the codec contract on random weights saved in the
official checkpoint layout, refusal of other generations' and variants' files, clear errors.

The ``needs_dcvc`` tests need the submodule (``git submodule update --init third_party/DCVC``)
and DCVC-RT's C++ rANS coder (``bash tools/build_dcvc.sh``); without them they skip with those
commands as the reason (CI does not check out submodules).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from enhancer.codecs import CodecStream, dcvc_rt, dcvc_uf
from enhancer.codecs.base import CodecError, bpp_from_likelihoods
from enhancer.codecs.dcvc_adapter import CODER_IDS
from enhancer.codecs.dcvc_common import FM, ROOT_ENV, RT, UF
from enhancer.codecs.registry import available_codecs, load_codec

NAMES = ("dcvc-rt", "dcvc-uf")
MISSING = {"dcvc-rt": RT.missing_entropy_coder(), "dcvc-uf": UF.missing_entropy_coder()}
HEIGHT, WIDTH = 50, 66  # odd size: padded to 64x80 (dcvc-rt) or 64x128 (dcvc-uf)
QUALITY = 21


def needs(name: str):
    """pytest.param for ``name``, marked needs_dcvc and skipped with the setup commands."""
    reason = MISSING[name]
    return pytest.param(name, marks=[pytest.mark.needs_dcvc,
                                     pytest.mark.skipif(reason is not None, reason=str(reason))])


def clip(frames: int = 3, seed: int = 0) -> list[torch.Tensor]:
    """``frames`` (1, 3, 50, 66) RGB frames: a moving smooth pattern plus a little noise."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.linspace(0, 1, HEIGHT).view(HEIGHT, 1)
    cols = torch.linspace(0, 1, WIDTH).view(1, WIDTH)
    out = []
    for index in range(frames):
        shift = 0.1 * index
        base = torch.stack([torch.sin(6 * (rows + shift)) * torch.cos(4 * cols),
                            rows * cols + shift, torch.cos(5 * (cols - shift)) * rows])
        noise = 0.05 * torch.rand(3, HEIGHT, WIDTH, generator=generator)
        out.append((0.5 + 0.4 * base + noise).clamp(0, 1).unsqueeze(0))
    return out


def _tame(model: nn.Module, gain: float) -> None:
    """Random convolutions with variance 1 / (gain * fan_in): DCVC-UF's own init (xavier, gain
    1, meant for training from scratch) overflows float32 after a few P-frames and float16
    (the codec-output cache) at once, which no trained model does; these keep its values in
    a trained model's range (symbols mostly small, latents of order 1)."""
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            fan_in = module.weight[0].numel()
            module.weight.data = torch.randn(module.weight.shape, generator=generator) / math.sqrt(
                gain * fan_in)


def random_weights(name: str) -> dict[str, nn.Module]:
    """{official file name: model with random weights} for one adapter."""
    torch.manual_seed(0)
    if name == "dcvc-rt":
        return {dcvc_rt.IMAGE_CHECKPOINT: RT.module("models.image_model").DMCI(),
                dcvc_rt.VIDEO_CHECKPOINT: RT.module("models.video_model").DMC()}
    models = {dcvc_uf.IMAGE_CHECKPOINT: UF.module("models.image_model").DMCI(),
              dcvc_uf.VIDEO_CHECKPOINTS["ld"]: UF.module("models.video_model_ld").DMC()}
    for model, gain in zip(models.values(), (2.35, 2.5)):
        _tame(model, gain)
    return models


@pytest.fixture(scope="module")
def setups(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Per adapter, built on first use: checkpoint folder, loaded codec, coded clip."""
    cache: dict = {}

    def get(name: str) -> dict:
        if name not in cache:
            folder = tmp_path_factory.mktemp(name.replace("-", "_"))
            for filename, model in random_weights(name).items():
                state = model.state_dict()
                if filename.endswith("video.pth.tar") or "video_ld" in filename:
                    state = {"state_dict": {f"module.{k}": v for k, v in state.items()}}
                torch.save(state, folder / filename)  # wrapped as DCVC's get_state_dict allows
            codec = load_codec(name, quality=QUALITY, checkpoint=folder)
            frames = clip()
            chunks, encoder_side = zip(*codec.encode_sequence(frames))
            cache[name] = {"folder": folder, "codec": codec, "frames": frames,
                           "chunks": list(chunks), "encoder_side": list(encoder_side)}
        return cache[name]

    return get


def decode(codec, chunks) -> list:
    stream = CodecStream(codec)
    return [stream.decompress(data, (HEIGHT, WIDTH)) for data in chunks]


def test_registered_and_missing_sources_give_the_setup_commands(monkeypatch, tmp_path: Path):
    assert set(NAMES) <= set(available_codecs())
    monkeypatch.setenv(ROOT_ENV, str(tmp_path))
    for name in NAMES:
        with pytest.raises(CodecError, match="git submodule update --init third_party/DCVC"):
            load_codec(name, quality=0)


@pytest.mark.parametrize("name", NAMES)
def test_q_index_outside_the_models_range_is_refused(name: str):
    with pytest.raises(CodecError, match="from 0 to 63"):
        load_codec(name, quality=64)


@pytest.mark.parametrize("name", [needs(name) for name in NAMES])
def test_decoded_bytes_equal_training_path(setups, name: str):
    setup = setups(name)
    codec = setup["codec"]
    decoded = decode(codec, setup["chunks"])
    stream = CodecStream(codec)
    with torch.no_grad():
        trained = [stream(frame) for frame in setup["frames"]]
    for dec_out, enc_out, train_out in zip(decoded, setup["encoder_side"], trained):
        assert dec_out.decoded.shape == (1, 3, HEIGHT, WIDTH)
        assert torch.equal(dec_out.decoded, enc_out.decoded)
        assert torch.equal(dec_out.decoded, train_out.decoded)
        assert torch.equal(dec_out.latent, train_out.latent)
        assert torch.isfinite(dec_out.decoded).all()
    padded = codec.padded_size((HEIGHT, WIDTH))
    latent_hw = (padded[0] // 16, padded[1] // 16)
    assert decoded[0].latent.shape == (1, 384, *latent_hw)
    assert decoded[0].latent[:, 256:].abs().sum() == 0  # I-frame: the intra block only
    assert decoded[1].latent[:, :256].abs().sum() == 0  # P-frame: the inter block only
    bpp = bpp_from_likelihoods(trained[1].likelihoods, HEIGHT * WIDTH)
    assert math.isfinite(float(bpp)) and float(bpp) > 0


@pytest.mark.parametrize("name", [needs(name) for name in NAMES])
def test_decoding_is_deterministic_and_sequences_do_not_leak(setups, name: str):
    setup = setups(name)
    codec = setup["codec"]
    first = decode(codec, setup["chunks"])
    other = clip(seed=5)[::-1]
    list(codec.encode_sequence(other))  # another sequence through the same codec
    again = decode(codec, setup["chunks"])
    assert all(torch.equal(a.decoded, b.decoded) for a, b in zip(first, again))
    chunks_again = [data for data, _ in codec.encode_sequence(setup["frames"])]
    assert chunks_again == setup["chunks"]


@pytest.mark.parametrize("name", [needs(name) for name in NAMES])
def test_training_path_takes_a_batch_of_two(setups, name: str):
    codec = setups(name)["codec"]
    frames = clip(2)
    pair = [torch.cat([frame, frame.flip(-1)]) for frame in frames]
    with torch.no_grad():
        stream = CodecStream(codec)
        batch = [stream(frame).decoded for frame in pair]
        single = [CodecStream(codec)(frames[0]).decoded]
    assert batch[1].shape == (2, 3, HEIGHT, WIDTH)
    torch.testing.assert_close(batch[0][:1], single[0], atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", [needs(name) for name in NAMES])
def test_weights_come_from_the_official_files(setups, name: str):
    setup = setups(name)
    files = random_weights(name)
    codec = setup["codec"]
    for (filename, model), loaded in zip(files.items(), (codec.intra_model, codec.inter_model)):
        for key, value in model.state_dict().items():
            assert torch.equal(loaded.state_dict()[key], value), (filename, key)


@pytest.mark.parametrize("name", [needs(name) for name in NAMES])
def test_bytes_for_another_quality_or_frame_type_are_refused(setups, name: str):
    setup = setups(name)
    codec, chunks = setup["codec"], setup["chunks"]
    other = load_codec(name, quality=QUALITY + 1, checkpoint=setup["folder"])
    with pytest.raises(CodecError, match=f"q_index {QUALITY}.*q_index {QUALITY + 1}"):
        other.decompress(chunks[0], (HEIGHT, WIDTH))
    with pytest.raises(CodecError, match="P-frame but no reference state"):
        codec.decompress(chunks[1], (HEIGHT, WIDTH))
    for other in CODER_IDS.keys() - {name}:  # DCVC-FM's, the other adapter's, UF's chunks'
        relabelled = bytes([CODER_IDS[other]]) + chunks[0][1:]  # as that adapter writes them
        with pytest.raises(CodecError, match=f"not written by {name}.*{other}'s"):
            codec.decompress(relabelled, (HEIGHT, WIDTH))
    damaged = chunks[0][:-1] + bytes([chunks[0][-1] ^ 1])
    with pytest.raises(CodecError, match="damaged"):
        codec.decompress(damaged, (HEIGHT, WIDTH))


@pytest.mark.parametrize("name", [needs(name) for name in NAMES])
def test_missing_file_and_other_generation_are_refused_by_name(setups, name: str, tmp_path):
    setup = setups(name)
    with pytest.raises(CodecError, match="not found in"):
        load_codec(name, quality=0, checkpoint=tmp_path)
    # a DCVC-FM intra file where this generation's intra file belongs
    for filename in random_weights(name):
        (tmp_path / filename).symlink_to(setup["folder"] / filename)
    image_file = next(iter(random_weights(name)))
    (tmp_path / image_file).unlink()
    torch.save(FM.module("models.image_model").DMCI().state_dict(), tmp_path / image_file)
    with pytest.raises(CodecError, match=rf"{image_file}.*missing keys.*unexpected keys"):
        load_codec(name, quality=0, checkpoint=tmp_path)


@pytest.mark.parametrize("name", [needs("dcvc-uf")])
def test_uf_refuses_a_chunk_variant_file_as_the_low_delay_model(setups, name: str, tmp_path):
    setup = setups(name)
    (tmp_path / dcvc_uf.IMAGE_CHECKPOINT).symlink_to(setup["folder"] / dcvc_uf.IMAGE_CHECKPOINT)
    hts = UF.module("models.video_model_ht").DMC()
    torch.save(hts.state_dict(), tmp_path / dcvc_uf.VIDEO_CHECKPOINTS["ld"])
    with pytest.raises(CodecError, match=r"cvpr2026_video_ld\.pth\.tar.*keys"):
        load_codec(name, quality=0, checkpoint=tmp_path)


@pytest.mark.parametrize("name", [needs("dcvc-uf")])
def test_uf_training_path_has_gradients(setups, name: str):
    codec = setups(name)["codec"]
    codec.train()
    try:
        frames = [frame.requires_grad_(False) for frame in clip(2)]
        stream = CodecStream(codec)
        outs = [stream(frame) for frame in frames]
        bpp = bpp_from_likelihoods(outs[1].likelihoods, HEIGHT * WIDTH)
        loss = bpp + sum(((out.decoded - frame) ** 2).mean() for out, frame in zip(outs, frames))
        loss.backward()
        grads = [p.grad for p in codec.inter_model.encoder.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads)
    finally:
        codec.zero_grad(set_to_none=True)
        codec.eval()


def _uf_chunk_codec(variant: str, tmp_path: Path):
    """A DCVC-UF chunk codec (``hts``/``htl``) on tamed random weights in DCVC's file layout."""
    torch.manual_seed(0)
    image = UF.module("models.image_model").DMCI()
    structure = UF.module("utils.common").ModelStructure(variant)
    video = UF.module("models.video_model_ht").DMC(model_structure=structure)
    _tame(image, 2.35)
    _tame(video, 2.5)
    torch.save(image.state_dict(), tmp_path / dcvc_uf.IMAGE_CHECKPOINT)
    torch.save(video.state_dict(), tmp_path / dcvc_uf.VIDEO_CHECKPOINTS[variant])
    return load_codec(f"dcvc-uf-{variant}", quality=QUALITY, checkpoint=tmp_path).eval()


@pytest.mark.parametrize("variant", [pytest.param(v, marks=needs("dcvc-uf").marks)
                                     for v in ("hts", "htl")])
def test_uf_chunk_variants_decode_a_short_chunk_as_the_training_path(variant: str, tmp_path):
    codec = _uf_chunk_codec(variant, tmp_path)
    frames = clip(6)
    _, intra = codec.compress(frames[0])
    data, encoder_side = codec.compress_chunk(frames[1:], intra.state)  # 5 of 8: padded
    decoded = codec.decompress_chunk(data, (HEIGHT, WIDTH), intra.state)  # the header says 5
    with torch.no_grad():
        trained = codec.forward_chunk(frames[1:], intra.state)
    assert len(decoded) == len(trained) == len(encoder_side) == 5
    for dec_out, enc_out, train_out in zip(decoded, encoder_side, trained):
        assert dec_out.decoded.shape == (1, 3, HEIGHT, WIDTH)
        assert torch.equal(dec_out.decoded, enc_out.decoded)
        assert torch.equal(dec_out.decoded, train_out.decoded)
        assert torch.equal(dec_out.latent, train_out.latent)
    assert decoded[0].latent.shape[1] == 512 and decoded[0].latent[:, :256].abs().sum() == 0
    assert decoded[-1].state.frame_index == dcvc_uf.CHUNK_FRAMES
    other = "hts" if variant == "htl" else "htl"
    for writer in ("dcvc-uf", f"dcvc-uf-{other}"):  # the ld variant's and the other chunk one's
        relabelled = bytes([CODER_IDS[writer]]) + data[1:]
        with pytest.raises(CodecError, match=f"not written by dcvc-uf-{variant}.*{writer}'s"):
            codec.decompress_chunk(relabelled, (HEIGHT, WIDTH), intra.state)
    for count in (0, 9):  # a chunk holds 1 to 8 real frames; fewer are padded (tested above)
        forged = data[:1] + bytes([count]) + data[2:]
        with pytest.raises(CodecError, match=f"chunk of {count} frames.*1 to 8"):
            codec.decompress_chunk(forged, (HEIGHT, WIDTH), intra.state)
    with pytest.raises(CodecError, match="chunks of 8"):
        codec(frames[1], intra.state)
    with pytest.raises(CodecError, match="1 to 8 frames, got 9"):
        codec.forward_chunk(clip(9), intra.state)
    # the low-delay file where this variant's belongs
    torch.save(dcvc_uf.DCVCUF(QUALITY).inter_model.state_dict(),
               tmp_path / dcvc_uf.VIDEO_CHECKPOINTS[variant])
    with pytest.raises(CodecError, match=rf"cvpr2026_video_{variant}\.pth\.tar.*keys"):
        load_codec(f"dcvc-uf-{variant}", quality=QUALITY, checkpoint=tmp_path)


@pytest.mark.needs_dcvc
@pytest.mark.skipif(MISSING["dcvc-rt"] is not None or FM.missing_entropy_coder() is not None,
                    reason=str(MISSING["dcvc-rt"] or FM.missing_entropy_coder()))
def test_dcvc_fm_and_rt_coders_load_into_one_process():
    """Both bindings define a pybind11 class RansEncoder: built with separate ABI ids, the
    second import must not fail (a fresh process, DCVC-FM's first)."""
    check = ("from enhancer.codecs.dcvc_common import FM, RT; "
             "assert FM.missing_entropy_coder() is None; "
             "reason = RT.missing_entropy_coder(); assert reason is None, reason")
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                            check=False, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("name", [needs(name) for name in NAMES])
def test_non_finite_weights_are_refused_before_the_entropy_coder(setups, name: str):
    """What a diverged end-to-end run leaves would hang the rANS coder: refused by name."""
    codec = load_codec(name, quality=QUALITY, checkpoint=setups(name)["folder"])
    parameter_name, parameter = next(iter(codec.named_parameters()))
    with torch.no_grad():
        parameter.view(-1)[0] = float("nan")
    with pytest.raises(CodecError, match=f"weight '{parameter_name}' holds 1 non-finite"):
        codec.update()


@pytest.mark.parametrize("variant", [pytest.param(v, marks=needs("dcvc-uf").marks)
                                     for v in ("hts", "htl")])
def test_uf_chunk_variants_code_sequences_one_record_per_frame(variant: str, tmp_path: Path):
    """As the tools drive codecs: encode_sequence cuts chunks (8 frames, before an intra frame,
    at the end), CodecStream decodes record by record, bit-exact to the encoder's side."""
    codec = _uf_chunk_codec(variant, tmp_path)
    frames = clip(13)
    records, encoder_side = zip(*codec.encode_sequence(frames, intra_period=11))
    continuation = bytes([CODER_IDS[f"dcvc-uf-{variant}"]])
    # I, chunk of 8 (1-8), chunk of 2 (9-10, cut before the intra frame 11), I, chunk of 1
    long = [index for index, data in enumerate(records) if data != continuation]
    assert long == [0, 1, 9, 11, 12] and len(records) == 13
    stream = CodecStream(codec, intra_period=11)
    decoded = [stream.decompress(data, (HEIGHT, WIDTH)) for data in records]
    for dec_out, enc_out in zip(decoded, encoder_side):
        assert dec_out.decoded.shape == (1, 3, HEIGHT, WIDTH)
        assert torch.equal(dec_out.decoded, enc_out.decoded)
        assert torch.equal(dec_out.latent, enc_out.latent)
    with pytest.raises(CodecError, match="continuation record must follow its chunk record"):
        CodecStream(codec).decompress(records[0], (HEIGHT, WIDTH)) and codec.decompress(
            records[2], (HEIGHT, WIDTH), decoded[0].state)
    with pytest.raises(CodecError, match="not one at a time.*dcvc-uf \\(low delay\\)"):
        CodecStream(codec).compress(frames[0]) and codec.compress(frames[1], decoded[0].state)
