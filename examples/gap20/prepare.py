"""Prepare the GAP-20 subset for training: drop faulty frames, split by config type, write files.

    python examples/gap20/prepare.py ../shared/data/gap20 --output runs/gap20/data

Writes ``train.extxyz`` and ``valid.extxyz`` (a 5 % validation split, stratified by
``config_type``, seed 0) and ``split.json`` (the frame indices of each part and the frames
dropped, with the reason). The committed ``examples/gap20/split.json`` is this file for the
shipped model, so the split can be checked against it.

Dropped frames:

* three compressed ``Nanotubes`` frames at about -13.03 eV/atom, 2.3 eV/atom below graphite
  (about -10.7 eV/atom), the most stable carbon allotrope: not physical, most likely faulty DFT
  (the data README flags them).

The GAP-20 virials are not used for training: ``check_virial.py`` shows they do not match the
slope of the energy-volume curve of the same data (see ``README.md``).
"""

import argparse
import json
from pathlib import Path
from types import SimpleNamespace

import ase.io

from attnmace.train.data import split_by_config_type

FAULTY_BELOW_EV_PER_ATOM = -12.5  # graphite is about -10.7 eV/atom in this data
VALID_FRACTION = 0.05
SEED = 0


def faulty(atoms) -> str:
    """Why a frame is dropped, or an empty string to keep it."""
    e = atoms.info["REF_energy"] / len(atoms)
    if e < FAULTY_BELOW_EV_PER_ATOM:
        return f"{e:.3f} eV/atom is below graphite (about -10.7 eV/atom): faulty label"
    return ""


def split(frames, fraction: float = VALID_FRACTION, seed: int = SEED):
    """Indices of the kept frames split into train/valid, and the dropped frames with reasons."""
    dropped = {i: faulty(a) for i, a in enumerate(frames) if faulty(a)}
    kept = [i for i in range(len(frames)) if i not in dropped]
    # the split only reads config_type
    labels = [SimpleNamespace(config_type=frames[i].info.get("config_type", "default")) for i in kept]
    parts = split_by_config_type(labels, fraction, seed)
    return {
        "train": [kept[i] for i in parts["train"]],
        "valid": [kept[i] for i in parts["valid"]],
        "dropped": {str(i): why for i, why in dropped.items()},
        "valid_fraction": fraction,
        "seed": seed,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path, help="folder with gap20_subset_train.extxyz")
    parser.add_argument("--output", type=Path, default=Path("runs/gap20/data"))
    args = parser.parse_args(argv)
    frames = ase.io.read(args.data_dir / "gap20_subset_train.extxyz", ":")
    parts = split(frames)
    args.output.mkdir(parents=True, exist_ok=True)
    for name in ("train", "valid"):
        ase.io.write(args.output / f"{name}.extxyz", [frames[i] for i in parts[name]], format="extxyz")
    with open(args.output / "split.json", "w") as fh:
        json.dump(parts, fh, indent=1)
    for i, why in parts["dropped"].items():
        print(f"dropped frame {i} ({frames[int(i)].info['config_type']}, {len(frames[int(i)])} atoms): {why}")
    print(f"train {len(parts['train'])} frames, valid {len(parts['valid'])} frames -> {args.output}")


if __name__ == "__main__":
    main()
