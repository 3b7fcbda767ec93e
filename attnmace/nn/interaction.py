"""One AttnMACE layer: edge embedding (Eq. 1), aggregation (Eq. 2 or 5-6), product basis (Eq. 3).

The block receives its radial embedding, aggregation and product modules ready-made, so the
plain and the attention variants differ only in the aggregation module they are given.
"""

import bisect
from typing import List, Tuple

import torch
import torch.utils.checkpoint
from e3nn import nn as enn
from e3nn import o3

from ._irreps import block_dims, from_channel_major, to_channel_major
from .radial import RadialEmbedding
from .tensor_product import ChannelwiseTensorProduct, edge_irreps

__all__ = ["InteractionBlock", "edge_irreps"]


class InteractionBlock(torch.nn.Module):
    """One message-passing layer of AttnMACE with its own cutoff.

    Args:
        irreps_in: node features ``h^(s)`` entering the layer.
        irreps_sh: spherical harmonics of the edge directions.
        channels: feature channels ``k``.
        radial: radial embedding with this layer's cutoff.
        radial_mlp: hidden sizes of the radial MLP ``R``.
        tp: the edge tensor product; its output is channel-major (``tp.to_e3nn`` maps it).
        aggregation: sums the edge embeddings per atom (plain or attention-weighted); its
            ``irreps_in`` must be ``tp.irreps_out`` and it must take ``tp``'s layout.
        product: symmetric contraction producing ``B``.
        irreps_out: node features ``h^(s+1)`` leaving the layer.
        num_species: number of elements (element-dependent residual).
        avg_num_neighbors: normalisation of the aggregated sum.
    """

    channels: int
    avg_num_neighbors: float
    a_dims: List[int]
    b_dims: List[int]
    edge_chunk: int

    def __init__(
        self,
        irreps_in: o3.Irreps,
        irreps_sh: o3.Irreps,
        channels: int,
        radial: RadialEmbedding,
        radial_mlp: Tuple[int, ...],
        tp: ChannelwiseTensorProduct,
        aggregation: torch.nn.Module,
        product: torch.nn.Module,
        irreps_out: o3.Irreps,
        num_species: int,
        avg_num_neighbors: float,
    ):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps(irreps_out)
        self.channels = channels
        self.avg_num_neighbors = float(avg_num_neighbors)
        self.radial = radial
        self.linear_up = o3.Linear(self.irreps_in, self.irreps_in)
        irreps_a = product.irreps_in
        irreps_mid, _ = edge_irreps(self.irreps_in, o3.Irreps(irreps_sh), irreps_a)
        if tp.irreps_out != irreps_mid:
            raise ValueError(f"tensor product gives {tp.irreps_out}, the layer needs {irreps_mid}")
        self.tp = tp
        # R(r): one weight per path and channel
        self.radial_mlp = enn.FullyConnectedNet(
            [radial.num_basis, *radial_mlp, self.tp.weight_numel], torch.nn.functional.silu
        )
        if aggregation.irreps_in != irreps_mid:
            raise ValueError(f"aggregation expects {aggregation.irreps_in}, edge embedding gives {irreps_mid}")
        self.aggregation = aggregation
        # W of Eqs. (2)/(6): the (concatenated heads') aggregate -> channels of A
        self.linear = o3.Linear(aggregation.irreps_out, irreps_a)
        self.product = product
        self.a_dims = block_dims(irreps_a)
        self.b_dims = block_dims(product.irreps_out)
        self.edge_chunk = 0  # > 0: eager inference runs the edge work in checkpointed chunks (_chunked_edges)
        self.linear_out = o3.Linear(product.irreps_out, self.irreps_out)
        species_irreps = o3.Irreps(f"{num_species}x0e")
        self.skip = o3.FullyConnectedTensorProduct(self.irreps_in, species_irreps, self.irreps_out)

    def forward(
        self,
        h: torch.Tensor,
        species: torch.Tensor,
        species_onehot: torch.Tensor,
        lengths: torch.Tensor,
        sh: torch.Tensor,
        senders: torch.Tensor,
        receivers: torch.Tensor,
        width: int = -1,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Update node features with one layer.

        Args:
            h: node features, ``(n_atoms, irreps_in.dim)``.
            species: element index, ``(n_atoms,)``.
            species_onehot: ``(n_atoms, num_species)``.
            lengths: edge lengths ``|r_ij|`` of this layer's edges, ``(n_edges,)``.
            sh: spherical harmonics of the edge directions, ``(n_edges, irreps_sh.dim)``.
            senders: neighbour ``j`` of each edge, ``(n_edges,)``.
            receivers: centre ``i`` of each edge, sorted, ``(n_edges,)``.
            width: the largest neighbour count, for the attention's padded table (-1: compute it).

        Returns:
            New node features ``(n_atoms, irreps_out.dim)`` and attention weights
            ``(n_edges, heads)`` (``(n_edges, 0)`` without attention).
        """
        residual = self.skip(h, species_onehot)
        h_up = self.linear_up(h)
        if not torch.jit.is_scripting() and self.edge_chunk > 0 and not self.training and h.shape[0] > 0:
            aggregated, alpha = self._chunked_edges(h, h_up, lengths, sh, senders, receivers)
        else:
            aggregated, alpha = self._edges(h, h_up, lengths, sh, senders, receivers, width)
        a = self.linear(aggregated) / self.avg_num_neighbors  # A_i, Eq. (2)/(6)
        b = self.product(to_channel_major(a, self.channels, self.a_dims), species)  # B_i, Eq. (3)
        out = self.linear_out(from_channel_major(b, self.b_dims)) + residual
        return out, alpha

    def _edges(
        self,
        h: torch.Tensor,
        h_up: torch.Tensor,
        lengths: torch.Tensor,
        sh: torch.Tensor,
        senders: torch.Tensor,
        receivers: torch.Tensor,
        width: int = -1,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Edge embeddings ``φ_ij`` (Eq. 1) aggregated onto the ``h.shape[0]`` centre atoms."""
        basis, envelope = self.radial(lengths)  # (n_edges, num_basis), (n_edges,)
        weights = self.radial_mlp(basis)  # (n_edges, num_paths * channels)
        phi = self.tp(h_up.index_select(0, senders), sh, weights)  # (n_edges, irreps_mid.dim), channel-major
        return self.aggregation(phi, h, receivers, envelope, h.shape[0], width)

    @torch.jit.unused
    def _chunked_edges(
        self,
        h: torch.Tensor,
        h_up: torch.Tensor,
        lengths: torch.Tensor,
        sh: torch.Tensor,
        senders: torch.Tensor,
        receivers: torch.Tensor,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`_edges` over consecutive groups of centre atoms with about ``edge_chunk`` edges each.

        Every group runs under ``torch.utils.checkpoint``: the forward keeps only its inputs and
        the backward recomputes one group at a time, so the memory of the per-edge intermediates no
        longer grows with the system. An atom's edges all fall in one group (edges are sorted by
        centre), so the attention's normalisation over a neighbourhood is unchanged.
        """
        num_nodes = h.shape[0]
        ends = torch.cumsum(torch.bincount(receivers, minlength=num_nodes), 0).tolist()  # edges up to each atom
        # first atom after each group: the one after the atom whose edges reach k * edge_chunk
        targets = range(self.edge_chunk, receivers.shape[0], self.edge_chunk)
        cuts = {bisect.bisect_left(ends, t) + 1 for t in targets}
        atom_cuts = sorted({0, num_nodes} | {c for c in cuts if c < num_nodes})
        edge_at = [0] + ends  # edge_at[a]: first edge of atom a
        parts, alphas = [], []
        for a0, a1 in zip(atom_cuts[:-1], atom_cuts[1:]):
            e0, e1 = edge_at[a0], edge_at[a1]
            part, alpha = torch.utils.checkpoint.checkpoint(
                self._edges,
                h[a0:a1],
                h_up,
                lengths[e0:e1],
                sh[e0:e1],
                senders[e0:e1],
                receivers[e0:e1] - a0,
                use_reentrant=False,
            )
            parts.append(part)
            alphas.append(alpha)
        return torch.cat(parts, 0), torch.cat(alphas, 0)
