"""NVE molecular dynamics of amorphous carbon with the shipped GAP-20 model: energy drift.

    python examples/gap20/nve_amorphous.py [--model gap20.pt] [--structure frame.extxyz]

Without ``--structure`` it makes a 64-atom amorphous cell itself: random positions at
2.4 g/cm³ with no pair closer than 1.35 Å, a Langevin anneal at 3000 K and then at 300 K. It then
runs velocity-Verlet NVE (0.5 fs) and prints the total-energy drift: maximum deviation from the
start and the fitted slope, in meV/atom (and per ps). A conservative, smooth potential keeps the
maximum deviation far below the thermal energy, about 26 meV/atom at 300 K.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from ase import Atoms
from ase.io import read

from attnmace import AttnMACECalculator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graphite import write_json  # noqa: E402  (this folder)
from md_quickstart import langevin, nve_drift  # noqa: E402

CARBON_MASS_G = 12.011 / 6.02214076e23


def random_carbon(n: int = 64, density: float = 2.4, min_distance: float = 1.35, seed: int = 0) -> Atoms:
    """``n`` carbon atoms at random in a cubic cell of ``density`` g/cm³, no pair closer than ``min_distance``."""
    length = (n * CARBON_MASS_G / density * 1e24) ** (1 / 3)  # Å
    rng = np.random.default_rng(seed)
    positions = np.zeros((0, 3))
    for _ in range(200 * n):  # sequential random addition (setup only, not a hot path)
        trial = rng.random(3) * length
        d = positions - trial
        d -= length * np.round(d / length)
        if len(positions) == 0 or np.min(np.linalg.norm(d, axis=1)) >= min_distance:
            positions = np.vstack([positions, trial])
            if len(positions) == n:
                return Atoms(f"C{n}", positions=positions, cell=[length] * 3, pbc=True)
    raise RuntimeError(f"could not place {n} atoms at {density} g/cm^3 with {min_distance} Å spacing")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gap20.pt")
    parser.add_argument("--structure", help="start from this structure (any ASE format) instead")
    parser.add_argument("--anneal-steps", type=int, default=400, help="Langevin steps at 3000 K, then at 300 K")
    parser.add_argument("--nve-steps", type=int, default=2000)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--json", help="also write the results here (for the model card)")
    args = parser.parse_args(argv)
    calc = AttnMACECalculator(args.model, dtype=args.dtype)
    atoms = read(args.structure) if args.structure else random_carbon()
    atoms.calc = calc
    if not args.structure:
        langevin(atoms, args.anneal_steps, temperature=3000.0)
    langevin(atoms, args.anneal_steps, temperature=300.0, seed=1)
    print(
        f"{len(atoms)} atoms, density {atoms.get_masses().sum() / atoms.get_volume() * 1.66054:.2f} g/cm³, "
        f"{args.dtype}, {args.nve_steps} NVE steps of 0.5 fs"
    )
    drift = nve_drift(atoms, args.nve_steps)
    print(
        f"max |E - E0| = {drift['max_deviation_meV_per_atom']:.3f} meV/atom, "
        f"final drift {drift['final_drift_meV_per_atom']:+.3f} meV/atom, "
        f"slope {drift['slope_meV_per_atom_per_ps']:+.3f} meV/atom/ps, T = {drift['temperature_K']:.0f} K"
    )
    if args.json:
        density = atoms.get_masses().sum() / atoms.get_volume() * 1.66054
        setup = {"atoms": len(atoms), "density_g_cm3": density, "dtype": args.dtype, "nve_steps": args.nve_steps}
        write_json(args.json, {"model": str(args.model), **setup, "timestep_fs": 0.5, **drift})


if __name__ == "__main__":
    main()
