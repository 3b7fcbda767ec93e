"""Model configuration: one frozen dataclass with per-layer tuples, plus the paper's presets."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple, Union

from ase.data import atomic_numbers, chemical_symbols

#: Table 1 of Norwood et al.: hyperparameters of the two models compared there.
PRESETS: Dict[str, Dict[str, Any]] = {
    "baseline": {"channels": 64, "max_l": 3, "heads": 0},
    "attention": {"channels": 16, "max_l": 3, "heads": 4},
}

#: Number density (atoms / Å^3) used to guess ``avg_num_neighbors`` before statistics exist.
_DEFAULT_DENSITY = 0.1


@dataclass(frozen=True)
class ModelConfig:
    """Hyperparameters of an AttnMACE model.

    Attributes:
        species: chemical symbols the model knows, in the order of its element index.
        cutoffs: one cutoff (Å) per layer; its length sets the number of layers.
        channels: feature channels ``k``.
        max_l: maximum ``l`` of the hidden node features (the last layer keeps scalars only).
        sh_max_l: maximum ``l`` of the spherical harmonics and of the atomic basis ``A``.
        correlation: body order ν of the product basis, one value or one per layer.
        heads: attention heads (0 = plain MACE aggregation).
        attn_channels: channels per ``l`` of each head's query/key space.
        attn_max_l: maximum ``l`` of the query/key space.
        attn_logit_cap: soft cap ``c`` of the attention logits, which enter the weights as
            ``c·tanh(l/c)`` and so stay within ``(-c, c)``; 0 (the default): no cap. It bounds
            how far one neighbour's weight can rise above the others' (by at most ``exp(2c)``),
            leaves equal logits equal (so the model still reduces to MACE) and is smooth.
        num_radial: Bessel functions per edge.
        envelope_p: exponent of the polynomial cutoff envelope.
        radial_mlp: hidden sizes of the radial MLP.
        readout_mlp: hidden size of the last layer's MLP readout.
        pair_repulsion: add the ZBL screened nuclear repulsion at very short range.
        repulsion_factor: ZBL switch-off distance as a fraction of the sum of covalent radii.
        inner_cutoffs: per species pair, the shortest distance (Å) the network is trusted at,
            usually the shortest one in its training data; ``()`` (the default): none. Below
            ``inner - inner_width`` the network's radial input is frozen (no force from it along
            the pair) and the full ZBL energy alone repels; at ``inner`` and beyond nothing changes.
            Needs ``pair_repulsion``.
        inner_width: width (Å) of the window below each inner cutoff where the two hand over.
        avg_num_neighbors: per-layer normalisation of the neighbour sum (fitted by training).
        e0s: isolated-atom energy per species (eV).
        scale: multiplies the network's site energies (eV).
        shift: added to every site energy (eV).
    """

    species: Tuple[str, ...]
    cutoffs: Tuple[float, ...] = (5.0, 5.0, 5.0)
    channels: int = 16
    max_l: int = 3
    sh_max_l: int = 3
    correlation: Union[int, Tuple[int, ...]] = 3
    heads: int = 4
    attn_channels: int = 8
    attn_max_l: int = 1
    attn_logit_cap: float = 0.0
    num_radial: int = 8
    envelope_p: int = 5
    radial_mlp: Tuple[int, ...] = (64, 64, 64)
    readout_mlp: int = 16
    pair_repulsion: bool = True
    repulsion_factor: float = 0.6
    inner_cutoffs: Tuple[Tuple[float, ...], ...] = ()
    inner_width: float = 0.1
    avg_num_neighbors: Tuple[float, ...] = field(default=())
    e0s: Tuple[float, ...] = field(default=())
    scale: float = 1.0
    shift: float = 0.0

    def __post_init__(self):
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        if isinstance(self.species, str):
            raise ValueError(f"species must be a list of symbols, got the string {self.species!r}")
        set_("species", tuple(str(s) for s in self.species))
        for s in self.species:
            if s not in atomic_numbers or s == "X":
                raise ValueError(f"unknown chemical symbol {s!r} in species")
        if len(set(self.species)) != len(self.species) or not self.species:
            raise ValueError(f"species must be a non-empty list without repeats, got {self.species}")
        set_("cutoffs", tuple(float(c) for c in self.cutoffs))
        n = len(self.cutoffs)
        if n == 0 or any(not (c > 0 and math.isfinite(c)) for c in self.cutoffs):
            raise ValueError(f"cutoffs must be one positive number per layer, got {self.cutoffs}")
        if isinstance(self.correlation, int):
            set_("correlation", (self.correlation,) * n)
        elif len(self.correlation) == 1:
            set_("correlation", tuple(self.correlation) * n)
        set_("correlation", tuple(int(c) for c in self.correlation))
        if not self.avg_num_neighbors:
            guess = tuple(4.0 / 3.0 * math.pi * c**3 * _DEFAULT_DENSITY for c in self.cutoffs)
            set_("avg_num_neighbors", guess)
        set_("avg_num_neighbors", tuple(float(a) for a in self.avg_num_neighbors))
        if not self.e0s:
            set_("e0s", (0.0,) * len(self.species))
        set_("e0s", tuple(float(e) for e in self.e0s))
        set_("radial_mlp", tuple(int(x) for x in self.radial_mlp))
        for name in ("correlation", "avg_num_neighbors"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"{name} needs one value per layer ({n}), got {getattr(self, name)}")
        if len(self.e0s) != len(self.species):
            raise ValueError(f"e0s needs one value per species ({len(self.species)}), got {self.e0s}")
        set_("inner_cutoffs", tuple(tuple(float(x) for x in row) for row in self.inner_cutoffs))
        set_("inner_width", float(self.inner_width))
        set_("attn_logit_cap", float(self.attn_logit_cap))
        if not (self.attn_logit_cap >= 0 and math.isfinite(self.attn_logit_cap)):
            raise ValueError(f"attn_logit_cap must be 0 (no cap) or a positive number, got {self.attn_logit_cap}")
        if self.inner_cutoffs:
            self._check_inner_cutoffs()
        if any(not 1 <= c <= 3 for c in self.correlation):
            raise ValueError(f"correlation must be between 1 and 3, got {self.correlation}")
        if self.channels < 1 or self.heads < 0 or self.max_l < 0 or self.sh_max_l < self.max_l:
            raise ValueError(
                f"invalid sizes: channels={self.channels}, heads={self.heads}, "
                f"max_l={self.max_l}, sh_max_l={self.sh_max_l} (needs sh_max_l >= max_l)"
            )

    def _check_inner_cutoffs(self) -> None:
        n, inner, width = len(self.species), self.inner_cutoffs, self.inner_width
        if not (width > 0 and math.isfinite(width)):
            raise ValueError(f"inner_width must be a positive number of Å, got {width}")
        if len(inner) != n or any(len(row) != n for row in inner):
            raise ValueError(f"inner_cutoffs must be a {n}x{n} matrix (one row per species), got {inner}")
        for a in range(n):
            for b in range(n):
                pair = f"{self.species[a]}-{self.species[b]}"
                if not (inner[a][b] > width and math.isfinite(inner[a][b])):
                    raise ValueError(f"inner cutoff of {pair} must exceed inner_width ({width} Å), got {inner[a][b]}")
                if inner[a][b] != inner[b][a]:
                    raise ValueError(
                        f"inner_cutoffs must be symmetric: {pair} {inner[a][b]} but {inner[b][a]} reversed"
                    )
                if inner[a][b] >= min(self.cutoffs):
                    raise ValueError(f"inner cutoff of {pair} ({inner[a][b]} Å) must be below every layer cutoff")
        if not self.pair_repulsion:
            raise ValueError("inner_cutoffs hand short distances over to the ZBL term: needs pair_repulsion=True")

    @property
    def num_layers(self) -> int:
        return len(self.cutoffs)

    @property
    def r_max(self) -> float:
        return max(self.cutoffs)

    @property
    def atomic_numbers(self) -> Tuple[int, ...]:
        return tuple(atomic_numbers[s] for s in self.species)

    def to_dict(self) -> Dict[str, Any]:
        def plain(value):
            return [plain(v) for v in value] if isinstance(value, (tuple, list)) else value

        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown model config keys: {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


def make_config(preset: Optional[str] = "attention", **kwargs: Any) -> ModelConfig:
    """A :class:`ModelConfig` from a preset name and keyword overrides.

    Species may be symbols or atomic numbers.
    """
    values: Dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
        values.update(PRESETS[preset])
    known = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = set(kwargs) - known
    if unknown:
        raise ValueError(f"unknown hyperparameter(s) {sorted(unknown)}; known: {sorted(known)}")
    values.update(kwargs)
    if "species" not in values:
        raise ValueError("species is required, e.g. species=['C']")
    values["species"] = tuple(chemical_symbols[s] if isinstance(s, int) else s for s in values["species"])
    return ModelConfig(**values)
