"""TorchScript, eager and ``torch.compile`` inference through the ASE calculator, side by side.

    python benchmarks/compile_speed.py --atoms 512 --dtype float32 --threads 2

Exports an untrained model of the chosen preset, then for each backend creates an
``AttnMACECalculator`` on a rattled diamond supercell and times: the first call (for
``compile`` this includes TorchInductor's compilation), and the median of ``--repeats``
energy+forces+stress calls on slightly moved atoms. Prints a table and the speed-up of each backend
over TorchScript, and writes JSON to ``--output``. Results are checked against TorchScript.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

# what ``import attnmace`` before torch does in a user's script: huge pages for torch's CPU tensors
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from ase.build import bulk  # noqa: E402

from attnmace import AttnMACECalculator, build_model, export_model  # noqa: E402
from attnmace.export import rebuild_eager  # noqa: E402

BACKENDS = ("torchscript", "eager", "compile")


def calculator(backend: str, path: Path, dtype: str) -> AttnMACECalculator:
    if backend == "torchscript":
        return AttnMACECalculator(path, device="cpu", dtype=dtype, torchscript=True)
    if backend == "eager":
        return AttnMACECalculator(rebuild_eager(path), device="cpu", dtype=dtype)
    return AttnMACECalculator(path, device="cpu", dtype=dtype, compile=True)


def time_backend(backend: str, path: Path, atoms, dtype: str, repeats: int):
    calc = calculator(backend, path, dtype)
    atoms = atoms.copy()
    atoms.calc = calc
    start = time.perf_counter()
    atoms.get_forces()
    first = time.perf_counter() - start
    rng = np.random.default_rng(0)
    times, energies = [], []
    for _ in range(repeats):
        atoms.positions += rng.normal(scale=0.002, size=atoms.positions.shape)
        start = time.perf_counter()
        energies.append(atoms.get_potential_energy())
        atoms.get_forces()
        atoms.get_stress()
        times.append(time.perf_counter() - start)
    return {"first_call_s": first, "median_call_s": statistics.median(times), "energy": energies[-1]}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="attention")
    parser.add_argument("--cutoffs", default="5,5,5")
    parser.add_argument("--atoms", type=int, default=512, help="8·n³ diamond atoms")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--output", default="benchmarks/results/compile_speed.json")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    n = round((args.atoms / 8) ** (1 / 3))
    atoms = bulk("C", "diamond", a=3.567, cubic=True) * (n, n, n)
    atoms.rattle(0.05, seed=0)
    cutoffs = tuple(float(c) for c in args.cutoffs.split(","))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.pt"
        export_model(build_model(args.preset, species=["C"], cutoffs=cutoffs, seed=0), path)
        for backend in args.backends.split(","):
            results[backend] = time_backend(backend, path, atoms, args.dtype, args.repeats)
            r = results[backend]
            print(
                f"{backend:12s} first call {r['first_call_s']:8.2f} s   median E+F+S {r['median_call_s']:7.3f} s",
                flush=True,
            )
    ref = results.get("torchscript")
    if ref:
        for backend, r in results.items():
            r["speedup_vs_torchscript"] = ref["median_call_s"] / r["median_call_s"]
            r["energy_difference_eV"] = abs(r["energy"] - ref["energy"])
            print(
                f"{backend:12s} speed-up vs TorchScript {r['speedup_vs_torchscript']:.2f}x, "
                f"|ΔE| {r['energy_difference_eV']:.1e} eV"
            )
    payload = {
        "command": "python benchmarks/compile_speed.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": platform.node(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "atoms": len(atoms),
        "preset": args.preset,
        "cutoffs": cutoffs,
        "dtype": args.dtype,
        "results": results,
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(payload, indent=1))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
