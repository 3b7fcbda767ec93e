"""Smooth cutoff envelope (DimeNet / MACE polynomial), one per layer cutoff."""

import torch


class PolynomialEnvelope(torch.nn.Module):
    """``u(r) = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)``, ``x = r / r_cut``.

    ``u`` and its first two derivatives vanish at ``r_cut``; ``u = 0`` beyond it.
    """

    r_cut: float
    p: int

    def __init__(self, r_cut: float, p: int = 5):
        super().__init__()
        if r_cut <= 0:
            raise ValueError(f"cutoff must be positive, got {r_cut}")
        self.r_cut = float(r_cut)
        self.p = int(p)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        """Args: r: shape ``(n_edges,)``. Returns: shape ``(n_edges,)``."""
        p = float(self.p)
        x = r / self.r_cut
        u = (
            1.0
            - 0.5 * (p + 1.0) * (p + 2.0) * x.pow(self.p)
            + p * (p + 2.0) * x.pow(self.p + 1)
            - 0.5 * p * (p + 1.0) * x.pow(self.p + 2)
        )
        return u * (x < 1.0).to(u.dtype)

    def extra_repr(self) -> str:
        return f"r_cut={self.r_cut}, p={self.p}"
