"""Ship a trained model: export it into ``models/`` with its card data, and record fixture values.

    python examples/ship_model.py examples/gap20/training/attention/model.pt models/gap20.pt \\
        --card examples/gap20/card.json --fixture tests/fixtures/gap20_small.extxyz --frames 0,1,2

Rebuilds the eager model from the trained file (an exported ``model.pt``, or a ``checkpoint.pt``
for its EMA weights), re-exports it (TorchScript, float64 weights) with
the card's JSON (data, citation, licence, metrics, budget) in its metadata under ``extra``, and
writes ``tests/fixtures/<name>_reference.json``: the energy and forces of the chosen fixture frames
computed with the exported file through ``AttnMACECalculator`` in float64. The test
``tests/test_shipped_models.py`` loads the shipped model by name and checks those values.
"""

import argparse
import json
from pathlib import Path

import ase.io
import numpy as np

from attnmace import AttnMACECalculator, export_model
from attnmace.train.checkpoint import eager_model


def reference_values(model_file: Path, fixture: Path, frames):
    """Energies (eV) and forces (eV/Å) of ``frames`` of ``fixture`` with ``model_file`` in float64."""
    calc = AttnMACECalculator(model_file, device="cpu", dtype="float64")
    rows = []
    for index in frames:
        atoms = ase.io.read(fixture, index=index)
        atoms.calc = calc
        rows.append(
            {
                "index": index,
                "formula": atoms.get_chemical_formula(),
                "energy": float(atoms.get_potential_energy()),
                "forces": np.round(atoms.get_forces(), 10).tolist(),
            }
        )
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "trained", type=Path, help="model.pt or checkpoint.pt (its EMA weights) written by attnmace-train"
    )
    parser.add_argument("output", type=Path, help="e.g. models/gap20.pt")
    parser.add_argument("--card", type=Path, help="JSON with the model card's data (stored in the metadata)")
    parser.add_argument("--fixture", type=Path, required=True, help="extxyz with a few frames shipped in tests/")
    parser.add_argument("--frames", default="0,1,2")
    args = parser.parse_args(argv)
    model, extra = eager_model(args.trained)  # a training checkpoint.pt: its EMA weights
    if args.card:
        extra["card"] = json.loads(args.card.read_text())
    export_model(model, args.output, extra=extra)
    frames = [int(i) for i in args.frames.split(",")]
    reference = {
        "model": args.output.name,
        "fixture": str(args.fixture),
        "frames": reference_values(args.output, args.fixture, frames),
    }
    ref_path = Path("tests/fixtures") / f"{args.output.stem}_reference.json"
    ref_path.write_text(json.dumps(reference, indent=1))
    size = args.output.stat().st_size / 1e6
    print(f"wrote {args.output} ({size:.1f} MB) and {ref_path}")


if __name__ == "__main__":
    main()
