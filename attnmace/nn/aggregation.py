"""Neighbourhood aggregation of edge embeddings: the plain sum of Eq. (2).

:class:`SumAggregation` and :class:`~attnmace.nn.attention.AttentionAggregation` share one
interface, so that ``heads = 0`` is simply the other module.
"""

from typing import Optional, Tuple

import torch
from e3nn import o3

from ._irreps import DerivedBuffers


class SumAggregation(DerivedBuffers):
    """``Σ_{j ∈ N(i)} φ_ij`` (Eq. 2 without the linear ``W``).

    Args:
        irreps_edge: irreps of ``φ_ij``.
        edge_layout: index that maps the flat ``φ_ij`` given to ``forward`` to e3nn's layout of
            ``irreps_edge`` (``ChannelwiseTensorProduct.to_e3nn``); ``None`` if it is e3nn's already.
    """

    heads: int

    def __init__(self, irreps_edge: o3.Irreps, edge_layout: Optional[torch.Tensor] = None):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_edge)
        self.irreps_out = self.irreps_in
        self.heads = 0
        if edge_layout is None:
            edge_layout = torch.arange(self.irreps_in.dim)
        self.register_buffer("to_e3nn", edge_layout.clone(), persistent=False)

    def forward(
        self,
        phi: torch.Tensor,
        h: torch.Tensor,
        receivers: torch.Tensor,
        envelope: torch.Tensor,
        num_nodes: int,
        width: int = -1,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Sum edge embeddings onto their centre atoms.

        Args:
            phi: edge embeddings, shape ``(n_edges, irreps_edge.dim)``.
            h: node features of the centres, shape ``(n_atoms, irreps_node.dim)`` (unused).
            receivers: centre atom ``i`` of each edge, shape ``(n_edges,)``.
            envelope: cutoff envelope ``u(r_ij)``, shape ``(n_edges,)`` (unused).
            num_nodes: number of atoms.
            width: the largest neighbour count (unused; the attention variant needs it).

        Returns:
            The aggregate ``(n_atoms, irreps_edge.dim)`` in e3nn's layout and an empty ``(n_edges, 0)`` tensor of
            attention weights.
        """
        out = torch.zeros(num_nodes, phi.shape[1], dtype=phi.dtype, device=phi.device)
        out = out.index_add(0, receivers, phi).index_select(1, self.to_e3nn)
        return out, phi.new_zeros((phi.shape[0], 0))
