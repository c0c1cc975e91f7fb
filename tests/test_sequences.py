"""Sequence lists: DCVC's own test_cfg files are read as they are, and a sequence name shared by
two DCVC classes (RaceHorses in HEVC_C and HEVC_D) keeps both sequences apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from enhancer.codecs.dcvc_common import dcvc_root
from enhancer.eval.sequences import load_sequence_list, select_sequences

DCVC = dcvc_root()
# the layouts of the generations the adapters serve: DCVC-UF's (the checkout's top level),
# DCVC-RT's and DCVC-FM's
DCVC_LISTS = sorted([*DCVC.glob("test_cfg/*.json"),
                     *DCVC.glob("DCVC-family/DCVC-RT/dataset_config_example*.json"),
                     *DCVC.glob("DCVC-family/DCVC-FM/dataset_config_example*.json")])


def two_classes(tmp_path: Path) -> Path:
    listing = {"root_path": "/data", "test_classes": {
        "HEVC_C": {"test": 1, "base_path": "HEVC_C", "src_type": "yuv420", "sequences": {
            "RaceHorses_832x480_30.yuv": {"width": 832, "height": 480, "frames": 96},
            "BQMall_832x480_60.yuv": {"width": 832, "height": 480, "frames": 96}}},
        "HEVC_D": {"test": 1, "base_path": "HEVC_D", "src_type": "yuv420", "sequences": {
            "RaceHorses_416x240_30.yuv": {"width": 416, "height": 240, "frames": 96}}}}}
    path = tmp_path / "list.json"
    path.write_text(json.dumps(listing))
    return path


def test_a_name_shared_by_two_classes_names_each_by_its_class(tmp_path: Path):
    sequences = load_sequence_list(two_classes(tmp_path))
    by_name = {s.name: s for s in sequences}
    assert set(by_name) == {"HEVC_C/RaceHorses", "BQMall", "HEVC_D/RaceHorses"}
    assert by_name["HEVC_C/RaceHorses"].width == 832
    assert by_name["HEVC_D/RaceHorses"].path == Path("/data/HEVC_D/RaceHorses_416x240_30.yuv")
    assert by_name["BQMall"].dataset == "HEVC_C"
    # --sequences: the bare name selects both, the class-qualified one only its own
    assert [s.name for s in select_sequences(sequences, ["racehorses"])] == [
        "HEVC_C/RaceHorses", "HEVC_D/RaceHorses"]
    assert select_sequences(sequences, ["HEVC_D/RaceHorses"]) == [by_name["HEVC_D/RaceHorses"]]
    with pytest.raises(ValueError, match="no sequence called 'Nope'; available: HEVC_C/RaceHorses"):
        select_sequences(sequences, ["Nope"])


@pytest.mark.needs_dcvc
@pytest.mark.skipif(not DCVC_LISTS, reason=f"no DCVC test_cfg files under {DCVC}: run "
                    "git submodule update --init third_party/DCVC")
@pytest.mark.parametrize("path", DCVC_LISTS, ids=[str(p.relative_to(DCVC)) for p in DCVC_LISTS])
def test_every_dcvc_test_cfg_file_is_read_as_it_is(path: Path):
    spec = json.loads(path.read_text())
    listed = sum(len(c["sequences"]) for c in spec["test_classes"].values() if c.get("test", 1))
    sequences = load_sequence_list(path)
    assert len(sequences) == listed
    assert len({s.name for s in sequences}) == listed
    assert all(s.dataset in spec["test_classes"] and s.width and s.height for s in sequences)
    root = path.parent / spec["root_path"]
    for seq in sequences:
        test_class = spec["test_classes"][seq.dataset]
        assert seq.path.parent == root / test_class["base_path"]
