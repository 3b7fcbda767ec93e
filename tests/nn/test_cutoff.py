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


def test_soft_floor_is_the_distance_above_a_constant_below_and_twice_differentiable():
    from attnmace.nn import soft_floor

    floor, width = 1.0, 0.1
    r = torch.linspace(0.5, 1.5, 2001, dtype=torch.float64, requires_grad=True)
    out = soft_floor(r, torch.full_like(r, floor), width)
    (d1,) = torch.autograd.grad(out.sum(), r, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), r)
    above, below = r >= floor, r <= floor - width
    assert torch.equal(out[above], r[above])  # the same bits: trained predictions do not move
    assert torch.all(out[below] == floor - width / 2) and d1[below].abs().max() < 1e-20
    assert torch.all(torch.diff(out) >= 0)  # monotonic
    for edge in (floor - width, floor):  # value, slope and curvature continuous at both ends
        k = int(torch.argmin((r - edge).abs()))
        assert abs(out[k + 1] - out[k - 1]) < 1e-3 and abs(d1[k + 1] - d1[k - 1]) < 1e-3
        assert abs(d2[k + 1] - d2[k - 1]) < 0.5  # 0 at the edge, 6 x / width = 0.3 one step inside


def test_smootherstep_switches_with_two_vanishing_derivatives():
    from attnmace.nn import smootherstep

    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5], dtype=torch.float64, requires_grad=True)
    s = smootherstep(x)
    (d1,) = torch.autograd.grad(s.sum(), x, create_graph=True)
    (d2,) = torch.autograd.grad(d1.sum(), x)
    assert s.tolist() == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert d1[[1, 3]].abs().max() == 0 and d2[[1, 3]].abs().max() == 0


def test_zbl_hands_over_at_the_inner_cutoff():
    """With inner cutoffs the ZBL energy is the full formula below the window and zero from the
    inner cutoff on, smoothly in between."""
    from attnmace.nn import ZBLRepulsion

    inner = [[1.6, 1.2], [1.2, 0.95]]  # Li-Li, Li-C, C-C
    plain, handover = ZBLRepulsion([3, 6], factor=10.0), ZBLRepulsion([3, 6], inner=inner, width=0.1)
    receivers, senders = torch.tensor([0, 1]), torch.tensor([1, 0])

    def pair(zbl, species, r):
        lengths = torch.tensor([r, r], dtype=torch.float64, requires_grad=True)
        e = zbl.double()(torch.tensor(species), receivers, senders, lengths).sum()
        return e, torch.autograd.grad(e, lengths)[0].sum()

    for species, (r_in, r_full) in {(1, 1): (0.95, 0.85), (0, 1): (1.2, 1.1), (0, 0): (1.6, 1.5)}.items():
        far, _ = pair(handover, species, r_in)
        assert far == 0
        near, near_plain = pair(handover, species, r_full - 0.05)[0], pair(plain, species, r_full - 0.05)[0]
        # factor 10 puts the plain term's envelope far away: compare with its unswitched formula
        assert near > 1.0 and abs(near / near_plain - 1) < 0.01
        _, slope = pair(handover, species, r_in - 1e-7)
        assert abs(slope) < 1e-6
        mid, mid_slope = pair(handover, species, r_in - 0.05)
        assert 0 < mid < near and mid_slope < 0  # repulsive through the window
