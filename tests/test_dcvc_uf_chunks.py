"""DCVC-UF's chunk variants reach the enhancer: a ``.bin`` enhanced frame by frame and the
evaluation coding chunk by chunk, on random weights in the official layout (needs the
submodule and DCVC-RT's coder; skips without them, as tests/test_dcvc_rt_uf.py)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image
from test_dcvc_rt_uf import QUALITY, _tame, clip, needs

from enhancer.codecs import dcvc_uf
from enhancer.codecs.container import Container, weights_fingerprint
from enhancer.codecs.dcvc_adapter import CODER_IDS
from enhancer.codecs.dcvc_common import UF
from enhancer.codecs.stream import encode_frames
from enhancer.config import CodecConfig, EnhancerConfig
from enhancer.eval.runner import EvalSettings, evaluate_sequences
from enhancer.eval.sequences import find_sequences
from enhancer.eval.sources import FrameSource
from enhancer.eval.specs import EnhancerSpec
from enhancer.pipeline import Enhancer
from enhancer.pipeline import enhancer as enhancer_module
from enhancer.pipeline.rollout import Rollout
from enhancer.utils.rate import bpp_from_bytes

NAME = "dcvc-uf-hts"
HEIGHT, WIDTH = 48, 64  # pads to 64x64
FRAMES = 11  # I, a chunk of 8, a short chunk of 2 (padded by DCVC's rule)

pytestmark = [*needs("dcvc-uf").marks, pytest.mark.filterwarnings("ignore::UserWarning")]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Random hts weights in the official files, an untrained tiny enhancer on them, a clip."""
    folder = tmp_path_factory.mktemp("dcvc_uf_hts")
    torch.manual_seed(0)
    image = UF.module("models.image_model").DMCI()
    structure = UF.module("utils.common").ModelStructure("hts")
    video = UF.module("models.video_model_ht").DMC(model_structure=structure)
    _tame(image, 2.35)
    _tame(video, 2.5)
    torch.save(image.state_dict(), folder / dcvc_uf.IMAGE_CHECKPOINT)
    torch.save(video.state_dict(), folder / dcvc_uf.VIDEO_CHECKPOINTS["hts"])
    config = EnhancerConfig(codec=CodecConfig(name=NAME, quality=QUALITY,
                                              checkpoint=str(folder)), unet="tiny")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        enhancer = Enhancer.from_config(config)
    frames = [frame[..., :HEIGHT, :WIDTH].contiguous() for frame in clip(FRAMES)]
    return {"folder": folder, "enhancer": enhancer, "frames": frames}


def record_latents(monkeypatch) -> list[torch.Tensor]:
    """The latents the roll-out is handed, in the order it is handed them."""
    seen: list[torch.Tensor] = []
    original = Rollout.enhance

    def enhance(self, decoded, latent, *args, **kwargs):
        seen.append(latent)
        return original(self, decoded, latent, *args, **kwargs)

    monkeypatch.setattr(enhancer_module.Rollout, "enhance", enhance)
    return seen


def test_encode_frames_pairs_each_source_frame_with_its_record(setup):
    codec = setup["enhancer"].codec
    coded = list(encode_frames(codec, iter(setup["frames"]), intra_period=-1))
    continuation = bytes([CODER_IDS[NAME]])
    assert [c.frame is f for c, f in zip(coded, setup["frames"])] == [True] * FRAMES
    assert [i for i, c in enumerate(coded) if c.data != continuation] == [0, 1, 9]
    assert all(c.seconds >= 0 for c in coded)
    records = [data for data, _ in codec.encode_sequence(setup["frames"], -1)]
    assert records == [c.data for c in coded]  # the same bytes as the tools write


def test_a_bin_of_a_chunk_codec_is_enhanced_frame_by_frame(setup, tmp_path: Path,
                                                           monkeypatch):
    """Decoded frames and their latents reach the roll-out one by one, in display order, and
    the enhanced frames equal a roll-out over the encoder's own decodes."""
    enhancer = setup["enhancer"]
    codec = enhancer.codec
    coded = list(encode_frames(codec, setup["frames"], intra_period=-1))
    container = Container(codec=NAME, quality=QUALITY, width=WIDTH, height=HEIGHT,
                          intra_period=-1, weights_fingerprint=weights_fingerprint(codec),
                          frames=[c.data for c in coded],
                          padded_sizes=[codec.padded_size((HEIGHT, WIDTH))] * FRAMES)
    path = tmp_path / "clip.bin"
    container.save(path)
    seen = record_latents(monkeypatch)
    result = list(enhancer.enhance(str(path), steps=1, seed=3))
    assert [frame.index for frame in result] == list(range(FRAMES))
    assert [frame.num_bytes for frame in result] == [len(c.data) for c in coded]
    assert len(seen) == FRAMES
    for frame, latent, expected in zip(result, seen, coded):
        assert torch.equal(frame.decoded, expected.out.decoded)
        assert torch.equal(latent, expected.out.latent)
    assert seen[1] is seen[8] and not torch.equal(seen[8], seen[9])  # one latent per chunk
    monkeypatch.undo()
    rollout = Rollout(enhancer, enhancer.sampling.override(steps=1), 3, quality=QUALITY)
    for frame, expected in zip(result, coded):
        assert torch.equal(frame.enhanced, rollout.enhance(expected.out.decoded,
                                                           expected.out.latent))


def test_evaluation_codes_chunk_by_chunk_and_counts_the_real_bytes(setup, tmp_path: Path):
    root = tmp_path / "root"
    (root / "Clip").mkdir(parents=True)
    for index, frame in enumerate(setup["frames"]):
        pixels = (frame[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
        Image.fromarray(pixels).save(root / "Clip" / f"{index:03d}.png")
    sequences = find_sequences(root)
    enhancer = setup["enhancer"]
    settings = EvalSettings(frames=FRAMES, intra_period=-1, steps=(1,), out_dir=tmp_path / "out",
                            metrics=("psnr_rgb",), write_videos=False, quiet=True)
    report = evaluate_sequences(sequences, NAME, [QUALITY],
                                EnhancerSpec(enhancer, "random", untrained=True), settings,
                                log=lambda _: None)
    assert not report.errors, report.errors
    rows = {row["variant"]: row for row in report.rows}
    assert set(rows) == {"decoded", "enhanced"} and rows["decoded"]["frames"] == FRAMES
    with FrameSource(sequences[0]) as source:  # what the evaluation read
        truths = list(source.frames(FRAMES))
    coded = list(encode_frames(enhancer.codec, truths, intra_period=-1))
    total = sum(len(c.data) for c in coded)  # the chunk records and 1-byte continuations
    assert rows["decoded"]["bpp"] == pytest.approx(
        bpp_from_bytes(total, HEIGHT, WIDTH, FRAMES), abs=1e-5)  # rows keep 6 decimals
    assert rows["enhanced"]["bpp"] == rows["decoded"]["bpp"]
    mse = torch.stack([torch.mean((c.out.decoded - t) ** 2) for c, t in zip(coded, truths)])
    psnr = (10 * torch.log10(1 / mse)).mean().item()
    assert rows["decoded"]["psnr_rgb"] == pytest.approx(psnr, abs=1e-3)
    assert rows["enhanced"]["psnr_rgb"] > 0
