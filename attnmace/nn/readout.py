"""Per-layer energy readouts: linear after inner layers, a small MLP after the last."""

import torch
from e3nn import nn as enn
from e3nn import o3


class LinearReadout(torch.nn.Module):
    """Scalar site energy from the ``0e`` part of the node features."""

    def __init__(self, irreps_in: o3.Irreps):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps("0e")
        self.linear = o3.Linear(self.irreps_in, self.irreps_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Args: h: ``(n_atoms, irreps_in.dim)``. Returns: ``(n_atoms,)``."""
        return self.linear(h).squeeze(-1)


class MLPReadout(torch.nn.Module):
    """``Linear -> SiLU -> Linear`` on the scalars of the last layer."""

    def __init__(self, irreps_in: o3.Irreps, hidden: int = 16):
        super().__init__()
        self.irreps_in = o3.Irreps(irreps_in)
        self.irreps_out = o3.Irreps("0e")
        hidden_irreps = o3.Irreps(f"{hidden}x0e")
        self.linear_1 = o3.Linear(self.irreps_in, hidden_irreps)
        self.act = enn.Activation(hidden_irreps, [torch.nn.functional.silu])
        self.linear_2 = o3.Linear(hidden_irreps, self.irreps_out)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """Args: h: ``(n_atoms, irreps_in.dim)``. Returns: ``(n_atoms,)``."""
        return self.linear_2(self.act(self.linear_1(h))).squeeze(-1)
