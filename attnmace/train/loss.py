"""Weighted energy / forces / stress loss."""

from dataclasses import dataclass
from typing import Dict, Optional

import torch

from .. import keys
from .graphs import FORCES_MASK, NUM_ATOMS, REF_ENERGY, REF_FORCES, REF_STRESS, STRESS_MASK, WEIGHT


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


def _force_weights(batch: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Each structure's weight for its force terms: 0 for energy-only frames (forces mask 0; a
    batch without the mask has forces everywhere)."""
    mask = batch.get(FORCES_MASK)
    return batch[WEIGHT] if mask is None else batch[WEIGHT] * mask


def loss_norms(*batches: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The denominators of the loss terms of the batch made of ``batches`` (the parts of one batch,
    or one batch): its summed structure weights (energy), three times the summed weights of its
    atoms with forces (forces) and its summed stress weights.

    Passing the norms of a whole batch to :func:`compute_loss` of each of its parts makes the parts'
    losses sum to the whole batch's loss, so their gradients, accumulated, are the batch's.
    """
    energy = sum(b[WEIGHT].sum() for b in batches)
    forces = sum(_force_weights(b).index_select(0, b[keys.BATCH]).sum() for b in batches)
    stress = sum((b[STRESS_MASK] * b[WEIGHT]).sum() for b in batches)
    return {"energy": energy.clamp_min(1e-12), "forces": 3.0 * forces.clamp_min(1e-12), "stress": stress}


def compute_loss(
    out: Dict[str, torch.Tensor],
    batch: Dict[str, torch.Tensor],
    w: LossWeights,
    norms: Optional[Dict[str, torch.Tensor]] = None,
) -> Dict[str, torch.Tensor]:
    """Total loss and its parts for one batch.

    Energies enter per atom; each structure's configuration weight multiplies its energy and
    stress terms and its atoms' force terms. Each term is a weighted mean over the batch; with
    ``norms`` (:func:`loss_norms` of a larger batch that ``batch`` is part of) the sums are divided
    by that batch's weights instead, so that the parts of a batch add up to its loss.
    """
    norms = loss_norms(batch) if norms is None else norms
    weight = batch[WEIGHT]  # (n_graphs,)
    n = batch[NUM_ATOMS]
    e_err = _error(out[keys.ENERGY] / n, batch[REF_ENERGY] / n, w.huber_delta)
    energy = (weight * e_err).sum() / norms["energy"]
    atom_weight = _force_weights(batch).index_select(0, batch[keys.BATCH]).unsqueeze(-1)  # (n_atoms, 1)
    f_err = _error(out[keys.FORCES], batch[REF_FORCES], w.huber_delta)
    forces = (atom_weight * f_err).sum() / norms["forces"]
    parts = {"energy": energy, "forces": forces}
    total = w.energy * energy + w.forces * forces
    mask = batch[STRESS_MASK] * weight
    if keys.STRESS in out and w.stress > 0 and bool(mask.sum() > 0):
        s_err = _error(out[keys.STRESS], batch[REF_STRESS], w.huber_delta).sum(dim=(1, 2)) / 9.0
        stress = (mask * s_err).sum() / norms["stress"]
        parts["stress"] = stress
        total = total + w.stress * stress
    parts["total"] = total
    return parts
