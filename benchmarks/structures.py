"""Benchmark structures: periodic carbon, diamond and amorphous-like, of 64 / 512 / 4,096 atoms.

- ``diamond``: the 8-atom cubic cell (a = 3.567 Å, 3.51 g/cm³) repeated n×n×n (n = 2, 4, 8).
- ``amorphous``: the same supercell expanded isotropically to 2.2 g/cm³ (a typical sp²/sp³
  amorphous-carbon density) with every atom displaced by Gaussian noise (σ = 0.25 Å per component,
  numpy seed 0). Deterministic; no two atoms come closer than ~0.5 Å (checked), far outside the
  ZBL/overlap checks. It has fewer neighbours per atom inside 5 Å than diamond (~55 instead of
  ~86), so the two structures bracket the edge count of real carbon.

Any atom count that is 8·n³ works (``--sizes 64,512,4096,13824``).
"""

from __future__ import annotations

import math
from typing import Dict

import numpy as np
from ase import Atoms
from ase.build import bulk

A_DIAMOND = 3.567
AMORPHOUS_DENSITY = 2.2  # g/cm^3
AMORPHOUS_SIGMA = 0.25  # Å
KINDS = ("diamond", "amorphous")


def _repeats(n_atoms: int) -> int:
    n = round((n_atoms / 8) ** (1.0 / 3.0))
    if 8 * n**3 != n_atoms:
        raise ValueError(f"{n_atoms} atoms is not a cubic diamond supercell (8·n³: 64, 512, 4096, ...)")
    return n


def density(atoms: Atoms) -> float:
    """g/cm³."""
    return float(atoms.get_masses().sum() / atoms.get_volume() * 1.66053906660)


def make_structure(kind: str, n_atoms: int, seed: int = 0) -> Atoms:
    n = _repeats(n_atoms)
    atoms = bulk("C", "diamond", a=A_DIAMOND, cubic=True).repeat((n, n, n))
    if kind == "diamond":
        pass
    elif kind == "amorphous":
        scale = (density(atoms) / AMORPHOUS_DENSITY) ** (1.0 / 3.0)
        atoms.set_cell(atoms.get_cell() * scale, scale_atoms=True)
        rng = np.random.default_rng(seed)
        atoms.positions += rng.normal(0.0, AMORPHOUS_SIGMA, size=atoms.positions.shape)
        atoms.wrap()
        dmin = min_distance(atoms)
        if dmin < 0.5:  # would only happen with other parameters; keep the benchmark well-defined
            raise RuntimeError(f"amorphous structure has atoms {dmin:.3f} Å apart")
    else:
        raise ValueError(f"unknown structure kind {kind!r}; choose from {KINDS}")
    atoms.info["benchmark_kind"] = kind
    atoms.info["benchmark_seed"] = seed
    return atoms


def min_distance(atoms: Atoms) -> float:
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", atoms, 2.0)
    return float(d.min()) if len(d) else math.inf


def describe(atoms: Atoms, cutoff: float) -> Dict[str, float]:
    from ase.neighborlist import neighbor_list

    i = neighbor_list("i", atoms, cutoff)
    return {
        "n_atoms": len(atoms),
        "density_g_cm3": round(density(atoms), 4),
        "cell_A": round(float(atoms.cell.lengths()[0]), 4),
        "edges": int(len(i)),
        "neighbours_per_atom": round(len(i) / len(atoms), 2),
        "min_distance_A": round(min_distance(atoms), 4),
    }
