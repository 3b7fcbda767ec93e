"""Deepening a trained model by one layer without changing what it predicts.

A model of ``n`` layers ends with a layer whose output is scalars only and an MLP readout. The
model of ``n + 1`` layers that :func:`add_layer` builds keeps every weight of the first ``n - 1``
layers, gives layer ``n`` its trained weights on the paths it had (its new ``l > 0`` outputs, which
only the new layer reads, start from the usual random initialisation), moves the MLP readout to
the new last layer, and starts that layer as the identity on the scalars: its residual passes them
through and its message part (``linear_out``) is zero. The readout of layer ``n``, now a linear
one, starts at zero. The deeper model's energies and forces are then those of the original, and
training grows the new layer from there: the gradient reaches ``linear_out`` at once, and through
it the rest of the layer.

This is how a larger model continues a converged smaller one (``attnmace-train --init-from ...
--add-layer CUTOFF``) instead of training from scratch.
"""

import dataclasses
from typing import Dict, Optional

import torch

from ..model import AttnMACE, build_model

__all__ = ["add_layer"]


def add_layer(
    model: AttnMACE,
    cutoff: float,
    avg_num_neighbors: Optional[float] = None,
    seed: Optional[int] = 0,
) -> AttnMACE:
    """A copy of ``model`` with one more layer, of cutoff ``cutoff`` (Å), that predicts the same.

    Args:
        model: an eager :class:`~attnmace.model.AttnMACE` (not a TorchScript export).
        cutoff: the new last layer's cutoff.
        avg_num_neighbors: normalisation of the new layer's neighbour sum (mean number of
            neighbours within ``cutoff``); default: that of the current last layer.
        seed: seed of the new weights' random initialisation.

    Returns:
        The deeper model, float64, in evaluation mode; its configuration has the new layer's
        cutoff, correlation order (that of the current last layer) and ``avg_num_neighbors``
        appended.

    Raises:
        TypeError: ``model`` is not an eager AttnMACE.
        ValueError: ``cutoff`` is not a positive finite number.
    """
    if not isinstance(model, AttnMACE):
        raise TypeError(f"add_layer needs an eager AttnMACE model, got {type(model).__name__}")
    cutoff = float(cutoff)
    if not (cutoff > 0 and cutoff < float("inf")):
        raise ValueError(f"the new layer's cutoff must be a positive number of Å, got {cutoff}")
    old = model.config
    n = old.num_layers
    config = dataclasses.replace(
        old,
        cutoffs=old.cutoffs + (cutoff,),
        correlation=tuple(old.correlation) + (old.correlation[-1],),
        avg_num_neighbors=old.avg_num_neighbors
        + (float(avg_num_neighbors) if avg_num_neighbors is not None else old.avg_num_neighbors[-1],),
    )
    deeper = build_model(config=config, dtype=torch.float64, seed=seed)
    source = {k: v.detach().to(torch.float64) for k, v in model.state_dict().items()}
    target = deeper.state_dict()
    grown: Dict[str, torch.Tensor] = {}
    was_last, last_readout = f"layers.{n - 1}.", f"readouts.{n - 1}."
    for key, value in source.items():
        if key.startswith(last_readout):  # the MLP readout follows the last layer
            new_key = f"readouts.{n}." + key[len(last_readout) :]
        else:
            new_key = key
        have = target[new_key]
        if have.shape == value.shape:
            grown[new_key] = value
        elif key.startswith(was_last) and key.endswith(("linear_out.weight", "skip.weight")):
            # e3nn orders the paths by irrep, the scalar one first, with the same normalisation
            grown[new_key] = torch.cat([value, have[value.numel() :]])
        elif key == was_last + "product.weight":  # (species, paths, channels), the scalar paths first
            grown[new_key] = torch.cat([value, have[:, value.shape[1] :]], dim=1)
        elif key.endswith("output_mask"):  # derived from the irreps; the deeper model's own
            continue
        else:
            raise ValueError(f"cannot carry {key} {tuple(value.shape)} into {new_key} {tuple(have.shape)}")
    grown[last_readout + "linear.weight"] = torch.zeros_like(target[last_readout + "linear.weight"])
    grown[f"layers.{n}.linear_out.weight"] = torch.zeros_like(target[f"layers.{n}.linear_out.weight"])
    grown[f"layers.{n}.skip.weight"] = _identity_skip(deeper.layers[n].skip, old.channels, len(old.species))
    deeper.load_state_dict(grown, strict=False)
    return deeper.eval()


def _identity_skip(skip: torch.nn.Module, channels: int, num_species: int) -> torch.Tensor:
    """Weights of the residual ``FullyConnectedTensorProduct(h, species one-hot)`` that pass the
    ``channels`` scalars of ``h`` through unchanged for every species: the identity on the
    ``0e x 0e -> 0e`` path, times the factor that undoes e3nn's path normalisation (measured)."""
    weight = torch.zeros_like(skip.weight)
    identity = torch.eye(channels, dtype=weight.dtype)
    # the 0e x 0e -> 0e path is the first: (channels, num_species, channels)
    block = identity[:, None, :].expand(channels, num_species, channels).reshape(-1)
    weight[: block.numel()] = block
    probe = torch.zeros(num_species, skip.irreps_in1.dim, dtype=weight.dtype)
    probe[:, 0] = 1.0
    onehot = torch.eye(num_species, dtype=weight.dtype)
    with torch.no_grad():
        out = skip(probe, onehot, weight)
    factor = out[:, 0]
    if not torch.all(factor > 0) or not torch.allclose(factor, factor[0].expand_as(factor)):
        raise RuntimeError(f"unexpected residual normalisation {factor.tolist()}")
    return weight / factor[0]
