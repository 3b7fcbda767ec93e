"""Frames -> model inputs and targets, batched."""

from typing import Dict, List, Sequence

import numpy as np
import torch

from .. import keys
from ..graph import atoms_to_graph, collate

REF_ENERGY = "ref_energy"  # (n_graphs,) eV
REF_FORCES = "ref_forces"  # (n_atoms, 3) eV/Å
REF_STRESS = "ref_stress"  # (n_graphs, 3, 3) eV/Å^3 (zeros where absent)
STRESS_MASK = "stress_mask"  # (n_graphs,) 1.0 where the frame has a stress label
FORCES_MASK = "forces_mask"  # (n_graphs,) 1.0 where the frame has forces (0: energy only)
WEIGHT = "weight"  # (n_graphs,) configuration weight
NUM_ATOMS = "num_atoms"  # (n_graphs,)


class GraphDataset(torch.utils.data.Dataset):
    """Frames as graph dictionaries with targets; neighbour lists are built at ``r_max``.

    Args:
        frames: a list of frames or an :class:`~attnmace.train.data.HDF5Dataset`.
        atomic_numbers: the model's species.
        r_max: the model's largest cutoff.
        dtype: float dtype of the tensors.
        cache: keep built graphs in memory (set False for datasets larger than memory).
        source: name used in error messages.
    """

    def __init__(self, frames, atomic_numbers: Sequence[int], r_max: float, dtype=torch.float64, cache=True, source=""):
        self.frames = frames
        self.atomic_numbers = list(atomic_numbers)
        self.r_max = r_max
        self.dtype = dtype
        self.source = source
        self._cache: Dict[int, Dict[str, torch.Tensor]] = {} if cache else None

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> Dict[str, torch.Tensor]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        frame = self.frames[index]
        try:
            graph = atoms_to_graph(frame.to_atoms(), self.atomic_numbers, self.r_max, self.dtype)
        except ValueError as err:
            raise ValueError(f"{self.source}, frame {index}: {err}") from err
        has_stress = frame.stress is not None
        graph[REF_ENERGY] = torch.tensor([frame.energy], dtype=self.dtype)
        graph[REF_FORCES] = torch.tensor(frame.forces, dtype=self.dtype)
        graph[REF_STRESS] = torch.tensor(frame.stress if has_stress else np.zeros((3, 3)), dtype=self.dtype)[None]
        graph[STRESS_MASK] = torch.tensor([1.0 if has_stress else 0.0], dtype=self.dtype)
        graph[FORCES_MASK] = torch.tensor([1.0 if frame.has_forces else 0.0], dtype=self.dtype)
        graph[WEIGHT] = torch.tensor([frame.weight], dtype=self.dtype)
        graph[NUM_ATOMS] = torch.tensor([len(frame.numbers)], dtype=self.dtype)
        if self._cache is not None:
            self._cache[index] = graph
        return graph


def collate_graphs(items: List[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
    """Batch graphs and their targets."""
    return collate(items)


def split_by_atoms(items: Sequence[Dict[str, torch.Tensor]], max_atoms: int) -> List[List[Dict[str, torch.Tensor]]]:
    """Consecutive groups of ``items`` with at most ``max_atoms`` atoms each (a structure larger
    than that is a group of its own); one group of all of them when ``max_atoms`` is 0 or less.

    A training batch split this way is passed through the model one group at a time, with the
    gradients accumulated, so the memory of a pass is bounded by the atoms of one group.
    """
    if max_atoms <= 0:
        return [list(items)]
    groups: List[List[Dict[str, torch.Tensor]]] = []
    atoms = 0
    for item in items:
        n = int(item[keys.POSITIONS].shape[0])
        if groups and atoms + n <= max_atoms:
            groups[-1].append(item)
            atoms += n
        else:
            groups.append([item])
            atoms = n
    return groups
