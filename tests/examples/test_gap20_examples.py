"""The GAP-20 recipe and example scripts (examples/gap20) on synthetic data and a tiny model."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from helpers import tiny_model

from attnmace import AttnMACECalculator

GAP20 = Path(__file__).parents[2] / "examples" / "gap20"
sys.path.insert(0, str(GAP20))  # the scripts import each other from their folder

import attention_pattern  # noqa: E402
import check_virial  # noqa: E402
import compare  # noqa: E402
import diamond_graphite  # noqa: E402
import graphite  # noqa: E402
import nve_amorphous  # noqa: E402
import prepare  # noqa: E402


def _frame(energy_per_atom, config_type, n=2):
    atoms = Atoms(f"C{n}", positions=np.arange(3 * n).reshape(n, 3), cell=np.eye(3) * 10, pbc=True)
    atoms.info.update(REF_energy=energy_per_atom * n, config_type=config_type)
    return atoms


def test_split_drops_faulty_frames_and_is_stratified():
    frames = [_frame(-9.0, "A") for _ in range(40)] + [_frame(-8.0, "B") for _ in range(20)]
    frames.insert(7, _frame(-13.03, "Nanotubes"))
    parts = prepare.split(frames, fraction=0.1, seed=0)
    assert list(parts["dropped"]) == ["7"] and "faulty" in parts["dropped"]["7"]
    assert sorted(parts["train"] + parts["valid"]) == [i for i in range(len(frames)) if i != 7]
    valid_types = [frames[i].info["config_type"] for i in parts["valid"]]
    assert valid_types.count("A") == 4 and valid_types.count("B") == 2
    assert prepare.split(frames, fraction=0.1, seed=0) == parts  # fixed seed: the same split


def test_shipped_split_file_matches_the_recipe_settings():
    parts = json.loads((GAP20 / "split.json").read_text())
    assert parts["seed"] == prepare.SEED and parts["valid_fraction"] == prepare.VALID_FRACTION
    assert len(parts["dropped"]) == 3 and not set(parts["train"]) & set(parts["valid"])


def test_virial_check_recovers_pressure_of_consistent_data():
    """On data whose virials are right, the E(V) slope and the virial pressure agree."""
    frames = []
    for v in np.linspace(4.5, 6.5, 15):  # E/N = (V/N - 5.5)^2  =>  P = -2 (V/N - 5.5)
        a = (2 * v) ** (1 / 3)
        atoms = Atoms("C2", positions=[[0, 0, 0], [a / 2] * 3], cell=np.eye(3) * a, pbc=True)
        p = -2 * (v - 5.5)
        atoms.info.update(REF_energy=2 * (v - 5.5) ** 2, REF_virial=(p * atoms.get_volume() * np.eye(3)).tolist())
        frames.append(atoms)
    _, p_fit, p_virial = check_virial.pressures(frames)
    np.testing.assert_allclose(p_fit, p_virial, rtol=1e-6, atol=1e-6)


def test_defected_graphite_centre_has_two_neighbours():
    atoms, centre = attention_pattern.defected_graphite(n=4)
    assert len(atoms) == 2 * 2 * 16 - 1
    d = atoms.get_distances(centre, range(len(atoms)), mic=True)
    assert np.sum((d > 0.1) & (d < 1.6)) == 2  # an under-coordinated atom next to the vacancy


def test_attention_pattern_and_shells():
    atoms, centre = attention_pattern.defected_graphite(n=4)
    calc = AttnMACECalculator(tiny_model(2, cutoffs=(2.2, 3.0)), device="cpu")
    layers = attention_pattern.pattern(calc, atoms, centre)
    assert len(layers) == 2
    for dist, weights in layers:
        assert np.all(np.diff(dist) >= 0)
        np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=1e-10)
        first, second = attention_pattern.shells(dist, weights)
        assert np.all(first + second <= 1.0 + 1e-12)


def test_graphite_builder_and_parameters():
    atoms = graphite.ab_graphite(a=2.5, c=6.8)
    got = graphite.graphite_parameters(atoms)
    assert got == pytest.approx({"a": 2.5, "c": 6.8, "spacing": 3.4})
    d = atoms.get_all_distances(mic=True)
    assert d[d > 0].min() == pytest.approx(2.5 / np.sqrt(3))  # the C-C bond of the sheet


def test_relax_and_energy_difference_run_on_a_tiny_model():
    calc = AttnMACECalculator(tiny_model(2, cutoffs=(2.2, 3.0)), device="cpu")
    relaxed = graphite.relax(graphite.ab_graphite(), calc, fmax=0.5, steps=3)
    assert len(relaxed) == 4 and np.isfinite(relaxed.get_potential_energy())
    de, a_diamond, params = diamond_graphite.energy_difference(calc, fmax=10.0)
    assert np.isfinite(de) and 3.0 < a_diamond < 4.2 and params["a"] > 2.0


def test_random_carbon_density_and_spacing():
    atoms = nve_amorphous.random_carbon(n=32, density=2.4, min_distance=1.35, seed=3)
    density = atoms.get_masses().sum() / atoms.get_volume() * 1.66054
    assert density == pytest.approx(2.4, rel=1e-3)
    d = atoms.get_all_distances(mic=True)
    assert d[np.triu_indices(len(atoms), 1)].min() >= 1.35
    with pytest.raises(RuntimeError, match="could not place"):
        nve_amorphous.random_carbon(n=32, density=6.0, min_distance=1.6)


def test_comparison_table_and_budget(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,seconds\n1,1800\n2,1800\n")
    (tmp_path / "config.yaml").write_text("max_steps_per_epoch: 100\nbatch_size: 4\n")
    budget = compare.budget(tmp_path)
    assert budget["epochs"] == 2 and budget["steps"] == 200 and budget["hours"] == pytest.approx(1.0)
    block = {"energy_rmse_meV_per_atom": 10.0, "forces_rmse_meV_per_A": 300.0, "n_frames": 3}
    result = {
        "preset": "attention",
        "parameters": 84544,
        "valid": {"overall": block, "per_config_type": {"Graphite": block}},
        "test": {"overall": block},
        "budget": budget,
    }
    text = compare.table({"attention": result})
    assert "| attention | 84,544 | 10.0 | 300 |" in text and "163K" in text and "| Graphite | 3 |" in text
