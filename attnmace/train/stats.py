"""Dataset statistics that set a model's normalisation before training."""

from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..graph import neighbour_list
from ..nn.repulsion import switch_off_distances


def fit_e0s(frames, atomic_numbers: Sequence[int]) -> List[float]:
    """Isolated-atom energies by least squares of total energies over element counts.

    Solves ``min Σ_f (E_f - Σ_z n_fz E0_z)^2``. With fewer distinct compositions than elements the
    problem is underdetermined and the minimum-norm solution is returned.
    """
    index = {z: i for i, z in enumerate(atomic_numbers)}
    counts = np.zeros((len(frames), len(atomic_numbers)))
    energies = np.zeros(len(frames))
    for f in range(len(frames)):
        frame = frames[f]
        for z, n in zip(*np.unique(frame.numbers, return_counts=True)):
            counts[f, index[int(z)]] = n
        energies[f] = frame.energy
    solution, *_ = np.linalg.lstsq(counts, energies, rcond=None)
    return solution.tolist()


def e0s_from_isolated_atoms(frames, atomic_numbers: Sequence[int]) -> List[float]:
    """E0s from single-atom frames; raises ``ValueError`` naming elements without one."""
    found: Dict[int, float] = {}
    for f in range(len(frames)):
        frame = frames[f]
        if len(frame.numbers) == 1:
            found[int(frame.numbers[0])] = frame.energy
    missing = [z for z in atomic_numbers if z not in found]
    if missing:
        raise ValueError(f"no isolated-atom frame for atomic numbers {missing}; use --e0s fit or give them")
    return [found[z] for z in atomic_numbers]


def average_neighbours(frames, cutoffs: Sequence[float]) -> List[float]:
    """Mean number of neighbours per atom within each layer's cutoff."""
    totals = np.zeros(len(cutoffs))
    atoms = 0
    for f in range(len(frames)):
        frame = frames[f]
        _, _, d = neighbour_list(frame.positions, frame.cell, frame.pbc, max(cutoffs))
        totals += [(d < c).sum() for c in cutoffs]
        atoms += len(frame.numbers)
    return [max(float(t) / max(atoms, 1), 1.0) for t in totals]


def scale_and_shift(frames, atomic_numbers: Sequence[int], e0s: Sequence[float]) -> Dict[str, float]:
    """``shift``: mean interaction energy per atom; ``scale``: RMS force component (MACE's choice)."""
    e0 = dict(zip(atomic_numbers, e0s))
    per_atom, squares, components = [], 0.0, 0
    for f in range(len(frames)):
        frame = frames[f]
        reference = sum(e0[int(z)] for z in frame.numbers)
        per_atom.append((frame.energy - reference) / len(frame.numbers))
        if getattr(frame, "has_forces", True):
            squares += float((frame.forces**2).sum())
            components += frame.forces.size
    scale = float(np.sqrt(squares / max(components, 1)))
    return {"shift": float(np.mean(per_atom)), "scale": scale if scale > 1e-6 else 1.0}


def shortest_distances(frames, atomic_numbers: Sequence[int], reach: float) -> np.ndarray:
    """The shortest distance of each species pair over ``frames``, ``(n_species, n_species)`` Å;
    ``inf`` for a pair never closer than ``reach`` in them."""
    index = {z: i for i, z in enumerate(atomic_numbers)}
    n = len(atomic_numbers)
    shortest = np.full((n, n), np.inf)
    for f in range(len(frames)):
        frame = frames[f]
        edges, _, d = neighbour_list(frame.positions, frame.cell, frame.pbc, reach)
        if d.size == 0:
            continue
        kind = np.array([index[int(z)] for z in frame.numbers])
        a, b = kind[edges[0]], kind[edges[1]]
        np.minimum.at(shortest, (a, b), d)
    return np.minimum(shortest, shortest.T)


def inner_cutoffs_from_data(
    frames, atomic_numbers: Sequence[int], width: float = 0.1, repulsion_factor: float = 0.6, reach: float = 3.0
) -> Tuple[Tuple[float, ...], ...]:
    """Inner cutoffs (``ModelConfig.inner_cutoffs``) from the data a model is trained on.

    Each pair's is its shortest distance in ``frames`` rounded down to 0.01 Å, so no trained
    distance is touched. A pair that never comes closer than ``reach`` gets the ZBL term's own
    switch-off distance (``repulsion_factor`` × the sum of covalent radii) plus ``width``. None is
    below ``2 × width``.
    """
    shortest = shortest_distances(frames, atomic_numbers, reach)
    unseen = switch_off_distances(atomic_numbers, repulsion_factor) + width
    inner = np.where(np.isfinite(shortest), np.floor(shortest * 100.0) / 100.0, unseen)
    return tuple(tuple(round(float(x), 6) for x in row) for row in np.maximum(inner, 2.0 * width))
