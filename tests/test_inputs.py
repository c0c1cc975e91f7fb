"""What may enter the coders and the enhancer: finite frames and weights only (a NaN once
hung CompressAI's rANS coder for good), and ``Enhancer.enhance()``'s accepted frame forms."""

from __future__ import annotations

import argparse
import subprocess
import sys
import warnings

import pytest
import torch
from conftest import REPO

from enhancer.cli import add_signal_arguments, run_cli
from enhancer.codecs import CodecError, load_codec
from enhancer.commands.codec import main as codec_main
from enhancer.data.sequence import as_rgb_frame, open_writer
from enhancer.pipeline import load_enhancer


def _ssf_small() -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        torch.manual_seed(0)
        return load_codec("ssf-small", 1)


# --- 1: nothing non-finite reaches an entropy coder ---------------------------------------
def test_a_nan_pixel_is_refused_before_the_entropy_coder_in_a_fresh_process():
    """The issue's reproduction: this call never returned (rANS loop); run apart so that a
    regression fails here instead of hanging the test run."""
    probe = (
        "import torch, warnings; warnings.simplefilter('ignore')\n"
        "from enhancer.codecs import CodecError, load_codec\n"
        "codec = load_codec('ssf-small', 1)\n"
        "frame = torch.rand(1, 3, 64, 64); frame[0, 0, 0, 0] = float('nan')\n"
        "try:\n    codec.compress(frame)\nexcept CodecError as err:\n    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True,
                          text=True, timeout=120, check=False)
    assert "the frame holds 1 non-finite pixel values (NaN or inf)" in done.stdout, done.stderr


@pytest.mark.parametrize("codec_name", ["ssf-small", "bmshj2018-hyperprior", "x264"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_frames_are_refused_naming_the_frame(codec_name, value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codec = load_codec(codec_name, 1 if codec_name != "x264" else 30)
    good, bad = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    bad[0, 2, 5, 7] = value
    with pytest.raises(CodecError, match="frame 1 holds 1 non-finite pixel values"):
        list(codec.encode_sequence([good, bad, good]))


def test_integer_frames_are_refused_by_the_codecs():
    with pytest.raises(CodecError, match="frame 0 is uint8; codecs take float RGB in"):
        list(load_codec("x264", 30).encode_sequence(
            [torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)]))


def test_non_finite_codec_weights_are_refused_naming_the_parameter(tmp_path, capsys):
    codec = _ssf_small()
    state = codec.model.state_dict()
    state["res_encoder.2.weight"][0, 0, 0, 0] = float("nan")
    checkpoint = tmp_path / "diverged.pth.tar"
    torch.save(state, checkpoint)
    clip = tmp_path / "clip.y4m"
    with open_writer(clip, width=64, height=64, fps=25) as writer:
        writer.write(torch.rand(1, 3, 64, 64))
    output = tmp_path / "clip.bin"
    assert run_cli(codec_main, ["encode", "--codec", "ssf-small", "--quality", "1",
                                "--checkpoint", str(checkpoint), str(clip), str(output)]) == 2
    err = capsys.readouterr().err
    assert "weight 'model.res_encoder.2.weight' holds 1 non-finite values" in err
    assert not output.exists()


def test_weights_that_overflow_are_refused_before_the_entropy_coder():
    codec = _ssf_small()
    with torch.no_grad():  # finite weights whose latent is inf: the 1e30 case of the issue
        for parameter in codec.model.img_encoder.parameters():
            parameter.mul_(1e30)
    with pytest.raises(CodecError, match="intra latent holds non-finite values .* overflow"):
        codec.compress(torch.rand(1, 3, 64, 64))


# --- 2: non-finite enhancer outputs are an error, never a frame ----------------------------
@pytest.fixture(scope="module")
def x264_enhancer():
    return load_enhancer("x264_temporal_tiny")


@pytest.mark.parametrize("damage", ["nan", "1e30"])
def test_a_diverged_enhancer_is_an_error_not_a_frame(x264_enhancer, damage):
    frames = [torch.rand(1, 3, 64, 64) for _ in range(2)]
    saved = {k: v.clone() for k, v in x264_enhancer.diffusion.state_dict().items()}
    try:
        with torch.no_grad():
            for parameter in x264_enhancer.diffusion.parameters():
                if damage == "nan":
                    parameter.fill_(float("nan"))
                else:
                    parameter.mul_(1e30)
        with pytest.raises(ValueError, match="frame 0: the enhancer's residual holds NaN or inf"):
            list(x264_enhancer.enhance(frames, steps=1, residual_scale=1.0))
    finally:
        x264_enhancer.diffusion.load_state_dict(saved)
    assert all(torch.isfinite(out.enhanced).all() for out in
               x264_enhancer.enhance(frames, steps=1, residual_scale=1.0))


# --- 3: Enhancer.enhance() takes one frame form ---------------------------------------------
def test_frames_in_the_accepted_forms_give_the_same_enhancement(x264_enhancer):
    frame = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    as_float = frame.float() / 255

    def enhanced(source):
        return [out.enhanced for out in x264_enhancer.enhance([source], steps=1, seed=3)]

    reference = enhanced(as_float)
    for form in (frame, as_float.double()):  # uint8 is divided by 255; float64 -> float32
        assert torch.equal(enhanced(form)[0], reference[0])
    half = as_float.half()
    assert torch.equal(enhanced(half)[0], enhanced(half.float())[0])


@pytest.mark.parametrize(("frame", "message"), [
    (torch.rand(1, 3, 64, 64) * 255, r"got values in \[.*\]; divide 0..255 values by 255"),
    (torch.rand(1, 3, 64, 64) * 2 - 1, r"got values in \[-"),
    (torch.randint(0, 255, (1, 3, 64, 64)), "got dtype int64"),
    (torch.rand(3, 64, 64), r"got shape \(3, 64, 64\)"),
    (torch.rand(2, 3, 64, 64), r"got shape \(2, 3, 64, 64\)"),
    (torch.full((1, 3, 64, 64), float("nan")), "got 12288 NaN or inf values"),
])
def test_other_frame_forms_are_refused_with_the_expected_form(x264_enhancer, frame, message):
    good = torch.rand(1, 3, 64, 64)
    with pytest.raises(ValueError, match=f"frame 1: expected a float tensor in \\[0, 1\\] .*"
                                         f"{message}"):
        list(x264_enhancer.enhance([good, frame], steps=1))
    with pytest.raises(TypeError, match="got ndarray"):
        as_rgb_frame(good.numpy())


@pytest.mark.parametrize("seed", [2**70, -1, 1.5, True])
def test_seeds_outside_the_generators_range_are_refused(x264_enhancer, seed):
    with pytest.raises(ValueError, match=r"seed must be an integer in 0..2\*\*63-1"):
        x264_enhancer.enhance([torch.rand(1, 3, 64, 64)], seed=seed)
    assert len(list(x264_enhancer.enhance([torch.rand(1, 3, 64, 64)], seed=2**63 - 1))) == 1


# --- 13: weight files that are not what they claim get a reason, not a traceback -----------
def test_codec_weights_without_entropy_tables_load(tmp_path):
    """The tables are rebuilt from the weights: a file without them once raised CompressAI's
    KeyError '..._quantized_cdf'."""
    codec = _ssf_small()
    weights = {k: v for k, v in codec.model.state_dict().items()
               if not k.endswith(codec.ENTROPY_TABLES)}
    torch.save(weights, tmp_path / "no_tables.pth.tar")
    loaded = load_codec("ssf-small", 1, checkpoint=tmp_path / "no_tables.pth.tar")
    frame = torch.rand(1, 3, 64, 64)
    assert codec.compress(frame)[0] == loaded.compress(frame)[0]


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "the file is empty or truncated"),
    (b"root:x:0:0:root:/root:/bin/bash\n", "the file is not a PyTorch checkpoint"),
])
def test_unreadable_weight_files_say_why(tmp_path, content, reason):
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(CodecError, match=f"could not read codec checkpoint .*: {reason}"):
        load_codec("ssf-small", 1, checkpoint=path)
    with pytest.raises(ValueError, match=f"could not read enhancer checkpoint .*: {reason}"):
        load_enhancer(path)


# --- 14: a NaN limit is no limit -------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--max-psnr-drop", "--signal-hysteresis", "--max-flicker-rise"])
@pytest.mark.parametrize("value", ["nan", "-0.1"])
def test_signal_limits_must_be_numbers_at_or_above_zero(capsys, flag, value):
    parser = argparse.ArgumentParser()
    add_signal_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args([flag, value])
    assert f"{flag} must be in [0, inf], got {value}" in capsys.readouterr().err
    assert getattr(parser.parse_args([flag, "0.5"]), flag[2:].replace("-", "_")) == 0.5


def test_the_flicker_bound_can_be_switched_off():
    parser = argparse.ArgumentParser()
    add_signal_arguments(parser)
    assert parser.parse_args([]).max_flicker_rise == 0.0
    assert parser.parse_args(["--max-flicker-rise", "off"]).max_flicker_rise is None


def test_the_dists_check_is_opt_in():
    from enhancer.cli import signal_config

    parser = argparse.ArgumentParser()
    add_signal_arguments(parser)
    assert signal_config(parser.parse_args(["--signal", "lpips"])).keep_dists is False
    assert signal_config(parser.parse_args(["--signal", "lpips", "--keep-dists"])).keep_dists
