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


def atoms_to_graph(
    atoms: Atoms,
    atomic_numbers: Sequence[int],
    r_max: float,
    dtype: torch.dtype = torch.float64,
    device: Optional[torch.device] = None,
) -> Dict[str, torch.Tensor]:
    """Check ``atoms`` and convert it to the model's input dictionary (one structure).

    Raises:
        ValueError: unknown element, non-finite positions, degenerate periodic cell, or two atoms
            closer than :data:`MIN_DISTANCE`.
    """
    check_atoms(atoms, atomic_numbers)
    positions = atoms.get_positions()
    cell = np.asarray(atoms.get_cell())
    pbc = atoms.get_pbc()
    edge_index, shifts, distances = neighbour_list(positions, cell, pbc, r_max)
    if len(distances) and distances.min() < MIN_DISTANCE:
        k = int(np.argmin(distances))
        i, j = edge_index[:, k]
        raise ValueError(
            f"atoms {i} and {j} are {distances[k]:.4f} Å apart (less than {MIN_DISTANCE} Å): overlapping atoms"
        )
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
