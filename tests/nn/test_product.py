"""Symmetric contraction (product basis, Eq. 3)."""

import pytest
import torch
from e3nn import o3

from attnmace.nn import product
from attnmace.nn.product import SymmetricContraction, coupling_basis, orthonormal_rows


def test_path_counts_and_orthonormal():
    # number of independent invariants of A = 0e+1o+2e+3o: 1 linear, 4 quadratic (|A_l|^2)
    assert coupling_basis(3, 0, 1).shape[0] == 1
    assert coupling_basis(3, 0, 2).shape[0] == 4
    u = coupling_basis(3, 1, 3).reshape(coupling_basis(3, 1, 3).shape[0], -1)
    assert torch.allclose(u @ u.T, torch.eye(u.shape[0], dtype=u.dtype), atol=1e-10)


def test_orthonormal_rows_is_gram_schmidt_in_order():
    rows = torch.tensor([[2.0, 0, 0], [1, 1, 0], [3, 3, 0], [1e-17, 0, 0], [0, 0, -5]], dtype=torch.float64)
    basis = orthonormal_rows(rows)
    # dependent rows and rows that vanish up to rounding give no direction; signs and order kept
    assert torch.equal(basis, torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, -1]], dtype=torch.float64))
    # an orthonormal set comes back as it is (an SVD may return any rotation of it)
    q = torch.linalg.qr(torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))[0].T
    assert torch.allclose(orthonormal_rows(q), q, atol=1e-14)


def _candidates(monkeypatch, l_a, out_l, nu):
    """The coupling trees that ``coupling_basis`` reduces to a basis."""
    seen = []

    def keep(vectors):
        seen.append(vectors)
        return vectors[:1]

    monkeypatch.setattr(product, "orthonormal_rows", keep)
    product._coupling_basis(l_a, out_l, nu)
    return seen[0]


@pytest.mark.parametrize("l_a,out_l,nu", [(3, 0, 3), (3, 1, 3), (3, 2, 3), (3, 3, 3), (2, 1, 3)])
def test_coupling_basis_is_the_same_on_every_machine(monkeypatch, l_a, out_l, nu):
    """The basis is a well-conditioned function of the candidates: rounding noise (what another
    LAPACK, processor or thread count changes) moves it by rounding noise. An SVD's basis of this
    degenerate space is not: its singular vectors may be any rotation of one another."""
    basis = coupling_basis(l_a, out_l, nu).reshape(coupling_basis(l_a, out_l, nu).shape[0], -1)
    cands = _candidates(monkeypatch, l_a, out_l, nu)
    monkeypatch.undo()
    assert torch.equal(orthonormal_rows(cands), basis)
    # a clean gap between dependent and independent candidates: the rank is not a matter of rounding
    s = torch.linalg.svdvals(cands)
    assert s[basis.shape[0] - 1] > 0.1 * s[0] and s[basis.shape[0] :].max() < 1e-13 * s[0]
    # the same span as the SVD, orthonormal rows
    v = torch.linalg.svd(cands, full_matrices=False)[2][: basis.shape[0]]
    assert torch.allclose(basis @ v.T @ v, basis, atol=1e-12)
    assert torch.allclose(basis @ basis.T, torch.eye(basis.shape[0], dtype=basis.dtype), atol=1e-13)
    noise = 1e-14 * torch.randn(cands.shape, dtype=cands.dtype, generator=torch.Generator().manual_seed(0))
    assert (orthonormal_rows(cands + noise) - basis).abs().max() < 1e-11


def test_coupling_basis_does_not_depend_on_the_default_dtype():
    # e3nn's Wigner 3j symbols come in the default dtype unless asked for float64: with float32
    # ones, rounding noise of the dependent candidates became extra, non-equivariant directions
    coupling_basis.cache_clear()
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float32)
        in_float32 = product._coupling_basis(3, 3, 3)
    finally:
        torch.set_default_dtype(previous)
    assert torch.equal(in_float32, coupling_basis(3, 3, 3)) and in_float32.shape[0] == 15


@pytest.mark.parametrize("l_a,out_l,nu", [(2, 2, 3), (3, 3, 3), (3, 0, 2)])
def test_equivariant(l_a, out_l, nu):
    torch.manual_seed(0)
    sc = SymmetricContraction(3, l_a, out_l, nu, num_species=2).double()
    a = torch.randn(5, 3, (l_a + 1) ** 2, dtype=torch.float64)
    species = torch.tensor([0, 1, 1, 0, 1])
    for matrix in (o3.rand_matrix().double(), -torch.eye(3, dtype=torch.float64)):
        d_in = o3.Irreps([(1, (l, (-1) ** l)) for l in range(l_a + 1)]).D_from_matrix(matrix)
        d_out = o3.Irreps([(1, (l, (-1) ** l)) for l in range(out_l + 1)]).D_from_matrix(matrix)
        assert torch.allclose(sc(a @ d_in.T, species), sc(a, species) @ d_out.T, atol=1e-12)


def test_element_dependent_and_polynomial_degree():
    torch.manual_seed(0)
    sc = SymmetricContraction(2, 1, 0, 3, num_species=2).double()
    a = torch.randn(2, 2, 4, dtype=torch.float64)
    out0 = sc(a, torch.tensor([0, 0]))
    out1 = sc(a, torch.tensor([1, 1]))
    assert not torch.allclose(out0, out1)
    # a cubic polynomial without constant term: B(0) = 0, and B(t a) is a polynomial of degree 3
    assert torch.allclose(sc(torch.zeros_like(a), torch.tensor([0, 1])), torch.zeros(2, 2, 1, dtype=torch.float64))
    ts = torch.tensor([0.5, 1.0, 1.5, 2.0, 2.5], dtype=torch.float64)
    vals = torch.stack([sc(t * a, torch.tensor([0, 1]))[0, 0, 0] for t in ts])
    fourth_difference = vals[4] - 4 * vals[3] + 6 * vals[2] - 4 * vals[1] + vals[0]
    assert abs(fourth_difference) < 1e-10


def test_scriptable():
    sc = SymmetricContraction(2, 2, 1, 2, num_species=3)
    scripted = torch.jit.script(sc)
    a = torch.randn(4, 2, 9)
    species = torch.tensor([0, 2, 1, 2])
    assert torch.allclose(scripted(a, species), sc(a, species))
