"""Bad inputs from issue 14: each is refused with one clear error, nothing is destroyed,
nothing half-written is left behind, and no native decoder ever sees damaged bytes."""

from __future__ import annotations

import importlib.util
import os
import signal
import warnings

import numpy as np
import pytest
import torch
from conftest import REPO, SHARED_DATA, requires_shared_data

from enhancer.cli import run_cli
from enhancer.codecs import CodecError, load_codec
from enhancer.codecs.container import Container, decode_container
from enhancer.data.paths import write_atomic
from enhancer.data.sequence import open_sequence, open_writer

CLIP = SHARED_DATA / "video/openh264/CiscoVT2people_160x96_6fps.yuv"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


codec_tool = _tool("codec")


def run_codec(argv: list[str]) -> int:
    return run_cli(codec_tool.main, argv)


def leftovers(folder) -> list[str]:
    """Hidden temporaries (``.x.partial-*``, ``.x.*.tmp``) anywhere below ``folder``."""
    return sorted(str(p) for p in folder.rglob(".*") if "partial" in p.name or p.suffix == ".tmp")


def test_atomic_files_get_the_umask_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.bin", b"x")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o644


# --- 2: an output never overwrites its input ------------------------------------------
@requires_shared_data
def test_encoding_a_file_onto_itself_is_refused(tmp_path, capsys):
    clip = tmp_path / "clip_160x96.yuv"
    clip.write_bytes(CLIP.read_bytes()[: 160 * 96 * 3 // 2 * 2])
    before = clip.read_bytes()
    assert run_codec(["encode", "--codec", "x264", "--quality", "28", str(clip), str(clip)]) == 2
    assert "would destroy the input" in capsys.readouterr().err
    link = tmp_path / "link.bin"
    os.link(clip, link)  # same inode, another name
    assert run_codec(["encode", "--codec", "x264", "--quality", "28", str(clip), str(link)]) == 2
    assert clip.read_bytes() == before
    bitstream = tmp_path / "c.bin"
    assert run_codec(["encode", "--codec", "x264", "--quality", "28", str(clip),
                      str(bitstream)]) == 0
    kept = bitstream.read_bytes()
    assert run_codec(["decode", str(bitstream), str(bitstream)]) == 2
    assert bitstream.read_bytes() == kept


# --- 3: one evaluation per output folder ------------------------------------------------
def test_a_second_evaluation_on_one_out_folder_is_refused(tmp_path):
    import subprocess
    import sys

    from enhancer.eval.results import ResultsStore

    probe = ("import sys; from enhancer.eval.results import ResultsStore\n"
             "try:\n    ResultsStore(sys.argv[1])\nexcept ValueError as err:\n"
             "    print(err); sys.exit(3)\n")

    def other_process() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", probe, str(tmp_path / "out")], cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    store = ResultsStore(tmp_path / "out")
    again = ResultsStore(tmp_path / "out")  # the same process may open it again
    busy = other_process()
    assert busy.returncode == 3 and "in use by another evaluation" in busy.stdout
    again.close()
    assert other_process().returncode == 3  # still held by `store`
    store.close()
    assert other_process().returncode == 0


def test_results_json_without_the_expected_keys_is_refused(tmp_path):
    from enhancer.eval.results import ResultsStore

    (tmp_path / "results.json").write_text('{"rows": [{"sequence": "a"}]}')
    with pytest.raises(ValueError, match="row 0 is not a result row"):
        ResultsStore(tmp_path)


# --- 4 and 9: no partial output on SIGTERM or a failed rename -----------------------------
@pytest.mark.parametrize("name", ["o.y4m", "frames"])
def test_sigterm_aborts_the_open_writer(tmp_path, capsys, name):
    def main(argv):
        with open_writer(tmp_path / name, width=16, height=16) as writer:
            writer.write(torch.rand(1, 3, 16, 16))
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler raises at the next bytecode
                writer.write(torch.rand(1, 3, 16, 16))
        return 0

    before = signal.getsignal(signal.SIGTERM)
    assert run_cli(main, []) == 128 + signal.SIGTERM
    assert "terminated" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before


@requires_shared_data
def test_decoding_into_a_folder_named_like_a_file(tmp_path, capsys):
    bitstream = tmp_path / "c.bin"
    assert run_codec(["encode", "--codec", "x264", "--quality", "40", "--frames", "1",
                      str(CLIP), str(bitstream)]) == 0
    (tmp_path / "d.y4m").mkdir()
    assert run_codec(["decode", str(bitstream), str(tmp_path / "d.y4m")]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert leftovers(tmp_path) == [] and list((tmp_path / "d.y4m").iterdir()) == []
    # A folder appearing while the writer is open: the rename fails, the temporary goes.
    target = tmp_path / "late.y4m"
    with pytest.raises(OSError, match="could not write"):
        with open_writer(target, width=16, height=16) as writer:
            writer.write(torch.rand(1, 3, 16, 16))
            target.mkdir()
            (target / "x").write_text("x")
    assert leftovers(tmp_path) == []
    # A .bin output that is a folder, and a non-empty PNG folder, are refused before coding.
    assert run_codec(["encode", "--codec", "x264", "--quality", "40", "--frames", "1",
                      str(CLIP), str(tmp_path)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert run_codec(["decode", str(bitstream), str(tmp_path / "d.y4m")]) == 2
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "keep.txt").write_text("x")
    assert run_codec(["decode", str(bitstream), str(tmp_path / "frames")]) == 2
    assert "not an empty folder" in capsys.readouterr().err


# --- 6 and 11: the right weights for the quality ----------------------------------------
@requires_shared_data
def test_a_checkpoint_of_another_quality_is_refused(tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        codec = load_codec("bmshj2018-hyperprior", 1)
    weights = tmp_path / "bmshj2018-hyperprior-1-7eb97409.pth.tar"
    torch.save(codec.model.state_dict(), weights)  # q1 and q2 have the same shapes
    argv = ["encode", "--codec", "bmshj2018-hyperprior", "--quality", "2", "--frames", "1",
            "--checkpoint", str(weights), str(CLIP), str(tmp_path / "o.bin")]
    assert run_codec(argv) == 2
    assert "is a quality 1 file, but --quality is 2" in capsys.readouterr().err
    assert not (tmp_path / "o.bin").exists()
    # Our own codec files (a training run's codec.pth.tar) record their codec and quality.
    from enhancer.pipeline.codec_files import write_codec_sidecar

    ours = tmp_path / "run" / "codec.pth.tar"
    ours.parent.mkdir()
    torch.save(codec.model.state_dict(), ours)
    write_codec_sidecar(ours, codec)
    argv[argv.index(str(weights))] = str(ours)
    assert run_codec(argv) == 2
    assert "holds bmshj2018-hyperprior q1 weights" in capsys.readouterr().err
    argv[argv.index("2")] = "1"
    assert run_codec(argv) == 0


@requires_shared_data
def test_ssf_small_encodes_with_a_bundled_enhancers_codec(tmp_path, capsys):
    bitstream = tmp_path / "s.bin"
    assert run_codec(["encode", "--codec", "ssf-small", "--quality", "1", "--frames", "2",
                      "--checkpoint", "ssf_small_q1", str(CLIP), str(bitstream)]) == 0
    assert run_codec(["decode", "--checkpoint", "ssf_small_q1", str(bitstream),
                      str(tmp_path / "d.y4m")]) == 0
    with open_sequence(tmp_path / "d.y4m") as reader:
        assert reader.info.num_frames == 2
    capsys.readouterr()
    assert run_codec(["encode", "--codec", "ssf-small", "--quality", "2", "--frames", "1",
                      "--checkpoint", "ssf_small_q1", str(CLIP), str(tmp_path / "t.bin")]) == 2
    assert "holds a ssf-small q1 codec, not ssf-small q2" in capsys.readouterr().err
    # names are names: a path-like name does not reach outside enhancer/weights
    assert run_codec(["encode", "--codec", "ssf-small", "--quality", "1", "--frames", "1",
                      "--checkpoint", "../weights/ssf_small_q1", str(CLIP),
                      str(tmp_path / "u.bin")]) == 2
    assert "does not exist" in capsys.readouterr().err
    # codecs without weights refuse a checkpoint, as load_codec does
    assert run_codec(["encode", "--codec", "x264", "--quality", "30", "--checkpoint", "w.pt",
                      str(CLIP), str(tmp_path / "v.bin")]) == 2
    assert "has no weights; drop --checkpoint" in capsys.readouterr().err


def test_an_unsafe_pickle_is_refused_without_torchs_hint(tmp_path):
    from enhancer.codecs.compressai_codecs import load_state_dict_file

    torch.save({"weights": torch.zeros(2), "opt": _Unsafe()}, tmp_path / "unsafe.pth.tar")
    with pytest.raises(CodecError, match="Python objects other than tensors") as info:
        load_state_dict_file(tmp_path / "unsafe.pth.tar")
    assert "weights_only" not in str(info.value) and "likely succeed" not in str(info.value)


class _Unsafe:
    pass


# --- 7 and 8: image depth and odd sizes -------------------------------------------------
def test_16_bit_grey_pngs_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from enhancer.data.images import read_image

    ramp = np.linspace(0, 65535, 64 * 32).reshape(32, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    rgb = read_image(tmp_path / "g16.png")
    expected = np.round(ramp / 65535 * 255).astype(np.uint8)
    assert rgb.dtype == np.uint8 and np.array_equal(rgb[..., 1], expected)
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="junk.png is not a readable image"):
        read_image(tmp_path / "junk.png")


@requires_shared_data
def test_odd_sized_frames_decode_to_png(tmp_path, capsys):
    from PIL import Image

    frames = tmp_path / "odd"
    frames.mkdir()
    for index in range(2):
        rgb = (np.random.default_rng(index).random((95, 161, 3)) * 255).astype(np.uint8)
        Image.fromarray(rgb).save(frames / f"im{index + 1:05d}.png")
    bitstream = tmp_path / "odd.bin"
    assert run_codec(["encode", "--codec", "bmshj2018-hyperprior", "--quality", "1",
                      "--checkpoint", "random", str(frames), str(bitstream)]) == 0
    assert run_codec(["decode", "--checkpoint", "random", str(bitstream),
                      str(tmp_path / "o.y4m")]) == 2
    assert "write a folder of PNG frames" in capsys.readouterr().err
    assert run_codec(["decode", "--checkpoint", "random", str(bitstream),
                      str(tmp_path / "decoded")]) == 0
    with open_sequence(tmp_path / "decoded") as reader:
        assert (reader.info.width, reader.info.height, reader.info.num_frames) == (161, 95, 2)


# --- 10: training settings ----------------------------------------------------------------
def test_training_settings_are_parsed_as_numbers_and_range_checked(tmp_path):
    from enhancer.config import ConfigError
    from enhancer.train.config import load_train_config

    config = REPO / "configs/video/x264_frozen_tiny.yaml"
    assert load_train_config(config, ["lr=1e-4"]).lr == 1e-4
    for override, message in (("lr=-1", "lr must be > 0"), ("ema_decay=1", r"ema_decay"),
                              ("data.crop_size=12", "at least 32 and a multiple of 8"),
                              ("data.crop_size=7", "use e.g. 32"),
                              ("lr=[1", "not valid YAML")):
        with pytest.raises(ConfigError, match=message):
            load_train_config(config, [override])
    broken = tmp_path / "broken.yaml"
    broken.write_text("steps: [1\n")
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_train_config(broken)


def test_resume_drops_log_rows_after_the_checkpoint(tmp_path):
    from enhancer.train.trainer import RunLog

    log = RunLog(tmp_path)
    for step in (10, 20, 30):
        log.write({"kind": "train", "step": step, "loss": 1.0})
    RunLog(tmp_path, step=20)  # resumed from the step-20 checkpoint
    steps = [json_row["step"] for json_row in map(_json, (tmp_path / "log.jsonl").open())]
    assert steps == [10, 20]
    csv_lines = (tmp_path / "log.csv").read_text().splitlines()
    assert [line.split(",")[1] for line in csv_lines[1:]] == ["10", "20"]


def _json(line: str) -> dict:
    import json

    return json.loads(line)


# --- weak groups: clear messages ---------------------------------------------------------
@pytest.mark.parametrize("header, message", [
    (b"YUV4MPEG2 Wabc H96 F30:1", "Wabc is not a whole number"),
    (b"YUV4MPEG2 W160 H96 F30", "frame rate F30 is invalid"),
    (b"YUV4MPEG2 W160 H96 F0:1", "frame rate F0:1 is invalid"),
    (b"YUV4MPEG2 W160 H96 F-30:1", "frame rate F-30:1 is invalid"),
])
def test_bad_y4m_headers(tmp_path, header, message):
    path = tmp_path / "bad.y4m"
    path.write_bytes(header + b"\nFRAME\n" + bytes(160 * 96 * 3 // 2))
    with pytest.raises(ValueError, match=message):
        open_sequence(path)


def test_unclear_input_errors_are_clear(tmp_path, capsys):
    tiny = tmp_path / "tiny_1x1.yuv"
    tiny.write_bytes(b"\0\0")
    with pytest.raises(ValueError, match="even width and height, got 1x1"):
        open_sequence(tiny)
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\0" * 64)
    with pytest.raises(ValueError, match="junk.mp4 is not a readable video"):
        open_sequence(junk)
    for frames in ("0", "-3"):
        assert run_codec(["encode", "--codec", "x264", "--quality", "30", "--frames", frames,
                          str(tiny), str(tmp_path / "o.bin")]) == 2
        assert "frames must be at least 1" in capsys.readouterr().err
    short = tmp_path / "short.bin"
    short.write_bytes(b"ENHC\x02")
    assert run_codec(["decode", str(short), str(tmp_path / "o.y4m")]) == 2
    assert "truncated inside its header" in capsys.readouterr().err


def test_bad_x264_fingerprint_message():
    container = Container("x264", 30, 160, 96, intra_period=-1, weights_fingerprint=b"\1" * 8,
                          frames=[b"x"])
    with pytest.raises(CodecError, match="but x264 has none"):
        next(decode_container(load_codec("x264", 30), container))


@requires_shared_data
def test_eval_inputs_are_checked(tmp_path, capsys):
    import argparse
    import json

    from enhancer.cli import parse_size
    from enhancer.eval.sequences import find_sequences, load_sequence_list

    with pytest.raises(argparse.ArgumentTypeError, match="positive"):
        parse_size("0x0")
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps({"sequences": [{"path": str(CLIP), "frames": "two"}]}))
    with pytest.raises(ValueError, match="'frames' must be a positive whole number, got 'two'"):
        load_sequence_list(listing)
    root = tmp_path / "root"
    root.mkdir()
    (root / "clip_160x96.yuv").write_bytes(CLIP.read_bytes()[: 160 * 96 * 3 // 2])
    (root / "notes.txt").write_text("x")
    skipped = []
    assert [s.name for s in find_sequences(root, log=skipped.append)] == ["clip"]
    assert skipped == [f"skip {root / 'notes.txt'}: unknown extension .txt"]
    eval_uvg = _tool("eval_uvg")
    assert run_cli(eval_uvg.main, ["--root", str(root), "--out", str(root), "--codec", "x264",
                                   "--quality", "40"]) == 2
    assert "is the --root folder" in capsys.readouterr().err


def test_an_unwritable_output_is_refused_before_any_work(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PermissionError, match=r"cannot write .*o\.y4m: .*file is not a writable"):
        open_writer(tmp_path / "file" / "o.y4m", width=16, height=16)
    assert run_codec(["encode", "--codec", "x264", "--quality", "30", str(CLIP),
                      str(tmp_path / "file" / "o.bin")]) == 2
    assert "is not a writable folder" in capsys.readouterr().err
