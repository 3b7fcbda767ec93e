"""The channel-wise edge tensor product of Eq. (1), written for speed.

``φ_ij = Σ_paths R_path,k(r_ij) · (h_j,k ⊗ Y(r̂_ij))_path`` with one weight per path and channel
(e3nn's ``uvu`` mode, spherical harmonics of multiplicity one). It computes the same function,
with the same normalisation, as ``e3nn.o3.TensorProduct`` with those instructions, but in a form
that suits many small edges:

* The paths are grouped into chunks of equal input ``l1`` and output ``l3``, in the order of
  the output columns.
* In training (``train()`` mode), TorchScript and ``torch.compile``, each path is one batched
  product of the *weighted* input with the spherical harmonics contracted with its
  Clebsch-Gordan block: ``(R_path(r_ij) h_j) (k, 2 l1 + 1) @ (Y_e · C_path) (2 l1 + 1, 2 l3 + 1)``.
  The radial weight scales the small input, not the product, so no edge-sized tensor is
  multiplied by a weight broadcast over ``m3``, in the forward or in either backward (on CPU a
  broadcast over an inner axis of 3 to 7 elements costs several times a plain product), and
  the tensors kept for the backward are the per-path weighted inputs and ``Y_e · C_path``,
  never the product itself.
* In eager inference (``eval()`` mode) a chunk's paths are computed together,
  ``M_e = Y_e · C`` of shape ``(n_edges, 2 l1 + 1, paths × (2 l3 + 1))``, and neither ``M_e``
  nor ``h_j @ M_e`` is kept for the backward: both are recomputed there from the small inputs
  ``h_j``, ``Y`` and the weights (``_WeightedProduct``), the least memory for the force backward.

No edge-sized tensor is sliced per path, so the backward (and the double backward of force
training) does not build one zero-filled gradient per path, which dominated e3nn's cost here:
the weights are split once (``torch.split``, whose backward is one ``cat``), and the paths'
outputs are joined with :func:`~attnmace.nn._irreps.concat`, whose double backward splits once.
The output is channel-major, ``(n_edges, channels, Σ_paths (2 l3 + 1))``, flattened; ``to_e3nn``
maps it to e3nn's ``(path, channel, m)`` layout where a module downstream needs that.
"""

import math
from typing import List, Tuple

import torch
from e3nn import o3

from ._irreps import DerivedBuffers, compiling, concat


def _product(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """``x @ m`` for ``(n, k, d1)`` and ``(n, d1, cols)``; a broadcast product when ``d1 == 1``."""
    return x * m if x.shape[2] == 1 else torch.bmm(x, m)


class _WeightedProduct(torch.autograd.Function):
    """``(x @ (sh @ coupling)) * w`` for one chunk, recomputing the products in the backward.

    ``x``: ``(n, k, d1)``, ``sh``: ``(n, sh_dim)``, ``coupling``: ``(sh_dim, d1 * paths * d3)`` (a
    constant), ``w``: ``(n, k, paths, 1)``. Only these inputs are saved, not the edge-sized
    ``M = sh @ coupling`` and ``x @ M``; the backward is written with differentiable operations,
    so the double backward works too.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, sh: torch.Tensor, coupling: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, sh, coupling, w)
        n, k, paths, d1 = w.shape[0], w.shape[1], w.shape[2], x.shape[2]
        cols = coupling.shape[1] // d1  # explicit sizes: views of 0 edges cannot infer -1
        t = _product(x, torch.mm(sh, coupling).view(n, d1, cols))
        return (t.view(n, k, paths, cols // paths) * w).view(n, k, cols)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, sh, coupling, w = ctx.saved_tensors
        n, k, paths, d1 = w.shape[0], w.shape[1], w.shape[2], x.shape[2]
        cols = coupling.shape[1] // d1
        m = torch.mm(sh, coupling).view(n, d1, cols)
        g = grad.view(n, k, paths, cols // paths)
        grad_x = grad_sh = grad_w = None
        if ctx.needs_input_grad[3]:
            grad_w = (g * _product(x, m).view(n, k, paths, cols // paths)).sum(-1, keepdim=True)
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
            grad_t = (g * w).view(n, k, cols)
            if ctx.needs_input_grad[0]:
                grad_x = (grad_t * m).sum(-1, keepdim=True) if x.shape[2] == 1 else torch.bmm(grad_t, m.transpose(1, 2))
            if ctx.needs_input_grad[1]:
                grad_m = (x * grad_t).sum(1, keepdim=True) if x.shape[2] == 1 else torch.bmm(x.transpose(1, 2), grad_t)
                grad_sh = torch.mm(grad_m.reshape(n, coupling.shape[1]), coupling.t())
        return grad_x, grad_sh, None, grad_w


@torch.jit.unused
def _weighted_product_recomputed(
    x: torch.Tensor, sh: torch.Tensor, coupling: torch.Tensor, w: torch.Tensor
) -> torch.Tensor:
    return _WeightedProduct.apply(x, sh, coupling, w)


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


class ChannelwiseTensorProduct(DerivedBuffers):
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
    chunk_blocks: List[int]
    chunk_d1: List[int]
    chunk_paths: List[int]
    chunk_d3: List[int]
    coupling_offsets: List[int]
    weight_offsets: List[int]
    chunk_path_ids: List[int]
    chunk_path_starts: List[int]
    path_coupling_offsets: List[int]
    block_sizes: List[int]
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
        self.sh_dim = irreps_sh.dim
        k = self.channels
        self.block_sizes = [k * ir.dim for _, ir in irreps_node]
        path_offsets = [0]
        for _, _, ir3 in paths:
            path_offsets.append(path_offsets[-1] + k * ir3.dim)

        # chunks: (node block l1, output l3) with all their paths; one product per chunk
        self.chunk_blocks, self.chunk_d1, self.chunk_paths, self.chunk_d3 = [], [], [], []
        couplings: List[torch.Tensor] = []
        path_couplings: List[torch.Tensor] = []  # (sh, d1 * d3) of each path, chunk after chunk
        weight_index: List[int] = []
        self.weight_offsets = [0]
        self.chunk_path_ids = []  # e3nn path index of each chunk's paths, chunk after chunk
        self.chunk_path_starts = []  # where each chunk's paths begin in chunk_path_ids
        columns: List[Tuple[int, int]] = []  # (path, m3) of each output column, channel-major order
        for i, (_, ir1) in enumerate(irreps_node):
            for d3 in sorted({ir3.dim for i_, _, ir3 in paths if i_ == i}):
                mine = [(p, j, ir3) for p, (i_, j, ir3) in enumerate(paths) if i_ == i and ir3.dim == d3]
                c = torch.zeros(irreps_sh.dim, ir1.dim, len(mine), d3, dtype=torch.float64)
                for n, (p, j, ir3) in enumerate(mine):
                    ir2 = irreps_sh[j].ir
                    # e3nn 'component' irrep normalisation with 'element' path normalisation
                    w3j = o3.wigner_3j(ir1.l, ir2.l, ir3.l, dtype=torch.float64) * math.sqrt(ir3.dim)
                    c[sh_starts[j] : sh_starts[j + 1], :, n, :] = w3j.transpose(0, 1)
                    columns.extend((p, m) for m in range(d3))
                couplings.append(c.reshape(-1))
                path_couplings.extend(c[:, :, n, :].reshape(-1) for n in range(len(mine)))
                self.chunk_path_starts.append(len(self.chunk_path_ids))
                self.chunk_blocks.append(i)
                self.chunk_d1.append(ir1.dim)
                self.chunk_paths.append(len(mine))
                self.chunk_d3.append(d3)
                self.chunk_path_ids.extend(p for p, _, _ in mine)
                # weights (E, paths * k) in e3nn order -> (E, k, P) for this chunk
                weight_index.extend(p * k + u for u in range(k) for p, _, _ in mine)
                self.weight_offsets.append(len(weight_index))
        self.coupling_offsets = [0]
        for c in couplings:
            self.coupling_offsets.append(self.coupling_offsets[-1] + c.numel())
        # all coupling tensors in one flat buffer (TorchScript has no lists of buffers)
        self.register_buffer("coupling", torch.cat(couplings).to(torch.get_default_dtype()), persistent=False)
        # the same couplings path by path, each contiguous: the training path's matrix without a copy
        self.path_coupling_offsets = [0]
        for c in path_couplings:
            self.path_coupling_offsets.append(self.path_coupling_offsets[-1] + c.numel())
        self.register_buffer("path_coupling", torch.cat(path_couplings).to(torch.get_default_dtype()), persistent=False)
        self.register_buffer("weight_index", torch.tensor(weight_index, dtype=torch.long), persistent=False)
        self.width = len(columns)
        # channel-major flat index -> e3nn layout: e3nn[path offset + u * (2 l3 + 1) + m3]
        to_e3nn = torch.empty(self.dim, dtype=torch.long)
        for n, (p, m) in enumerate(columns):
            d3 = paths[p][2].dim
            for u in range(k):
                to_e3nn[path_offsets[p] + u * d3 + m] = u * self.width + n
        self.register_buffer("to_e3nn", to_e3nn, persistent=False)

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
        recompute = False
        if not torch.jit.is_scripting():  # TorchScript drops this block when compiling
            recompute = not self.training and not compiling()
        blocks = torch.split(h, self.block_sizes, dim=1)
        # e3nn's uvu weights are path-major: path p owns columns p*k .. p*k + k - 1. One split
        # (whose backward is one cat) instead of a gather or a slice per path.
        path_weights = torch.split(weights, k, dim=1)
        chunks: List[torch.Tensor] = []
        for c in range(len(self.chunk_blocks)):
            d1, paths, d3 = self.chunk_d1[c], self.chunk_paths[c], self.chunk_d3[c]
            x = blocks[self.chunk_blocks[c]].reshape(n, k, d1)
            if recompute:  # keeps x, sh and w, not the edge-sized products
                start, stop = self.coupling_offsets[c], self.coupling_offsets[c + 1]
                coupling = self.coupling.narrow(0, start, stop - start).view(self.sh_dim, d1 * paths * d3)
                start, stop = self.weight_offsets[c], self.weight_offsets[c + 1]
                w = weights.index_select(1, self.weight_index.narrow(0, start, stop - start)).view(n, k, paths, 1)
                chunks.append(_weighted_product_recomputed(x, sh, coupling, w))
            else:
                for q in range(self.chunk_path_starts[c], self.chunk_path_starts[c] + paths):
                    # the weight scales the small input (k x d1 per edge), not the product
                    # (k x d3): no edge-sized product is broadcast over m3, forward or backward
                    xw = x * path_weights[self.chunk_path_ids[q]].unsqueeze(2)
                    start, stop = self.path_coupling_offsets[q], self.path_coupling_offsets[q + 1]
                    coupling = self.path_coupling.narrow(0, start, stop - start).view(self.sh_dim, d1 * d3)
                    chunks.append(_product(xw, torch.mm(sh, coupling).view(n, d1, d3)))  # (n, k, d3) of path q
        return concat(chunks, 2).view(n, k * self.width)
