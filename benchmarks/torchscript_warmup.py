"""Time consecutive calculator calls: eager, TorchScript, and TorchScript without optimisation.

Shows how many calls TorchScript's profiling executor needs to settle (64-atom diamond, one thread):

    python benchmarks/torchscript_warmup.py baseline
    python benchmarks/torchscript_warmup.py attention
"""

import contextlib
import os
import sys
import tempfile
from pathlib import Path
from time import perf_counter

# what ``import attnmace`` before torch does in a user's script: huge pages for torch's CPU tensors
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402
from ase.build import bulk  # noqa: E402

from attnmace import AttnMACECalculator, build_model, export_model  # noqa: E402


def times(calc, context, atoms, calls: int = 4):
    out = []
    for k in range(calls):
        atoms.rattle(0.01, seed=k)
        with context():
            start = perf_counter()
            calc.calculate(atoms, ["energy", "forces", "stress"])
            out.append(round(perf_counter() - start, 2))
    return out


def main(preset: str = "attention") -> None:
    torch.set_num_threads(1)
    model = build_model(preset, species=["C"], cutoffs=(5.0, 5.0, 5.0), seed=0)
    atoms = bulk("C", "diamond", a=3.567, cubic=True) * (2, 2, 2)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{preset}.pt"
        export_model(model, path)
        print("eager (s)", times(AttnMACECalculator(model), contextlib.nullcontext, atoms))
        print("TorchScript (s)", times(AttnMACECalculator(path, torchscript=True), contextlib.nullcontext, atoms))
        no_opt = lambda: torch.jit.optimized_execution(False)  # noqa: E731
        scripted = AttnMACECalculator(path, torchscript=True)
        print("TorchScript, optimized_execution(False) (s)", times(scripted, no_opt, atoms))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "attention")
