"""Does a model survive hot, dense carbon? Langevin MD of a 64-atom random cell, watched for collapse.

    python examples/gap20/hot_md.py [--model gap20.pt] [--temperature 9000] [--density 2.4] \\
        [--steps 2000] [--json results.json]

Melt-quench protocols for amorphous carbon start from a liquid at 5000-9000 K, where atoms hit each
other far harder than in a room-temperature run. A potential with an energy hole at short range
or high density lets a pair or a cluster fall into it: the potential energy plunges without bound
and the run ends in a collapsed blob or NaNs. This script starts from random positions at
``--density`` (no pair closer than 1.35 Å), runs Langevin dynamics at ``--temperature`` (0.5 fs,
friction 0.02 / fs), and every ``--every`` steps records the potential energy per atom, the
temperature, the shortest distance and the largest force. It stops early at a **collapse**: a
pair closer than ``--collapse-distance`` (0.8 Å; no liquid carbon comes near it), a potential
energy per atom ``--collapse-drop`` (3 eV) below its value at the first record,
or a non-finite energy.

``--knock EV`` adds a primary knock-on atom, as in an irradiation or sputtering run: after the
thermalisation, atom 0 gets EV of extra kinetic energy aimed straight at its nearest neighbour, the
harshest test of the short-range wall (a head-on C-C pair reaches about EV / 2 of pair energy).
Use a shorter ``--timestep`` for it (0.1 fs) and a lower ``--collapse-distance``.
"""

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from ase.neighborlist import neighbor_list

from attnmace import AttnMACECalculator
from attnmace.train.stats import shortest_distances

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from graphite import write_json  # noqa: E402  (this folder)
from md_quickstart import langevin_dynamics  # noqa: E402
from nve_amorphous import random_carbon  # noqa: E402


def collapse_reason(record, first, collapse_distance: float, collapse_drop: float):
    """Why ``record`` (a row of :func:`run`) counts as a collapse, relative to the ``first`` row,
    or ``None``."""
    if not math.isfinite(record["energy_per_atom"]):
        return "non-finite energy"
    if record["shortest_distance"] < collapse_distance:
        return f"a pair at {record['shortest_distance']:.3f} Å"
    if record["energy_per_atom"] < first["energy_per_atom"] - collapse_drop:
        drop = first["energy_per_atom"] - record["energy_per_atom"]
        return f"the potential energy fell {drop:.2f} eV/atom below its first record"
    return None


def knock(atoms, energy: float) -> None:
    """Give atom 0 ``energy`` eV of extra kinetic energy towards its nearest neighbour."""
    first, vectors = neighbor_list("iD", atoms, 3.0)
    mine = vectors[first == 0]
    direction = mine[np.argmin(np.linalg.norm(mine, axis=1))]
    direction = direction / np.linalg.norm(direction)
    momenta = atoms.get_momenta()
    mass = atoms.get_masses()[0]
    momenta[0] += direction * np.sqrt(2.0 * mass * energy)  # |p| = sqrt(2 m E) in ASE units
    atoms.set_momenta(momenta)


def run(
    calc,
    temperature,
    density,
    steps,
    every=20,
    seed=0,
    collapse_distance=0.8,
    collapse_drop=3.0,
    knock_energy=0.0,
    timestep=0.5,
):
    """Langevin MD of a random 64-atom carbon cell; rows every ``every`` steps, and the collapse
    (its step and reason) if one happened."""
    atoms = random_carbon(density=density, seed=seed)
    atoms.calc = calc
    dyn = langevin_dynamics(atoms, temperature, timestep, seed)
    if knock_energy > 0:
        knock(atoms, knock_energy)  # the integrator reads the momenta only when it steps
    rows, collapse = [], None
    start = time.perf_counter()
    for step in range(0, steps + 1, every):
        if step:
            try:
                dyn.run(every)
            except Exception as err:  # a model in a hole can hand back NaN positions to the calculator
                collapse = {"step": step, "reason": f"the calculator failed: {err}"}
                break
        energy = float(atoms.get_potential_energy()) / len(atoms)
        row = {
            "step": step,
            "time_fs": timestep * step,
            "energy_per_atom": energy,
            "temperature": float(atoms.get_temperature()),
            "shortest_distance": float(shortest_distances([atoms], [6], 3.0).min()),  # inf if none
            "max_force": float(np.linalg.norm(atoms.get_forces(), axis=1).max()),
        }
        rows.append(row)
        reason = collapse_reason(row, rows[0], collapse_distance, collapse_drop)
        if reason:
            collapse = {"step": step, "reason": reason}
            break
    return {"rows": rows, "collapse": collapse, "seconds": time.perf_counter() - start}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gap20.pt")
    parser.add_argument("--temperature", type=float, default=9000.0)
    parser.add_argument("--density", type=float, default=2.4, help="g/cm³")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--knock", type=float, default=0.0, help="eV for a primary knock-on atom (0: none)")
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--collapse-distance", type=float, default=0.8)
    parser.add_argument("--collapse-drop", type=float, default=3.0)
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    calc = AttnMACECalculator(args.model, dtype=args.dtype)
    result = run(
        calc,
        args.temperature,
        args.density,
        args.steps,
        args.every,
        args.seed,
        args.collapse_distance,
        args.collapse_drop,
        args.knock,
        args.timestep,
    )
    knocked = f", a {args.knock:.0f} eV knock-on atom" if args.knock else ""
    print(
        f"{args.model}: {args.temperature:.0f} K, {args.density} g/cm³, 64 atoms{knocked}, Langevin {args.timestep} fs"
    )
    print("    fs   E (eV/atom)       T (K)   shortest (Å)   max |F| (eV/Å)")
    for row in result["rows"]:
        print(
            f"{row['time_fs']:6.1f} {row['energy_per_atom']:13.3f} {row['temperature']:11.0f} "
            f"{row['shortest_distance']:14.3f} {row['max_force']:16.1f}"
        )
    if result["collapse"]:
        when = args.timestep * result["collapse"]["step"]
        print(f"  COLLAPSE at {when:g} fs: {result['collapse']['reason']}")
    else:
        print(f"  no collapse in {args.timestep * args.steps:g} fs ({result['seconds']:.0f} s)")
    if args.json:
        write_json(args.json, {**vars(args), **result})


if __name__ == "__main__":
    main()
