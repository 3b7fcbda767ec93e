"""Short-range nuclear repulsion (ZBL universal screened Coulomb), smoothly switched off.

An untrained or poorly trained network has no repulsive core: atoms can fall onto each other in
MD. Like MACE's and NequIP's optional ZBL term, this pair energy keeps atoms apart at distances no
training set samples. It is switched off with the polynomial envelope at
``factor × (r_cov,i + r_cov,j)`` (covalent radii; 0.91 Å for C–C with the default 0.6), so it
vanishes with two derivatives well inside any chemical bond.

With *inner cutoffs* (the shortest distance of each species pair that the network was trained
on, ``ModelConfig.inner_cutoffs``) it is a hand-over instead: the full ZBL energy below
``inner - width``, switched off by a smootherstep at ``inner``, where the network takes over (the
model freezes the network's radial input below the same window, :func:`~.cutoff.soft_floor`).

Ziegler, Biersack, Littmark, *The Stopping and Range of Ions in Solids* (1985).
"""

from typing import List, Optional, Sequence

import numpy as np
import torch
from ase.data import covalent_radii

from .cutoff import polynomial_envelope, smootherstep


def switch_off_distances(atomic_numbers: Sequence[int], factor: float) -> np.ndarray:
    """``factor × (r_cov,i + r_cov,j)`` for every species pair, ``(n_species, n_species)`` Å: where
    the plain (envelope-switched) ZBL term ends."""
    radii = covalent_radii[np.asarray(atomic_numbers, dtype=int)]
    return factor * (radii[:, None] + radii[None, :])


def inner_cutoff_matrix(inner: Optional[Sequence[Sequence[float]]], n: int) -> torch.Tensor:
    """The ``(n, n)`` tensor of inner cutoffs, zeros without them (a placeholder TorchScript needs)."""
    matrix = torch.tensor(inner if inner is not None else [[0.0] * n] * n, dtype=torch.get_default_dtype())
    if matrix.shape != (n, n):
        raise ValueError(f"inner cutoffs must be a {n}x{n} matrix, got shape {tuple(matrix.shape)}")
    return matrix


class ZBLRepulsion(torch.nn.Module):
    """Pair repulsion ``E = k Z_i Z_j / r · φ(r / a) · u(r / r_c)``, half on each atom.

    Args:
        atomic_numbers: atomic number of each species index.
        factor: switch-off distance as a fraction of the sum of covalent radii.
        p: exponent of the polynomial envelope.
        inner: optional ``(n_species, n_species)`` inner cutoffs (Å); if given, the ZBL energy is
            full below ``inner - width`` and switched off at ``inner`` (``factor`` and ``p`` unused).
        width: width (Å) of that hand-over window.
    """

    p: int
    handover: bool
    width: float

    def __init__(
        self,
        atomic_numbers: List[int],
        factor: float = 0.6,
        p: int = 6,
        inner: Optional[Sequence[Sequence[float]]] = None,
        width: float = 0.1,
    ):
        super().__init__()
        z = torch.tensor(atomic_numbers, dtype=torch.get_default_dtype())
        cutoff = torch.tensor(switch_off_distances(atomic_numbers, factor), dtype=torch.get_default_dtype())
        self.register_buffer("z", z)
        self.register_buffer("cutoff", cutoff)  # (n_species, n_species)
        self.register_buffer("screening", 0.46850 / (z[:, None].pow(0.23) + z[None, :].pow(0.23)))
        self.p = int(p)
        self.factor = factor
        self.handover = inner is not None
        self.width = float(width)
        # not a persistent buffer: it comes from the configuration, and older state dicts lack it
        self.register_buffer("inner", inner_cutoff_matrix(inner, len(atomic_numbers)), persistent=False)

    def forward(
        self, species: torch.Tensor, receivers: torch.Tensor, senders: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        """Site energies ``(n_atoms,)`` from all edges (centre ``receivers``, neighbour ``senders``)."""
        reach = self.inner.max() if self.handover else self.cutoff.max()
        close = torch.nonzero(lengths < reach).squeeze(-1)  # only very short edges matter
        si = species.index_select(0, receivers.index_select(0, close))
        sj = species.index_select(0, senders.index_select(0, close))
        r = lengths.index_select(0, close)
        x = r / self.screening[si, sj]
        phi = (
            0.18175 * torch.exp(-3.19980 * x)
            + 0.50986 * torch.exp(-0.94229 * x)
            + 0.28022 * torch.exp(-0.40290 * x)
            + 0.02817 * torch.exp(-0.20162 * x)
        )
        coulomb = 14.399645  # e^2 / (4 π ε0) in eV Å
        if self.handover:
            inner = self.inner[si, sj]
            switch = 1.0 - smootherstep((r - inner + self.width) / self.width)
        else:
            switch = polynomial_envelope(r / self.cutoff[si, sj], self.p)
        pair = coulomb * self.z[si] * self.z[sj] / r * phi * switch
        out = torch.zeros(species.shape[0], dtype=lengths.dtype, device=lengths.device)
        return out.index_add(0, receivers.index_select(0, close), 0.5 * pair)  # each pair appears twice

    def extra_repr(self) -> str:
        if self.handover:
            return f"ZBL, handed over to the network at the inner cutoffs (window {self.width} Å)"
        return f"ZBL, switched off at {self.factor} x sum of covalent radii"


class NoRepulsion(torch.nn.Module):
    """Stand-in for :class:`ZBLRepulsion` when the pair repulsion is disabled: zero site energies."""

    def forward(
        self, species: torch.Tensor, receivers: torch.Tensor, senders: torch.Tensor, lengths: torch.Tensor
    ) -> torch.Tensor:
        return torch.zeros(species.shape[0], dtype=lengths.dtype, device=lengths.device)
