"""Configs as small override files: ``base:`` chains merge, cycles fail, the resolved
config prints, and every shipped config resolves."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from enhancer.config import ConfigError, from_dict, resolve_yaml
from enhancer.pipeline import read_checkpoint
from enhancer.pipeline.checkpoint import BUNDLED_DIR
from enhancer.train import TrainConfig, load_train_config
from enhancer.train.config import SECTIONS


def test_base_files_merge_section_by_section(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(
        {"model": {"codec": {"name": "x264", "quality": 32}, "unet": "tiny"},
         "data": {"train": ["a.mp4", "b.mp4"], "crop_size": 64}, "steps": 10}))
    (tmp_path / "mid.yaml").write_text("base: base.yaml\ndata: {crop_size: 128}\n")
    (tmp_path / "top.yaml").write_text("base: mid.yaml\nmodel: {codec: {quality: 36}}\n"
                                       "data: {train: [c.mp4]}\n")
    values = resolve_yaml(tmp_path / "top.yaml")
    assert values["model"] == {"codec": {"name": "x264", "quality": 36}, "unet": "tiny"}
    assert values["data"] == {"train": ["c.mp4"], "crop_size": 128}  # lists replace
    assert values["steps"] == 10 and "base" not in values
    (tmp_path / "loop.yaml").write_text("base: loop.yaml\n")
    with pytest.raises(ConfigError, match="names itself as a base"):
        resolve_yaml(tmp_path / "loop.yaml")
    (tmp_path / "clips.yaml").write_text("data: {train: [d.mp4, e.mp4]}\n")
    (tmp_path / "two.yaml").write_text("base: [top.yaml, clips.yaml]\ndata: {crop_size: 96}\n")
    values = resolve_yaml(tmp_path / "two.yaml")  # later bases win, then the file itself
    assert values["data"] == {"train": ["d.mp4", "e.mp4"], "crop_size": 96}
    assert values["model"]["codec"]["quality"] == 36 and values["steps"] == 10
    (tmp_path / "bad.yaml").write_text("base: [top.yaml, 3]\n")
    with pytest.raises(ConfigError, match="base must be a file name or a list"):
        resolve_yaml(tmp_path / "bad.yaml")
    (tmp_path / "missing.yaml").write_text("base: nowhere.yaml\n")
    with pytest.raises(ConfigError, match="nowhere.yaml.* does not exist"):
        resolve_yaml(tmp_path / "missing.yaml")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*/*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_resolves(path: Path):
    config = load_train_config(path)
    assert (config.data.train or config.data.pack) and config.iterations >= 1


def test_bundled_configs_share_one_training_clip_list():
    """The x264 enhancer and the ssf-small codec train on the same 25 clips, read from one
    file (configs/video/clips/train_25.yaml), not two copies kept equal by hand."""
    video = REPO / "configs" / "video"
    clips = resolve_yaml(video / "clips" / "train_25.yaml")["data"]["train"]
    assert len(clips) == len(set(clips)) == 25
    for name in ("bundled_x264_frozen.yaml", "bundled_ssf_small_codec_continue.yaml",
                 "bundled_ssf_small_student.yaml"):
        assert load_train_config(video / name).data.train == clips, name
        assert "  - ../shared/data/video/" not in (video / name).read_text(), name


def test_print_config_shows_the_resolved_file(capsys):
    spec = importlib.util.spec_from_file_location("train_tool", REPO / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    tiny = REPO / "configs" / "video" / "ssf_frozen_tiny.yaml"
    assert "base:" in tiny.read_text()
    assert module.main([str(tiny), "--print-config", "--set", "iterations=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["iterations"] == 7 and printed["model"]["unet"] == "tiny"
    assert printed["model"]["codec"]["name"] == "ssf" and "base" not in printed


def test_old_key_names_still_read(tmp_path):
    """Files written before the renames (steps -> iterations, residual_scale_factor ->
    residual_gain) load with the new names."""
    shipped = REPO / "configs" / "video" / "x264_frozen_tiny.yaml"
    old = yaml.safe_load(yaml.safe_dump(resolve_yaml(shipped)))
    old["steps"] = old.pop("iterations")
    old["model"]["diffusion"]["residual_scale_factor"] = old["model"]["diffusion"].pop("residual_gain")
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    config = load_train_config(tmp_path / "old.yaml")
    assert config == load_train_config(shipped)


def test_a_key_given_twice_is_refused(tmp_path):
    """PyYAML keeps the last of two equal keys; a config that says two things is an error."""
    path = tmp_path / "twice.yaml"
    path.write_text("iterations: 10\ndata:\n  batch_size: 2\n  crop: 64\n  batch_size: 8\n")
    with pytest.raises(ConfigError, match=r"twice.yaml is not valid YAML: key 'batch_size' is "
                                          r"given twice \(lines 3 and 5\)"):
        resolve_yaml(path)
    path.write_text("defaults: &d {batch_size: 2}\ndata:\n  <<: *d\n  batch_size: 8\n")
    assert resolve_yaml(path)["data"] == {"batch_size": 8}  # a merge key may be overridden


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*/*.yaml")),
                         ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_shipped_config_also_loads_in_the_flat_layout(path: Path, tmp_path):
    """Files (and checkpoints) from before the sections name ``rho``, ``lr``, ``val_every``
    ... at the top; they read as the same config."""
    values = resolve_yaml(path)
    for section in SECTIONS:
        values |= values.pop(section, {})
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(values))
    assert load_train_config(tmp_path / "flat.yaml") == load_train_config(path)


def test_a_flat_override_sets_the_sections_key():
    """``--set rho=0.5`` (the flat name) and ``--set loss.rho=0.5`` are one setting; the
    last given wins."""
    path = REPO / "configs" / "video" / "x264_full_strength.yaml"
    assert "  rho: 0.9" in path.read_text()
    assert load_train_config(path, ["rho=0.5"]).loss.rho == 0.5
    assert load_train_config(path, ["rho=0.5", "loss.rho=0.7"]).loss.rho == 0.7
    assert load_train_config(path, ["loss.rho=0.7", "rho=0.5"]).loss.rho == 0.5
    assert load_train_config(path, ["val_every=7", "lr=0.01"]).logging.val_every == 7
    with pytest.raises(ConfigError, match="loss.rho must be in"):
        load_train_config(path, ["rho=2"])


def test_every_bundled_models_training_config_loads():
    layouts = set()
    for path in sorted(BUNDLED_DIR.glob("*.pt")):
        stored = read_checkpoint(path)["train_config"]
        sectioned = "loss" in stored  # else the flat layout of files written before sections
        layouts.add(sectioned)
        config = from_dict(TrainConfig, stored, where=path.name)
        rho = stored["loss"]["rho"] if sectioned else stored["rho"]
        lr = stored["optim"]["lr"] if sectioned else stored["lr"]
        assert config.loss.rho == rho and config.optim.lr == lr
    assert layouts == {False, True}  # both layouts are bundled, and both load
