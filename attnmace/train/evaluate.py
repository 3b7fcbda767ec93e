"""Predictions and error metrics of a model on a dataset (used by ``attnmace-eval`` and training)."""

from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from .. import keys
from ..export import load_model_with_metadata, metadata_of
from .checkpoint import model_from_checkpoint, neither_message
from .data import DataKeys, check_species, load_frames
from .graphs import (
    FORCES_MASK,
    REF_ENERGY,
    REF_FORCES,
    REF_STRESS,
    STRESS_MASK,
    GraphDataset,
    collate_graphs,
    split_by_atoms,
)

#: Thresholds of the relative force error |ΔF|/|F| (the paper's Figure 2, right).
OUTLIER_THRESHOLDS = np.logspace(-1, 3, 13)


def predict(
    model: torch.nn.Module, dataset, batch_size: int = 8, device: str = "cpu", max_atoms: int = 0
) -> List[Dict[str, np.ndarray]]:
    """Energy, forces (and stress for labelled periodic frames) of every frame of ``dataset``.

    Frames go through the model ``batch_size`` at a time, and with ``max_atoms`` > 0 in parts of
    at most that many atoms (a larger frame alone), which bounds the memory of a pass.
    """
    model.eval()
    results: List[Dict[str, np.ndarray]] = []
    for items in _parts(dataset, batch_size, max_atoms):
        batch = {k: v.to(device) for k, v in collate_graphs(items).items()}
        stress = bool(batch[STRESS_MASK].sum() > 0)
        out = model(batch, compute_forces=True, compute_stress=stress)
        counts = [int(item[keys.POSITIONS].shape[0]) for item in items]
        forces = out[keys.FORCES].detach().cpu().double().numpy()
        bounds = np.concatenate([[0], np.cumsum(counts)])
        for g, item in enumerate(items):
            res = {
                "energy": float(out[keys.ENERGY][g].detach().cpu()),
                "forces": forces[bounds[g] : bounds[g + 1]],
                "ref_energy": float(item[REF_ENERGY][0]),
                "ref_forces": item[REF_FORCES].double().numpy(),
                "num_atoms": counts[g],
                "has_forces": bool(item[FORCES_MASK][0] > 0),  # False: energy only (ref_forces zeros)
            }
            if stress and bool(item[STRESS_MASK][0] > 0):
                res["stress"] = out[keys.STRESS][g].detach().cpu().double().numpy()
                res["ref_stress"] = item[REF_STRESS][0].double().numpy()
            results.append(res)
    return results


def _parts(dataset, batch_size: int, max_atoms: int):
    """The frames of ``dataset`` in batches of ``batch_size``, each split by ``max_atoms``; built one
    batch at a time, so a dataset read lazily is never held in memory whole."""
    for start in range(0, len(dataset), batch_size):
        yield from split_by_atoms([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))], max_atoms)


def evaluate_file(
    model_path,
    data_path,
    data_keys: DataKeys,
    dtype: torch.dtype = torch.float64,
    batch_size: int = 8,
    device: str = "cpu",
    max_atoms: int = 0,
) -> Tuple[List[Dict[str, np.ndarray]], List[str], Dict]:
    """Predictions of an exported model file, or of a training ``checkpoint.pt`` (its EMA weights),
    on every frame of a data file (``batch_size`` and ``max_atoms`` as in :func:`predict`).

    Returns the predictions (see :func:`predict`), each frame's ``config_type`` and the model's
    metadata. Raises ``ValueError`` if the data hold elements the model does not know.
    """
    module, meta = load_for_evaluation(model_path, device)
    module = module.to(dtype)
    dataset, config_types = labelled_graphs(data_path, data_keys, meta["atomic_numbers"], meta["r_max"], dtype)
    preds = predict(module, dataset, batch_size, device, max_atoms)
    return preds, config_types, meta


def labelled_graphs(data_path, data_keys: DataKeys, atomic_numbers, r_max: float, dtype, cache: bool = False):
    """The frames of a data file as a model's graphs (a :class:`GraphDataset`; ``cache`` keeps
    them for repeated passes) and each frame's ``config_type``. Raises ``ValueError`` if the data
    hold elements the model does not know."""
    frames = load_frames(str(data_path), data_keys)
    check_species(frames, list(atomic_numbers), str(data_path))
    dataset = GraphDataset(frames, list(atomic_numbers), r_max, dtype, cache=cache, source=str(data_path))
    return dataset, [frames[i].config_type for i in range(len(frames))]


def load_for_evaluation(path, device: str = "cpu") -> Tuple[torch.nn.Module, Dict]:
    """An exported model and its metadata, or the model of a training checkpoint (``checkpoint.pt``
    of ``attnmace-train``: the EMA weights when it has them, with ``epoch`` in the metadata)."""
    try:
        return load_model_with_metadata(path, device)
    except ValueError as not_exported:
        try:
            model, extra = model_from_checkpoint(path)
        except ValueError as not_checkpoint:
            raise ValueError(neither_message(path, not_exported, not_checkpoint)) from None
        meta = metadata_of(model)
        meta["epoch"] = extra["epoch"]
        return model.to(device), meta


def _with_forces(preds: List[Dict[str, np.ndarray]]) -> List[Dict[str, np.ndarray]]:
    return [p for p in preds if p.get("has_forces", True)]


def _block(preds: List[Dict[str, np.ndarray]]) -> Dict[str, float]:
    """Errors of ``preds``; the force ones over the frames with forces, absent when none has."""
    de = np.array([(p["energy"] - p["ref_energy"]) / p["num_atoms"] for p in preds]) * 1e3
    out = {
        "n_frames": len(preds),
        "n_atoms": int(sum(p["num_atoms"] for p in preds)),
        "energy_rmse_meV_per_atom": float(np.sqrt(np.mean(de**2))),
        "energy_mae_meV_per_atom": float(np.mean(np.abs(de))),
        "energy_mean_error_meV_per_atom": float(np.mean(de)),  # predicted - reference: a shared offset
    }
    with_forces = _with_forces(preds)
    if with_forces:
        df = np.concatenate([(p["forces"] - p["ref_forces"]).ravel() for p in with_forces]) * 1e3
        out["forces_rmse_meV_per_A"] = float(np.sqrt(np.mean(df**2)))
        out["forces_mae_meV_per_A"] = float(np.mean(np.abs(df)))
        if len(with_forces) < len(preds):
            out["n_frames_with_forces"] = len(with_forces)
    with_stress = [p for p in preds if "stress" in p]
    if with_stress:
        ds = np.concatenate([(p["stress"] - p["ref_stress"]).ravel() for p in with_stress]) * 1e3
        out["stress_rmse_meV_per_A3"] = float(np.sqrt(np.mean(ds**2)))
        out["stress_mae_meV_per_A3"] = float(np.mean(np.abs(ds)))
    return out


def force_outliers(preds: List[Dict[str, np.ndarray]], thresholds=OUTLIER_THRESHOLDS) -> Dict[str, List[float]]:
    """Fraction of atoms whose relative force error |ΔF| / |F_ref| exceeds each threshold (over the
    frames with forces; NaN when there are none)."""
    preds = _with_forces(preds)
    if not preds:
        return {"thresholds": [float(t) for t in thresholds], "fraction": [float("nan")] * len(thresholds)}
    err = np.concatenate([np.linalg.norm(p["forces"] - p["ref_forces"], axis=1) for p in preds])
    ref = np.concatenate([np.linalg.norm(p["ref_forces"], axis=1) for p in preds])
    relative = err / np.maximum(ref, 1e-8)
    return {
        "thresholds": [float(t) for t in thresholds],
        "fraction": [float((relative > t).mean()) for t in thresholds],
    }


def compute_metrics(preds: List[Dict[str, np.ndarray]], config_types: Optional[List[str]] = None) -> Dict:
    """Overall and per-``config_type`` errors (meV/atom, meV/Å, meV/Å^3) and force outliers."""
    result = {"overall": _block(preds), "force_outliers": force_outliers(preds)}
    if config_types is not None:
        result["per_config_type"] = {
            name: _block([p for p, c in zip(preds, config_types) if c == name]) for name in sorted(set(config_types))
        }
    return result


def parity_plots(preds: List[Dict[str, np.ndarray]], folder, title: str = "") -> List[str]:
    """Energy and force parity plots and the force-outlier curve as PNG files in ``folder``."""
    import matplotlib

    matplotlib.use("Agg")
    from pathlib import Path

    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    e_ref = np.array([p["ref_energy"] / p["num_atoms"] for p in preds])
    e_pred = np.array([p["energy"] / p["num_atoms"] for p in preds])
    with_forces = _with_forces(preds)
    panels = [(e_ref, e_pred, "energy (eV/atom)")]
    if with_forces:
        f_ref = np.concatenate([p["ref_forces"].ravel() for p in with_forces])
        f_pred = np.concatenate([p["forces"].ravel() for p in with_forces])
        panels.append((f_ref, f_pred, "force (eV/Å)"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 4.2), squeeze=False)
    for ax, (ref, pred, label) in zip(axes[0], panels):
        lo, hi = min(ref.min(), pred.min()), max(ref.max(), pred.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.scatter(ref, pred, s=4, alpha=0.5)
        ax.set_xlabel(f"reference {label}")
        ax.set_ylabel(f"predicted {label}")
    fig.suptitle(title)
    fig.tight_layout()
    paths.append(str(folder / "parity.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    if not with_forces:
        return paths
    out = force_outliers(preds)
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.loglog(out["thresholds"], np.maximum(out["fraction"], 1e-7), "o-")
    ax.set_xlabel("relative force error threshold |ΔF|/|F|")
    ax.set_ylabel("fraction of atoms above")
    ax.set_title(title)
    fig.tight_layout()
    paths.append(str(folder / "force_outliers.png"))
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
