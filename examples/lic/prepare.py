"""Split the labelled Li–C data into train / valid / test files for models/lic.pt.

    python examples/lic/prepare.py --output runs/lic/data

Reads ``data/lic_dft.extxyz`` (the generated structures and every labelled active-learning round)
and writes ``train.extxyz``, ``valid.extxyz``, ``test.extxyz`` and ``split.json`` (the
``structure_id`` of each part).

The split is a function of ``structure_id`` alone (a hash, not a shuffle), so a frame never moves
between parts as labelling goes on: the test set of a model trained on 157 frames is a subset of
the test set of one trained on 300. About 10 % go to test and 10 % to validation. The unperturbed
reference cell of every family (``*_000``) and the unrattled interlayer scans
(``graphite_c_scan``) always go to training: the examples start from those geometries.
"""

import argparse
import hashlib
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "lic_dft.extxyz"
TEST_PERCENT = 10
VALID_PERCENT = 10


def part_of(atoms) -> str:
    """``train``, ``valid`` or ``test`` for one labelled frame, from its ``structure_id``."""
    sid = atoms.info["structure_id"]
    if sid.endswith("_000") or atoms.info.get("family") == "graphite_c_scan":
        return "train"
    bucket = int(hashlib.sha256(sid.encode()).hexdigest(), 16) % 100
    if bucket < TEST_PERCENT:
        return "test"
    if bucket < TEST_PERCENT + VALID_PERCENT:
        return "valid"
    return "train"


def split(frames):
    """Frames grouped by part, in file order."""
    parts = {"train": [], "valid": [], "test": []}
    for atoms in frames:
        parts[part_of(atoms)].append(atoms)
    return parts


def main(argv=None) -> None:
    import ase.io  # noqa: I001

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA, help="labelled frames (default: %(default)s)")
    parser.add_argument("--output", type=Path, default=Path("runs/lic/data"))
    args = parser.parse_args(argv)
    frames = ase.io.read(args.data, ":")
    parts = split(frames)
    args.output.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        ase.io.write(args.output / f"{name}.extxyz", part, format="extxyz")
    ids = {name: [a.info["structure_id"] for a in part] for name, part in parts.items()}
    with open(args.output / "split.json", "w") as fh:
        json.dump({"source": str(args.data), "n_frames": len(frames), **ids}, fh, indent=1)
    counts = ", ".join(f"{name} {len(part)}" for name, part in parts.items())
    print(f"{len(frames)} labelled frames -> {counts} ({args.output})")


if __name__ == "__main__":
    main()
