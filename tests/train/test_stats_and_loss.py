"""Statistics (E0s, neighbour counts, scale/shift) and the loss."""

import numpy as np
import pytest
import torch
from ase.build import bulk

from attnmace import keys
from attnmace.train.data import Frame
from attnmace.train.loss import LossWeights, compute_loss
from attnmace.train.stats import average_neighbours, e0s_from_isolated_atoms, fit_e0s, scale_and_shift


def _frame(numbers, energy, n_forces=None):
    n = len(numbers)
    return Frame(
        np.array(numbers),
        np.random.default_rng(n).normal(size=(n, 3)) * 3,
        np.eye(3) * 20,
        np.array([False] * 3),
        energy,
        np.ones((n, 3)) * 0.5,
    )


def test_e0_least_squares_recovers_known_answer():
    e0 = {3: -1.9, 6: -8.25}
    compositions = [[3, 6, 6], [6, 6, 6, 6], [3, 3, 6], [3], [3, 3, 3, 6, 6]]
    frames = [_frame(c, sum(e0[z] for z in c)) for c in compositions]
    assert np.allclose(fit_e0s(frames, [3, 6]), [-1.9, -8.25], atol=1e-12)
    single = [_frame([3], -1.9), _frame([6], -8.25), _frame([3, 6], -10.0)]
    assert e0s_from_isolated_atoms(single, [3, 6]) == [-1.9, -8.25]


def test_average_neighbours_per_layer():
    atoms = bulk("C", "diamond", a=3.567)
    frame = Frame(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, 0.0, np.zeros((2, 3)))
    counts = average_neighbours([frame], (1.6, 2.6))
    assert counts == [4.0, 16.0]  # first and second neighbour shells of diamond


def test_scale_and_shift():
    frames = [_frame([6, 6], -10.0), _frame([6], -4.0)]
    out = scale_and_shift(frames, [6], [-1.0])
    assert np.isclose(out["shift"], 0.5 * ((-10 + 2) / 2 + (-4 + 1)))
    assert np.isclose(out["scale"], 0.5)


def _batch():
    return {
        keys.BATCH: torch.tensor([0, 0, 1]),
        "num_atoms": torch.tensor([2.0, 1.0]),
        "weight": torch.tensor([1.0, 2.0]),
        "ref_energy": torch.tensor([-3.0, -1.0]),
        "ref_forces": torch.zeros(3, 3),
        "ref_stress": torch.zeros(2, 3, 3),
        "stress_mask": torch.tensor([1.0, 0.0]),
    }


def test_loss_terms():
    batch = _batch()
    out = {keys.ENERGY: torch.tensor([-3.0, -1.0]), keys.FORCES: torch.zeros(3, 3), keys.STRESS: torch.zeros(2, 3, 3)}
    assert compute_loss(out, batch, LossWeights())["total"] == 0
    out[keys.ENERGY] = torch.tensor([-1.0, -1.0])  # 1 eV/atom error on the first structure
    out[keys.FORCES] = torch.tensor([[0.0, 0, 0], [0, 0, 0], [3.0, 0, 0]])
    out[keys.STRESS] = torch.ones(2, 3, 3)  # the second structure has no stress label
    parts = compute_loss(out, batch, LossWeights(energy=1.0, forces=10.0, stress=1.0))
    assert torch.isclose(parts["energy"], torch.tensor(1.0 / 3.0))  # weights 1 and 2
    assert torch.isclose(parts["forces"], torch.tensor(2.0 * 9.0 / (3.0 * 4.0)))  # atom weights 1, 1, 2
    assert torch.isclose(parts["stress"], torch.tensor(1.0))
    huber = compute_loss(out, batch, LossWeights(huber_delta=0.5))
    assert huber["forces"] < parts["forces"]


def test_huber_loss_backward_with_float64_energy_and_float32_references():
    # the model returns its energy in float64 whatever its dtype; the references are float32
    batch = {k: (v.float() if v.is_floating_point() else v) for k, v in _batch().items()}
    energy = torch.tensor([-1.0, -1.0], dtype=torch.float64, requires_grad=True)
    forces = torch.zeros(3, 3, requires_grad=True)
    out = {keys.ENERGY: energy, keys.FORCES: forces}
    loss = compute_loss(out, batch, LossWeights(huber_delta=0.1))["total"]
    loss.backward()
    assert energy.grad is not None and torch.isfinite(energy.grad).all()
    # past delta the Huber gradient is delta * sign / N: bounded, unlike the squared error's
    assert energy.grad[0].item() == pytest.approx(0.1 * (1 / 2) * (1 / 3))
