"""Radial basis: Bessel functions times the layer's smooth envelope (Section 2.1, ``j_0^n``)."""

import math
from typing import Tuple

import torch

from .cutoff import PolynomialEnvelope


class BesselBasis(torch.nn.Module):
    """``j_0^n(r) = sqrt(2 / r_cut) · sin(n π r / r_cut) / r`` for ``n = 1..num_basis``."""

    r_cut: float

    def __init__(self, r_cut: float, num_basis: int = 8):
        super().__init__()
        self.r_cut = float(r_cut)
        freqs = math.pi / r_cut * torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype())
        self.register_buffer("frequencies", freqs)
        self.prefactor = math.sqrt(2.0 / r_cut)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Args: r: shape ``(n_edges,)``. Returns: shape ``(n_edges, num_basis)``."""
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.frequencies * r) / r


class RadialEmbedding(torch.nn.Module):
    """Bessel basis multiplied by the polynomial envelope of *this layer's* cutoff."""

    def __init__(self, r_cut: float, num_basis: int = 8, envelope_p: int = 5):
        super().__init__()
        self.bessel = BesselBasis(r_cut, num_basis)
        self.envelope = PolynomialEnvelope(r_cut, envelope_p)
        self.num_basis = num_basis

    def forward(self, r: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Args: r: ``(n_edges,)``. Returns: basis ``(n_edges, num_basis)``, envelope ``(n_edges,)``."""
        u = self.envelope(r)
        return self.bessel(r) * u.unsqueeze(-1), u
