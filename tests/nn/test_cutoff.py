"""Envelope and radial basis."""

import torch

from attnmace.nn import PolynomialEnvelope, RadialEmbedding


def test_envelope_value_and_derivatives_vanish_at_cutoff():
    env = PolynomialEnvelope(4.0, p=5)
    r = torch.tensor([0.0, 2.0, 4.0, 4.5], dtype=torch.float64, requires_grad=True)
    u = env(r)
    (d1,) = torch.autograd.grad(u.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    assert u[0] == 1.0 and 0 < u[1] < 1
    assert abs(u[2]) < 1e-12 and u[3] == 0
    assert abs(d1[2]) < 1e-10 and abs(d2[2]) < 1e-8


def test_radial_embedding_is_zero_beyond_cutoff():
    emb = RadialEmbedding(3.0, num_basis=6).double()
    basis, u = emb(torch.tensor([0.5, 2.9999, 3.0, 3.5], dtype=torch.float64))
    assert basis.shape == (4, 6)
    assert torch.all(basis[2:] == 0) and torch.all(u[2:] == 0)
    assert basis[1].abs().max() < 1e-10
