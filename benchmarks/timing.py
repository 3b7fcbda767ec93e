"""Timing and memory helpers shared by the benchmark workers.

Imported by ``ours_worker.py`` (system python, attnmace) and ``mace_worker.py`` (the mace-torch
virtual environment), so it depends on nothing but the standard library, numpy, ASE and torch.

Memory: each case runs in a fresh process. On CPU the peak resident set size of a phase is read
from the kernel: writing ``5`` to ``/proc/self/clear_refs`` resets the high-water mark ``VmHWM``
to the current RSS, so ``VmHWM - VmRSS(before)`` after the phase is the extra memory the phase
needed at its peak (``tracemalloc`` does not see torch's allocations). Where the reset is not
allowed, ``ru_maxrss`` (the process-lifetime peak) is reported instead and ``hwm_reset`` is
false. On CUDA, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
import traceback
from typing import Any, Callable, Dict, List, Optional

import numpy as np

MB = 1024.0 * 1024.0


def _status_kb(field: str) -> Optional[float]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class Memory:
    """Peak memory of a code region (CPU: resident set size; CUDA: allocated tensor memory)."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")

    def start(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.hwm_reset = _reset_hwm()
            rss = _status_kb("VmRSS")
            self.base = (rss or 0.0) * 1024.0

    def stop(self) -> Dict[str, Any]:
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            peak = float(torch.cuda.max_memory_allocated())
            return {"kind": "cuda_allocated", "peak_mb": peak / MB, "delta_mb": (peak - self.base) / MB}
        hwm = _status_kb("VmHWM") if self.hwm_reset else None
        if hwm is None:  # no reset possible: process-lifetime peak
            hwm = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux
        peak = hwm * 1024.0
        return {
            "kind": "rss",
            "hwm_reset": self.hwm_reset,
            "peak_mb": peak / MB,
            "delta_mb": max(peak - self.base, 0.0) / MB,
        }


def synchronizer(device: str) -> Callable[[], None]:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.synchronize
    return lambda: None


def time_call(fn: Callable[[], Any], repeats: int, warmup: int, device: str) -> Dict[str, Any]:
    """Median wall time of ``fn`` over ``repeats`` calls after ``warmup`` untimed calls, with the
    peak memory of the whole region (warm-up included)."""
    sync = synchronizer(device)
    mem = Memory(device)
    mem.start()
    for _ in range(warmup):
        fn()
    sync()
    times: List[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "times_s": times,
        "repeats": repeats,
        "warmup": warmup,
        "memory": mem.stop(),
    }


def time_md(make_dyn: Callable[[], Any], steps: int, warmup: int, device: str) -> Dict[str, Any]:
    """Time per step of an ASE dynamics object: ``warmup`` untimed steps, then ``steps`` steps
    with a time stamp after each; the median step interval is reported."""
    sync = synchronizer(device)
    mem = Memory(device)
    mem.start()
    dyn = make_dyn()
    if warmup:
        dyn.run(warmup)
    stamps: List[float] = []
    dyn.attach(lambda: (sync(), stamps.append(time.perf_counter())), interval=1)
    sync()
    t0 = time.perf_counter()
    if warmup:
        # ASE calls observers after every step, and at step 0 only on a dynamics' first run
        stamps.append(t0)
    dyn.run(steps)
    total = time.perf_counter() - t0
    steps_s = np.diff(stamps).tolist()
    return {
        "median_s": statistics.median(steps_s) if steps_s else total / max(steps, 1),
        "mean_s": total / max(steps, 1),
        "times_s": steps_s,
        "steps": steps,
        "warmup": warmup,
        "memory": mem.stop(),
    }


class Results:
    """The result of one case, rewritten (atomically) after every phase, so that a case killed by
    the driver's timeout still leaves the phases it finished."""

    def __init__(self, path: Optional[str], info: Dict[str, Any]):
        self.path = path
        self.data: Dict[str, Any] = {"info": info, "phases": {}, "errors": {}, "done": False}
        self.write()

    def phase(self, name: str, fn: Callable[[], Dict[str, Any]]) -> None:
        self.data["current"] = name
        self.write()
        try:
            self.data["phases"][name] = fn()
        except Exception as exc:  # noqa: BLE001  (a failing phase is reported, the others still run)
            self.data["errors"][name] = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=sys.stderr)
        self.data.pop("current", None)
        self.write()

    def finish(self) -> None:
        self.data["done"] = True
        self.data["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.write()
        print(json.dumps(self.data))

    def write(self) -> None:
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
        os.replace(tmp, self.path)


def common_arguments(parser) -> None:
    parser.add_argument("--structure", required=True, help="extxyz file with one structure")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--md-steps", type=int, default=20)
    parser.add_argument("--timestep-fs", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    parser.add_argument(
        "--phases",
        default="nl,forward,forward_backward,calculator,md,train",
        help="comma-separated subset of nl,forward,forward_backward,calculator,md,train",
    )
    parser.add_argument("--out", default=None, help="JSON file rewritten after every phase")


def md_factory(atoms, calc, timestep_fs: float, seed: int = 0):
    """A VelocityVerlet run on a copy of ``atoms`` at 300 K (same velocities for every model)."""
    from ase import units
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution
    from ase.md.verlet import VelocityVerlet

    def make():
        a = atoms.copy()
        a.calc = calc
        MaxwellBoltzmannDistribution(a, temperature_K=300.0, rng=np.random.default_rng(seed))
        return VelocityVerlet(a, timestep=timestep_fs * units.fs)

    return make


def calculator_phases(res, atoms, calc, phases, repeats, warmup, device, md_steps, timestep_fs):
    """The phases both workers share: one ASE calculator call and a VelocityVerlet MD loop."""
    from ase.calculators.calculator import all_changes

    if "calculator" in phases:
        work = atoms.copy()
        props = ["energy", "forces", "stress"]
        res.phase(
            "calculator", lambda: time_call(lambda: calc.calculate(work, props, all_changes), repeats, warmup, device)
        )
    if "md" in phases:
        res.phase("md", lambda: time_md(md_factory(atoms, calc, timestep_fs), md_steps, warmup, device))
