"""Relax AB graphite (cell and positions) and compare a, c and the interlayer spacing with experiment.

    python examples/gap20/graphite.py [--model gap20.pt]

Experiment (room temperature): a = 2.46 Å, c = 6.70 Å, interlayer spacing c/2 = 3.35 Å. The
GAP-20 reference functional, optB88-vdW, gives about 2.47 Å and 6.7 Å.
"""

import argparse
import json

import numpy as np
from ase import Atoms
from ase.filters import FrechetCellFilter
from ase.optimize import BFGS

from attnmace import AttnMACECalculator

EXPERIMENT = {"a": 2.46, "c": 6.70, "spacing": 3.35}


def ab_graphite(a: float = 2.46, c: float = 6.70) -> Atoms:
    """The 4-atom AB (Bernal) graphite cell."""
    cell = [[a, 0, 0], [-a / 2, a * np.sqrt(3) / 2, 0], [0, 0, c]]
    frac = [[0, 0, 0.25], [0, 0, 0.75], [1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75]]
    return Atoms("C4", scaled_positions=frac, cell=cell, pbc=True)


def relax(atoms: Atoms, calc, fmax: float = 1e-3, steps: int = 300) -> Atoms:
    """Relax positions and cell (FrechetCellFilter + BFGS) to ``fmax`` (eV/Å, and eV/Å per cell DOF)."""
    atoms = atoms.copy()
    atoms.calc = calc
    opt = BFGS(FrechetCellFilter(atoms), logfile=None)
    opt.run(fmax=fmax, steps=steps)
    if opt.nsteps >= steps:
        print(f"warning: relaxation of {atoms.get_chemical_formula()} stopped after {steps} steps")
    return atoms


def graphite_parameters(atoms: Atoms):
    """a, c and the interlayer spacing c/2 of a relaxed AB graphite cell."""
    a, _, c = atoms.cell.lengths()
    return {"a": float(a), "c": float(c), "spacing": float(c / 2)}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gap20.pt")
    parser.add_argument("--fmax", type=float, default=1e-3)
    parser.add_argument("--json", help="also write the results here (for the model card)")
    args = parser.parse_args(argv)
    calc = AttnMACECalculator(args.model)
    relaxed = relax(ab_graphite(), calc, args.fmax)
    got = graphite_parameters(relaxed)
    print(f"{'':10}{'model':>10}{'experiment':>12}{'difference':>12}")
    for key, label in (("a", "a (Å)"), ("c", "c (Å)"), ("spacing", "c/2 (Å)")):
        diff = got[key] - EXPERIMENT[key]
        print(f"{label:10}{got[key]:10.3f}{EXPERIMENT[key]:12.2f}{diff:+12.3f} ({100 * diff / EXPERIMENT[key]:+.1f} %)")
    if args.json:
        write_json(args.json, {"model": str(args.model), "graphite": got, "experiment": EXPERIMENT})


def write_json(path, result) -> None:
    """The numbers an example printed, for ``card.py``."""
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
