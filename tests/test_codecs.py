"""Contract tests, CompressAI style: the same assertions over every registered codec adapter."""

from __future__ import annotations

import functools
import json
import warnings

import pytest
import torch
from conftest import REPO, SHARED_DATA, decode_chunks, forward_clip, requires_shared_data

from enhancer.codecs import (
    CodecError,
    available_codecs,
    bpp_from_likelihoods,
    codec_class,
    load_codec,
)
from enhancer.codecs.compressai_codecs import load_state_dict_file
from enhancer.data.sequence import open_sequence
from enhancer.utils.weights import state_dict_mismatch

QUALITY = {"ssf": 3, "ssf-small": 2, "bmshj2018-hyperprior": 3, "mbt2018-mean": 3, "x264": 30, "x265": 30}
# The DCVC adapters have their own tests (need the submodule and its extension).
CODECS = [name for name in available_codecs() if not name.startswith("dcvc")]
HEIGHT, WIDTH = 170, 250  # odd for every codec's multiple: exercises pad and crop


@functools.cache
def shared_codec(name: str):
    """One instance per codec for the read-only contract tests (adapters keep no state)."""
    return make_codec(name)


def make_codec(name: str, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights warning
        torch.manual_seed(0)
        return load_codec(name, QUALITY[name], **kwargs)


@pytest.fixture(scope="module")
def clip() -> list[torch.Tensor]:
    """Three real frames (1, 3, 170, 250) from a 320x192 camera clip."""
    path = SHARED_DATA / "video/openh264/CiscoVT2people_320x192_12fps.yuv"
    with open_sequence(path) as reader:
        frames = list(reader.frames(count=3))
    return [frame[..., 10 : 10 + HEIGHT, 30 : 30 + WIDTH].contiguous() for frame in frames]


def test_registry_has_every_adapter():
    assert {"ssf", "ssf-small", "bmshj2018-hyperprior", "mbt2018-mean", "x264", "x265", "dcvc"} <= set(
        available_codecs()
    )


@requires_shared_data
@pytest.mark.parametrize("name", CODECS)
class TestContract:
    def test_shapes_and_ranges(self, name, clip):
        codec = shared_codec(name)
        outputs = forward_clip(codec, torch.stack(clip, dim=1))
        assert len(outputs) == len(clip)
        for out in outputs:
            assert out.decoded.shape == (1, 3, HEIGHT, WIDTH)
            assert out.decoded.min() >= 0 and out.decoded.max() <= 1
            if codec.latent_channels is None:
                assert out.latent is None
            else:
                padded_h = -(-HEIGHT // codec.pad_multiple) * codec.pad_multiple
                padded_w = -(-WIDTH // codec.pad_multiple) * codec.pad_multiple
                assert out.latent.shape == (
                    1, codec.latent_channels,
                    padded_h // codec.latent_stride, padded_w // codec.latent_stride,
                )
            assert (out.likelihoods is not None) == codec.learned

    def test_bytes_decode_to_training_path(self, name, clip):
        codec = shared_codec(name)
        with torch.no_grad():
            trained = forward_clip(codec, torch.stack(clip, dim=1))
        encoded = list(codec.encode_sequence(clip))
        decoded = list(decode_chunks(codec, [data for data, _ in encoded], (HEIGHT, WIDTH)))
        for train_out, (data, enc_out), dec_out in zip(trained, encoded, decoded):
            assert isinstance(data, bytes) and len(data) > 0
            assert torch.equal(enc_out.decoded, dec_out.decoded)
            assert torch.equal(train_out.decoded, dec_out.decoded)
            if codec.latent_channels is not None:
                assert torch.equal(train_out.latent, dec_out.latent)

    def test_a_batch_of_two_codes_each_element_as_if_alone(self, name, clip):
        """The training path takes the trainer's batch: each element is coded as if it were
        alone, its reference state its own."""
        codec = shared_codec(name)
        first = torch.stack(clip, dim=1)
        second = first.flip(-1)
        with torch.no_grad():
            together = forward_clip(codec, torch.cat([first, second]))
            alone = [forward_clip(codec, first), forward_clip(codec, second)]
        for index, out in enumerate(together):
            assert out.decoded.shape == (2, 3, HEIGHT, WIDTH)
            for element in (0, 1):
                torch.testing.assert_close(out.decoded[element : element + 1],
                                           alone[element][index].decoded, atol=1e-6, rtol=0)

    def test_decoding_is_deterministic(self, name, clip):
        codec = shared_codec(name)
        chunks = [data for data, _ in codec.encode_sequence(clip)]
        first = [out.decoded for out in decode_chunks(codec, chunks, (HEIGHT, WIDTH))]
        second = [out.decoded for out in decode_chunks(codec, chunks, (HEIGHT, WIDTH))]
        for a, b in zip(first, second):
            assert torch.equal(a, b)
        again = [data for data, _ in codec.encode_sequence(clip)]
        assert again == chunks

    def test_no_state_leaks_between_sequences(self, name, clip):
        codec = shared_codec(name)
        other = [frame.flip(-1) for frame in clip]
        fresh = [data for data, _ in codec.encode_sequence(clip)]
        list(codec.encode_sequence(other))
        after_other = [data for data, _ in codec.encode_sequence(clip)]
        assert after_other == fresh

    def test_bpp_from_bytes_matches_likelihoods(self, name, clip):
        codec = shared_codec(name)
        if not codec.learned:
            pytest.skip("conventional codecs have no likelihoods")
        with torch.no_grad():
            trained = forward_clip(codec, torch.stack(clip, dim=1))
        encoded = list(codec.encode_sequence(clip))
        pixels = HEIGHT * WIDTH
        for out, (data, _) in zip(trained, encoded):
            estimate = bpp_from_likelihoods(out.likelihoods, pixels).item()
            real = 8 * len(data) / pixels
            # 5 % for the coder, plus per string (up to 4) its u32 length, the coder's flush and
            # the bypass-coded tails of a tiny random-weight z: 16 bytes (ssf-small needs ~12).
            assert abs(real - estimate) <= 0.05 * estimate + 16 * 4 * 8 / pixels

    def test_intra_period_resets_reference(self, name, clip):
        codec = shared_codec(name)
        period_1 = [data for data, _ in codec.encode_sequence(clip, intra_period=1)]
        alone = [codec.compress(frame)[0] for frame in clip]
        assert period_1 == alone

    def test_corrupt_bytes_raise(self, name, clip):
        codec = shared_codec(name)
        if not codec.detects_damaged_frames:
            pytest.skip(f"{name}'s decoder conceals damage; the container's CRC-32 catches it")
        data, _ = codec.compress(clip[0])
        with pytest.raises(CodecError):
            codec.decompress(data[: len(data) // 3], (HEIGHT, WIDTH))

    def test_aux_loss_trains_only_the_bottleneck_quantiles(self, name, clip):
        """The trainer steps ``aux_loss()`` with an optimizer over ``aux_parameter_names()``
        and keeps those out of the main one: the loss is a finite scalar >= 0 whose gradient
        reaches exactly those parameters, and the training-mode rate-distortion path reaches
        none of them."""
        codec = shared_codec(name)
        loss = codec.aux_loss()
        assert loss.shape == () and torch.isfinite(loss) and loss >= 0
        aux_names = codec.aux_parameter_names()
        assert aux_names <= {n for n, _ in codec.named_parameters()}
        if not aux_names:  # no entropy bottleneck: a constant zero, nothing to train
            assert loss == 0 and not loss.requires_grad
            return

        def names_with_grad(loss: torch.Tensor) -> set[str]:
            codec.zero_grad(set_to_none=True)
            try:
                loss.backward()
                return {n for n, p in codec.named_parameters() if p.grad is not None}
            finally:
                codec.zero_grad(set_to_none=True)  # the shared codec stays as it was

        assert names_with_grad(loss) == aux_names
        was_training = codec.training
        try:
            out = codec.train()(clip[0])  # noisy quantisation, as the trainer runs it
        finally:
            codec.train(was_training)
        rate_distortion = (bpp_from_likelihoods(out.likelihoods, HEIGHT * WIDTH)
                           + (out.decoded - clip[0]).square().mean())
        reached = names_with_grad(rate_distortion)
        assert reached and not reached & aux_names


@pytest.mark.parametrize("name", ["ssf", "ssf-small", "bmshj2018-hyperprior"])
def test_unknown_quality_is_a_clear_error(name):
    with pytest.raises(CodecError, match="has no quality 99"):
        load_codec(name, 99)


def test_quality_level_runs_from_the_coarsest_to_the_finest_rate_point():
    x264 = codec_class("x264")
    assert x264.quality_level(51) == 0.0 and x264.quality_level(0) == 1.0
    assert x264.quality_level(24) > x264.quality_level(32) > x264.quality_level(40)
    hyperprior = codec_class("bmshj2018-hyperprior")  # qualities 1..8, more bits upwards
    assert hyperprior.quality_level(1) == 0.0 and hyperprior.quality_level(8) == 1.0
    assert hyperprior.quality_level(2) < hyperprior.quality_level(3)
    with pytest.raises(CodecError, match="has no quality 52; choose an integer from 0 to 51$"):
        x264.quality_level(52)
    with pytest.raises(CodecError, match=r"choose one of \[1, 2, 3\]$"):
        codec_class("ssf-small").check_quality(0)


@pytest.mark.parametrize("name", ["x264", "x265"])
def test_conventional_streams_carry_their_crf(name):
    """What a quality-conditioned enhancer is told, a decoder can read from the bytes."""
    data, _ = load_codec(name, 27).compress(torch.rand(1, 3, 64, 64))
    assert b"crf=27.0" in data


def test_unknown_codec_is_a_clear_error():
    with pytest.raises(CodecError, match="unknown codec 'vvc'; available: .*ssf"):
        load_codec("vvc", 1)


@pytest.mark.parametrize("name", ["ssf", "ssf-small", "bmshj2018-hyperprior", "mbt2018-mean"])
def test_zoo_checkpoint_round_trip(name, tmp_path):
    """A state dict saved in the CompressAI zoo layout loads into a fresh adapter."""
    source = make_codec(name)
    for parameter in source.parameters():
        parameter.data.add_(0.01 * torch.randn_like(parameter))  # differs from the seed-0 init
    source.update()  # zoo files hold CDF tables that match their weights
    state = {f"module.{k}": v for k, v in source.model.state_dict().items()}  # DataParallel prefix
    path = tmp_path / f"{name}-{QUALITY[name]}-0123abcd.pth.tar"
    torch.save(state, path)
    loaded = make_codec(name, checkpoint=path)
    for key, value in source.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key
    assert set(load_state_dict_file(path)) == set(source.model.state_dict())


def test_checkpoint_of_another_architecture_is_a_clear_error(tmp_path):
    path = tmp_path / "hyperprior.pth.tar"
    torch.save(make_codec("bmshj2018-hyperprior").model.state_dict(), path)
    with pytest.raises(CodecError, match="does not fit codec 'ssf'.*missing keys"):
        make_codec("ssf", checkpoint=path)


def test_state_dict_mismatch_names_every_kind_of_misfit():
    """The one check every weights file gets (codecs, DCVC, FID's Inception network)."""
    own = {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4), "c.bias": torch.zeros(1)}
    assert state_dict_mismatch(own, dict(own)) is None
    loaded = {"a.weight": torch.zeros(3, 3), "b.weight": 7, "extra": torch.zeros(1)}
    message = state_dict_mismatch(own, loaded)
    assert "1 missing keys (e.g. ['c.bias'])" in message
    assert "1 unexpected keys (e.g. ['extra'])" in message
    assert "a.weight: file (3, 3) vs model (2, 3)" in message
    assert "1 values that are not tensors (e.g. ['b.weight'])" in message
    assert state_dict_mismatch(own, {"a.weight": torch.zeros(2, 3), "b.weight": torch.zeros(4)},
                               ignore_suffixes=(".bias",)) is None


def test_small_ssf_is_ssf_with_narrow_layers():
    """ssf-small keeps SSF's structure and warping but is ~60x smaller, with z at 1/64."""
    small, full = make_codec("ssf-small").model, make_codec("ssf").model
    assert [name for name, _ in small.named_children()] == [name for name, _ in full.named_children()]
    assert type(small).forward_prediction is type(full).forward_prediction
    small_params = sum(p.numel() for p in small.parameters())
    assert small_params * 50 < sum(p.numel() for p in full.parameters())
    y = torch.zeros(1, 48, 8, 12)
    _, out = small.img_hyperprior.compress(y)
    assert tuple(out["shape"]) == (2, 3)  # 1/16 -> 1/64: a 128x192 frame needs no padding to 128


def test_small_ssf_checkpoint_does_not_fit_ssf(tmp_path):
    path = tmp_path / "ssf-small.pth.tar"
    torch.save(make_codec("ssf-small").model.state_dict(), path)
    with pytest.raises(CodecError, match="does not fit codec 'ssf'.*wrong shape"):
        make_codec("ssf", checkpoint=path)


def test_checkpoint_of_another_quality_is_a_clear_error(tmp_path):
    path = tmp_path / "q8.pth.tar"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.save(load_codec("bmshj2018-hyperprior", 8).model.state_dict(), path)
    with pytest.raises(CodecError, match="wrong shape"):
        make_codec("bmshj2018-hyperprior", checkpoint=path)


def test_corrupt_checkpoint_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.pth.tar"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CodecError, match="could not read codec checkpoint"):
        make_codec("ssf", checkpoint=path)
    with pytest.raises(CodecError, match="does not exist"):
        make_codec("ssf", checkpoint=tmp_path / "missing.pth.tar")


def test_conventional_codecs_take_no_checkpoint(tmp_path):
    with pytest.raises(CodecError, match="has no weights"):
        load_codec("x264", 30, checkpoint=tmp_path / "x.pth")


def test_bad_intra_period_is_a_clear_error():
    with pytest.raises(CodecError, match="intra period must be -1 or a positive number, got 0"):
        codec_class("x264").is_intra(0, 0)



# --- the docs' "Plugging in a new codec" example ----------------------------------------------
CODECS_DOC = REPO / "docs" / "codecs.md"


def docs_example_code() -> str:
    """The ```python block of docs/codecs.md's "Plugging in a new codec" section."""
    section = CODECS_DOC.read_text(encoding="utf-8").split("## Plugging in a new codec", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture
def raw8():
    """The docs' raw8 adapter, registered for the test and removed after it."""
    from enhancer.codecs import registry

    code = compile(docs_example_code(), f"{CODECS_DOC} (Plugging in a new codec)", "exec")
    exec(code, {"__name__": "docs_codecs_example"})  # noqa: S102  (the point)
    try:
        yield load_codec("raw8", 0)
    finally:
        registry._REGISTRY.pop("raw8", None)


@requires_shared_data
def test_the_docs_codec_example_codes_a_batch_and_trains(raw8, clip, tmp_path):
    from test_train import image_config, write_config

    from enhancer.train import Trainer

    batch = torch.cat([clip[0], clip[1].flip(-1)])
    assert torch.equal(raw8(batch).decoded, (batch * 255).round() / 255)
    data, out = raw8.compress(clip[0])
    assert len(data) == 3 * HEIGHT * WIDTH
    assert torch.equal(raw8.decompress(data, (HEIGHT, WIDTH)).decoded, out.decoded)

    config = image_config(model={"codec": {"name": "raw8", "quality": 0}}, mode="frozen",
                          iterations=2)
    config["val_every"] = 2
    Trainer(write_config(tmp_path / "raw8.yaml", config), tmp_path / "run").run()
    rows = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2]  # batches of 2
    # 8-bit images through an 8-bit identity codec: 24 bits a pixel, nothing left to restore
    (val,) = [r for r in rows if r["kind"] == "val"]
    assert val["val_bpp"] == 24.0 and all(r["loss"] == 0.0 for r in rows if r["kind"] == "train")


def test_an_unsafe_pickle_is_refused_without_torchs_hint(tmp_path):
    torch.save({"weights": torch.zeros(2), "opt": _Unsafe()}, tmp_path / "unsafe.pth.tar")
    with pytest.raises(CodecError, match="Python objects other than tensors") as info:
        load_state_dict_file(tmp_path / "unsafe.pth.tar")
    assert "weights_only" not in str(info.value) and "likely succeed" not in str(info.value)


class _Unsafe:
    pass
