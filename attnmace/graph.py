"""Atoms -> model inputs: input checks and the neighbour list at the largest cutoff.

The neighbour list comes from vesin (periodic, slab and molecule cells; cells smaller than the
cutoff are handled with the needed periodic images). It is built once per structure at
``max(cutoffs)``; the model masks it per layer.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import vesin
from ase import Atoms
from ase.data import chemical_symbols

from . import keys

#: Two atoms closer than this (Å) are rejected as overlapping.
MIN_DISTANCE = 0.1


def check_atoms(atoms: Atoms, atomic_numbers: Sequence[int]) -> None:
    """Raise ``ValueError`` naming the problem if ``atoms`` cannot be evaluated.

    Checks elements against ``atomic_numbers`` (the model's species), finite positions and a
    non-degenerate periodic cell. Overlapping atoms are checked on the neighbour list.
    """
    numbers = atoms.get_atomic_numbers()
    if len(numbers) == 0:
        raise ValueError("the structure has no atoms")
    known = set(int(z) for z in atomic_numbers)
    unknown = sorted(set(int(z) for z in numbers) - known)
    if unknown:
        where = np.nonzero(np.isin(numbers, unknown))[0]
        raise ValueError(
            f"element(s) {[chemical_symbols[z] for z in unknown]} at atom indices {where[:10].tolist()}"
            f"{' ...' if len(where) > 10 else ''} are not known to the model, which knows "
            f"{[chemical_symbols[z] for z in atomic_numbers]}"
        )
    positions = atoms.get_positions()
    bad = np.nonzero(~np.isfinite(positions).all(axis=1))[0]
    if len(bad):
        raise ValueError(f"positions of atoms {bad[:10].tolist()} are not finite: {positions[bad[0]].tolist()}")
    cell = np.asarray(atoms.get_cell())
    if not np.isfinite(cell).all():
        raise ValueError(f"the cell is not finite: {cell.tolist()}")
    pbc = np.asarray(atoms.get_pbc(), dtype=bool)
    if pbc.any():
        periodic = cell[pbc]
        gram = periodic @ periodic.T
        lengths = np.sqrt(np.diag(gram))
        det = np.linalg.det(gram)
        if (lengths < 1e-6).any() or det <= (1e-6 * np.prod(lengths**2)):
            raise ValueError(
                f"the periodic cell has zero volume/area (pbc={pbc.tolist()}, cell={np.round(cell, 6).tolist()})"
            )


def neighbour_list(
    positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], cutoff: float
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ordered pairs closer than ``cutoff``, with periodic images.

    Args:
        positions: ``(n_atoms, 3)`` Å.
        cell: ``(3, 3)`` Å (rows are lattice vectors; may be zero along non-periodic directions).
        pbc: three booleans.
        cutoff: Å.

    Returns:
        ``edge_index`` ``(2, n_edges)`` (centre i, neighbour j), integer ``shifts``
        ``(n_edges, 3)`` with ``r_ij = x_j - x_i + shifts @ cell``, and distances ``(n_edges,)``.
    """
    nl = vesin.NeighborList(cutoff=float(cutoff), full_list=True)
    i, j, shifts, d = nl.compute(
        np.ascontiguousarray(positions, dtype=np.float64),
        np.ascontiguousarray(cell, dtype=np.float64),
        [bool(p) for p in pbc],
        quantities="ijSd",
    )
    edge_index = np.stack([i, j]).astype(np.int64)
    return edge_index, shifts.astype(np.int64), d


class NeighbourListCache:
    """Reuses a neighbour list built at ``cutoff + skin`` while it is still complete.

    The list is rebuilt when the atoms, the cell or the boundary conditions change, or when any
    atom has moved more than ``skin / 2`` since the last build: until then every pair closer than
    ``cutoff`` is in the list. The model ignores the extra pairs, so results are identical to
    rebuilding at every step (up to the order of floating-point sums).
    """

    def __init__(self, cutoff: float, skin: float = 0.5):
        if isinstance(skin, bool) or not isinstance(skin, (int, float, np.floating, np.integer)):
            raise TypeError(f"skin must be a number of Å, got {skin!r}")
        if not (skin >= 0 and np.isfinite(skin)):
            raise ValueError(f"skin must be a finite number >= 0 (Å), got {skin}")
        self.cutoff = float(cutoff)
        self.skin = float(skin)
        self.builds = 0
        self._key = None
        self._positions: Optional[np.ndarray] = None
        self._lists: Optional[Tuple[np.ndarray, np.ndarray]] = None

    def get(self, positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool], numbers: np.ndarray):
        """``edge_index`` ``(2, n_edges)`` and integer ``shifts`` ``(n_edges, 3)`` for these atoms."""
        key = (numbers.tobytes(), np.asarray(cell, dtype=np.float64).tobytes(), tuple(bool(p) for p in pbc))
        if self._lists is not None and self.skin > 0 and key == self._key and positions.shape == self._positions.shape:
            moved = np.sqrt(((positions - self._positions) ** 2).sum(axis=1)).max(initial=0.0)
            if moved < 0.5 * self.skin:
                return self._lists
        edge_index, shifts, _ = neighbour_list(positions, cell, pbc, self.cutoff + self.skin)
        self._key, self._positions, self._lists = key, positions.copy(), (edge_index, shifts)
        self.builds += 1
        return self._lists


def check_overlaps(positions: np.ndarray, cell: np.ndarray, edge_index: np.ndarray, shifts: np.ndarray) -> None:
    """Raise ``ValueError`` naming the pair if two atoms are closer than :data:`MIN_DISTANCE`."""
    if edge_index.shape[1] == 0:
        return
    vectors = positions[edge_index[1]] - positions[edge_index[0]] + shifts @ cell
    distances = np.sqrt((vectors**2).sum(axis=1))
    k = int(np.argmin(distances))
    if distances[k] < MIN_DISTANCE:
        i, j = edge_index[:, k]
        image = f" (a periodic image of atom {j}, shifted by {shifts[k].astype(int).tolist()} cell vectors)"
        raise ValueError(
            f"atoms {i} and {j} are {distances[k]:.4f} Å apart{image if shifts[k].any() else ''} "
            f"(less than {MIN_DISTANCE} Å): overlapping atoms"
        )


def lattice_offsets(positions: np.ndarray, cell: np.ndarray, pbc: Sequence[bool]) -> np.ndarray:
    """Integer cell vectors ``n`` ``(n_atoms, 3)`` that bring each atom into the cell along its
    periodic directions (``positions - n @ cell``; 0 along the others)."""
    from ase.geometry import complete_cell

    periodic = np.asarray(pbc, dtype=bool)
    if not periodic.any() or len(positions) == 0:
        return np.zeros((len(positions), 3), dtype=np.int64)
    scaled = np.linalg.solve(complete_cell(cell).T, positions.T).T
    return np.where(periodic, np.floor(scaled), 0.0).astype(np.int64)


def atoms_to_graph(
    atoms: Atoms,
    atomic_numbers: Sequence[int],
    r_max: float,
    dtype: torch.dtype = torch.float64,
    device: Optional[torch.device] = None,
    neighbours: Optional[NeighbourListCache] = None,
) -> Dict[str, torch.Tensor]:
    """Check ``atoms`` and convert it to the model's input dictionary (one structure).

    Positions are wrapped into the cell along periodic directions (:func:`lattice_offsets`) and the
    edges' cell shifts adjusted to match: the same edge vectors, without the digits a float32
    model would lose on atoms far outside the cell.

    Args:
        neighbours: a :class:`NeighbourListCache` at ``r_max`` to reuse across calls (MD);
            by default the list is built afresh.

    Raises:
        ValueError: unknown element, non-finite positions, degenerate periodic cell, or two atoms
            closer than :data:`MIN_DISTANCE`.
    """
    check_atoms(atoms, atomic_numbers)
    positions = atoms.get_positions()
    cell = np.asarray(atoms.get_cell())
    pbc = atoms.get_pbc()
    if neighbours is None:
        edge_index, shifts, _ = neighbour_list(positions, cell, pbc, r_max)
    else:
        edge_index, shifts = neighbours.get(positions, cell, pbc, atoms.numbers)
    check_overlaps(positions, cell, edge_index, shifts)
    # the model gets positions wrapped into the cell (in float64, before any cast): atoms that
    # drifted far in a long MD run would otherwise lose digits in float32 edge vectors
    offsets = lattice_offsets(positions, cell, pbc)
    if offsets.any():
        positions = positions - offsets @ cell
        shifts = shifts + offsets[edge_index[1]] - offsets[edge_index[0]]
    lookup = np.full(max(max(atomic_numbers), int(atoms.numbers.max(initial=0))) + 1, -1, dtype=np.int64)
    lookup[list(atomic_numbers)] = np.arange(len(atomic_numbers))
    n = len(atoms)
    return {
        keys.POSITIONS: torch.tensor(positions, dtype=dtype, device=device),
        keys.SPECIES: torch.tensor(lookup[atoms.numbers], dtype=torch.long, device=device),
        keys.CELL: torch.tensor(cell, dtype=dtype, device=device).unsqueeze(0),
        keys.BATCH: torch.zeros(n, dtype=torch.long, device=device),
        keys.EDGE_INDEX: torch.tensor(edge_index, dtype=torch.long, device=device),
        keys.SHIFTS: torch.tensor(shifts, dtype=dtype, device=device),
    }


def collate(graphs: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Join single-structure graphs into one batch (offsetting atom indices)."""
    out: Dict[str, List[torch.Tensor]] = {k: [] for k in graphs[0]}
    offset = 0
    for b, g in enumerate(graphs):
        n = g[keys.POSITIONS].shape[0]
        for k, v in g.items():
            if k == keys.EDGE_INDEX:
                v = v + offset
            elif k == keys.BATCH:
                v = torch.full_like(v, b)
            out[k].append(v)
        offset += n
    return {k: torch.cat(v, dim=1 if k == keys.EDGE_INDEX else 0) for k, v in out.items()}
