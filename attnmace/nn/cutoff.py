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


def smootherstep(x: torch.Tensor) -> torch.Tensor:
    """``6x^5 - 15x^4 + 10x^3`` on ``x`` clamped to ``[0, 1]``: 0 below, 1 above, and first and
    second derivatives that vanish at both ends."""
    x = x.clamp(0.0, 1.0)
    return x * x * x * (x * (6.0 * x - 15.0) + 10.0)


def soft_floor(r: torch.Tensor, floor: torch.Tensor, width: float) -> torch.Tensor:
    """``r`` itself at ``r >= floor``; a constant ``floor - width/2`` at ``r <= floor - width``.

    In between, ``dr'/dr`` rises from 0 to 1 as ``3x^2 - 2x^3`` with ``x = (r - floor + width) /
    width``, so ``r'`` is twice continuously differentiable. Fed to the radial basis, it stops a
    network from extrapolating below distances it was trained on: below the window the edge's
    radial features no longer depend on ``r``. At ``r >= floor`` the result is ``r`` exactly (the
    same bits), so predictions there do not change.

    Args:
        r: distances ``(n,)``.
        floor: per-distance floor ``(n,)``, each larger than ``width``.
        width: width of the window over which the floor sets in.
    """
    x = ((r - floor + width) / width).clamp(0.0, 1.0)
    x3 = x * x * x
    inside = floor - 0.5 * width + width * (x3 - 0.5 * x3 * x)
    return torch.where(r >= floor, r, inside)
