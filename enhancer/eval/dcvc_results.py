"""Result files in DCVC's own layout, so DCVC's ``compare_bd_rate.py`` reads our numbers
beside its VTM-17.0 anchors (``anchors/vtm_17.0_yuv420_LB_allf_ip0.json`` in the submodule).

DCVC's ``test_video.py`` writes one JSON per model: ``{dataset: {sequence file: {rate point:
fields}}}`` with the rate point a 3-digit key (``"000"``, ...) and, per sequence and rate
point, ``frame_pixel_num``, ``i_frame_num``, ``p_frame_num``, ``ave_{i,p,all}_frame_bpp``,
``ave_{i,p,all}_frame_psnr``, ``ave_{i,p,all}_frame_msssim``, ``test_time``, ``ds_name``,
``seq``, ``rate_idx``, ``qp_i``, ``qp_p``. :func:`dcvc_results` builds one such dict per curve
(the decoded stream and each enhanced variant), from the evaluation's rows:

- ``psnr`` is our 6:1:1 YUV PSNR (DCVC's measure for YUV 4:2:0 sources, its anchors' too)
  when the row has it, else RGB PSNR (DCVC's measure for PNG sources); ``msssim`` is our
  RGB MS-SSIM (DCVC weighs per-plane MS-SSIM 6:1:1 for YUV sources: not the same number).
- Rows are averages over all frames, so the I/P split is only known when every frame is
  intra (``p_frame_num`` 0: the I fields equal the all-frame ones); otherwise the I and P
  fields are 0, DCVC's value for "none", and ``compare_bd_rate.py`` reports BD-rates for
  all frames only. LPIPS and DISTS go in as ``ave_all_frame_lpips_alex`` etc. (extra keys
  DCVC's tools ignore).
- Rate points are numbered in order of increasing bpp per sequence; ``qp_i`` and ``qp_p``
  hold our quality index (a DCVC q_index for dcvc / dcvc-rt / dcvc-uf, a CRF for x264).
- The dataset is the name of the folder holding the sequence files (DCVC's ``base_path``,
  e.g. ``UVG``), the sequence key the file name, both as in DCVC's JSONs. DCVC averages a
  dataset over the sequences in each file: compare with its anchors on the same sequences.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from enhancer.data.paths import write_atomic_text
from enhancer.eval.results import curve_label, file_label

EXTRA_METRICS = ("lpips_alex", "lpips_vgg", "dists")


def intra_frame_count(frames: int, intra_period: int) -> int:
    """How many of ``frames`` are intra for ``intra_period`` (-1: only the first)."""
    if intra_period == -1:
        return min(frames, 1)
    return -(-frames // intra_period)


def _entry(row: dict[str, Any], rate_index: int, dataset: str, sequence: str) -> dict[str, Any]:
    frames, intra_period = row["frames"], row["intra_period"]
    i_frames = intra_frame_count(frames, intra_period)
    p_frames = frames - i_frames
    psnr = row.get("psnr_yuv") if row.get("psnr_yuv") is not None else row.get("psnr_rgb")
    all_frames = {"bpp": row["bpp"], "psnr": psnr, "msssim": row.get("ms_ssim")}
    all_frames = {k: (0 if v is None else v) for k, v in all_frames.items()}
    i_fields = all_frames if p_frames == 0 else dict.fromkeys(all_frames, 0)
    entry: dict[str, Any] = {"frame_pixel_num": row["width"] * row["height"],
                             "i_frame_num": i_frames, "p_frame_num": p_frames}
    for prefix, values in (("i", i_fields), ("p", dict.fromkeys(all_frames, 0)),
                           ("all", all_frames)):
        for metric, value in values.items():
            entry[f"ave_{prefix}_frame_{metric}"] = value
    for metric in EXTRA_METRICS:
        if row.get(metric) is not None:
            entry[f"ave_all_frame_{metric}"] = row[metric]
    seconds = [row.get("encode_s_per_frame"), row.get("decode_s_per_frame"),
               row.get("enhance_s_per_frame")]
    entry["test_time"] = sum(s for s in seconds if s is not None) * frames
    if row.get("decode_s_per_frame") is not None:
        entry["avg_frame_encoding_time"] = row.get("encode_s_per_frame")
        entry["avg_frame_decoding_time"] = row["decode_s_per_frame"] + (
            row.get("enhance_s_per_frame") or 0.0)
    entry.update(ds_name=dataset, seq=sequence, rate_idx=rate_index, qp_i=row["quality"],
                 qp_p=row["quality"])
    return entry


def dcvc_results(rows: list[dict[str, Any]],
                 sequence_files: dict[str, Path]) -> dict[str, dict[str, Any]]:
    """One DCVC-layout result dict per curve (codec, variant), keyed by file name.

    ``sequence_files`` maps a row's ``sequence`` to its file (its folder names the dataset);
    rows of other sequences, error rows and rows without bpp are left out.
    """
    curves: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list))
    for row in rows:
        if row["variant"] == "error" or row.get("bpp") is None:
            continue
        if row["sequence"] in sequence_files:
            curves[(row["codec"], curve_label(row))][row["sequence"]].append(row)
    files = {}
    for (codec, label), per_sequence in sorted(curves.items()):
        payload: dict[str, dict[str, Any]] = defaultdict(dict)
        for name, members in sorted(per_sequence.items()):
            path = Path(sequence_files[name])
            dataset = path.parent.name or "sequences"
            ordered = sorted(members, key=lambda r: (r["bpp"], r["quality"]))
            payload[dataset][path.name] = {
                f"{index:03d}": _entry(row, index, dataset, path.name)
                for index, row in enumerate(ordered)}
        files[file_label(f"{codec}-{label}").strip("_") + ".json"] = dict(payload)
    return files


def write_dcvc_results(folder: Path, rows: list[dict[str, Any]],
                       sequence_files: dict[str, Path]) -> list[Path]:
    """Write :func:`dcvc_results` into ``folder`` (atomically, one file per curve)."""
    paths = []
    files = dcvc_results(rows, sequence_files)
    if files:
        folder.mkdir(parents=True, exist_ok=True)
    for name, payload in files.items():
        path = folder / name
        write_atomic_text(path, json.dumps(payload, indent=2) + "\n")
        paths.append(path)
    return paths


__all__ = ["dcvc_results", "intra_frame_count", "write_dcvc_results"]
