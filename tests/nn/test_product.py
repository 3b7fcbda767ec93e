"""Symmetric contraction (product basis, Eq. 3)."""

import pytest
import torch
from e3nn import o3

from attnmace.nn.product import SymmetricContraction, coupling_basis


def test_path_counts_and_orthonormal():
    # number of independent invariants of A = 0e+1o+2e+3o: 1 linear, 4 quadratic (|A_l|^2)
    assert coupling_basis(3, 0, 1).shape[0] == 1
    assert coupling_basis(3, 0, 2).shape[0] == 4
    u = coupling_basis(3, 1, 3).reshape(coupling_basis(3, 1, 3).shape[0], -1)
    assert torch.allclose(u @ u.T, torch.eye(u.shape[0], dtype=u.dtype), atol=1e-10)


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
