"""tools/eval_uvg.py under torchrun: two ranks share the (sequence, rate point) units and
give the rows one process gives; rank 0 merges; resume skips what any rank finished; a
second evaluation on the same folder is refused on every rank.

Real but tiny: two 2-frame 128x96 clips of CiscoVT2people and one broken PNG sequence, x264
at 2 rates, a random-weights enhancer at 1 step. About 40 s on 2 cores (mostly the ranks'
imports).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest
import torch
from conftest import REPO
from PIL import Image
from test_eval import read_rows, requires_shared_data, run, uvg_root  # noqa: F401 - fixture

from enhancer.eval.ranks import RankGroup, Ranks, cpu_threads, partial_dir
from enhancer.eval.results import row_key

sys.path.insert(0, str(REPO / "tools"))
import eval_uvg

TIMING = {"encode_s_per_frame", "decode_s_per_frame", "enhance_s_per_frame"}
TOOL = str(REPO / "tools" / "eval_uvg.py")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                        "MASTER_ADDR", "MASTER_PORT")}
    env["OMP_NUM_THREADS"] = "1"
    return env


def spawn_ranks(argv: list[str], size: int = 2, timeout: int = 120) -> list[subprocess.CompletedProcess]:
    """``size`` processes of ``argv`` with the environment torchrun would give them."""
    port = str(free_port())
    processes = []
    for rank in range(size):
        env = {**clean_env(), "WORLD_SIZE": str(size), "RANK": str(rank),
               "LOCAL_RANK": str(rank), "LOCAL_WORLD_SIZE": str(size),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        processes.append(subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env, text=True,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    results = []
    for process in processes:
        out, err = process.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    return results


def same_values(left: dict, right: dict) -> None:
    for name, value in left.items():
        if name in TIMING:
            continue
        if isinstance(value, float):
            assert right[name] == pytest.approx(value, abs=1e-6), name
        else:
            assert right[name] == value, name


# --- units, devices, environment ---------------------------------------------------------
def test_ranks_from_the_environment_and_the_deal():
    assert Ranks.from_env({}) == Ranks()
    env = {"WORLD_SIZE": "3", "RANK": "2", "LOCAL_RANK": "0", "LOCAL_WORLD_SIZE": "1",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert Ranks.from_env(env) == Ranks(3, 2, 0, 1)
    with pytest.raises(ValueError, match="RANK=3 with WORLD_SIZE=3"):
        Ranks.from_env({**env, "RANK": "3"})
    with pytest.raises(ValueError, match="MASTER_PORT unset.*torchrun --nproc_per_node 3"):
        Ranks.from_env({k: v for k, v in env.items() if k != "MASTER_PORT"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not a whole number"):
        Ranks.from_env({"WORLD_SIZE": "two"})
    # Round robin over the sorted units, every unit exactly once, each share in run order.
    units = [("Talk", 30), ("Talk", 40), ("Later", 30), ("Later", 40), ("Broken", 30)]
    shares = [Ranks(2, r).share(units, key=lambda u: u) for r in range(2)]
    # sorted: Broken 30, Later 30, Later 40, Talk 30, Talk 40 -> 0, 1, 0, 1, 0
    assert shares == [[("Talk", 40), ("Later", 40), ("Broken", 30)], [("Talk", 30), ("Later", 30)]]
    assert Ranks().share(units, key=lambda u: u) == units
    # CPU: every rank uses it, with its share of the cores; a fixed GPU index is refused.
    threads = torch.get_num_threads()
    try:
        assert Ranks(2, 1, 1, 2).place("cpu") == "cpu"
        assert torch.get_num_threads() == cpu_threads(2)
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(ValueError, match="each rank takes cuda:LOCAL_RANK; pass --device cuda"):
        Ranks(2, 0, 0, 2).place("cuda:1")
    assert Ranks().place("cuda:1") == "cuda:1"  # one process: as given


def test_a_second_evaluation_is_refused_on_every_rank(tmp_path):
    """Rank 0 takes the folder's lock for the job; when another evaluation holds it, every
    rank stops with its message before any work."""
    from enhancer.eval.results import ResultsStore

    probe = ("import sys\n"
             "from enhancer.eval.ranks import RankGroup, Ranks\n"
             "from enhancer.eval.results import ResultsStore\n"
             "with RankGroup(Ranks.from_env()) as group:\n"
             "    try:\n"
             "        group.on_rank0(lambda: ResultsStore(sys.argv[1]))\n"
             "    except ValueError as err:\n"
             "        print(err); sys.exit(3)\n")
    out = tmp_path / "out"
    with ResultsStore(out):  # an evaluation running on out
        busy = spawn_ranks(["-c", probe, str(out)])
    assert [p.returncode for p in busy] == [3, 3], [p.stderr for p in busy]
    assert all("in use by another evaluation" in p.stdout for p in busy)
    assert RankGroup(Ranks()).on_rank0(lambda: 7) == 7  # one process: no group at all


# --- end to end --------------------------------------------------------------------------
@requires_shared_data
def test_two_ranks_give_the_rows_of_one_process_and_resume(uvg_root, tmp_path):  # noqa: F811
    # A sequence that fails while being coded (its second frame has another size): each
    # rank gets one of its rate points, so both ranks write an error row.
    broken = uvg_root / "Broken"
    broken.mkdir()
    Image.new("RGB", (128, 96), "gray").save(broken / "im00001.png")
    Image.new("RGB", (64, 48), "gray").save(broken / "im00002.png")
    args = ["--root", str(uvg_root), "--codec", "x264", "--quality", "30", "40",
            "--enhancer", "random", "--frames", "2", "--intra-period", "-1", "--steps", "1",
            "--crop", "128x96", "--metrics", "psnr_rgb", "psnr_yuv", "ssim", "temporal",
            "--quiet"]

    # One process, here, with the threads each of the two ranks will have.
    single = tmp_path / "single"
    threads = torch.get_num_threads()
    torch.set_num_threads(cpu_threads(2))
    try:
        assert run(eval_uvg, [*args, "--out", str(single)]) == 1  # Broken failed
    finally:
        torch.set_num_threads(threads)

    # Two ranks through torchrun itself.
    shared = tmp_path / "shared"
    job = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", TOOL, *args, "--out", str(shared)],
                         cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=120,
                         check=False)
    assert job.returncode == 1, job.stderr[-3000:]  # rank 0 reports the failed units
    printed = job.stdout
    assert "[rank 1/2] Later x264 q40" in printed and "[rank 0/2] Later x264 q30" in printed
    assert "rank 1: evaluated 3 sequence x rate points (1 failed)" in printed
    assert printed.count("FAILED: Broken") == 2  # rank 0's report lists both ranks' failures

    rows, expected = read_rows(shared), read_rows(single)
    assert [row_key(r) for r in rows] == [row_key(r) for r in expected]  # one process's order
    for row, reference in zip(rows, expected):
        same_values(reference, row)  # same bytes (bpp) and metrics, timings aside
    errors = [r for r in rows if r["variant"] == "error"]
    assert [(r["sequence"], r["quality"]) for r in errors] == [("Broken", 30), ("Broken", 40)]
    assert (shared / "errors.log").read_text().count("=== Broken") == 2
    summary = json.loads((shared / "summary.json").read_text())
    reference = json.loads((single / "summary.json").read_text())
    assert len(summary["averages"]) == len(reference["averages"]) == 4
    for average, reference_average in zip(summary["averages"], reference["averages"]):
        same_values(reference_average, average)
    assert summary["bd_rate"] == reference["bd_rate"] and summary["errors"] == reference["errors"]
    for folder in ("crops", "plots", "compressai", "videos"):
        assert sorted(p.name for p in (shared / folder).iterdir()) == sorted(
            p.name for p in (single / folder).iterdir())
    assert (shared / "report.html").is_file() and not (shared / "partial").exists()

    # Resume: Talk q40's rows are gone; Later q40's sit in a partial file, as a job that
    # stopped before its merge leaves them. Only Talk q40 is coded again.
    def unit(row, sequence, quality):
        return (row["sequence"], row["quality"]) == (sequence, quality)

    payload = json.loads((shared / "results.json").read_text())
    kept = [r for r in payload["rows"] if not unit(r, "Talk", 40) and not unit(r, "Later", 40)]
    left = [r for r in payload["rows"] if unit(r, "Later", 40)]
    (shared / "results.json").write_text(json.dumps({**payload, "rows": kept}))
    partial_dir(shared, 1).mkdir(parents=True)
    (partial_dir(shared, 1) / "results.json").write_text(json.dumps({**payload, "rows": left}))
    ranks = spawn_ranks([TOOL, *args, "--sequences", "Later", "Talk", "--out", str(shared)])
    assert [p.returncode for p in ranks] == [0, 0], [p.stderr[-2000:] for p in ranks]
    printed = "".join(p.stdout for p in ranks)
    assert printed.count("skip ") == 3 and "Talk x264 q40: 2 frames" in printed
    assert printed.count(": 2 frames") == 1
    resumed = read_rows(shared)
    assert sorted(map(row_key, resumed)) == sorted(map(row_key, rows))
    assert [r["quality"] for r in resumed[-2:]] == [40, 40]  # redone: last, as one process
    for row in resumed:
        (before,) = [r for r in rows if row_key(r) == row_key(row)]
        same_values(before, row)
    assert not (shared / "partial").exists()
