"""Smooth cutoff envelope (DimeNet / MACE polynomial), one per layer cutoff."""

import torch


def polynomial_envelope(x: torch.Tensor, p: int) -> torch.Tensor:
    """``1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2)`` for ``x < 1``, else 0.

    Value and first two derivatives vanish at ``x = 1``.
    """
    pf = float(p)
    u = (
        1.0
        - 0.5 * (pf + 1.0) * (pf + 2.0) * x.pow(p)
        + pf * (pf + 2.0) * x.pow(p + 1)
        - 0.5 * pf * (pf + 1.0) * x.pow(p + 2)
    )
    return u * (x < 1.0).to(u.dtype)


class PolynomialEnvelope(torch.nn.Module):
    """``u(r) = polynomial_envelope(r / r_cut, p)``: 1 at 0, zero with two derivatives at ``r_cut``."""

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
        return polynomial_envelope(r / self.r_cut, self.p)

    def extra_repr(self) -> str:
        return f"r_cut={self.r_cut}, p={self.p}"
