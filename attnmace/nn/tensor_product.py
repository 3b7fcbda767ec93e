"""The channel-wise edge tensor product of Eq. (1), written for speed.

``φ_ij = Σ_paths R_path,k(r_ij) · (h_j,k ⊗ Y(r̂_ij))_path`` with one weight per path and channel
(e3nn's ``uvu`` mode, spherical harmonics of multiplicity one). It computes the same function,
with the same normalisation, as ``e3nn.o3.TensorProduct`` with those instructions, but in a form
that suits many small edges:

* For each input ``l1``, the spherical harmonics are contracted with all of that ``l1``'s
  Clebsch-Gordan blocks at once: ``M_e = Y_e · C_l1``, shape ``(n_edges, 2 l1 + 1, N_l1)``.
* One batched product ``h_j (k, 2 l1 + 1) @ M_e`` gives every path of that ``l1`` for all
  channels; the radial weights multiply the result.

No slice of the input is taken per path, so the backward (and the double backward of force
training) does not build one zero-filled gradient per path, which dominated e3nn's cost here.
The output is channel-major, ``(n_edges, channels, Σ_paths (2 l3 + 1))``, flattened; ``to_e3nn``
maps it to e3nn's ``(path, channel, m)`` layout where a module downstream needs that.
"""

import math
from typing import List, Tuple

import torch
from e3nn import o3


def edge_irreps(irreps_node: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
    """Output irreps and ``uvu`` instructions of the channel-wise tensor product of Eq. (1).

    Keeps every path ``l1 ⊗ l2 -> l3`` whose output irrep appears in ``irreps_target``, in e3nn's
    order (node block, spherical-harmonics block, output irrep).
    """
    targets = {ir for _, ir in irreps_target}
    irreps_mid, instructions = [], []
    for i, (mul, ir_in) in enumerate(irreps_node):
        for j, (_, ir_sh) in enumerate(irreps_sh):
            for ir_out in ir_in * ir_sh:
                if ir_out in targets:
                    instructions.append((i, j, len(irreps_mid), "uvu", True))
                    irreps_mid.append((mul, ir_out))
    return o3.Irreps(irreps_mid), instructions


class ChannelwiseTensorProduct(torch.nn.Module):
    """Weighted ``uvu`` tensor product of node features and spherical harmonics.

    Args:
        irreps_node: node features ``h_j``, every block with the same multiplicity (``channels``).
        irreps_sh: spherical harmonics, multiplicity one per ``l``.
        irreps_target: output irreps to keep; every path ``l1 ⊗ l2 -> l3`` with ``l3`` in it is used.

    Attributes:
        irreps_out: e3nn irreps of the output, one block per path, in e3nn's instruction order.
        instructions: the equivalent e3nn ``uvu`` instructions.
        weight_numel: number of per-edge weights (``paths × channels``).
    """

    channels: int
    weight_numel: int
    dim: int
    l1_dims: List[int]
    l1_starts: List[int]
    l1_widths: List[int]
    l1_offsets: List[int]
    sh_dim: int
    width: int

    def __init__(self, irreps_node: o3.Irreps, irreps_sh: o3.Irreps, irreps_target: o3.Irreps):
        super().__init__()
        irreps_node, irreps_sh = o3.Irreps(irreps_node), o3.Irreps(irreps_sh)
        muls = {mul for mul, _ in irreps_node}
        if len(muls) != 1 or any(mul != 1 for mul, _ in irreps_sh):
            raise ValueError(f"need one multiplicity for {irreps_node} and multiplicity 1 for {irreps_sh}")
        self.channels = muls.pop()
        self.irreps_out, self.instructions = edge_irreps(irreps_node, irreps_sh, irreps_target)
        sh_starts = [0]
        for _, ir in irreps_sh:
            sh_starts.append(sh_starts[-1] + ir.dim)

        paths: List[Tuple[int, int, o3.Irrep]] = [
            (i, j, self.irreps_out[p].ir) for (i, j, p, _, _) in self.instructions
        ]
        self.weight_numel = len(paths) * self.channels
        self.dim = self.irreps_out.dim
        k = self.channels

        # per node block l1: one coupling tensor (sh_dim, 2 l1 + 1, N_l1) over all its paths
        self.l1_dims, self.l1_starts, self.l1_widths = [], [], []
        couplings: List[torch.Tensor] = []
        m_path: List[int] = []  # path index of each output column (channel-major order)
        e3nn_pos: List[int] = []  # e3nn flat offset of column (channel 0) of each output column
        path_offsets = [0]
        for _, _, ir3 in paths:
            path_offsets.append(path_offsets[-1] + k * ir3.dim)
        start = 0
        for i, (_, ir1) in enumerate(irreps_node):
            mine = [(p, j, ir3) for p, (i_, j, ir3) in enumerate(paths) if i_ == i]
            width = sum(ir3.dim for _, _, ir3 in mine)
            if width == 0:  # no path from this block reaches a target irrep
                start += k * ir1.dim
                continue
            c = torch.zeros(irreps_sh.dim, ir1.dim, width, dtype=torch.float64)
            col = 0
            for p, j, ir3 in mine:
                ir2 = irreps_sh[j].ir
                # e3nn 'component' irrep normalisation with 'element' path normalisation
                w3j = o3.wigner_3j(ir1.l, ir2.l, ir3.l, dtype=torch.float64) * math.sqrt(ir3.dim)
                c[sh_starts[j] : sh_starts[j + 1], :, col : col + ir3.dim] = w3j.transpose(0, 1)
                m_path.extend([p] * ir3.dim)
                e3nn_pos.extend(path_offsets[p] + m for m in range(ir3.dim))
                col += ir3.dim
            couplings.append(c.reshape(irreps_sh.dim, ir1.dim * width))
            self.l1_dims.append(ir1.dim)
            self.l1_starts.append(start)
            self.l1_widths.append(width)
            start += k * ir1.dim
        width_total = len(m_path)
        self.sh_dim = irreps_sh.dim
        self.l1_offsets = [0]
        for c in couplings:
            self.l1_offsets.append(self.l1_offsets[-1] + c.numel())
        # all coupling tensors in one flat buffer (TorchScript has no lists of buffers)
        self.register_buffer("coupling", torch.cat([c.reshape(-1) for c in couplings]).to(torch.get_default_dtype()))
        # weights (E, paths * k) in e3nn order -> (E, k, width_total): gather index into (paths * k)
        gather = torch.tensor(
            [[m_path[n] * k + u for n in range(width_total)] for u in range(k)], dtype=torch.long
        ).reshape(-1)
        self.register_buffer("weight_index", gather)
        # channel-major flat index -> e3nn layout: e3nn[pos + u * dim3] = cm[u * width_total + n]
        to_e3nn = torch.empty(self.dim, dtype=torch.long)
        for n in range(width_total):
            dim3 = paths[m_path[n]][2].dim
            for u in range(k):
                to_e3nn[e3nn_pos[n] + u * dim3] = u * width_total + n
        self.register_buffer("to_e3nn", to_e3nn)
        self.width = width_total

    def forward(self, h: torch.Tensor, sh: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Edge embeddings, channel-major and flattened.

        Args:
            h: sender features in e3nn layout, ``(n_edges, irreps_node.dim)``.
            sh: spherical harmonics, ``(n_edges, irreps_sh.dim)``.
            weights: radial weights in e3nn order, ``(n_edges, weight_numel)``.

        Returns:
            ``(n_edges, channels * width)``; index with ``to_e3nn`` for e3nn's layout.
        """
        n = h.shape[0]
        k = self.channels
        parts: List[torch.Tensor] = []
        for idx in range(len(self.l1_dims)):
            d1 = self.l1_dims[idx]
            width = self.l1_widths[idx]
            coupling = self.coupling.narrow(0, self.l1_offsets[idx], self.l1_offsets[idx + 1] - self.l1_offsets[idx])
            x = h.narrow(1, self.l1_starts[idx], k * d1).reshape(n, k, d1)
            m = torch.mm(sh, coupling.view(self.sh_dim, d1 * width)).view(n, d1, width)  # Y · CG blocks
            if d1 == 1:
                parts.append(x * m)  # (n, k, 1) * (n, 1, width)
            else:
                parts.append(torch.bmm(x, m))  # (n, k, width)
        out = torch.cat(parts, dim=2) if len(parts) > 1 else parts[0]
        w = weights.index_select(1, self.weight_index).reshape(n, k, self.width)
        return (out * w).reshape(n, k * self.width)
