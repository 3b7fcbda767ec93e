"""Envelope and radial basis."""

import numpy as np
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


def test_zbl_matches_formula_and_switches_off_smoothly():
    from ase.data import covalent_radii

    from attnmace.nn import ZBLRepulsion

    zbl = ZBLRepulsion([3, 6], factor=0.6)
    species = torch.tensor([1, 1])
    receivers, senders = torch.tensor([0, 1]), torch.tensor([1, 0])
    r = 0.5
    a = 0.46850 / (2 * 6**0.23)
    x = r / a
    phi = 0.18175 * np.exp(-3.19980 * x) + 0.50986 * np.exp(-0.94229 * x)
    phi += 0.28022 * np.exp(-0.40290 * x) + 0.02817 * np.exp(-0.20162 * x)
    rc = 0.6 * 2 * covalent_radii[6]
    u = 1 - 28 * (r / rc) ** 6 + 48 * (r / rc) ** 7 - 21 * (r / rc) ** 8
    expected = 14.399645 * 36 / r * phi * u
    site = zbl(species, receivers, senders, torch.tensor([r, r], dtype=torch.float64))
    assert torch.allclose(site.sum(), torch.tensor(expected, dtype=torch.float64))
    lengths = torch.tensor([rc - 1e-7, rc - 1e-7], dtype=torch.float64, requires_grad=True)
    energy = zbl(species, receivers, senders, lengths).sum()
    (grad,) = torch.autograd.grad(energy, lengths)
    assert abs(energy) < 1e-12 and grad.abs().max() < 1e-8
    far = zbl(species, receivers, senders, torch.tensor([rc + 0.1, rc + 0.1], dtype=torch.float64))
    assert far.abs().max() == 0
