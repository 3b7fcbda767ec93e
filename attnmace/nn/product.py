"""Symmetric contraction: the MACE product basis, Eq. (3) of Norwood et al. (and Batatia et al.).

For every channel ``k`` of the atomic basis ``A_i`` (irreps ``0e + 1o + ... + l_A``), the block
forms all symmetric products of ``A_{i,k}`` up to correlation order ``ν`` and contracts them with
generalised Clebsch-Gordan coefficients into the output irreps, with element-dependent weights:

    B_{i,k,LM} = Σ_ν Σ_η  w_{z_i, ν, η, k} · U^{ν,L}_{η, M, mono} · mono_ν(A_{i,k})

A symmetric tensor of order ν is fully described by its coefficients on *monomials*
``A_{a} A_{b} A_{c}`` with ``a ≤ b ≤ c``; we therefore store the coupling basis ``U`` in monomial
form (816 monomials instead of 16³ = 4096 tensor entries for ``l_A = 3``, ν = 3). Per forward pass
the element weights are folded into ``U`` first (cost independent of the number of atoms), then a
single batched matrix product per element maps the monomials to the outputs. The full tensor
``(atoms, channels, M, 16, 16, 16)`` that a direct implementation materialises is never built.
"""

import functools
import itertools
import math
from typing import List

import torch
from e3nn import o3

from ._irreps import DerivedBuffers, natural_irreps


def _monomials(dim: int, order: int) -> torch.Tensor:
    """All sorted index tuples ``a1 <= ... <= a_order`` over ``range(dim)``: shape (n_mono, order)."""
    return torch.tensor(list(itertools.combinations_with_replacement(range(dim), order)), dtype=torch.long).reshape(
        -1, order
    )


def _fold_to_monomials(tensor: torch.Tensor, dim: int, order: int) -> torch.Tensor:
    """Sum a tensor (..., dim, ..., dim) over index permutations onto sorted monomials.

    Args:
        tensor: shape ``(batch, dim**order)``.

    Returns:
        Shape ``(batch, n_mono)``: the coefficient of each monomial of the polynomial
        ``Σ_a tensor[a] Π A_{a_i}``.
    """
    monos = _monomials(dim, order)
    lookup = {tuple(m.tolist()): n for n, m in enumerate(monos)}
    target = torch.empty(dim**order, dtype=torch.long)
    for flat, idx in enumerate(itertools.product(range(dim), repeat=order)):
        target[flat] = lookup[tuple(sorted(idx))]
    out = torch.zeros(tensor.shape[0], len(monos), dtype=tensor.dtype)
    out.index_add_(1, target, tensor)
    return out


@functools.cache
def coupling_basis(l_a: int, out_l: int, order: int) -> torch.Tensor:
    """Orthonormal basis of equivariant symmetric polynomials of degree ``order`` in ``A``.

    ``A`` has the natural-parity irreps ``0e + 1o + ... + l_a`` (dimension ``(l_a + 1)**2``), the
    output transforms as the natural-parity irrep ``out_l``. Candidates are all coupling trees
    ``((l1 ⊗ l2) → l12) ⊗ l3 → L`` built from e3nn's real Wigner 3j symbols; they are folded to
    monomials (which symmetrises them) and reduced to an orthonormal basis by Gram-Schmidt in their
    fixed order (:func:`orthonormal_rows`), so that the basis, and with it what trained weights
    mean, is the same on every machine.

    Returns:
        Shape ``(n_paths, 2 * out_l + 1, n_mono)``, float64. ``n_paths`` may be 0.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # thousands of tiny ops: threading only adds overhead
    try:
        return _coupling_basis(l_a, out_l, order)
    finally:
        torch.set_num_threads(threads)


def _coupling_basis(l_a: int, out_l: int, order: int) -> torch.Tensor:
    dim = (l_a + 1) ** 2
    offsets = [l * l for l in range(l_a + 1)]

    def embed(l: int) -> torch.Tensor:  # (2l+1, dim): selects the l block of A
        e = torch.zeros(2 * l + 1, dim, dtype=torch.float64)
        e[:, offsets[l] : offsets[l] + 2 * l + 1] = torch.eye(2 * l + 1, dtype=torch.float64)
        return e

    # chains: list of (l, parity, tensor of shape (2l+1, dim**k))
    chains = [(l, (-1) ** l, embed(l)) for l in range(l_a + 1)]
    max_intermediate = l_a + out_l
    for step in range(order - 1):
        last = step == order - 2
        new = []
        for l1, p1, t1 in chains:
            for l2 in range(l_a + 1):
                for l3 in range(abs(l1 - l2), min(l1 + l2, max_intermediate) + 1):
                    if last and (l3 != out_l or p1 * (-1) ** l2 != (-1) ** out_l):
                        continue  # only the output irrep is needed at the final coupling
                    w3j = o3.wigner_3j(l1, l2, l3, dtype=torch.float64)  # (2l1+1, 2l2+1, 2l3+1)
                    t = torch.einsum("abM,aI->MIb", w3j, t1)  # (2l3+1, dim**k, 2l2+1)
                    full = t.new_zeros(t.shape[0], t.shape[1], dim)  # place l2 in its block of A
                    full[:, :, offsets[l2] : offsets[l2] + 2 * l2 + 1] = t
                    t = full.reshape(2 * l3 + 1, -1)
                    new.append((l3, p1 * (-1) ** l2, t))
        chains = new
    cands = [t for l, p, t in chains if l == out_l and p == (-1) ** out_l]
    if not cands:
        return torch.zeros(0, 2 * out_l + 1, math.comb(dim + order - 1, order), dtype=torch.float64)
    stacked = torch.stack(cands)  # (n_cand, 2L+1, dim**order)
    n_cand = stacked.shape[0]
    folded = _fold_to_monomials(stacked.reshape(-1, dim**order), dim, order)
    folded = folded.reshape(n_cand, -1)  # (n_cand, (2L+1) * n_mono)
    basis = orthonormal_rows(folded)
    return basis.reshape(basis.shape[0], 2 * out_l + 1, -1).contiguous()


#: A candidate whose part orthogonal to the ones before it is smaller than this, relative to the
#: largest candidate, is linearly dependent on them. For ``l_A <= 3``, ``ν <= 3`` dependent
#: candidates leave at most 1e-15 and independent ones at least 0.1 (``tests/nn/test_product.py``).
DEPENDENT = 1e-9


def orthonormal_rows(vectors: torch.Tensor, tol: float = DEPENDENT) -> torch.Tensor:
    """Gram-Schmidt over the rows of ``vectors`` in their order, each row orthogonalised twice.

    The result depends only on the rows and their order, up to rounding. An SVD's basis does not:
    where singular values are equal, any rotation of the singular vectors is as good, and which
    one LAPACK returns depends on the build and the processor. The model's weights are learned
    against these basis vectors, so with an SVD basis the same weights gave other energies on
    another machine (``lic.pt``: 5.8 eV in 1,134 on a fixture frame).

    Returns:
        ``(rank, vectors.shape[1])``, orthonormal rows, float64.
    """
    vectors = vectors.to(torch.float64)
    scale = float(vectors.norm(dim=1).max()) if vectors.numel() else 0.0
    kept: List[torch.Tensor] = []
    for row in vectors:
        residual = row
        for _ in range(2):  # the second pass removes what rounding left of the first
            if kept:
                q = torch.stack(kept)
                residual = residual - q.t() @ (q @ residual)
        size = float(residual.norm())
        # relative to the largest row: a candidate that vanishes exactly (a coupling that the
        # symmetrisation cancels) is left with rounding noise, which must not become a direction
        if size > tol * scale:
            kept.append(residual / size)
    if not kept:
        return vectors.new_zeros(0, vectors.shape[1], dtype=torch.float64)
    return torch.stack(kept)


class SymmetricContraction(DerivedBuffers):
    """Element-dependent symmetric contraction of ``A`` to correlation order ``correlation``.

    Args:
        channels: number of channels ``k`` (contracted independently).
        l_a: maximum ``l`` of the input ``A`` (irreps ``0e + 1o + ... + l_a`` per channel).
        out_max_l: maximum ``l`` of the output (natural parity, ``0e + 1o + ...``).
        correlation: maximum body order ν (1 to 3).
        num_species: number of elements (one set of weights each).
    """

    channels: int
    num_species: int
    out_dim: int

    def __init__(self, channels: int, l_a: int, out_max_l: int, correlation: int, num_species: int):
        super().__init__()
        if not 1 <= correlation <= 3:
            raise ValueError(f"correlation must be 1, 2 or 3, got {correlation}")
        if out_max_l > l_a:
            raise ValueError(f"out_max_l={out_max_l} exceeds the l of A ({l_a})")
        self.channels = channels
        self.num_species = num_species
        self.irreps_in = o3.Irreps([(channels, ir) for _, ir in natural_irreps(l_a)])
        self.irreps_out = o3.Irreps([(channels, ir) for _, ir in natural_irreps(out_max_l)])
        dim = (l_a + 1) ** 2
        self.out_dim = (out_max_l + 1) ** 2

        # monomial index tables, concatenated over orders 1..ν
        mono_idx: List[torch.Tensor] = []
        mono_offsets = [0]
        for nu in range(1, correlation + 1):
            m = _monomials(dim, nu)
            padded = torch.full((m.shape[0], 3), dim, dtype=torch.long)  # index `dim` -> 1.0
            padded[:, :nu] = m
            mono_idx.append(padded)
            mono_offsets.append(mono_offsets[-1] + m.shape[0])
        self.register_buffer("mono_index", torch.cat(mono_idx), persistent=False)  # (n_mono, 3)
        n_mono = mono_offsets[-1]

        # stacked basis U: (n_paths_total, out_dim, n_mono); weights per (species, path, channel)
        blocks = []
        for out_l in range(out_max_l + 1):
            for nu in range(1, correlation + 1):
                u = coupling_basis(l_a, out_l, nu).clone()  # (p, 2L+1, n_mono_nu)
                full = torch.zeros(u.shape[0], self.out_dim, n_mono, dtype=torch.float64)
                full[:, out_l * out_l : (out_l + 1) ** 2, mono_offsets[nu - 1] : mono_offsets[nu]] = u
                blocks.append(full)
        basis = torch.cat(blocks)  # (n_paths, out_dim, n_mono)
        self.num_paths = basis.shape[0]
        self.register_buffer("basis", basis.to(torch.get_default_dtype()), persistent=False)
        self.weight = torch.nn.Parameter(torch.randn(num_species, self.num_paths, channels) / math.sqrt(self.num_paths))

    def forward(self, a: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        """Contract ``A`` into ``B``.

        Args:
            a: shape ``(n_atoms, channels, (l_a + 1)**2)``, channel-major.
            species: shape ``(n_atoms,)``, element index of each atom.

        Returns:
            Shape ``(n_atoms, channels, (out_max_l + 1)**2)``.
        """
        # channel-major to (k, dim + 1, atoms): each monomial gathers whole rows of atoms, and the
        # backward adds rows back (index_add) instead of scattering single elements (advanced
        # indexing along the last axis), the slower part of force training before
        ones = torch.ones_like(a[:, :, :1])
        a1 = torch.cat([a, ones], dim=2).permute(1, 2, 0).contiguous()  # index `dim` is the constant 1
        # fold element weights into the basis: (species, k, out_dim, n_mono)
        coeff = torch.einsum("pMm,zpk->zkMm", self.basis, self.weight)
        if self.num_species == 1:
            return torch.bmm(coeff[0], self._monomials(a1)).permute(2, 0, 1)
        out = torch.zeros(self.channels, self.out_dim, a.shape[0], dtype=a.dtype, device=a.device)
        for z in range(self.num_species):
            idx = torch.nonzero(species == z).squeeze(-1)
            if idx.numel() > 0:
                res = torch.bmm(coeff[z], self._monomials(a1.index_select(2, idx)))
                out = out.index_copy(2, idx, res)
        return out.permute(2, 0, 1)

    def _monomials(self, a1: torch.Tensor) -> torch.Tensor:
        """``(k, dim + 1, n)`` -> every monomial of the tables, ``(k, n_mono, n)``."""
        mono = a1.index_select(1, self.mono_index[:, 0]) * a1.index_select(1, self.mono_index[:, 1])
        return mono * a1.index_select(1, self.mono_index[:, 2])

    def extra_repr(self) -> str:
        return f"{self.irreps_in} -> {self.irreps_out}, paths={self.num_paths}, species={self.num_species}"
