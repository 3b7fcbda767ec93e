"""Weighted energy / forces / stress loss."""

from dataclasses import dataclass
from typing import Dict

import torch

from .. import keys
from .graphs import NUM_ATOMS, REF_ENERGY, REF_FORCES, REF_STRESS, STRESS_MASK, WEIGHT


@dataclass(frozen=True)
class LossWeights:
    energy: float = 1.0  # on energy per atom (eV/atom)^2
    forces: float = 10.0  # on force components (eV/Å)^2
    stress: float = 1.0  # on stress components (eV/Å^3)^2
    huber_delta: float = 0.0  # > 0: Huber loss with this delta instead of squared error


def _error(pred: torch.Tensor, ref: torch.Tensor, delta: float) -> torch.Tensor:
    # the energy comes in float64 whatever the model's dtype; huber_loss does not promote
    dtype = torch.promote_types(pred.dtype, ref.dtype)
    pred, ref = pred.to(dtype), ref.to(dtype)
    if delta > 0:
        return torch.nn.functional.huber_loss(pred, ref, reduction="none", delta=delta)
    return (pred - ref) ** 2


def compute_loss(
    out: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor], w: LossWeights
) -> Dict[str, torch.Tensor]:
    """Total loss and its parts for one batch.

    Energies enter per atom; each structure's configuration weight multiplies its energy and
    stress terms and its atoms' force terms.
    """
    weight = batch[WEIGHT]  # (n_graphs,)
    n = batch[NUM_ATOMS]
    e_err = _error(out[keys.ENERGY] / n, batch[REF_ENERGY] / n, w.huber_delta)
    energy = (weight * e_err).sum() / weight.sum().clamp_min(1e-12)
    atom_weight = weight.index_select(0, batch[keys.BATCH]).unsqueeze(-1)  # (n_atoms, 1)
    f_err = _error(out[keys.FORCES], batch[REF_FORCES], w.huber_delta)
    forces = (atom_weight * f_err).sum() / (3.0 * atom_weight.sum().clamp_min(1e-12))
    parts = {"energy": energy, "forces": forces}
    total = w.energy * energy + w.forces * forces
    mask = batch[STRESS_MASK] * weight
    if keys.STRESS in out and w.stress > 0 and bool(mask.sum() > 0):
        s_err = _error(out[keys.STRESS], batch[REF_STRESS], w.huber_delta).sum(dim=(1, 2)) / 9.0
        stress = (mask * s_err).sum() / mask.sum()
        parts["stress"] = stress
        total = total + w.stress * stress
    parts["total"] = total
    return parts
