"""The parts of the demo and of metric cost: textured crop placement, crop figures with a
zoomed inset and whole labels, variant names for people, metric sets, and the ground
truth's perceptual features computed once per frame."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from enhancer.config import CodecConfig, EnhancerConfig
from enhancer.eval.demo import DEMO
from enhancer.eval.labels import variant_label
from enhancer.eval.plots import inset_origin, read_panels, save_side_by_side
from enhancer.eval.registry import expand_metrics, metric_presets
from enhancer.eval.scoring import FrameScorer
from enhancer.eval.sources import textured_origin
from enhancer.eval.specs import EnhancerSpec
from enhancer.pipeline import Enhancer
from enhancer.pipeline.checkpoint import BUNDLED_DIR


def test_the_textured_crop_lands_on_the_texture():
    generator = torch.Generator().manual_seed(0)
    frame = torch.full((1, 3, 240, 320), 0.5)
    frame[..., 100:164, 200:264] = torch.rand(1, 3, 64, 64, generator=generator)  # the texture
    top, left = textured_origin(frame, (64, 64))
    assert abs(top - 100) <= 8 and abs(left - 200) <= 8
    assert top % 2 == 0 and left % 2 == 0
    assert textured_origin(frame, (240, 320)) == (0, 0)  # a crop of the whole frame


def test_crop_figure_has_whole_labels_and_an_inset_where_the_enhancer_acts(tmp_path):
    generator = torch.Generator().manual_seed(1)
    truth = torch.rand(1, 3, 96, 96, generator=generator)
    decoded = truth.clone()
    enhanced = truth.clone()
    enhanced[..., 60:90, 6:36] = 0.0  # where the enhanced panel differs from the decode
    assert inset_origin([truth, decoded, enhanced], side=32) in {(56 + dy, dx) for dy in
                                                                 range(0, 9, 4) for dx in
                                                                 range(0, 9, 4)}
    long_label = "x264_temporal_tiny + lpips map (1 step, strength 0.5, gamma 0.25)"
    path = save_side_by_side([("ground truth", truth), ("decoded q32", decoded),
                              (long_label, enhanced)], tmp_path / "crop.png", size=96)
    panels = read_panels(path)
    assert [p["label"] for p in panels] == ["ground truth", "decoded q32", long_label]
    inset = panels[2]["inset"]
    assert inset["size"] == 32 * 3 and inset["y"] >= panels[2]["y"] + 96
    with Image.open(path) as image:
        assert image.height == inset["y"] + inset["size"]
        # the long label took several lines: the crops start lower than one line would
        assert panels[0]["y"] > 2 * 15


def test_variants_are_named_for_people():
    torch.manual_seed(0)
    enhancer = Enhancer.from_config(EnhancerConfig(codec=CodecConfig(name="x264", quality=32),
                                                   unet="tiny"))
    plain = EnhancerSpec(enhancer, "x264_temporal_tiny", steps=[1, None])
    labels = [variant_label(plain, sampling) for sampling in plain.variants()]
    assert labels[0] == "x264_temporal_tiny (1 step)"
    assert labels[1] == f"x264_temporal_tiny ({enhancer.sampling.steps} step" + (
        ")" if enhancer.sampling.steps == 1 else "s)")
    tuned = EnhancerSpec(enhancer, "x264_temporal_tiny", steps=[2], residual_scales=[0.5],
                         sampling_overrides={"gamma": 0.25})
    assert variant_label(tuned, tuned.variants()[0]) == (
        "x264_temporal_tiny (2 steps, strength 0.5, gamma 0.25)")


def test_the_demo_spec_shows_a_learned_codec_and_x264_with_bundled_models():
    codecs = {entry.codec: entry for entry in DEMO}
    assert set(codecs) == {"ssf-small", "x264"}
    for entry in DEMO:
        for variant in entry.variants:
            for quality in entry.qualities:
                name = variant.enhancer.replace("{quality}", str(quality))
                assert (BUNDLED_DIR / f"{name}.pt").is_file()


def test_metric_sets():
    METRIC_PRESETS = metric_presets()
    assert expand_metrics(["fast"]) == METRIC_PRESETS["fast"]
    assert "lpips_vgg" not in METRIC_PRESETS["fast"] and "dists" not in METRIC_PRESETS["fast"]
    assert expand_metrics(["full", "fid", "psnr_rgb"])[-1] == "fid"
    assert set(METRIC_PRESETS["full"]) >= {"lpips_vgg", "dists", *METRIC_PRESETS["fast"]}


def test_the_ground_truth_features_are_computed_once_per_frame(monkeypatch):
    scorer = FrameScorer(("lpips_vgg", "dists"), "cpu", log=lambda _: None)
    calls = {name: 0 for name in scorer.models}
    for name, model in scorer.models.items():
        original = model.features

        def counting(image, name=name, original=original):
            calls[name] += 1
            return original(image)

        monkeypatch.setattr(model, "features", counting)
    generator = torch.Generator().manual_seed(2)
    truth = torch.rand(1, 3, 48, 48, generator=generator)
    outputs = [(truth + 0.1 * torch.randn(truth.shape, generator=generator)).clamp(0, 1)
               for _ in range(3)]
    scores = [scorer(output, truth) for output in outputs]
    assert calls == {"lpips_vgg": 4, "dists": 4}  # 3 outputs + the truth once, not 6
    fresh = FrameScorer(("lpips_vgg", "dists"), "cpu", log=lambda _: None)
    monkeypatch.undo()
    for output, score in zip(outputs, scores):
        for name, value in fresh(output, truth.clone()).items():
            assert value == pytest.approx(score[name], rel=1e-5)


def test_every_registered_metric_is_scored_in_its_declared_direction():
    """The registry declares each metric once; the scorer computes every frame metric of
    it, and a noisier output moves each one the way the registry says is worse."""
    from enhancer.eval.registry import METRICS, bd_metrics, names, plots

    frame_metrics = names(("fast", "full"))
    assert set(bd_metrics()) | set(plots()) <= set(frame_metrics)
    scorer = FrameScorer(tuple(m for m in frame_metrics if m != "temporal"), "cpu",
                         log=lambda _: None)
    generator = torch.Generator().manual_seed(4)
    truth = torch.rand(1, 3, 192, 192, generator=generator).mul(0.5).add(0.25)
    noise = torch.randn(truth.shape, generator=generator)
    slight = scorer((truth + 0.02 * noise).clamp(0, 1), truth)
    strong = scorer((truth + 0.2 * noise).clamp(0, 1), truth)
    assert set(slight) == set(frame_metrics) - {"temporal"}
    for name in slight:
        worse = strong[name] > slight[name]
        assert worse == METRICS[name].lower_is_better, name


def test_the_progress_bar_names_each_stage_and_the_report_times_them(tmp_path, monkeypatch):
    from enhancer.data.sequence import open_writer
    from enhancer.eval import runner
    from enhancer.eval.runner import EvalSettings, evaluate_sequences
    from enhancer.eval.sequences import SequenceSpec

    stages = []

    class RecordingBar:
        def __init__(self, *args, **kwargs):
            pass

        def set_description_str(self, text, refresh=True):
            stages.append(text.rsplit(": ", 1)[1])

        def update(self, count):
            stages.append("frame done")

        def close(self):
            pass

    monkeypatch.setattr(runner, "tqdm", RecordingBar)
    clip = tmp_path / "clip.y4m"
    with open_writer(clip, width=64, height=64, fps=25) as writer:
        for _ in range(2):
            writer.write(torch.rand(1, 3, 64, 64))
    torch.manual_seed(0)
    enhancer = Enhancer.from_config(EnhancerConfig(codec=CodecConfig(name="x264", quality=32),
                                                   unet="tiny"))
    spec = EnhancerSpec(enhancer, "tiny", steps=[1])
    settings = EvalSettings(frames=2, intra_period=-1, out_dir=tmp_path / "out",
                            metrics=("psnr_rgb",), write_videos=False)
    report = evaluate_sequences([SequenceSpec("clip", clip)], "x264", [32], spec, settings,
                                log=lambda _: None)
    per_frame = ["coding", "scoring", "enhancing", "scoring", "frame done"]
    assert stages == per_frame * 2
    assert report.timing.frames == 2 and set(report.timing.seconds) == {
        "coding", "enhancing", "scoring"}
    assert all(seconds > 0 for seconds in report.timing.seconds.values())
    assert report.timing.format().startswith("seconds per frame: coding ")
