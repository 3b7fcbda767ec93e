"""Shared test helpers: tiny models (fast on CPU) and small structures of each boundary type."""

import functools

import numpy as np
from ase import Atoms
from ase.build import bulk, graphene, molecule

from attnmace import build_model

#: A small but complete model: 2 layers with different cutoffs, attention, L=2, ν=3.
TINY = dict(
    channels=4,
    max_l=2,
    sh_max_l=2,
    heads=2,
    attn_channels=2,
    attn_max_l=2,
    correlation=3,
    radial_mlp=(8,),
    num_radial=4,
    readout_mlp=4,
)


@functools.cache
def _tiny(heads: int, species: tuple, cutoffs: tuple, seed: int):
    model = build_model(None, species=list(species), cutoffs=cutoffs, seed=seed, **{**TINY, "heads": heads})
    # untrained outputs are tiny; make the energy surface rough enough to test physics
    model.scale.fill_(3.0)
    return model


def tiny_model(heads: int = 2, species=("C",), cutoffs=(2.2, 3.0), seed: int = 0):
    """A cached tiny model in float64 (do not modify the returned object)."""
    return _tiny(heads, tuple(species), tuple(cutoffs), seed)


def random_rotation(seed: int = 0) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def diamond(rattle: float = 0.08, seed: int = 1) -> Atoms:
    atoms = bulk("C", "diamond", a=3.567, cubic=True)
    atoms.rattle(rattle, seed=seed)
    return atoms


def triclinic(seed: int = 2) -> Atoms:
    rng = np.random.default_rng(seed)
    cell = np.array([[3.1, 0.0, 0.0], [0.9, 2.8, 0.0], [-0.6, 0.7, 3.3]])
    frac = rng.uniform(size=(5, 3))
    atoms = Atoms("C5", scaled_positions=frac, cell=cell, pbc=True)
    # push apart any pair that is too close
    from ase.geometry import get_distances

    _, d = get_distances(atoms.positions, cell=atoms.cell, pbc=True)
    assert (d + 10 * np.eye(5)).min() > 0.7, "regenerate the triclinic fixture"
    return atoms


def slab() -> Atoms:
    atoms = graphene(size=(2, 2, 1), vacuum=5.0)  # pbc (T, T, F)
    atoms.rattle(0.1, seed=3)
    return atoms


def cluster() -> Atoms:
    atoms = molecule("C60")[:12]
    atoms.rattle(0.05, seed=4)
    return atoms
