"""Are the test atoms' environments covered by the training data, and does the error follow?

    python examples/gap20/coverage.py models/gap20.pt --split-dir runs/gap20/data \\
        --test ../shared/data/gap20/gap20_amorphous_test.extxyz \\
        --output examples/gap20/results/coverage_2026-12-07/summary.json

The training file has no ``Amorphous_Bulk`` frame, and the test set is nothing else. This script
measures how far each validation and test atom is from the training data, in the model's own
descriptors (``AttnMACECalculator.get_descriptors``: the invariant node features after each
layer, standardised by the training atoms' mean and standard deviation), as the distance to its
nearest training atom (its **novelty**). The validation atoms come from the training
distribution, so their novelty quantiles say what "covered" means; the test atoms are binned by
those quantiles, and each bin's force RMSE is reported for both sets.

If the test atoms that lie as close to the training data as typical validation atoms have
validation-like errors, and the test error comes from the atoms farther out, what the model
lacks is training data like the test set; if the close test atoms are as badly predicted as the
rest, it is not.
"""

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import ase.io
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from compare import KEYS  # noqa: E402

from attnmace import AttnMACECalculator  # noqa: E402
from attnmace.calculator import resolve_model_path  # noqa: E402
from attnmace.train.evaluate import evaluate_file  # noqa: E402

#: Quantiles of the validation atoms' novelty that bound the bins.
QUANTILES = (0.25, 0.5, 0.75, 0.9, 0.95, 0.99)


def descriptors(calc: AttnMACECalculator, frames: Sequence) -> np.ndarray:
    """The invariant descriptors of every atom of ``frames``, stacked ``(n_atoms, n_features)``."""
    return np.concatenate([calc.get_descriptors(atoms) for atoms in frames])


def nearest(queries: np.ndarray, reference: np.ndarray, chunk: int = 512) -> Tuple[np.ndarray, np.ndarray]:
    """Euclidean distance from each row of ``queries`` to its nearest row of ``reference``, and
    that row's index (float32, ``chunk`` queries at a time: 512 against 150,000 rows take 0.3 GB)."""
    ref = torch.as_tensor(reference, dtype=torch.float32)
    dist, index = [], []
    for start in range(0, len(queries), chunk):
        q = torch.as_tensor(queries[start : start + chunk], dtype=torch.float32)
        best = torch.cdist(q, ref).min(dim=1)
        dist.append(best.values)
        index.append(best.indices)
    return torch.cat(dist).double().numpy(), torch.cat(index).numpy()


def atom_types(frames: Sequence) -> np.ndarray:
    """Each atom's frame ``config_type``."""
    return np.concatenate([[a.info.get("config_type", "unknown")] * len(a) for a in frames])


def by_type(types: np.ndarray, errors: np.ndarray) -> Dict[str, Dict]:
    """Atoms, fraction and force RMSE (meV/Å) for each value of ``types``."""
    out = {}
    for name in sorted(set(types.tolist())):
        inside = types == name
        out[name] = {
            "n_atoms": int(inside.sum()),
            "fraction": float(inside.mean()),
            "forces_rmse_meV_per_A": float(1000 * np.sqrt(np.mean(errors[inside] ** 2))),
        }
    return out


def force_errors(model, data_file: Path, max_atoms: int) -> np.ndarray:
    """Predicted minus reference forces of every atom of ``data_file`` (``(n_atoms, 3)``, eV/Å)."""
    preds, _, _ = evaluate_file(model, data_file, KEYS, torch.float32, 8, max_atoms=max_atoms)
    return np.concatenate([p["forces"] - p["ref_forces"] for p in preds])


def _ranks(x: np.ndarray) -> np.ndarray:
    ranks = np.empty(len(x))
    ranks[np.argsort(x, kind="stable")] = np.arange(len(x))
    return ranks


def binned(novelty: np.ndarray, errors: np.ndarray, edges: Sequence[float]) -> List[Dict]:
    """Atoms and force RMSE (meV/Å, per component) in each novelty bin ``[edges[k], edges[k+1])``."""
    bounds = [0.0, *edges, np.inf]
    rows = []
    for low, high in zip(bounds[:-1], bounds[1:]):
        inside = (novelty >= low) & (novelty < high)
        n = int(inside.sum())
        rows.append(
            {
                "novelty_from": float(low),
                "novelty_to": float(high) if np.isfinite(high) else None,
                "n_atoms": n,
                "fraction": n / len(novelty),
                "forces_rmse_meV_per_A": float(1000 * np.sqrt(np.mean(errors[inside] ** 2))) if n else None,
            }
        )
    return rows


def summarise(
    valid_novelty: np.ndarray, valid_errors: np.ndarray, test_novelty: np.ndarray, test_errors: np.ndarray
) -> Dict:
    """Novelty bins set by the validation quantiles, with both sets' errors in each, and the rank
    correlation of each test atom's force error norm with its novelty."""
    edges = [float(np.quantile(valid_novelty, q)) for q in QUANTILES]
    norms = np.linalg.norm(test_errors, axis=1)
    spearman = float(np.corrcoef(_ranks(test_novelty), _ranks(norms))[0, 1])
    return {
        "quantiles": list(QUANTILES),
        "edges": edges,
        "valid": binned(valid_novelty, valid_errors, edges),
        "test": binned(test_novelty, test_errors, edges),
        "valid_novelty_median": float(np.median(valid_novelty)),
        "test_novelty_median": float(np.median(test_novelty)),
        "test_spearman_error_novelty": spearman,
    }


def plot(summary: Dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = [f"q{100 * q:g}" for q in summary["quantiles"]]
    labels = [f"<{qs[0]}"] + [f"{a}–{b}" for a, b in zip(qs[:-1], qs[1:])] + [f"≥{qs[-1]}"]
    x = np.arange(len(labels))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.8))
    for offset, name in ((-0.2, "valid"), (0.2, "test")):
        rows = summary[name]
        ax1.bar(x + offset, [100 * r["fraction"] for r in rows], width=0.4, label=name)
        rmse = [r["forces_rmse_meV_per_A"] or np.nan for r in rows]
        ax2.bar(x + offset, rmse, width=0.4, label=name)
    ax1.set(ylabel="atoms (%)", title="distance to the training data (validation quantiles)")
    ax2.set(ylabel="force RMSE (meV/Å)", yscale="log", title="force error per bin")
    for ax in (ax1, ax2):
        ax.set_xticks(x, labels, rotation=30, fontsize=8)
    ax1.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> Dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="an exported model file or a shipped model's name")
    parser.add_argument("--split-dir", type=Path, default=Path("runs/gap20/data"), help="prepare.py's output")
    parser.add_argument("--test", type=Path, default=Path("../shared/data/gap20/gap20_amorphous_test.extxyz"))
    parser.add_argument("--max-atoms-per-pass", type=int, default=256)
    parser.add_argument("--output", type=Path, default=None, help="summary JSON (and a PNG beside it)")
    args = parser.parse_args(argv)

    model_path = resolve_model_path(args.model)
    calc = AttnMACECalculator(model_path, device="cpu", dtype="float32")
    files = {"train": args.split_dir / "train.extxyz", "valid": args.split_dir / "valid.extxyz", "test": args.test}
    frames = {name: ase.io.read(path, ":") for name, path in files.items()}
    feats = {name: descriptors(calc, frames[name]) for name in files}
    mean, std = feats["train"].mean(axis=0), feats["train"].std(axis=0)
    std[std == 0] = 1.0
    scaled = {name: (f - mean) / std for name, f in feats.items()}
    found = {name: nearest(scaled[name], scaled["train"]) for name in ("valid", "test")}
    novelty = {name: found[name][0] for name in found}
    errors = {name: force_errors(model_path, files[name], args.max_atoms_per_pass) for name in ("valid", "test")}
    summary = {
        "model": str(args.model),
        "n_train_atoms": len(feats["train"]),
        **summarise(novelty["valid"], errors["valid"], novelty["test"], errors["test"]),
        # what the test atoms resemble most: the config type of each one's nearest training atom
        "test_by_nearest_training_type": by_type(atom_types(frames["train"])[found["test"][1]], errors["test"]),
        "valid_novelty_median_by_type": {
            name: float(np.median(novelty["valid"][types == name]))
            for types in [atom_types(frames["valid"])]
            for name in sorted(set(types.tolist()))
        },
    }
    print(f"novelty bins (validation quantiles {QUANTILES}): atoms (%) and force RMSE (meV/Å)")
    for name in ("valid", "test"):
        cells = [f"{100 * r['fraction']:5.1f}% {r['forces_rmse_meV_per_A'] or np.nan:7.0f}" for r in summary[name]]
        print(f"  {name:5s} " + " | ".join(cells))
    print(f"Spearman correlation of test force error and novelty: {summary['test_spearman_error_novelty']:.3f}")
    print("test atoms by the config type of their nearest training atom: atoms (%) and force RMSE (meV/Å)")
    for name, row in sorted(summary["test_by_nearest_training_type"].items(), key=lambda kv: -kv[1]["n_atoms"]):
        print(f"  {name:22s} {100 * row['fraction']:5.1f}% {row['forces_rmse_meV_per_A']:7.0f}")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=1) + "\n")
        plot(summary, args.output.with_suffix(".png"))
    return summary


if __name__ == "__main__":
    main()
