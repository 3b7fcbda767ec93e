"""The quick-start example's functions on a tiny model: energy conservation in NVE."""

import importlib.util
from pathlib import Path

from helpers import tiny_model

from attnmace import AttnMACECalculator

_spec = importlib.util.spec_from_file_location(
    "md_quickstart", Path(__file__).parents[2] / "examples" / "md_quickstart.py"
)
md_quickstart = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(md_quickstart)


def test_nve_error_is_velocity_verlet_error():
    """Energy error scales as dt^2 (conservative, smooth forces) and stays small."""
    atoms = md_quickstart.carbon_cell(1, seed=1)
    atoms.calc = AttnMACECalculator(tiny_model(2), device="cpu")
    md_quickstart.langevin(atoms, steps=20, temperature=300.0, timestep=0.25)
    start = atoms.copy()
    errors = []
    for dt in (0.4, 0.2):
        atoms = start.copy()
        atoms.set_velocities(start.get_velocities())
        atoms.calc = AttnMACECalculator(tiny_model(2), device="cpu")
        drift = md_quickstart.nve_drift(atoms, steps=int(round(20 / dt)), timestep=dt)
        errors.append(drift["max_deviation_meV_per_atom"])
        assert drift["temperature_K"] > 50  # atoms actually move
    assert errors[1] < 0.5
    assert 3.0 < errors[0] / errors[1] < 5.5, errors  # halving dt divides the error by ~4


def test_relax_lowers_energy():
    """A random model has no stable minimum near diamond; a short relaxation must still descend."""
    atoms = md_quickstart.carbon_cell(1, seed=1)
    atoms.calc = AttnMACECalculator(tiny_model(2), device="cpu")
    e0 = atoms.get_potential_energy()
    steps = md_quickstart.relax(atoms, fmax=1e-6, steps=5)
    assert steps == 5 and atoms.get_potential_energy() < e0 - 1e-3
