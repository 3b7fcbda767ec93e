"""The graphene-bilayer separation scan of GAP-20: the model's binding curve against DFT's, and a
training file that weights the scan.

    python examples/gap20/bilayer.py scan [--model gap20.pt] [--split-dir runs/gap20/data] [--json F] [--plot F]
    python examples/gap20/bilayer.py weight 100 [--only] [--split-dir runs/gap20/data] [--output F]

GAP-20 holds one scan of two flat graphene layers (100 atoms, a 12.32 Å cell 20 Å high) at
separations of 2.5 to 4.9 Å, labelled `Graphite` (2.5 to 4.2 Å) and `Graphite_Layer_Sep`
(4.3 to 4.9 Å); 23 of its frames are in the training split and one (4.5 Å) in validation. Its
reference curve (optB88-vdW) has a minimum near 3.6 Å. ``scan`` prints both curves, each relative
to the widest separation, with the minimum of each and the model's absolute error per frame;
``weight`` writes a copy of the training file whose scan frames carry the configuration weight W
(``config_weight``) and every other frame 1 (with ``--only``, the scan frames alone: can the
model fit the curve at all?).
"""

import argparse
import json
from pathlib import Path

import numpy as np
from ase.io import read, write

SCAN_TYPES = ("Graphite", "Graphite_Layer_Sep")


def layer_separation(atoms, tolerance: float = 0.01):
    """The distance between the two planes (normal to the third cell vector) that hold every atom
    of ``atoms``, or None when its atoms do not lie in exactly two planes."""
    normal = np.cross(atoms.cell[0], atoms.cell[1])
    normal = normal / np.linalg.norm(normal)
    heights = np.sort(atoms.positions @ normal)
    gaps = np.diff(heights)
    breaks = np.flatnonzero(gaps > tolerance)
    if len(breaks) != 1:
        return None
    lower, upper = heights[: breaks[0] + 1], heights[breaks[0] + 1 :]
    if np.ptp(lower) > tolerance or np.ptp(upper) > tolerance:
        return None
    return float(heights[-1] - heights[0])


def is_scan_frame(atoms) -> bool:
    """A frame of the bilayer scan: a graphite config type whose atoms lie in two flat layers."""
    return atoms.info.get("config_type") in SCAN_TYPES and layer_separation(atoms) is not None


def scan_frames(files):
    """(separation, frame) of every scan frame in ``files``, by increasing separation."""
    found = [(layer_separation(a), a) for f in files for a in read(f, ":") if is_scan_frame(a)]
    if not found:
        raise SystemExit(f"bilayer.py: no bilayer scan frames in {', '.join(map(str, files))}")
    return sorted(found, key=lambda pair: pair[0])


def binding_curves(frames, calc, energy_key: str = "REF_energy"):
    """Separations, reference and model energies (meV/atom, each relative to the widest separation
    of the scan) and the model's absolute error per frame (meV/atom)."""
    rows = []
    for separation, atoms in frames:
        model = atoms.copy()
        model.calc = calc
        rows.append((separation, atoms.info[energy_key] / len(atoms), model.get_potential_energy() / len(model)))
    separation, ref, pred = (np.array(col) for col in zip(*rows))
    return separation, 1000 * (ref - ref[-1]), 1000 * (pred - pred[-1]), 1000 * (pred - ref)


def summary(separation, ref, pred) -> dict:
    """The minimum of each curve (separation and depth) and the RMS difference of the curves."""
    out = {}
    for name, curve in (("reference", ref), ("model", pred)):
        i = int(np.argmin(curve))
        out[name] = {"minimum_separation": float(separation[i]), "minimum_mev_per_atom": float(curve[i])}
    out["rms_difference_mev_per_atom"] = float(np.sqrt(np.mean((pred - ref) ** 2)))
    return out


def _scan(args) -> None:
    from attnmace import AttnMACECalculator

    files = [args.split_dir / "train.extxyz", args.split_dir / "valid.extxyz"]
    separation, ref, pred, error = binding_curves(scan_frames(files), AttnMACECalculator(args.model))
    print(f"{'d (Å)':>6}{'DFT':>10}{'model':>10}   (meV/atom, relative to d = {separation[-1]:.2f} Å)   model − DFT")
    for d, r, p, e in zip(separation, ref, pred, error):
        print(f"{d:6.2f}{r:10.2f}{p:10.2f}{e:+27.2f}")
    result = summary(separation, ref, pred)
    for name in ("reference", "model"):
        m = result[name]
        print(f"{name} minimum: {m['minimum_mev_per_atom']:.2f} meV/atom at {m['minimum_separation']:.2f} Å")
    print(f"RMS difference of the curves: {result['rms_difference_mev_per_atom']:.2f} meV/atom")
    if args.json:
        result.update(
            model_file=str(args.model),
            separation=separation.tolist(),
            reference_mev_per_atom=ref.tolist(),
            model_mev_per_atom=pred.tolist(),
            model_minus_reference_mev_per_atom=error.tolist(),
        )
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(4.5, 3.4))
        ax.plot(separation, ref, "o-", ms=3, label="DFT (GAP-20 labels)")
        ax.plot(separation, pred, "s--", ms=3, label=Path(args.model).name)
        ax.axhline(0, color="0.7", lw=0.8)
        ax.set_xlabel("layer separation (Å)")
        ax.set_ylabel(f"E − E({separation[-1]:.1f} Å) (meV/atom)")
        ax.set_ylim(min(ref.min(), pred.min()) - 5, 60)
        ax.legend(frameon=False)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=150)


def _weight(args) -> None:
    source = args.split_dir / "train.extxyz"
    name = "train_bilayer_only.extxyz" if args.only else f"train_bilayer{args.weight:g}.extxyz"
    output = args.output or args.split_dir / name
    frames = read(source, ":")
    scan = [is_scan_frame(atoms) for atoms in frames]
    weighted = sum(scan)
    if not weighted:
        raise SystemExit(f"bilayer.py: no bilayer scan frames in {source}")
    for atoms, in_scan in zip(frames, scan):
        atoms.info["config_weight"] = float(args.weight) if in_scan else 1.0
    if args.only:
        frames = sorted((atoms for atoms, in_scan in zip(frames, scan) if in_scan), key=layer_separation)
    write(output, frames, format="extxyz")
    print(f"{output}: {len(frames)} frames, {weighted} scan frames with config_weight {args.weight:g}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    scan = sub.add_parser("scan", help="the model's binding curve against DFT's")
    scan.add_argument("--model", default="gap20.pt")
    scan.add_argument("--split-dir", type=Path, default=Path("runs/gap20/data"))
    scan.add_argument("--json", help="also write the curves and minima here")
    scan.add_argument("--plot", help="also plot the curves to this PNG")
    weight = sub.add_parser("weight", help="a training file whose scan frames carry weight W")
    weight.add_argument("weight", type=float)
    weight.add_argument("--split-dir", type=Path, default=Path("runs/gap20/data"))
    weight.add_argument("--output", type=Path)
    weight.add_argument("--only", action="store_true", help="write the scan frames alone")
    args = parser.parse_args(argv)
    if args.command == "scan":
        _scan(args)
    else:
        if not np.isfinite(args.weight) or args.weight < 0:
            raise SystemExit(f"bilayer.py: the weight must be finite and >= 0, got {args.weight:g}")
        _weight(args)


if __name__ == "__main__":
    main()
