"""Active learning for the Li–C data (examples/lic/active_learning.py) with tiny models."""

import sys
from pathlib import Path

import numpy as np
import pytest
from ase.io import write
from helpers import tiny_model

from attnmace import AttnMACECalculator

LIC = Path(__file__).parents[2] / "examples" / "lic"
sys.path.insert(0, str(LIC))

import active_learning as al  # noqa: E402
import label  # noqa: E402


@pytest.fixture(scope="module")
def committee():
    return [
        AttnMACECalculator(tiny_model(2, species=("Li", "C"), cutoffs=(2.2, 3.0), seed=seed), device="cpu")
        for seed in (0, 1)
    ]


def test_select_takes_the_highest_scores_with_a_cap_per_trajectory():
    scores = [0.1, 0.9, 0.8, 0.7, 0.05, 0.6]
    trajectories = [0, 0, 0, 0, 1, 1]
    assert al.select(scores, trajectories, count=3, per_trajectory=2) == [1, 2, 5]
    assert al.select(scores, trajectories, count=10, per_trajectory=1) == [1, 5]


def test_committee_spread_is_zero_for_identical_members_and_matches_its_definition(committee):
    atoms = al.parents(["lic6_000"])[0]
    assert np.allclose(al.committee_force_std([committee[0], committee[0]], atoms), 0.0)
    spread = al.committee_force_std(committee, atoms)
    forces = []
    for calc in committee:
        probe = atoms.copy()
        probe.calc = calc
        forces.append(probe.get_forces())
    half_difference = np.linalg.norm(forces[0] - forces[1], axis=1) / 2  # two members: σ = |ΔF| / 2
    assert spread.shape == (len(atoms),) and spread.max() > 0
    assert np.allclose(spread, half_difference)


def test_proposed_structures_keep_their_parent_settings_and_load_in_label(committee, tmp_path):
    starts = al.parents(["lic6_000", "graphene_000"])
    assert [a.info["structure_id"] for a in starts] == ["lic6_000", "graphene_000"]
    chosen = al.propose(committee, starts, [300.0], steps=4, every=2, count=3, per_trajectory=1, round_index=7)
    assert len(chosen) == 2  # one per trajectory
    spreads = [a.info["committee_force_std_max"] for a in chosen]
    for atoms in chosen:
        parent = starts[[p.info["structure_id"] for p in starts].index(atoms.info["parent_id"])]
        assert atoms.info["kmesh"] == parent.info["kmesh"]
        assert atoms.info["config_type"] == parent.info["config_type"] + "_md"
        assert atoms.info["md_temperature_K"] == 300.0 and atoms.info["md_step"] in (2, 4)
        assert atoms.get_chemical_formula() == parent.get_chemical_formula()
    assert [a.info["structure_id"] for a in chosen] == ["al7_000", "al7_001"]
    assert spreads == sorted(spreads, reverse=True)
    path = tmp_path / "round.extxyz"
    write(path, chosen, format="extxyz")
    again = label.read_structures(str(path))
    assert [a.info["structure_id"] for a in again] == ["al7_000", "al7_001"]
    assert [str(a.info["structure_hash"]) for a in again] == [a.info["structure_hash"] for a in chosen]


def test_a_collapsing_trajectory_stops_before_the_collapse(committee):
    atoms = al.parents(["lic6_000"])[0]
    snaps = al.sample_trajectory(atoms, committee[0], 300.0, steps=4, every=2, min_dist=10.0)
    assert snaps == []


def test_read_structures_needs_ids(tmp_path):
    atoms = al.parents(["graphene_000"])[0].copy()
    del atoms.info["structure_id"]
    write(tmp_path / "bad.extxyz", atoms, format="extxyz")
    with pytest.raises(SystemExit, match="structure_id"):
        label.read_structures(str(tmp_path / "bad.extxyz"))


def test_train_committee_writes_one_model_per_seed(tmp_path):
    data = []
    calc = AttnMACECalculator(tiny_model(2, species=("Li", "C"), cutoffs=(2.2, 3.0)), device="cpu")
    for k, atoms in enumerate(al.parents(["lic6_000", "graphite_ab_000", "li_bcc_000", "graphene_000"]) * 2):
        atoms = atoms.copy()
        atoms.rattle(0.05, seed=k)
        atoms.calc = calc
        atoms.info["REF_energy"] = atoms.get_potential_energy()
        atoms.arrays["REF_forces"] = atoms.get_forces()
        atoms.calc = None
        data.append(atoms)
    write(tmp_path / "data.extxyz", data, format="extxyz")
    config = tmp_path / "tiny.yaml"
    config.write_text(
        "species: Li,C\npreset: attention\ncutoffs: 2.2,3.0\nchannels: 4\nheads: 2\nmax_l: 1\nsh_max_l: 1\n"
        "radial_mlp: 8\nreadout_mlp: 4\ncorrelation: 2\nbatch_size: 4\nvalid_fraction: 0.25\ndtype: float64\n"
    )
    files = al.train_committee(2, 1, tmp_path / "data.extxyz", tmp_path / "committee", config)
    assert [f.name for f in files] == ["model.pt", "model.pt"]
    frozen = tmp_path / "committee" / "train_data.extxyz"
    assert frozen.read_bytes() == (tmp_path / "data.extxyz").read_bytes()  # the members' frozen copy
    energies = []
    for f in files:
        assert f.is_file()
        probe = data[0].copy()
        probe.calc = AttnMACECalculator(str(f), device="cpu")
        energies.append(probe.get_potential_energy())
    assert energies[0] != energies[1]  # different seeds, different members


def test_lattice_step_moves_a_li_over_a_bridge_to_the_next_hexagon_centre():
    atoms = dict(al.structures.dilute_cells())["LiC8"]
    li = int(np.flatnonzero(atoms.numbers == 3)[0])
    step = al.common.lattice_step(atoms, li)
    assert np.linalg.norm(step) == pytest.approx(2.46, abs=0.01) and step[2] == 0.0
    carbon = atoms.positions[atoms.numbers == 6]

    def nearest_carbon(point):
        return np.sort(np.linalg.norm(al.common.mic_vectors(carbon - point, atoms), axis=1))[:2]

    start, middle, end = (atoms.positions[li] + t * step for t in (0.0, 0.5, 1.0))
    assert nearest_carbon(end)[0] == pytest.approx(nearest_carbon(start)[0], abs=1e-6)  # a hexagon centre again
    assert nearest_carbon(middle)[0] == pytest.approx(nearest_carbon(middle)[1], abs=1e-6)  # over a C-C bond
    assert nearest_carbon(middle)[0] < nearest_carbon(start)[0]


def test_a_symmetric_hop_path_is_symmetric_so_its_first_half_is_enough(committee):
    atoms = dict(al.structures.dilute_cells())["LiC8"]
    li = int(np.flatnonzero(atoms.numbers == 3)[0])
    final = atoms.copy()
    final.positions[li] += al.common.lattice_step(atoms, li)
    path = al.hop_path(atoms.copy(), final, li, committee[0], images=3, steps=5, relax_steps=5)
    assert len(path) == 5
    energies = [image.get_potential_energy() for image in path]
    assert energies == pytest.approx(energies[::-1], abs=1e-6)
    assert np.linalg.norm(path[2].positions[li] - path[0].positions[li]) == pytest.approx(1.23, abs=0.05)


def test_hop_profiles_measure_from_the_initial_image_and_flag_missing_ones(committee):
    atoms = dict(al.structures.dilute_cells())["LiC8"]
    frames = []
    for k, energy in [(2, -9.5), (0, -10.0), (1, -9.8)]:  # out of order, as labelling may finish them
        image = atoms.copy()
        image.positions[-1, 0] += 0.1 * k
        image.info.update(hop="LiC8", image=k, images=5, REF_energy=energy)
        frames.append(image)
    unlabelled = atoms.copy()
    unlabelled.info.update(hop="other", image=0, images=5)
    profiles = al.common.hop_profiles([*frames, unlabelled, atoms.copy()], committee[0])
    assert list(profiles) == ["LiC8"]
    p = profiles["LiC8"]
    assert p["images"] == [0, 1, 2] and p["complete"]
    assert p["dft"] == pytest.approx([0.0, 0.2, 0.5]) and p["dft_barrier"] == pytest.approx(0.5)
    model = [committee[0].get_potential_energy(f) for f in sorted(frames, key=lambda f: f.info["image"])]
    assert p["model"] == pytest.approx([e - model[0] for e in model], abs=1e-9)
    assert p["model_barrier"] == pytest.approx(max(p["model"]))
    assert not al.common.hop_profiles(frames[:2])["LiC8"]["complete"]  # image 1 missing
    assert al.common.hop_profiles(frames[::2][:1]) == {}  # no initial state
