"""Do two model files predict the same? Energies and forces on the frames that matter most.

    python examples/same_predictions.py OLD.pt NEW.pt DATA.extxyz [DATA2.extxyz ...] [--closest 25]

For each data file, evaluates both models (float64) on the ``--closest`` frames with the shortest
interatomic distances (where a change of the short-range treatment would show first) and on about
ten more spread evenly over the file, and prints the largest energy (eV) and force (eV/Å)
differences. Used to check that adding inner cutoffs to a shipped model (``attnmace-export
--inner-cutoffs``) leaves its predictions on the data unchanged.
"""

import argparse
import json

import ase.io
import numpy as np

from attnmace import AttnMACECalculator
from attnmace.train.stats import shortest_distances


def compare(old, new, path, closest=25):
    """Largest differences between calculators ``old`` and ``new`` on the chosen frames of ``path``."""
    frames = ase.io.read(path, ":")
    shortest = [
        shortest_distances([a], sorted(set(int(z) for z in a.numbers)), 3.0).min() if len(a) > 1 else np.inf
        for a in frames
    ]
    picked = sorted(
        set(np.argsort(shortest)[:closest].tolist()) | set(range(0, len(frames), max(1, len(frames) // 10)))
    )
    d_energy = d_forces = 0.0
    for k in picked:
        atoms = frames[k].copy()
        atoms.calc = old
        e0, f0 = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = new
        e1, f1 = atoms.get_potential_energy(), atoms.get_forces()
        d_energy, d_forces = max(d_energy, abs(e1 - e0)), max(d_forces, float(np.abs(f1 - f0).max()))
    return {
        "data": str(path),
        "frames": len(picked),
        "shortest_distance_A": float(min(shortest)),
        "max_energy_difference_eV": d_energy,
        "max_force_difference_eV_per_A": d_forces,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("data", nargs="+")
    parser.add_argument("--closest", type=int, default=25)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    old, new = (AttnMACECalculator(m, device="cpu", dtype="float64") for m in (args.old, args.new))
    rows = [compare(old, new, path, args.closest) for path in args.data]
    for row in rows:
        d_e, d_f = row["max_energy_difference_eV"], row["max_force_difference_eV_per_A"]
        print(
            f"{row['data']}: {row['frames']} frames (shortest distance {row['shortest_distance_A']:.3f} Å): "
            f"max |dE| {d_e:.2e} eV, max |dF| {d_f:.2e} eV/Å"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"old": args.old, "new": args.new, "results": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
