"""How much of the test force error do independently trained models share? Averaging models.

    python examples/gap20/committee.py attention=examples/gap20/training/attention/checkpoint.pt \\
        baseline=examples/gap20/training/baseline/checkpoint.pt ... \\
        --data ../shared/data/gap20/gap20_amorphous_test.extxyz --max-atoms-per-pass 256 \\
        --predictions runs/gap20/committee --output examples/gap20/results/committee/summary.json

Each ``name=file`` is an exported model or a training ``checkpoint.pt`` (its EMA weights). For
each model and for every pair, this reports on the data file:

* each model's force RMSE against the labels;
* the correlation of two models' force errors (all Cartesian components of all atoms), and the
  **shared error** ``sqrt(mean(e1 · e2))``: the RMS of the part of the error both models make.
  Averaging any number of models that share that much cannot bring the force RMSE below it;
* the force RMSE of the mean of every subset of two or more models (a committee).

Two runs started from the same weights share nearly all of their error; what a committee can gain
shows between models trained independently (here, the baseline and the attention runs).
With ``--labelled results/test_labels`` (the CP2K frames of ``check_test_labels.py label``), the
same comparison runs on those frames alone, against their labels and against the labels corrected
by CP2K's Γ-point sampling error (``F_label + F_mesh − F_Γ``): how much of the shared error is the
labels' own.

With ``--by-environment`` the errors are also broken down by each atom's coordination number
(neighbours within 1.85 Å, the first minimum of amorphous carbon's pair distribution) and by
its cell's mass density: where the shared error lives.

``--predictions`` keeps each model's predictions (``NAME.npz``), so that a rerun with more models
evaluates only the new ones (a model or data file whose contents changed is evaluated again).
"""

import argparse
import hashlib
import itertools
import json
import sys
from pathlib import Path

import ase.io
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
import check_test_labels  # noqa: E402
from compare import KEYS  # noqa: E402

from attnmace.train.evaluate import evaluate_file  # noqa: E402


def predictions(model_file: Path, data_file: Path, cache: Path = None, max_atoms: int = 0):
    """Predicted and reference forces, stacked over all atoms of ``data_file`` (``(N, 3)`` each,
    eV/Å), and the weights' epoch; read from ``cache`` when it holds them for the same contents of
    both files."""
    key = np.array([_digest(model_file), _digest(data_file)])
    if cache is not None and cache.is_file():
        with np.load(cache) as saved:
            if "key" in saved.files and np.array_equal(saved["key"], key):
                return saved["forces"], saved["ref_forces"], int(saved["epoch"])
    preds, _, meta = evaluate_file(model_file, data_file, KEYS, torch.float32, 8, max_atoms=max_atoms)
    forces = np.concatenate([p["forces"] for p in preds]).astype(np.float64)
    ref = np.concatenate([p["ref_forces"] for p in preds]).astype(np.float64)
    epoch = int(meta.get("epoch") or -1)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, forces=forces, ref_forces=ref, epoch=epoch, key=key)
    return forces, ref, epoch


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def committee_summary(forces: dict, ref: np.ndarray) -> dict:
    """Force errors (meV/Å) of each model, of each pair and of each committee (the mean forces of a
    subset of two or more models). ``forces`` maps a name to the ``(N, 3)`` predictions."""
    if len(forces) < 2:
        raise SystemExit(f"committee: give at least two models, got {len(forces)}")
    errors = {}
    for name, f in forces.items():
        if f.shape != ref.shape:
            raise SystemExit(f"committee: {name} predicts {f.shape} forces for {ref.shape} labels")
        errors[name] = (f - ref).ravel() * 1000.0

    def rmse(e):
        return float(np.sqrt(np.mean(e**2)))

    names = list(forces)
    pairs = []
    for a, b in itertools.combinations(names, 2):
        shared = float(np.mean(errors[a] * errors[b]))
        pairs.append(
            {
                "models": [a, b],
                "correlation": float(np.corrcoef(errors[a], errors[b])[0, 1]),
                "shared_rmse": float(np.sqrt(max(shared, 0.0))),
                "mean_rmse": rmse((errors[a] + errors[b]) / 2),
            }
        )
    committees = [
        {"models": list(subset), "rmse": rmse(sum(errors[n] for n in subset) / len(subset))}
        for k in range(2, len(names) + 1)
        for subset in itertools.combinations(names, k)
    ]
    return {
        "n_atoms": int(ref.shape[0]),
        "models": {name: {"rmse": rmse(errors[name])} for name in names},
        "pairs": pairs,
        "committees": committees,
    }


def labelled_frames(folder: Path, ref: np.ndarray, num_atoms) -> tuple:
    """The atoms of the test frames that ``check_test_labels.py label`` computed with CP2K (the
    ``frame_NNNN.json`` in ``folder``): a boolean mask over all atoms, the labels of those atoms
    corrected by CP2K's sampling error, and the frame numbers.

    Raises:
        SystemExit: no labelled frame, or a file whose labels are not those of the data file.
    """
    offsets = np.concatenate([[0], np.cumsum(num_atoms)])
    mask, corrected, frames = np.zeros(len(ref), bool), ref.copy(), []
    for path in sorted(folder.glob("frame_[0-9]*.json")):
        row = json.loads(path.read_text())
        i = row["frame"]
        atoms = slice(offsets[i], offsets[i + 1])
        label = np.asarray(row["label_forces"])
        if label.shape != ref[atoms].shape or not np.allclose(label, ref[atoms], atol=1e-4):
            raise SystemExit(f"committee: {path} holds other labels than frame {i} of the data file")
        mask[atoms] = True
        corrected[atoms] = label + np.asarray(row["mesh_forces"]) - np.asarray(row["gamma_forces"])
        frames.append(i)
    if not frames:
        raise SystemExit(f"committee: no frame_NNNN.json of check_test_labels.py in {folder}")
    return mask, corrected[mask], frames


#: C–C bonding distance for coordination numbers (Å), and the density bins (g/cm³)
BOND_CUTOFF = 1.85
DENSITY_BINS = (0.0, 2.0, 2.5, 3.0, 10.0)


def environment_groups(frames) -> dict:
    """Boolean masks over all atoms of ``frames``: ``"CN k"`` for atoms with k neighbours within
    :data:`BOND_CUTOFF` (``"CN 6+"`` for six and more) and ``"density a-b"`` by the mass density
    of each atom's cell (:data:`DENSITY_BINS`). Empty groups are left out."""
    from ase.neighborlist import neighbor_list

    coordination, density = [], []
    for atoms in frames:
        coordination.append(np.bincount(neighbor_list("i", atoms, BOND_CUTOFF), minlength=len(atoms)))
        density.append(np.full(len(atoms), check_test_labels.density(atoms)))
    coordination, density = np.concatenate(coordination), np.concatenate(density)
    groups = {f"CN {k}": coordination == k for k in range(6)}
    groups["CN 6+"] = coordination >= 6
    for lo, hi in zip(DENSITY_BINS[:-1], DENSITY_BINS[1:]):
        groups[f"density {lo:g}-{hi:g}"] = (density >= lo) & (density < hi)
    return {name: mask for name, mask in groups.items() if mask.any()}


def environment_summary(forces: dict, ref: np.ndarray, groups: dict) -> dict:
    """:func:`committee_summary` within each group of atoms (models and pairs), with the RMS of the
    labels there."""
    out = {}
    for name, mask in groups.items():
        summary = committee_summary({n: f[mask] for n, f in forces.items()}, ref[mask])
        del summary["committees"]  # the pairs tell it; all subsets of every group would be long
        summary["label_rms"] = float(np.sqrt(np.mean(ref[mask] ** 2)) * 1000.0)
        out[name] = summary
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="name=model_file (exported model or checkpoint.pt)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/gap20/gap20_amorphous_test.extxyz"))
    parser.add_argument("--predictions", type=Path, help="folder that keeps each model's predictions")
    parser.add_argument("--output", type=Path, help="JSON summary")
    parser.add_argument("--labelled", type=Path, help="CP2K results of check_test_labels.py label (frame_NNNN.json)")
    parser.add_argument(
        "--by-environment", action="store_true", help="break the errors down by coordination and density"
    )
    parser.add_argument("--max-atoms-per-pass", type=int, default=0)
    args = parser.parse_args(argv)
    forces, epochs, ref = {}, {}, None
    for spec in args.models:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"committee: expected name=model_file, got {spec!r}")
        cache = args.predictions / f"{name}.npz" if args.predictions else None
        forces[name], ref_now, epochs[name] = predictions(Path(path), args.data, cache, args.max_atoms_per_pass)
        if ref is not None and not np.array_equal(ref, ref_now):
            raise SystemExit(f"committee: the labels cached for {name} are not those of {args.data}")
        ref = ref_now
        print(f"{name}: {path} (epoch {epochs[name]})")
    summary = committee_summary(forces, ref)
    summary["data"] = str(args.data)
    for name, spec in zip(forces, args.models):
        summary["models"][name].update(file=spec.partition("=")[2], epoch=epochs[name])
    print("force RMSE (meV/Å): " + ", ".join(f"{n} {m['rmse']:.1f}" for n, m in summary["models"].items()))
    for pair in summary["pairs"]:
        a, b = pair["models"]
        print(
            f"{a} + {b}: error correlation {pair['correlation']:.3f}, shared {pair['shared_rmse']:.1f}, "
            f"mean of the two {pair['mean_rmse']:.1f}"
        )
    best = min(summary["committees"], key=lambda c: c["rmse"])
    print(f"best committee: {' + '.join(best['models'])}, {best['rmse']:.1f}")
    # the frames themselves, read once, for what only they tell: coordination, density, atoms per frame
    frames = list(ase.io.iread(args.data)) if args.by_environment or args.labelled else []
    if args.by_environment:
        groups = environment_groups(frames)
        summary["by_environment"] = environment_summary(forces, ref, groups)
        a, b = list(forces)[:2]
        print(f"group: atoms, label RMS, force RMSE of each model, shared error of {a} and {b} (meV/Å)")
        for name, group in summary["by_environment"].items():
            rmse = ", ".join(f"{m['rmse']:.0f}" for m in group["models"].values())
            shared = group["pairs"][0]["shared_rmse"]
            print(f"  {name}: {group['n_atoms']}, {group['label_rms']:.0f}, {rmse}, {shared:.0f}")
    if args.labelled:
        mask, corrected, labelled = labelled_frames(args.labelled, ref, [len(atoms) for atoms in frames])
        subset = {name: f[mask] for name, f in forces.items()}
        summary["labelled"] = {
            "frames": labelled,
            "against_labels": committee_summary(subset, ref[mask]),
            "against_corrected_labels": committee_summary(subset, corrected),
        }
        print(
            f"{len(labelled)} CP2K-labelled frames ({int(mask.sum())} atoms), shared error against labels / corrected:"
        )
        raw, fixed = (summary["labelled"][k]["pairs"] for k in ("against_labels", "against_corrected_labels"))
        for a, b in zip(raw, fixed):
            print(
                f"  {' + '.join(a['models'])}: {a['shared_rmse']:.1f} / {b['shared_rmse']:.1f} "
                f"(correlation {a['correlation']:.3f} / {b['correlation']:.3f})"
            )
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=1))
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
