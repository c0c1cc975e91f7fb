"""What an evaluation does with frames too small for a metric (null with the reason in the
row), a diverged enhancer (an error, never a video) and a full disk (the run stops; no
sequence is blamed)."""

from __future__ import annotations

import errno
import warnings

import pytest
import torch

from enhancer.codecs.container import weights_fingerprint
from enhancer.config import CodecConfig, EnhancerConfig
from enhancer.data.sequence import open_writer
from enhancer.eval.runner import EvalSettings, _codecs, _Unit, evaluate_sequences
from enhancer.eval.sequences import SequenceSpec
from enhancer.eval.specs import load_enhancer_spec
from enhancer.metrics import get_lpips_model
from enhancer.pipeline import Enhancer, save_enhancer


def _clip(folder, name: str, width: int, height: int, frames: int = 2) -> SequenceSpec:
    path = folder / f"{name}.y4m"
    with open_writer(path, width=width, height=height, fps=25) as writer:
        for _ in range(frames):
            writer.write(torch.rand(1, 3, height, width))
    return SequenceSpec(name, path)


def _settings(out, **changes) -> EvalSettings:
    values = {"frames": 2, "intra_period": -1, "out_dir": out, "quiet": True,
              "metrics": ("psnr_rgb", "ssim", "lpips_alex", "lpips_vgg", "ms_ssim")}
    return EvalSettings(**{**values, **changes})


def test_frames_too_small_for_a_metric_get_null_and_the_reason(tmp_path):
    """16x16 frames once ended in torch's "Output size is too small" (an error row)."""
    sequences = [_clip(tmp_path, "Tiny", 16, 16), _clip(tmp_path, "Dot", 2, 2)]
    report = evaluate_sequences(sequences, "x264", [35], None, _settings(tmp_path / "out"),
                                log=lambda _: None)
    rows = {row["sequence"]: row for row in report.rows}
    assert not report.errors and {r["variant"] for r in report.rows} == {"decoded"}
    tiny, dot = rows["Tiny"], rows["Dot"]
    assert tiny["psnr_rgb"] is not None and tiny["ssim"] is not None
    assert tiny["lpips_vgg"] is not None  # VGG takes 16 px; AlexNet needs 31
    assert tiny["lpips_alex"] is None and tiny["ms_ssim"] is None
    assert tiny["notes"] == ("lpips_alex null: 16x16 frames are below the 31 px a side it "
                             "needs; ms_ssim null: 16x16 frames are below the 161 px a side "
                             "it needs")
    assert dot["psnr_rgb"] is not None and dot["ssim"] is None
    assert "ssim null: 2x2 frames are below the 11 px" in dot["notes"]
    # Called directly, the metric says what it needs instead of torch's pooling error.
    with pytest.raises(ValueError, match="LPIPS-alex needs images of at least 31 px per side, "
                                         "got 16x16"):
        get_lpips_model("alex")(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))


def _nan_enhancer(path):
    config = EnhancerConfig(codec=CodecConfig(name="x264", quality=35), unet="tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enhancer = Enhancer.from_config(config)
    with torch.no_grad():
        for parameter in enhancer.diffusion.parameters():
            parameter.fill_(float("nan"))
    return enhancer


def test_a_diverged_enhancer_gives_an_error_row_and_no_video(tmp_path):
    """NaN weights once scored '-' and wrote an MP4 of NaN cast to uint8, exit 0."""
    out = tmp_path / "out"
    report = evaluate_sequences([_clip(tmp_path, "Clip", 64, 64)], "x264", [35],
                                _nan_enhancer(tmp_path), _settings(out, metrics=("psnr_rgb",)),
                                log=lambda _: None)
    assert report.exit_code == 1
    (error,) = [row["error"] for row in report.rows if row["variant"] == "error"]
    assert "frame 0: the enhancer's residual holds NaN or inf values" in error
    assert not list(out.rglob("*.mp4")) and not list(out.rglob(".*partial*"))


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EFBIG])
def test_a_full_disk_stops_the_evaluation_instead_of_failing_a_sequence(tmp_path, monkeypatch,
                                                                        code):
    def full(self, log):
        raise OSError(code, f"could not write {self.out_dir / 'videos' / 'x.mp4'}: full")

    monkeypatch.setattr(_Unit, "run", full)
    out = tmp_path / "out"
    with pytest.raises(OSError, match=r"could not write .*x.mp4: full"):
        evaluate_sequences([_clip(tmp_path, "Clip", 16, 16)], "x264", [35], None,
                           _settings(out, metrics=("psnr_rgb",)), log=lambda _: None)
    assert not (out / "errors.log").exists()


# --- 13: file names that once gave misleading errors ---------------------------------------
def test_a_literal_quality_in_a_file_name_loads_that_file(tmp_path):
    config = EnhancerConfig(codec=CodecConfig(name="bmshj2018-hyperprior", quality=1),
                            unet="tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enhancer = Enhancer.from_config(config)
    enhancer_path = tmp_path / "enhancer_{quality}.pt"  # the name holds "{quality}" itself
    save_enhancer(enhancer_path, enhancer)
    spec = load_enhancer_spec(enhancer_path, None, [None], [None], qualities=[1])
    assert weights_fingerprint(spec.enhancer.codec) == weights_fingerprint(enhancer.codec)
    codec_path = tmp_path / "codec_{quality}.pth.tar"
    torch.save(enhancer.codec.model.state_dict(), codec_path)
    codecs = _codecs("bmshj2018-hyperprior", [1], str(codec_path), [], "cpu", log=lambda _: None)
    assert weights_fingerprint(codecs[1]) == weights_fingerprint(enhancer.codec)
    # A template is still filled in when no file has the literal name.
    torch.save(enhancer.codec.model.state_dict(), tmp_path / "other_1.pth.tar")
    codecs = _codecs("bmshj2018-hyperprior", [1], str(tmp_path / "other_{quality}.pth.tar"), [],
                     "cpu", log=lambda _: None)
    assert weights_fingerprint(codecs[1]) == weights_fingerprint(enhancer.codec)


def test_a_text_file_as_enhancer_says_it_is_not_a_checkpoint(tmp_path):
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")  # was "list index out of range"
    with pytest.raises(ValueError, match="not a PyTorch checkpoint"):
        load_enhancer_spec(text, None, [None], [None])


# --- 14: what a refused or killed run leaves behind ----------------------------------------
def test_a_refused_evaluation_leaves_no_empty_out_folder(tmp_path):
    out = tmp_path / "new" / "out"
    with pytest.raises(ValueError, match="no quality 99"):
        evaluate_sequences([_clip(tmp_path, "Clip", 16, 16)], "x264", [99], None,
                           _settings(out), log=lambda _: None)
    assert not (tmp_path / "new").exists()


def test_a_resumed_evaluation_removes_what_a_killed_one_left(tmp_path):
    out = tmp_path / "out"
    (out / "videos" / ".Clip_x264.mp4.partial-0123abcd").mkdir(parents=True)
    stale = [out / ".results.json.k3j_9x2a.tmp", out / "videos" / ".a.mp4.partial-89abcdef",
             out / "videos" / ".Clip_x264.mp4.partial-0123abcd" / "im00001.png"]
    for path in stale:
        path.write_bytes(b"half")
    kept = out / ".notes.tmp"  # hidden, but no name our writers give
    kept.write_bytes(b"mine")
    evaluate_sequences([_clip(tmp_path, "Clip", 16, 16)], "x264", [35], None,
                       _settings(out, metrics=("psnr_rgb",)), log=lambda _: None)
    assert not any(path.exists() for path in stale)
    assert not (out / "videos" / ".Clip_x264.mp4.partial-0123abcd").exists()
    assert kept.read_bytes() == b"mine"
