"""Speed and memory benchmark of attnmace against mace-torch: the one command.

    python benchmarks/run.py                                   # everything (long)
    python benchmarks/run.py --sizes 64 --repeats 2 --quick    # smoke run, a few minutes
    python benchmarks/run.py --sizes 64,512 --dtypes float32 --models baseline,mace --device cuda

For carbon structures (diamond and amorphous, periodic; ``structures.py``) of each size, each
dtype, and each model (attnmace ``baseline``/``attention`` presets, eager and TorchScript; mace-torch
with the baseline's hyperparameters in its own virtual environment ``benchmarks/.venv-mace``,
created by ``mace_env.sh`` on first use), one fresh process per case measures: neighbour list,
forward (energy only), forward+backward (energy, forces, stress; backward = the difference), the
ASE calculator call, a VelocityVerlet MD loop (time per step) and one training step, each the
median of ``--repeats`` calls after warm-up, with its peak memory. A case that runs past
``--timeout`` or fails is reported as skipped (with what it finished), and larger sizes of the same
series are skipped. Prints markdown tables (with mace/ours ratios from this same run) and writes
``benchmarks/results/<machine>-<date>.json`` and ``benchmarks/results/scaling.png``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MACE_VENV = HERE / ".venv-mace"
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))

import structures  # noqa: E402

OURS = ("baseline", "attention")
PHASES = ("nl", "forward", "forward_backward", "calculator", "md", "train")


# ----------------------------------------------------------------------------- machine


def machine_info(device: str) -> Dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            cpu = names[0]
    except OSError:
        pass
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    info: Dict[str, Any] = {
        "hostname": socket.gethostname(),
        "cpu_model": cpu,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "memory_gb": mem_gb,
        "load_average_start": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "device": device,
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_default_threads"] = torch.get_num_threads()
        if device.startswith("cuda") and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    try:
        import e3nn

        import attnmace

        info["attnmace"] = attnmace.__version__
        info["e3nn"] = e3nn.__version__
    except ImportError:
        pass
    return info


# ----------------------------------------------------------------------------- mace venv


def ensure_mace_env(setup: bool) -> Dict[str, Any]:
    """The mace venv's python and versions; creates the venv with mace_env.sh if needed."""
    python = MACE_VENV / "bin" / "python"
    probe = (
        "import importlib.metadata as m, json, torch; import mace; "
        "print(json.dumps({k: m.version(k) for k in ('mace-torch', 'torch', 'e3nn', 'matscipy')}))"
    )

    def check() -> Optional[Dict[str, Any]]:
        if not python.exists():
            return None
        p = subprocess.run([str(python), "-W", "ignore", "-c", probe], capture_output=True, text=True)
        if p.returncode != 0:
            return None
        return json.loads(p.stdout.strip().splitlines()[-1])

    versions = check()
    if versions is None and setup:
        print(f"creating the mace-torch environment {MACE_VENV} (bash benchmarks/mace_env.sh) ...", flush=True)
        log = RESULTS / "mace_env.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as f:
            p = subprocess.run(["bash", str(HERE / "mace_env.sh")], stdout=f, stderr=subprocess.STDOUT)
        if p.returncode != 0:
            return {"ok": False, "error": f"mace_env.sh failed (exit {p.returncode}); see {log}"}
        versions = check()
    if versions is None:
        return {"ok": False, "error": f"no working mace-torch in {MACE_VENV} (run bash benchmarks/mace_env.sh)"}
    return {"ok": True, "python": str(python), "versions": versions}


# ----------------------------------------------------------------------------- cases


def run_case(cmd: List[str], out: Path, log: Path, timeout: float) -> Dict[str, Any]:
    """Run one worker in a fresh process (own session, killed as a group on timeout)."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=f, cwd=str(ROOT), start_new_session=True)
        try:
            rc: Optional[int] = proc.wait(timeout=timeout)
            status = "ok" if rc == 0 else "failed"
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            rc, status = None, "timeout"
    wall = time.perf_counter() - t0
    result: Dict[str, Any] = {"phases": {}, "errors": {}, "info": {}}
    if out.exists():
        try:
            result = json.loads(out.read_text())
        except json.JSONDecodeError:
            pass
    if status == "ok" and not result.get("done"):
        status = "failed"
    if status == "timeout":
        result["skipped"] = f"timed out after {timeout:.0f} s (during {result.get('current', 'setup')})"
    elif status == "failed":
        tail = log.read_text().strip().splitlines()[-3:] if log.exists() else []
        result["skipped"] = f"worker failed (exit {rc}): {' | '.join(tail)}"
    result.update({"status": status, "returncode": rc, "wall_s": wall, "log": shown(log)})
    return result


def shown(path: Path) -> str:
    """A path relative to the repository where it lies inside it, else absolute."""
    path = path.resolve()
    return str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


def ms(phase: Optional[Dict[str, Any]]) -> Optional[float]:
    return None if not phase else 1e3 * phase["median_s"]


def derived(case: Dict[str, Any]) -> Dict[str, Optional[float]]:
    p = case.get("phases", {})
    n = case.get("info", {}).get("n_atoms") or case.get("n_atoms")
    fwd, fb = ms(p.get("forward")), ms(p.get("forward_backward"))
    calc, mdp, train = ms(p.get("calculator")), ms(p.get("md")), ms(p.get("train"))
    mem = p.get("calculator", {}).get("memory") if p.get("calculator") else None
    return {
        "nl_ms": ms(p.get("nl")),
        "forward_ms": fwd,
        "backward_ms": (fb - fwd) if fb is not None and fwd is not None else None,
        "forward_backward_ms": fb,
        "calculator_ms": calc,
        "md_ms_per_step": mdp,
        "us_per_atom_step": (1e3 * mdp / n) if mdp is not None and n else None,
        "train_ms": train,
        "calc_peak_delta_mb": mem["delta_mb"] if mem else None,
        "kb_per_atom": (1024.0 * mem["delta_mb"] / n) if mem and n else None,
        "max_rss_mb": case.get("max_rss_mb"),
    }


# ----------------------------------------------------------------------------- report


def fmt(x: Optional[float], digits: int = 1) -> str:
    if x is None:
        return "–"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.{digits}f}"


def label(case: Dict[str, Any]) -> str:
    return f"{case['model']} ({case['variant']})"


def tables(cases: List[Dict[str, Any]]) -> str:
    lines = [
        "| model | dtype | structure | atoms | edges | NL ms | forward ms | backward ms | E+F+S ms | "
        "calculator ms | MD ms/step | µs/atom·step | train step ms | calc. peak MB | KB/atom |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        d = c["derived"]
        edges = c.get("info", {}).get("n_edges")
        row = [
            label(c),
            c["dtype"],
            c["kind"],
            str(c["n_atoms"]),
            f"{edges:,}" if edges else "–",
            fmt(d["nl_ms"], 2),
            fmt(d["forward_ms"]),
            fmt(d["backward_ms"]),
            fmt(d["forward_backward_ms"]),
            fmt(d["calculator_ms"]),
            fmt(d["md_ms_per_step"]),
            fmt(d["us_per_atom_step"]),
            fmt(d["train_ms"]),
            fmt(d["calc_peak_delta_mb"], 0),
            fmt(d["kb_per_atom"], 0),
        ]
        if c.get("skipped"):
            row[-1] += f" — skipped: {c['skipped']}"
        lines.append("| " + " | ".join(row) + " |")

    # ratios mace / ours, measured in this run
    mace = {(c["kind"], c["n_atoms"], c["dtype"]): c for c in cases if c["model"] == "mace" and c["variant"] == "eager"}
    ratio_lines = [
        "",
        "Ratios mace-torch (eager) / ours, same run (> 1: ours is faster or smaller):",
        "",
        "| ours | dtype | structure | atoms | forward | E+F+S | calculator | MD step | train step | calc. memory |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    any_ratio = False
    for c in cases:
        if c["model"] == "mace":
            continue
        m = mace.get((c["kind"], c["n_atoms"], c["dtype"]))
        if not m:
            continue
        any_ratio = True

        def r(key: str, m=m, c=c) -> str:
            a, b = m["derived"][key], c["derived"][key]
            return f"{a / b:.2f}" if a is not None and b else "–"

        ratio_lines.append(
            f"| {label(c)} | {c['dtype']} | {c['kind']} | {c['n_atoms']} | {r('forward_ms')} | "
            f"{r('forward_backward_ms')} | {r('calculator_ms')} | {r('md_ms_per_step')} | {r('train_ms')} | "
            f"{r('calc_peak_delta_mb')} |"
        )
    return "\n".join(lines + (ratio_lines if any_ratio else []))


def plot(cases: List[Dict[str, Any]], path: Path) -> Optional[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no plot: {exc}"
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    series: Dict[tuple, List[tuple]] = {}
    for c in cases:
        d = c["derived"]
        series.setdefault((label(c), c["dtype"], c["kind"]), []).append(
            (
                c["n_atoms"],
                d["us_per_atom_step"] or (1e3 * d["calculator_ms"] / c["n_atoms"] if d["calculator_ms"] else None),
                d["calc_peak_delta_mb"],
            )
        )
    styles = {"diamond": "-", "amorphous": "--"}
    markers = {"float64": "o", "float32": "s"}
    for (name, dtype, kind), pts in sorted(series.items()):
        pts.sort()
        for ax, k in ((axes[0], 1), (axes[1], 2)):
            xy = [(p[0], p[k]) for p in pts if p[k] is not None]
            if xy:
                ax.plot(
                    *zip(*xy), styles.get(kind, "-"), marker=markers.get(dtype, "o"), label=f"{name} {dtype} {kind}"
                )
    axes[0].set_ylabel("time per atom per MD step (µs)")
    axes[1].set_ylabel("peak extra memory of an E+F+S call (MB)")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("atoms")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------- main


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="64,512,4096", help="atom counts, 8·n³ (default 64,512,4096)")
    parser.add_argument("--structures", default=None, help="diamond,amorphous (default both; --quick: diamond)")
    parser.add_argument("--dtypes", default=None, help="float64,float32 (default both; --quick: float64)")
    parser.add_argument("--models", default="baseline,attention,mace")
    parser.add_argument("--variants", default="eager,script", help="eager,script,lowmem (low_memory=True)")
    parser.add_argument("--mace-variants", default=None, help="eager[,script] (default eager)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls first (default 4; --quick: 1)")
    parser.add_argument("--md-steps", type=int, default=None, help="timed MD steps (default 20; --quick: 3)")
    parser.add_argument("--phases", default=",".join(PHASES))
    parser.add_argument("--threads", type=int, default=0, help="torch threads per worker (0: torch's default)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per case (default 1800; --quick: 600)")
    parser.add_argument("--quick", action="store_true", help="smoke run: diamond only, float64, 1 warm-up, 3 MD steps")
    parser.add_argument("--no-mace-setup", action="store_true", help="do not create benchmarks/.venv-mace")
    parser.add_argument("--output", default=None, help="JSON path (default benchmarks/results/<machine>-<date>.json)")
    parser.add_argument("--plot", default=str(RESULTS / "scaling.png"))
    parser.add_argument("--scratch", default=None, help="structures and case logs (default results/cases/<time>)")
    args = parser.parse_args(argv)

    q = args.quick
    sizes = [int(s) for s in args.sizes.split(",")]
    kinds = (args.structures or ("diamond" if q else "diamond,amorphous")).split(",")
    dtypes = (args.dtypes or ("float64" if q else "float64,float32")).split(",")
    models = args.models.split(",")
    variants = args.variants.split(",")
    mace_variants = (args.mace_variants or "eager").split(",")
    # TorchScript's profiling executor settles only after ~3 calls (measured: baseline 6.1, 6.0, 5.8,
    # then 4.4 s for 64 atoms on one thread), so the full run warms up with 4 calls
    warmup = args.warmup if args.warmup is not None else (1 if q else 4)
    md_steps = args.md_steps if args.md_steps is not None else (3 if q else 20)
    timeout = args.timeout if args.timeout is not None else (600.0 if q else 1800.0)
    for m in models:
        if m not in OURS + ("mace",):
            parser.error(f"unknown model {m!r}")
    from attnmace.runtime import resolve_device

    try:  # the workers pass --device straight to torch: name a missing GPU here, once
        resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))

    started = dt.datetime.now()
    machine = machine_info(args.device)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    scratch = Path(args.scratch) if args.scratch else RESULTS / "cases" / stamp
    scratch.mkdir(parents=True, exist_ok=True)

    # structures, written once, read by both workers
    import ase.io

    from attnmace import make_config

    cutoffs = (5.0, 5.0, 5.0)
    avg_nn = make_config("baseline", species=["C"], cutoffs=cutoffs).avg_num_neighbors[0]
    struct_info: Dict[str, Any] = {}
    files: Dict[tuple, Path] = {}
    for kind in kinds:
        for n in sizes:
            atoms = structures.make_structure(kind, n)
            path = scratch / f"{kind}-{n}.extxyz"
            ase.io.write(path, atoms)
            files[(kind, n)] = path
            struct_info[f"{kind}-{n}"] = structures.describe(atoms, max(cutoffs))

    mace_env: Dict[str, Any] = {"ok": False, "error": "not requested"}
    if "mace" in models:
        mace_env = ensure_mace_env(not args.no_mace_setup)
        print("mace-torch:", mace_env.get("versions") or mace_env.get("error"), flush=True)

    common = ["--repeats", str(args.repeats), "--warmup", str(warmup), "--md-steps", str(md_steps)]
    common += ["--device", args.device, "--threads", str(args.threads), "--phases", args.phases]
    plan = []
    for model in models:
        for variant in mace_variants if model == "mace" else variants:
            for dtype in dtypes:
                for kind in kinds:
                    for n in sorted(sizes):
                        plan.append((model, variant, dtype, kind, n))

    cases: List[Dict[str, Any]] = []
    failed_series: Dict[tuple, str] = {}
    for i, (model, variant, dtype, kind, n) in enumerate(plan, 1):
        name = f"{model}-{variant}-{dtype}-{kind}-{n}"
        out, log = scratch / f"{name}.json", scratch / f"{name}.log"
        series = (model, variant, dtype, kind)
        base = {"model": model, "variant": variant, "dtype": dtype, "kind": kind, "n_atoms": n}
        args_case = ["--structure", str(files[(kind, n)]), "--dtype", dtype, "--out", str(out)] + common
        if model == "mace":
            if not mace_env.get("ok"):
                result = {"status": "skipped", "skipped": mace_env.get("error"), "phases": {}}
                cases.append({**base, **result})
                continue
            cmd = [mace_env["python"], "-W", "ignore", str(HERE / "mace_worker.py"), "--variant", variant]
            cmd += ["--avg-num-neighbors", repr(avg_nn), "--r-max", str(max(cutoffs))] + args_case
        else:
            cmd = [sys.executable, str(HERE / "ours_worker.py"), "--preset", model, "--variant", variant]
            cmd += ["--cutoffs", ",".join(map(str, cutoffs))] + args_case
        if series in failed_series:
            cases.append(
                {**base, "status": "skipped", "skipped": f"a smaller size {failed_series[series]}", "phases": {}}
            )
            print(f"[{i}/{len(plan)}] {name}: skipped ({failed_series[series]} at a smaller size)", flush=True)
            continue
        print(f"[{i}/{len(plan)}] {name} ...", end=" ", flush=True)
        result = run_case(cmd, out, log, timeout)
        case = {**base, **result}
        if result["status"] != "ok":
            failed_series[series] = result["status"]
        cases.append(case)
        print(
            f"{result['status']} ({result['wall_s']:.0f} s)"
            + (f": {result['skipped']}" if result.get("skipped") else ""),
            flush=True,
        )

    for c in cases:
        c["derived"] = derived(c)
        c.setdefault("info", {})
    machine["load_average_end"] = os.getloadavg()
    report = tables(cases)
    settings = {
        "sizes": sizes,
        "structures": kinds,
        "dtypes": dtypes,
        "models": models,
        "variants": variants,
        "mace_variants": mace_variants,
        "repeats": args.repeats,
        "warmup": warmup,
        "md_steps": md_steps,
        "timeout_s": timeout,
        "threads": args.threads,
        "phases": args.phases.split(","),
        "quick": q,
        "cutoffs": cutoffs,
        "command": " ".join([Path(sys.argv[0]).name] + (argv if argv is not None else sys.argv[1:])),
    }
    print()
    print(
        f"machine: {machine['cpu_model']}, {machine['usable_cpus']} CPUs, torch threads {args.threads or 'default'}, "
        f"load average {machine['load_average_start'][0]:.2f} -> {machine['load_average_end'][0]:.2f}"
    )
    print(report)

    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.output:
        out_json = Path(args.output)
    else:
        host = socket.gethostname().split(".")[0] or "machine"
        out_json = RESULTS / f"{host}-{started.strftime('%Y-%m-%d')}.json"
        if out_json.exists():
            out_json = RESULTS / f"{host}-{started.strftime('%Y-%m-%d-%H%M%S')}.json"
    payload = {
        "started": started.isoformat(timespec="seconds"),
        "finished": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine,
        "settings": settings,
        "mace_env": mace_env,
        "structures": struct_info,
        "cases": cases,
        "markdown": report,
    }
    out_json.write_text(json.dumps(payload, indent=1))
    problem = plot(cases, Path(args.plot))
    print(f"\nwrote {shown(out_json)}" + (f" and {args.plot}" if not problem else f" ({problem})"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
