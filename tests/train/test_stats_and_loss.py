"""Statistics (E0s, neighbour counts, scale/shift) and the loss."""

import copy

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


def test_energy_only_frames_have_no_force_term():
    from attnmace.train.graphs import FORCES_MASK, REF_FORCES

    batch = _batch()
    out = {keys.ENERGY: torch.tensor([-3.0, -1.0]), keys.FORCES: torch.tensor([[0.0, 0, 0], [0, 0, 0], [3.0, 0, 0]])}
    full = compute_loss(out, batch, LossWeights(stress=0.0))
    batch[FORCES_MASK] = torch.tensor([1.0, 0.0])  # the second structure (atom 2) is energy-only
    masked = compute_loss(out, batch, LossWeights(stress=0.0))
    assert full["forces"] > 0 and masked["forces"] == 0 and masked["energy"] == full["energy"]
    batch[REF_FORCES] = batch[REF_FORCES] + torch.tensor([[0.0, 0, 0], [0, 0, 0], [7.0, 0, 0]])  # its forces: unused
    assert compute_loss(out, batch, LossWeights(stress=0.0))["total"] == masked["total"]
    batch = dict(_batch(), **{FORCES_MASK: torch.tensor([0.0, 1.0])})
    assert torch.isclose(compute_loss(out, batch, LossWeights())["forces"], torch.tensor(9.0 / 3.0))  # one atom


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


def _labelled_frames():
    """Periodic frames of 2, 4, 2 and 8 atoms with forces, stresses on some, and unequal weights."""
    rng = np.random.default_rng(3)
    frames = []
    for k, (size, weight, stressed) in enumerate([(1, 1.0, True), (2, 2.0, False), (1, 0.5, True), (3, 1.5, True)]):
        atoms = bulk("C", "diamond", a=3.567) * (size, 1, 1) if size < 3 else bulk("C", "diamond", a=3.567) * (2, 2, 1)
        atoms.rattle(0.1, seed=k)
        n = len(atoms)
        stress = rng.normal(size=(3, 3)) * 0.01 if stressed else None
        frames.append(
            Frame(
                atoms.numbers,
                atoms.positions,
                atoms.cell.array,
                atoms.pbc,
                -9.0 * n,
                rng.normal(size=(n, 3)),
                stress,
                weight,
            )
        )
    return frames


def test_parts_of_a_batch_sum_to_its_loss_and_gradient():
    """With the whole batch's norms, the losses of its parts add up to the batch's loss and their
    accumulated gradients to its gradient (energy, forces and stress, unequal weights)."""
    from helpers import tiny_model

    from attnmace.train.graphs import GraphDataset, collate_graphs, split_by_atoms
    from attnmace.train.loss import loss_norms

    model = copy.deepcopy(tiny_model()).train()  # training mode: forces keep their graph for backward
    data = GraphDataset(_labelled_frames(), [6], model.config.r_max, torch.float64)
    items = [data[i] for i in range(len(data))]
    weights = LossWeights(energy=5.0, forces=10.0, stress=100.0)

    def loss_and_grad(groups, norms):
        model.zero_grad(set_to_none=True)
        total = 0.0
        for group in groups:
            batch = collate_graphs(group)
            out = model(batch, compute_forces=True, compute_stress=True)
            parts = compute_loss(out, batch, weights, norms)
            assert "stress" in parts or not bool(batch["stress_mask"].sum() > 0)
            loss = parts["total"]
            loss.backward()
            total += float(loss.detach())
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        model.zero_grad(set_to_none=True)
        return total, grads

    whole, whole_grads = loss_and_grad([items], None)
    groups = split_by_atoms(items, 6)
    assert [len(g) for g in groups] == [2, 1, 1]  # 2 + 4 atoms, then 2, then the 8-atom frame alone
    norms = loss_norms(collate_graphs(items))
    by_parts = loss_norms(*[collate_graphs(g) for g in groups])  # the norms summed over the parts
    assert all(torch.allclose(by_parts[k], norms[k], rtol=1e-14) for k in norms)
    parts, parts_grads = loss_and_grad(groups, norms)
    assert parts == pytest.approx(whole, rel=1e-12)
    assert len(parts_grads) == len(whole_grads) > 0
    for a, b in zip(parts_grads, whole_grads):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    # without the whole batch's norms each part would be a mean of its own: not the same loss
    alone, _ = loss_and_grad(groups, None)
    assert alone != pytest.approx(whole, rel=1e-3)


def test_split_by_atoms_keeps_the_order_and_the_bound():
    from attnmace.train.graphs import split_by_atoms

    items = [{keys.POSITIONS: torch.zeros(n, 3)} for n in (3, 5, 2, 9, 1, 1)]
    sizes = lambda groups: [[int(i[keys.POSITIONS].shape[0]) for i in g] for g in groups]  # noqa: E731
    assert sizes(split_by_atoms(items, 8)) == [[3, 5], [2], [9], [1, 1]]
    assert sizes(split_by_atoms(items, 0)) == [[3, 5, 2, 9, 1, 1]]
    assert sizes(split_by_atoms(items, 1)) == [[3], [5], [2], [9], [1], [1]]
    assert split_by_atoms([], 8) == []


def test_shortest_distances_and_inner_cutoffs_from_data():
    from ase.neighborlist import neighbor_list

    from attnmace.train.stats import inner_cutoffs_from_data, shortest_distances

    atoms = bulk("C", "diamond", a=3.567, cubic=True)
    atoms.rattle(0.1, seed=3)
    atoms.numbers[[0, 5]] = 3
    frame = Frame(atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc, 0.0, np.zeros((8, 3)))
    table = shortest_distances([frame], [3, 6], 3.0)
    i, j, d = neighbor_list("ijd", atoms, 3.0)
    for a, za in enumerate((3, 6)):
        for b, zb in enumerate((3, 6)):
            pick = (atoms.numbers[i] == za) & (atoms.numbers[j] == zb)
            assert table[a, b] == pytest.approx(d[pick].min(), abs=1e-12)
    inner = inner_cutoffs_from_data([frame], [3, 6])
    assert inner[1][1] == np.floor(table[1, 1] * 100) / 100 and inner[0][1] == inner[1][0]
    # a pair the data never brings within reach: the ZBL switch-off distance plus the window
    alone = inner_cutoffs_from_data([frame], [3, 6, 8], reach=1.7)
    assert alone[2][2] == pytest.approx(0.6 * 2 * 0.66 + 0.1)
