"""Irreps helpers: natural-parity irreps and layout changes between e3nn and channel-major."""

from typing import List

import torch
from e3nn import o3


def natural_irreps(max_l: int, mul: int = 1) -> o3.Irreps:
    """``mul x 0e + mul x 1o + mul x 2e + ...`` up to ``max_l`` (parity ``(-1)**l``)."""
    return o3.Irreps([(mul, (l, (-1) ** l)) for l in range(max_l + 1)])


def block_dims(irreps: o3.Irreps) -> List[int]:
    """The ``2l + 1`` of each irreps block, for the layout helpers below."""
    return [ir.dim for _, ir in irreps]


def to_channel_major(x: torch.Tensor, channels: int, dims: List[int]) -> torch.Tensor:
    """e3nn layout ``(n, [k x (2l+1)] per l)`` -> channel-major ``(n, k, Σ (2l+1))``."""
    out: List[torch.Tensor] = []
    start = 0
    for d in dims:
        out.append(x[:, start : start + channels * d].reshape(x.shape[0], channels, d))
        start += channels * d
    return torch.cat(out, dim=2)


def from_channel_major(x: torch.Tensor, dims: List[int]) -> torch.Tensor:
    """Channel-major ``(n, k, Σ (2l+1))`` -> e3nn layout ``(n, Σ k (2l+1))``."""
    out: List[torch.Tensor] = []
    start = 0
    for d in dims:
        out.append(x[:, :, start : start + d].reshape(x.shape[0], -1))
        start += d
    return torch.cat(out, dim=1)


class DerivedBuffers(torch.nn.Module):
    """Base for modules whose index and coupling tensors are derived from the irreps.

    Such tensors are registered with ``persistent=False``: they are rebuilt by ``__init__``, kept
    in TorchScript files, and left out of ``state_dict``, so a change of their layout cannot
    corrupt a checkpoint. Checkpoints written while they were persistent still load: their stale
    copies are dropped here.
    """

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self._non_persistent_buffers_set:
            state_dict.pop(prefix + name, None)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
