"""Training data: extxyz keys, clear errors, HDF5 round trip, stratified split."""

from pathlib import Path

import ase.io
import h5py
import numpy as np
import pytest

from attnmace.train.data import (
    DataError,
    DataKeys,
    HDF5Dataset,
    check_species,
    config_types_of,
    load_frames,
    read_extxyz,
    split_by_config_type,
    write_hdf5,
)

FIXTURE = Path(__file__).parents[1] / "fixtures" / "gap20_small.extxyz"
KEYS = DataKeys(virial="REF_virial")


def test_reads_fixture_with_virial_as_stress():
    frames = read_extxyz(FIXTURE, KEYS)
    assert len(frames) == 100
    atoms = ase.io.read(FIXTURE, 0)
    f = frames[0]
    assert f.energy == pytest.approx(atoms.info["REF_energy"])
    assert np.allclose(f.forces, atoms.arrays["REF_forces"])
    assert np.allclose(f.stress, -np.asarray(atoms.info["REF_virial"]) / atoms.get_volume())
    assert f.config_type == "Crystalline_Bulk"


def _write(tmp_path, atoms_list, name="d.extxyz"):
    path = tmp_path / name
    ase.io.write(path, atoms_list, format="extxyz")
    return path


def test_missing_energy_key_names_file_and_frame(tmp_path):
    frames = ase.io.read(FIXTURE, ":3")
    del frames[2].info["REF_energy"]
    path = _write(tmp_path, frames)
    with pytest.raises(DataError, match=r"d.extxyz, frame 2: no energy under key 'REF_energy'"):
        read_extxyz(path, KEYS)
    with pytest.raises(DataError, match="no energy under key 'energy_dft'"):
        read_extxyz(FIXTURE, DataKeys(energy="energy_dft"))


def test_frames_without_forces_are_energy_only(tmp_path):
    """A frame without the forces key is read as energy-only; a file where no frame has them is
    most likely a wrong key and is refused, unless the keys say the data have no forces (None)."""
    frames = [a for a in ase.io.read(FIXTURE, ":") if len(a) > 1][:3]
    del frames[1].arrays["REF_forces"]
    read = read_extxyz(_write(tmp_path, frames), KEYS)
    assert [f.has_forces for f in read] == [True, False, True]
    assert np.array_equal(read[1].forces, np.zeros((len(frames[1]), 3)))
    with pytest.raises(DataError, match=r"no frame has forces under key 'forces_dft'.*--forces-key none"):
        read_extxyz(FIXTURE, DataKeys(forces="forces_dft"))
    energy_only = read_extxyz(FIXTURE, DataKeys(forces=None))
    assert not any(f.has_forces for f in energy_only)
    h5 = tmp_path / "mixed.h5"
    write_hdf5(read, h5)
    loaded = load_frames(h5)
    assert [f.has_forces for f in loaded] == [True, False, True]
    assert np.array_equal(loaded[0].forces, read[0].forces) and np.array_equal(loaded[1].forces, read[1].forces)
    with h5py.File(h5, "r") as f:
        assert f.attrs["version"] == 2  # NaN rows: older readers must not take them for forces
    write_hdf5(read_extxyz(FIXTURE, KEYS), tmp_path / "all.h5")
    with h5py.File(tmp_path / "all.h5", "r") as f:
        assert f.attrs["version"] == 1


def test_malformed_and_missing_files(tmp_path):
    bad = tmp_path / "bad.extxyz"
    bad.write_text("3\nthis is not extxyz\nC 0 0\n")
    with pytest.raises(DataError, match="bad.extxyz"):
        read_extxyz(bad)
    with pytest.raises(FileNotFoundError, match="no data file"):
        read_extxyz(tmp_path / "missing.extxyz")
    not_h5 = tmp_path / "x.h5"
    not_h5.write_text("nope")
    with pytest.raises(DataError, match="cannot be read as HDF5"):
        HDF5Dataset(not_h5)


def test_nan_label_is_rejected(tmp_path):
    frames = ase.io.read(FIXTURE, ":2")
    frames[1].arrays["REF_forces"][0, 0] = np.nan
    with pytest.raises(DataError, match="frame 1: .*NaN"):
        read_extxyz(_write(tmp_path, frames), KEYS)


def test_unknown_element_names_frame():
    frames = read_extxyz(FIXTURE, KEYS)[:5]
    frames[3].numbers[0] = 8
    with pytest.raises(DataError, match=r"src, frame 3: element\(s\) \['O'\] not in the model's species \['C'\]"):
        check_species(frames, [6], "src")


def test_hdf5_round_trip_is_exact_and_lazy(tmp_path):
    frames = read_extxyz(FIXTURE, KEYS)
    frames[1].stress = None
    frames[2].weight = 3.0
    path = tmp_path / "data.h5"
    write_hdf5(frames, path, source=str(FIXTURE))
    loaded = load_frames(path)
    assert isinstance(loaded, HDF5Dataset) and len(loaded) == len(frames)
    for a, b in zip(frames, loaded):
        assert np.array_equal(a.numbers, b.numbers) and np.array_equal(a.positions, b.positions)
        assert np.array_equal(a.forces, b.forces) and np.array_equal(a.cell, b.cell)
        assert np.array_equal(a.pbc, b.pbc) and a.energy == b.energy
        assert (a.stress is None) == (b.stress is None)
        if a.stress is not None:
            assert np.array_equal(a.stress, b.stress)
        assert a.weight == b.weight and a.config_type == b.config_type
    assert loaded._h5 is not None  # opened on first access, not at construction


def test_stratified_split_is_deterministic():
    frames = read_extxyz(FIXTURE, KEYS)
    split = split_by_config_type(frames, 0.2, seed=3)
    assert split == split_by_config_type(frames, 0.2, seed=3)
    assert not set(split["train"]) & set(split["valid"])
    assert len(split["train"]) + len(split["valid"]) == len(frames)
    types_valid = {frames[i].config_type for i in split["valid"]}
    assert {"Diamond", "Graphite", "SACADA"} <= types_valid


def test_split_of_an_hdf5_file_reads_no_frames(tmp_path, monkeypatch):
    frames = read_extxyz(FIXTURE, KEYS)
    path = tmp_path / "data.h5"
    write_hdf5(frames, path)
    loaded = load_frames(path)

    def no_reading(self, index):
        raise AssertionError("the split read a whole frame")

    monkeypatch.setattr(HDF5Dataset, "__getitem__", no_reading)
    assert config_types_of(loaded) == [f.config_type for f in frames]
    assert split_by_config_type(loaded, 0.2, seed=3) == split_by_config_type(frames, 0.2, seed=3)


def _labels(sizes_by_type, single_atoms=0):
    from types import SimpleNamespace

    frames = [
        SimpleNamespace(config_type=name, numbers=np.zeros(5, dtype=np.int32))
        for name, size in sizes_by_type.items()
        for _ in range(size)
    ]
    frames += [SimpleNamespace(config_type="IsolatedAtom", numbers=np.zeros(1, dtype=np.int32))] * single_atoms
    return frames


def test_split_holds_out_the_asked_fraction_and_keeps_isolated_atoms_in_training():
    """Many small config types (like GO-MACE-23's 44 types of 1-9 frames) still give the asked
    fraction; before, every type of two or more frames gave one, 24 % for an asked 2 %."""
    sizes = {f"type{k:02d}": 1 + k % 9 for k in range(44)}
    frames = _labels(sizes, single_atoms=3)
    n_multi = sum(sizes.values())
    isolated = set(range(n_multi, n_multi + 3))
    for fraction in (0.02, 0.05, 0.1, 0.2, 0.5):
        split = split_by_config_type(frames, fraction, seed=1)
        assert len(split["valid"]) == round(fraction * n_multi), fraction
        assert isolated <= set(split["train"]) and sorted(split["train"] + split["valid"]) == list(range(len(frames)))
        trained = {frames[i].config_type for i in split["train"]}
        assert trained == set(sizes) | {"IsolatedAtom"}  # no type gives all its frames
    big = split_by_config_type(_labels({"A": 90, "B": 9, "C": 1}), 0.1, seed=0)["valid"]
    assert len(big) == 10 and sum(i < 90 for i in big) == 9 and 99 not in big  # shares by size
    old = split_by_config_type(frames, 0.02, seed=1, at_least_one_per_type=True)
    per_type = {frames[i].config_type for i in old["valid"]}
    assert per_type == {name for name, size in sizes.items() if size >= 2} and isolated <= set(old["train"])
