"""A model's errors on the training and validation frames, grouped by how wide their cells are.

    python examples/gap20/errors_by_width.py models/gap20.pt \\
        --output examples/gap20/results/errors_by_width_epoch132.json

The labels of narrow cells carry the error of Gamma-point-only sampling (``check_kpoints.py``,
``check_test_labels.py``), which fades with the cell width. If the model has learned the
converged physics from the wide cells, its errors on the narrow ones are larger, within each
config type. Groups: the smallest periodic width (``prepare.cell_width``) in bins of
``WIDTH_BINS`` Å, overall and per config type. Needs the split of ``prepare.py``
(``--split-dir``); about 10 minutes on 2 cores.
"""

import argparse
import json
from pathlib import Path

import ase.io
import torch
from compare import KEYS
from prepare import cell_width

from attnmace.train.evaluate import compute_metrics, evaluate_file

WIDTH_BINS = (8.0, 10.0, 12.0)  # Å: [6, 8), [8, 10), [10, 12), >= 12 (and cells with vacuum or none)


def width_bin(atoms) -> str:
    """The width group of a frame, e.g. ``"8-10"``."""
    width = cell_width(atoms)
    low = 6.0
    for high in WIDTH_BINS:
        if width < high:
            return f"{low:g}-{high:g}"
        low = high
    return f">={low:g}"


def by_width(model, data_file: Path, max_atoms: int = 256) -> dict:
    """Force and energy errors of ``model`` on ``data_file`` by width bin, and by type and width bin."""
    frames = ase.io.read(data_file, ":")
    preds, config_types, _ = evaluate_file(model, data_file, KEYS, torch.float32, 8, max_atoms=max_atoms)
    bins = [width_bin(a) for a in frames]
    overall = compute_metrics(preds, bins)["per_config_type"]
    per_type = compute_metrics(preds, [f"{c} | {b}" for c, b in zip(config_types, bins)])["per_config_type"]
    return {"per_width": overall, "per_type_and_width": per_type}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--split-dir", type=Path, default=Path("runs/gap20/data"))
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    result = {"model": str(args.model)}
    for split in ("train", "valid"):
        result[split] = by_width(args.model, args.split_dir / f"{split}.extxyz")
        print(f"{split}: force RMSE (meV/Å) by cell width (Å)")
        for group, m in sorted(result[split]["per_type_and_width"].items()):
            print(f"  {group:34s} {m['n_frames']:4d} frames {m['forces_rmse_meV_per_A']:7.0f}")
        for group, m in sorted(result[split]["per_width"].items()):
            print(f"  all | {group:28s} {m['n_frames']:4d} frames {m['forces_rmse_meV_per_A']:7.0f}")
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
