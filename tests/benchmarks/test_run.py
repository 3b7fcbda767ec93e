"""benchmarks/run.py: the one benchmark command still runs end to end, and refuses a GPU it lacks.

Timings are the benchmark's business, not the tests': these check that a minimal run (one 8-atom
cell, one repeat) measures the phases it is asked for and writes its report, so the command does not
rot between the sessions that run it in full.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

RUN = Path(__file__).parents[2] / "benchmarks" / "run.py"


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_a_minimal_run_measures_the_phases_asked_for_and_writes_its_report(tmp_path):
    out, plot, scratch = tmp_path / "bench.json", tmp_path / "scaling.png", tmp_path / "cases"
    p = run(
        *("--sizes", "8", "--structures", "diamond", "--dtypes", "float64", "--models", "attention"),
        *("--variants", "eager", "--repeats", "1", "--warmup", "0", "--phases", "forward,forward_backward"),
        *("--threads", "1", "--output", str(out), "--plot", str(plot), "--scratch", str(scratch)),
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    report = json.loads(out.read_text())
    (case,) = report["cases"]
    assert (case["model"], case["variant"], case["dtype"], case["n_atoms"]) == ("attention", "eager", "float64", 8)
    assert case["status"] == "ok", case.get("skipped")
    assert set(case["phases"]) == {"forward", "forward_backward"}
    for phase in case["phases"].values():
        assert phase["median_s"] > 0
    assert case["info"]["n_atoms"] == 8
    assert report["settings"]["sizes"] == [8] and report["settings"]["phases"] == ["forward", "forward_backward"]
    assert "attention" in report["markdown"] and plot.stat().st_size > 0
    assert (scratch / "diamond-8.extxyz").exists() and Path(case["log"]).parent == scratch.resolve()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has the GPU the test asks for")
def test_a_missing_gpu_is_named_before_any_case_runs(tmp_path):
    scratch = tmp_path / "cases"
    p = run("--device", "cuda", "--models", "attention", "--sizes", "8", "--scratch", str(scratch), cwd=tmp_path)
    assert p.returncode == 2
    assert "cuda" in p.stderr.lower() and "Traceback" not in p.stderr
    assert not scratch.exists()
