"""Prepare the GAP-20 subset for training: drop faulty frames, split by config type, write files.

    python examples/gap20/prepare.py ../shared/data/gap20 --output runs/gap20/data

Writes ``train.extxyz`` and ``valid.extxyz`` (a 5 % validation split, stratified by
``config_type``, seed 0) and ``split.json`` (the frame indices of each part and the frames
dropped, with the reason). The committed ``examples/gap20/split.json`` is this file for the
shipped model, so the split can be checked against it.

Dropped frames:

* every frame whose cell is narrower than ``MIN_CELL_WIDTH`` (6 Å) along a periodic direction.
  The energies of these small cells do not match those of large cells of the same material:
  the 4-atom graphite cells lie 3.4 eV/atom above the lowest graphite cell at least 8 Å wide. The
  offsets are what Gamma-point-only sampling of the Brillouin zone gives (``check_kpoints.py``
  reproduces 3.4 eV/atom for graphite and 1.9 eV/atom for 8-atom diamond with CP2K), and they
  fade with cell width (``check_energies.py``). Their forces carry the same sampling error, so
  the frames are dropped, not just their energies. This removes 54 % of the frames but only
  15 % of the atoms;
* three compressed ``Nanotubes`` frames at about -13.03 eV/atom, 2.3 eV/atom below graphite
  (about -10.7 eV/atom), the most stable carbon allotrope: not physical, most likely faulty DFT
  (the data README flags them; they are narrow cells too);
* the 23 ``Dimer`` frames: their binding curve levels off at -0.51 eV/atom at 5 Å (forces
  vanish there), not at the isolated atom's 0.0004 eV (the ``Single_Atom`` frame, which sets E0).
  A model whose interactions end at the cutoff has to give twice E0 for a pair beyond it, so it
  cannot fit both; the isolated atom is kept.

``CONFIG_WEIGHTS`` can down-weight config types instead (``config_weight`` in the written files,
read by the trainer's ``weight_key``); the recipe leaves every kept frame at weight 1.

``--train-min-width W`` (an experiment, not the recipe) also leaves the training frames narrower
than W Å out of ``train.extxyz``, after the split: the validation frames and the split stay those
of the recipe, so runs with and without the option are scored on the same frames. ``split.json``
lists the frames it left out under ``train_narrow``.

The GAP-20 virials are not used for training: ``check_virial.py`` shows they do not match the
slope of the energy-volume curve of the same data (see ``README.md``).
"""

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import ase.io
import numpy as np

from attnmace.train.data import split_by_config_type

FAULTY_BELOW_EV_PER_ATOM = -12.5  # graphite is about -10.7 eV/atom in this data
MIN_CELL_WIDTH = 6.0  # Å; narrower periodic cells have unconverged k-point sampling
DROPPED_TYPES = {"Dimer": "binding curve levels off at -0.51 eV/atom instead of twice E0"}
CONFIG_WEIGHTS: dict = {}
VALID_FRACTION = 0.05
SEED = 0


def cell_width(atoms) -> float:
    """The smallest perpendicular width of the cell along a periodic direction (Å; inf if none)."""
    cell = np.asarray(atoms.cell)
    if not atoms.pbc.any() or abs(np.linalg.det(cell)) < 1e-12:
        return float("inf")
    volume = abs(np.linalg.det(cell))
    widths = [volume / np.linalg.norm(np.cross(cell[(i + 1) % 3], cell[(i + 2) % 3])) for i in range(3)]
    return float(min(w for w, periodic in zip(widths, atoms.pbc) if periodic))


def faulty(atoms) -> str:
    """Why a frame is dropped, or an empty string to keep it."""
    config_type = atoms.info.get("config_type")
    if config_type in DROPPED_TYPES:
        return f"{config_type}: {DROPPED_TYPES[config_type]}"
    e = atoms.info["REF_energy"] / len(atoms)
    if e < FAULTY_BELOW_EV_PER_ATOM:
        return f"{e:.3f} eV/atom is below graphite (about -10.7 eV/atom): faulty label"
    width = cell_width(atoms)
    if width < MIN_CELL_WIDTH:
        return f"cell {width:.2f} A wide (< {MIN_CELL_WIDTH} A): k-point sampling not converged"
    return ""


def with_weight(atoms):
    """A copy of ``atoms`` carrying its configuration weight (``config_weight``)."""
    atoms = atoms.copy()
    atoms.info["config_weight"] = CONFIG_WEIGHTS.get(atoms.info.get("config_type"), 1.0)
    return atoms


def split(frames, fraction: float = VALID_FRACTION, seed: int = SEED):
    """Indices of the kept frames split into train/valid, and the dropped frames with reasons."""
    dropped = {i: faulty(a) for i, a in enumerate(frames) if faulty(a)}
    kept = [i for i in range(len(frames)) if i not in dropped]
    # the split only reads config_type and the number of atoms
    labels = [
        SimpleNamespace(config_type=frames[i].info.get("config_type", "default"), numbers=frames[i].numbers)
        for i in kept
    ]
    parts = split_by_config_type(labels, fraction, seed, at_least_one_per_type=True)
    return {
        "train": [kept[i] for i in parts["train"]],
        "valid": [kept[i] for i in parts["valid"]],
        "dropped": {str(i): why for i, why in dropped.items()},
        "valid_fraction": fraction,
        "seed": seed,
    }


def without_narrow_training(parts: dict, frames, min_width: float) -> dict:
    """``parts`` with the training frames narrower than ``min_width`` Å moved to ``train_narrow``."""
    narrow = [i for i in parts["train"] if cell_width(frames[i]) < min_width]
    left_out = set(narrow)
    return {
        **parts,
        "train": [i for i in parts["train"] if i not in left_out],
        "train_narrow": narrow,
        "train_min_width": min_width,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder with gap20_subset_train.extxyz")
    parser.add_argument("--output", type=Path, default=Path("runs/gap20/data"))
    parser.add_argument(
        "--train-min-width",
        type=float,
        default=None,
        metavar="W",
        help=f"also leave training frames narrower than W Å (> {MIN_CELL_WIDTH}) out of train.extxyz; "
        "the split and the validation file are unchanged",
    )
    args = parser.parse_args(argv)
    if args.train_min_width is not None and not args.train_min_width > MIN_CELL_WIDTH:
        parser.error(f"--train-min-width must exceed the recipe's {MIN_CELL_WIDTH} Å, got {args.train_min_width}")
    frames = ase.io.read(args.data_dir / "gap20_subset_train.extxyz", ":")
    parts = split(frames)
    if args.train_min_width is not None:
        parts = without_narrow_training(parts, frames, args.train_min_width)
    args.output.mkdir(parents=True, exist_ok=True)
    for name in ("train", "valid"):
        part = [with_weight(frames[i]) for i in parts[name]]
        ase.io.write(args.output / f"{name}.extxyz", part, format="extxyz")
    with open(args.output / "split.json", "w") as fh:
        json.dump(parts, fh, indent=1)
    reasons = {}
    for why in parts["dropped"].values():
        reason = why.split(": ")[-1]
        reasons[reason] = reasons.get(reason, 0) + 1
    for reason, count in reasons.items():
        print(f"dropped {count} frames: {reason}")
    kept = parts["train"] + parts["valid"]
    n_atoms = sum(len(frames[i]) for i in kept)
    print(f"kept {len(kept)} of {len(frames)} frames, {n_atoms} of {sum(len(a) for a in frames)} atoms")
    if "train_narrow" in parts:
        n_narrow = sum(len(frames[i]) for i in parts["train_narrow"])
        print(
            f"left {len(parts['train_narrow'])} training frames ({n_narrow} atoms) narrower than "
            f"{parts['train_min_width']} A out of train.extxyz"
        )
    print(f"train {len(parts['train'])} frames, valid {len(parts['valid'])} frames -> {args.output}")


if __name__ == "__main__":
    main()
