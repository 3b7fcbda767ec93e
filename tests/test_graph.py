"""Neighbour list and input checks."""

import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list
from helpers import diamond

from attnmace.graph import atoms_to_graph, check_atoms, collate, neighbour_list


def _pairs(i, j, shifts):
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(shifts).tolist())))


@pytest.mark.parametrize("cutoff", [2.0, 4.5, 7.0])
def test_neighbour_list_matches_ase(structure, cutoff):
    """Same pairs and shifts as ASE on triclinic, periodic, slab and molecule cells."""
    edge_index, shifts, d = neighbour_list(structure.positions, structure.cell.array, structure.pbc, cutoff)
    i, j, s, d_ase = neighbor_list("ijSd", structure, cutoff)
    assert _pairs(edge_index[0], edge_index[1], shifts) == _pairs(i, j, s)
    assert np.allclose(np.sort(d), np.sort(d_ase))
    vectors = structure.positions[edge_index[1]] - structure.positions[edge_index[0]] + shifts @ structure.cell.array
    assert np.allclose(np.linalg.norm(vectors, axis=1), d)


def test_cell_smaller_than_cutoff_has_all_images():
    atoms = Atoms("C", positions=[[0, 0, 0]], cell=np.eye(3) * 1.5, pbc=True)
    edge_index, shifts, d = neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, 3.1)
    assert len(d) == len(neighbor_list("d", atoms, 3.1))
    assert d.max() < 3.1 and d.min() == pytest.approx(1.5)


def test_unknown_element():
    atoms = diamond()
    atoms.numbers[3] = 8
    with pytest.raises(ValueError, match=r"\['O'\] at atom indices \[3\].*knows \['C'\]"):
        atoms_to_graph(atoms, [6], 3.0)


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_positions(value):
    atoms = diamond()
    atoms.positions[5, 1] = value
    with pytest.raises(ValueError, match=r"positions of atoms \[5\] are not finite"):
        atoms_to_graph(atoms, [6], 3.0)


def test_overlapping_atoms():
    atoms = diamond()
    atoms.positions[2] = atoms.positions[1] + [0.05, 0, 0]
    with pytest.raises(ValueError, match=r"atoms [12] and [12] are 0.05\d* Å apart"):
        atoms_to_graph(atoms, [6], 3.0)


def test_overlap_through_periodic_image():
    atoms = Atoms("C2", positions=[[0, 0, 0], [2.97, 0, 0]], cell=np.eye(3) * 3.0, pbc=True)
    with pytest.raises(ValueError, match=r"a periodic image of atom [01], shifted by \[-?1, 0, 0\].*overlapping"):
        atoms_to_graph(atoms, [6], 3.0)
    narrow = Atoms("C", positions=[[0, 0, 0]], cell=[0.05, 3.0, 3.0], pbc=True)  # an atom on its own image
    with pytest.raises(ValueError, match=r"atoms 0 and 0 are 0.0500 Å apart \(a periodic image of atom 0"):
        atoms_to_graph(narrow, [6], 3.0)


def test_a_structure_without_atoms():
    with pytest.raises(ValueError, match="the structure has no atoms"):
        atoms_to_graph(Atoms(), [6], 3.0)
    with pytest.raises(ValueError, match="the structure has no atoms"):
        atoms_to_graph(Atoms(cell=np.eye(3) * 3.0, pbc=True), [6], 3.0)


@pytest.mark.parametrize(
    "cell,pbc",
    [
        (np.zeros((3, 3)), True),
        (np.diag([3.0, 3.0, 0.0]), True),
        ([[3, 0, 0], [6, 0, 0], [0, 0, 3]], [True, True, False]),
    ],
)
def test_degenerate_periodic_cell(cell, pbc):
    atoms = Atoms("C", positions=[[0, 0, 0]], cell=cell, pbc=pbc)
    with pytest.raises(ValueError, match="zero volume"):
        check_atoms(atoms, [6])


def test_molecule_without_cell_is_fine():
    atoms = Atoms("C2", positions=[[0, 0, 0], [1.3, 0, 0]])
    data = atoms_to_graph(atoms, [6], 3.0)
    assert data["edge_index"].shape == (2, 2)


def test_collate_offsets_indices():
    a, b = diamond(), diamond(seed=5)[:5]
    b.pbc = False
    ga, gb = atoms_to_graph(a, [6], 2.0), atoms_to_graph(b, [6], 2.0)
    batch = collate([ga, gb])
    assert batch["positions"].shape == (13, 3)
    assert batch["cell"].shape == (2, 3, 3)
    assert batch["batch"].tolist() == [0] * 8 + [1] * 5
    assert batch["edge_index"][:, ga["edge_index"].shape[1] :].min() >= 8
