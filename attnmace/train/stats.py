"""Dataset statistics that set a model's normalisation before training."""

from typing import Dict, List, Sequence

import numpy as np

from ..graph import neighbour_list


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
        squares += float((frame.forces**2).sum())
        components += frame.forces.size
    scale = float(np.sqrt(squares / max(components, 1)))
    return {"shift": float(np.mean(per_atom)), "scale": scale if scale > 1e-6 else 1.0}
