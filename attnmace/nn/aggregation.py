"""Neighbourhood aggregation of edge embeddings: the plain sum of Eq. (2).

:class:`SumAggregation` and :class:`~attnmace.nn.attention.AttentionAggregation` share one
interface, so that ``heads = 0`` is simply the other module.
"""

from typing import Tuple

import torch
from e3nn import o3


class SumAggregation(torch.nn.Module):
    """``Σ_{j ∈ N(i)} φ_ij`` (Eq. 2 without the linear ``W``)."""

    heads: int

    def __init__(self, irreps_edge: o3.Irreps):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_edge)
        self.irreps_out = self.irreps_in
        self.heads = 0

    def forward(
        self,
        phi: torch.Tensor,
        h: torch.Tensor,
        receivers: torch.Tensor,
        envelope: torch.Tensor,
        num_nodes: int,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sum edge embeddings onto their centre atoms.

        Args:
            phi: edge embeddings, shape ``(n_edges, irreps_edge.dim)``.
            h: node features of the centres, shape ``(n_atoms, irreps_node.dim)`` (unused).
            receivers: centre atom ``i`` of each edge, shape ``(n_edges,)``.
            envelope: cutoff envelope ``u(r_ij)``, shape ``(n_edges,)`` (unused).
            num_nodes: number of atoms.

        Returns:
            The aggregate ``(n_atoms, irreps_edge.dim)`` and an empty ``(n_edges, 0)`` tensor of
            attention weights.
        """
        out = torch.zeros(num_nodes, phi.shape[1], dtype=phi.dtype, device=phi.device)
        out = out.index_add(0, receivers, phi)
        return out, phi.new_zeros((phi.shape[0], 0))
