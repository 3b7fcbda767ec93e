"""How large is the error of Gamma-point-only DFT for the small GAP-20 cells?

    python examples/gap20/check_kpoints.py ../shared/data/gap20 \
        --output examples/gap20/results/kpoints.json

Takes two small, near-equilibrium frames of the GAP-20 subset (a 4-atom graphite cell and an
8-atom diamond cell, both with small forces) and computes each twice with CP2K (the settings of
``examples/lic/cp2k_setup.py``: PBE-D3, DZVP-MOLOPT-SR, 500 Ry), once at the Gamma point only
and once with the converged k-point mesh. The difference per atom is the size of the error that
Gamma-point sampling makes in such a cell. Beside it the script prints how far the frame's
GAP-20 energy lies above the energies of large cells of the same material (from the data
themselves, no fit): the two agree if the small cells were computed at the Gamma point. Needs
CP2K (``apt-get install cp2k``); about 10 minutes on one core.
"""

import argparse
import importlib.util
import json
from pathlib import Path

import ase.io
import numpy as np
from prepare import cell_width

LIC = Path(__file__).parents[1] / "lic"


def _cp2k_setup():
    spec = importlib.util.spec_from_file_location("cp2k_setup", LIC / "cp2k_setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pick(frames, config_type, n_atoms, max_force=0.5):
    """The lowest-energy frame of a type and size with all force components below ``max_force``."""
    best = None
    for i, a in enumerate(frames):
        if a.info.get("config_type") != config_type or len(a) != n_atoms:
            continue
        if np.abs(a.arrays["REF_forces"]).max() > max_force:
            continue
        if best is None or a.info["REF_energy"] < frames[best].info["REF_energy"]:
            best = i
    return best


def large_cell_energy(frames, config_type, min_width=8.0):
    """Lowest energy per atom of the frames of a type whose cells are at least ``min_width`` wide."""
    wide = [
        a.info["REF_energy"] / len(a)
        for a in frames
        if a.info.get("config_type") == config_type and cell_width(a) >= min_width
    ]
    return min(wide) if wide else float("nan")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--workdir", type=Path, default=Path("runs/gap20/kpoints"))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    cp2k = _cp2k_setup()
    frames = ase.io.read(args.data_dir / "gap20_subset_train.extxyz", ":")
    args.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    wide_graphite = large_cell_energy(frames, "Graphite")
    for config_type, n_atoms in (("Graphite", 4), ("Diamond", 8)):
        index = pick(frames, config_type, n_atoms)
        atoms = frames[index]
        energy = {}
        for name, mesh in (("gamma", (1, 1, 1)), ("converged", cp2k.kpoint_mesh(atoms, 25.0))):
            calc = cp2k.make_calc(atoms, str(args.workdir / f"frame{index}_{name}"), kmesh=mesh)
            copy = atoms.copy()
            copy.calc = calc
            energy[name] = copy.get_potential_energy() / len(atoms)
            calc.close()
            energy[f"{name}_mesh"] = list(mesh)
        row = dict(
            frame=index,
            config_type=config_type,
            atoms=n_atoms,
            cell_width=cell_width(atoms),
            cp2k_gamma_error=energy["gamma"] - energy["converged"],
            gap20_energy=atoms.info["REF_energy"] / n_atoms,
            gap20_lowest_wide_cell=wide_graphite,
            meshes=[energy["gamma_mesh"], energy["converged_mesh"]],
        )
        row["gap20_above_wide_graphite"] = row["gap20_energy"] - row["gap20_lowest_wide_cell"]
        results.append(row)
        print(
            f"frame {index} ({config_type}, {n_atoms} atoms, cell {row['cell_width']:.2f} A wide): "
            f"CP2K E(Gamma) - E(mesh {row['meshes'][1]}) = {row['cp2k_gamma_error']:.3f} eV/atom; "
            f"GAP-20 energy {row['gap20_energy']:.3f} eV/atom, {row['gap20_above_wide_graphite']:.3f} above "
            f"the lowest graphite cell at least 8 A wide ({row['gap20_lowest_wide_cell']:.3f})",
            flush=True,
        )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
