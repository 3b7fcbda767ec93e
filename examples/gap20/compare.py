"""The Table-1 comparison on our GAP-20 split: baseline against attention, same data and budget.

    python examples/gap20/compare.py --data-dir ../shared/data/gap20 --split-dir runs/gap20/data \\
        attention=examples/gap20/training/attention baseline=examples/gap20/training/baseline

Each ``name=run_dir`` is a training output folder (``model.pt``, ``metrics.csv``; with ``--last``,
the EMA weights of the last epoch in ``checkpoint.pt`` instead of the best-validation ``model.pt``;
with ``--epoch N``, the EMA weights of epoch N, kept by ``--snapshot-every``, so that two runs are
compared at the same epochs and the budget counts their first N epochs). ``name=file.pt`` names
the weights directly: a ``checkpoint.pt`` or snapshot, whose run is the folder holding it, or an
exported model file (``attnmace-export``, e.g. with ``--logit-cap``), whose run ``--run
name=run_dir`` names; the budget is that run's up to the epoch of the weights. For every model
this evaluates the validation split and ``gap20_amorphous_test.extxyz`` (energy and force RMSE,
overall and per ``config_type``), reads the training budget from ``metrics.csv`` (epochs, steps,
wall time), and writes to ``--output``:

* ``metrics.json``: everything above;
* ``table.md``: the comparison table of ``models/README.md``, beside the paper's numbers;
* ``force_outliers.png``: the paper's Figure 2 (right) for all models on the test set, the
  fraction of atoms whose relative force error ``|ΔF| / |F|`` exceeds a threshold.
"""

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch

from attnmace import read_metadata
from attnmace.calculator import resolve_model_path
from attnmace.train.checkpoint import read_checkpoint, snapshot_path
from attnmace.train.data import DataKeys
from attnmace.train.evaluate import compute_metrics, evaluate_file

#: Norwood et al., Table 1 (full GAP-20, validation): parameters, E (meV/atom), F (meV/Å)
PAPER = {"baseline": ("616K", 10.7, 328.3), "attention": ("163K", 8.6, 257.9)}
KEYS = DataKeys(energy="REF_energy", forces="REF_forces")


def evaluate(model_file: Path, data_file: Path, dtype=torch.float32, batch_size: int = 8, max_atoms: int = 0):
    """Metrics (overall, per config type, force outliers) of one model file on one dataset, and the
    same errors grouped by the number of atoms per cell (``per_cell_size``). ``max_atoms`` bounds
    the atoms of one pass through the model (memory; the errors do not depend on it)."""
    preds, config_types, meta = evaluate_file(model_file, data_file, KEYS, dtype, batch_size, max_atoms=max_atoms)
    metrics = compute_metrics(preds, config_types)
    sizes = [str(p["num_atoms"]) for p in preds]  # the table sorts them as numbers
    metrics["per_cell_size"] = compute_metrics(preds, sizes)["per_config_type"]
    return metrics, meta


def budget(run_dir: Path, epochs=None):
    """Epochs, optimiser steps and wall time of a training run from its ``metrics.csv``; with
    ``epochs``, of its first ``epochs`` epochs only.

    A fine-tune (``init_from`` in its ``config.yaml``) started from a snapshot or checkpoint of
    another run, whose epoch the file records: its budget adds that run's first epochs up to it, and
    ``fine_tune`` says where it started and what the fine-tune alone took.
    """
    with open(run_dir / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    if epochs is not None:
        if len(rows) < epochs:
            raise SystemExit(f"{run_dir} has trained {len(rows)} epochs, not {epochs}")
        rows = rows[:epochs]
    config = {}
    if (run_dir / "config.yaml").exists():
        import yaml

        config = yaml.safe_load((run_dir / "config.yaml").read_text()) or {}
    steps = int(config.get("max_steps_per_epoch") or 0) * len(rows)
    best = min(rows, key=lambda r: float(r["valid_loss"])) if rows and "valid_loss" in rows[0] else None
    own = {
        "epochs": len(rows),
        "best_epoch": int(best["epoch"]) if best else len(rows),
        "steps": steps,
        "hours": sum(float(r["seconds"]) for r in rows) / 3600.0,
        "batch_size": config.get("batch_size"),
        "dtype": config.get("dtype"),
    }
    start = _started_from(config.get("init_from"))
    if start is None:
        return own
    base_dir, base_epoch = start
    base = budget(base_dir, base_epoch)
    total = {**own, **{key: base[key] + own[key] for key in ("epochs", "steps", "hours")}}
    total["fine_tune"] = {
        "init_from": str(config["init_from"]),
        "from_epoch": base_epoch,
        **{key: own[key] for key in ("epochs", "steps", "hours")},
    }
    return total


def _run_folder(weights: Path) -> Path:
    """The run folder of a weights file: the one holding it (a ``checkpoint.pt``) or the one
    above its ``snapshots/``."""
    return weights.parent.parent if weights.parent.name == "snapshots" else weights.parent


def _started_from(init_from):
    """(run folder, epoch) of the snapshot, checkpoint or exported model a fine-tune started from,
    or None when the run is not a fine-tune or that file is not part of a run with a
    ``metrics.csv`` (a shipped model, say)."""
    if not init_from:
        return None
    path = Path(init_from)
    if not path.is_absolute() and not path.exists() and (Path(__file__).parents[2] / path).exists():
        path = Path(__file__).parents[2] / path  # recorded relative to the repository root
    try:
        path = resolve_model_path(path)  # a file, or the name of a shipped model
    except FileNotFoundError:
        raise SystemExit(f"the fine-tune started from {init_from}, which is not there: its budget is unknown") from None
    run_dir = _run_folder(path)
    if not (run_dir / "metrics.csv").is_file():
        return None
    try:
        epoch = read_checkpoint(path)[2].get("epoch")
    except ValueError:  # an exported model: the epoch its export recorded
        epoch = (read_metadata(path).get("extra") or {}).get("epoch")
    return (run_dir, int(epoch)) if epoch else None


def model_file(run_dir: Path, last: bool = False, epoch=None) -> Path:
    """The weights of a run to evaluate: the best-validation ``model.pt``; with ``last``, the EMA
    weights of the last epoch (``checkpoint.pt``); with ``epoch``, those of that epoch (its
    snapshot, ``--snapshot-every``, or the checkpoint if that is the epoch it holds)."""
    if epoch is None:
        return run_dir / ("checkpoint.pt" if last else "model.pt")
    snapshot = snapshot_path(run_dir, epoch)
    if snapshot.is_file():
        return snapshot
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.is_file() and read_checkpoint(checkpoint)[2]["epoch"] == epoch:
        return checkpoint
    kept = sorted(p.stem for p in (run_dir / "snapshots").glob("epoch_*.pt"))
    raise SystemExit(f"{run_dir} keeps no weights of epoch {epoch} (snapshots: {', '.join(kept) or 'none'})")


def table(results) -> str:
    """Markdown comparison table (ours beside the paper's full-data numbers)."""
    lines = [
        "| model | params | valid E (meV/atom) | valid F (meV/Å) | test E (meV/atom) | test F (meV/Å) "
        "| budget | paper params | paper E | paper F |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        v, t, b = r["valid"]["overall"], r["test"]["overall"], r["budget"]
        p = PAPER.get(r["preset"], ("", "", ""))
        lines.append(
            f"| {name} | {r['parameters']:,} | {v['energy_rmse_meV_per_atom']:.1f} | {v['forces_rmse_meV_per_A']:.0f} "
            f"| {t['energy_rmse_meV_per_atom']:.1f} | {t['forces_rmse_meV_per_A']:.0f} "
            f"| {b['epochs']} epochs × {b['steps'] // max(b['epochs'], 1)} steps "
            f"(model of epoch {b.get('best_epoch', b['epochs'])}), {b['hours']:.1f} h "
            f"| {p[0]} | {p[1]} | {p[2]} |"
        )
    lines += _grouped(
        results,
        "valid",
        "per_config_type",
        "Validation errors per config type:",
        "config_type",
        lambda m: f"{m['forces_rmse_meV_per_A']:.0f} / {m['energy_rmse_meV_per_atom']:.1f}",
        "(cells: force RMSE meV/Å / energy RMSE meV/atom)",
    )
    lines += _grouped(
        results,
        "test",
        "per_cell_size",
        "Test set by atoms per cell:",
        "atoms",
        lambda m: (
            f"{m['forces_rmse_meV_per_A']:.0f} / {m['energy_rmse_meV_per_atom']:.1f} / "
            f"{m['energy_mean_error_meV_per_atom']:+.1f}"
        ),
        "(cells: force RMSE meV/Å / energy RMSE meV/atom / mean energy error, predicted − reference, meV/atom)",
    )
    return "\n".join(lines) + "\n"


def _grouped(results, split, grouping, title, column, cell, legend):
    """Rows of one grouped table (config types or cell sizes), one column per model."""
    groups = {g for r in results.values() for g in r[split].get(grouping, {})}
    if not groups:
        return []
    lines = ["", title, "", f"| {column} | frames | " + " | ".join(results) + " |"]
    lines.append("|---|---|" + "---|" * len(results))
    for g in sorted(groups, key=lambda g: (int(g), g) if g.isdigit() else (0, g)):
        found = [r[split].get(grouping, {}).get(g) for r in results.values()]
        frames = next(m["n_frames"] for m in found if m)
        lines.append(f"| {g} | {frames} | " + " | ".join(cell(m) if m else "" for m in found) + " |")
    return lines + ["", legend]


def outlier_plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.8))
    for name, r in results.items():
        out = r["test"]["force_outliers"]
        t, f = np.array(out["thresholds"]), np.array(out["fraction"])
        ax.loglog(100 * t, np.where(f > 0, f, np.nan), "o-", label=f"{name} ({r['parameters'] / 1e3:.0f}K)")
    ax.set_xlabel("relative force error threshold |ΔF|/|F| (%)")
    ax.set_ylabel("fraction of atoms above threshold")
    ax.set_xlim(10, 1e5)
    ax.set_title("GAP-20 amorphous test set")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)


def weights_epoch(meta) -> int:
    """The training epoch of evaluated weights: a checkpoint's, or the one an export recorded."""
    epoch = meta.get("epoch") or (meta.get("extra") or {}).get("epoch")
    if not epoch:
        raise SystemExit("the model file records no training epoch: its budget is unknown")
    return int(epoch)


def run_of(weights: Path, named=None) -> Path:
    """The training run a weights file comes from: ``named`` (``--run``), else its run folder."""
    run_dir = Path(named) if named is not None else _run_folder(weights)
    if not (run_dir / "metrics.csv").is_file():
        raise SystemExit(
            f"{run_dir} holds no metrics.csv, so the budget of {weights} is unknown: name its training run "
            "with --run NAME=RUN_DIR"
        )
    return run_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "runs", nargs="+", help="name=run_dir, or name=file.pt (a checkpoint, snapshot or exported model)"
    )
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data/gap20"))
    parser.add_argument("--split-dir", type=Path, default=Path("runs/gap20/data"))
    parser.add_argument("--output", type=Path, default=Path("examples/gap20/results"))
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument(
        "--last",
        action="store_true",
        help="evaluate each run's last epoch (EMA weights of checkpoint.pt), not its best-validation model.pt",
    )
    parser.add_argument(
        "--epoch",
        type=int,
        help="evaluate every run at this epoch (snapshots/epoch_NNNN.pt or checkpoint.pt): the same-epochs comparison",
    )
    parser.add_argument(
        "--max-atoms-per-pass",
        type=int,
        default=0,
        help="evaluate in parts of at most this many atoms (memory: the 64-channel baseline on a 24 GB machine)",
    )
    parser.add_argument(
        "--run",
        action="append",
        default=[],
        metavar="NAME=RUN_DIR",
        help="the training run of a model file given as name=file.pt (its budget); needed for exported files",
    )
    args = parser.parse_args(argv)
    named_runs = dict(spec.partition("=")[::2] for spec in args.run)
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    results = {}
    for spec in args.runs:
        name, _, path = spec.partition("=")
        source = Path(path)
        if source.is_file():
            if args.last or args.epoch is not None:
                raise SystemExit(f"{name}={path} is a model file: --last and --epoch choose weights of run folders")
            weights, run_dir = source, run_of(source, named_runs.get(name))  # before the minutes of evaluation
        else:
            weights = model_file(source, args.last, args.epoch)
        dtype, cap = getattr(torch, args.dtype), args.max_atoms_per_pass
        valid, meta = evaluate(weights, args.split_dir / "valid.extxyz", dtype, max_atoms=cap)
        test, _ = evaluate(weights, args.data_dir / "gap20_amorphous_test.extxyz", dtype, max_atoms=cap)
        config = meta["config"]
        if source.is_file():
            epoch = weights_epoch(meta)
            run_budget, described = budget(run_dir, epoch), f"{weights}, epoch {epoch}"
        else:
            run_budget = budget(source, args.epoch)
            described = (
                f"{weights.name}, EMA weights of epoch {meta.get('epoch')}"
                if args.last or args.epoch
                else "best validation loss (model.pt)"
            )
        results[name] = {
            "preset": "attention" if config.get("heads", 0) > 0 else "baseline",
            "parameters": int(meta.get("num_parameters") or 0),
            "config": config,
            "valid": valid,
            "test": test,
            "budget": run_budget,
            "weights": described,
        }
        # the model's own cutoffs: a run started with --init-from records the default cutoffs of
        # its command line in config.yaml, not the architecture it took from the checkpoint
        results[name]["budget"]["cutoffs"] = list(config["cutoffs"])
        if source.is_file():
            results[name]["budget"]["best_epoch"] = epoch
        elif args.last or args.epoch:
            results[name]["budget"]["best_epoch"] = meta.get("epoch")
        print(
            f"{name}: valid F {valid['overall']['forces_rmse_meV_per_A']:.1f} meV/Å, "
            f"test F {test['overall']['forces_rmse_meV_per_A']:.1f} meV/Å"
        )
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "metrics.json").write_text(json.dumps(results, indent=1))
    (args.output / "table.md").write_text(table(results))
    outlier_plot(results, args.output / "force_outliers.png")
    print(table(results))
    print(f"wrote {args.output}/metrics.json, table.md, force_outliers.png")


if __name__ == "__main__":
    main()
