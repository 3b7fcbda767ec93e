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


class _Concat(torch.autograd.Function):
    """``torch.cat`` whose backward splits the gradient with one ``split`` instead of narrowing it.

    ``torch.cat``'s backward takes one ``narrow`` per input; in the double backward of force
    training each of those becomes a zero-filled tensor of the full output's size plus an
    addition, one per input. ``torch.split``'s backward is a single ``cat``.
    """

    @staticmethod
    def forward(ctx, dim: int, sizes: List[int], *tensors: torch.Tensor) -> torch.Tensor:
        ctx.dim = dim
        ctx.sizes = sizes
        return torch.cat(tensors, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, None, *torch.split(grad, ctx.sizes, ctx.dim))


@torch.jit.unused
def _concat_eager(tensors: List[torch.Tensor], dim: int) -> torch.Tensor:
    return _Concat.apply(dim, [t.shape[dim] for t in tensors], *tensors)


@torch.jit.unused
def compiling() -> bool:
    """True while ``torch.compile`` traces the code (eager-only paths then step aside)."""
    return torch.compiler.is_compiling()


def concat(tensors: List[torch.Tensor], dim: int) -> torch.Tensor:
    """``torch.cat(tensors, dim)`` with a cheaper double backward in eager mode (see ``_Concat``)."""
    if torch.jit.is_scripting() or len(tensors) == 1:
        return torch.cat(tensors, dim)
    return _concat_eager(tensors, dim)


def to_channel_major(x: torch.Tensor, channels: int, dims: List[int]) -> torch.Tensor:
    """e3nn layout ``(n, [k x (2l+1)] per l)`` -> channel-major ``(n, k, Σ (2l+1))``."""
    blocks = torch.split(x, [channels * d for d in dims], dim=1)
    return concat([b.reshape(x.shape[0], channels, d) for b, d in zip(blocks, dims)], 2)


def from_channel_major(x: torch.Tensor, dims: List[int]) -> torch.Tensor:
    """Channel-major ``(n, k, Σ (2l+1))`` -> e3nn layout ``(n, Σ k (2l+1))``."""
    blocks = torch.split(x, dims, dim=2)
    return concat([b.reshape(x.shape[0], -1) for b in blocks], 1)


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
