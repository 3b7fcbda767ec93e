"""Training data: extended XYZ (through ASE) and HDF5 (through h5py, read lazily).

Every frame becomes a :class:`Frame` (numpy arrays, eV / Å units, ASE stress convention). Errors
name the file and the frame index.

HDF5 layout (``attnmace-preprocess`` writes it, :class:`HDF5Dataset` reads it frame by frame)::

    /numbers     (n_atoms_total,)     int32    atomic numbers, frames concatenated
    /positions   (n_atoms_total, 3)   float64  Å
    /forces      (n_atoms_total, 3)   float64  eV/Å; NaN rows for a frame without forces (version 2)
    /offsets     (n_frames + 1,)      int64    frame f is rows offsets[f]:offsets[f+1]
    /cell        (n_frames, 3, 3)     float64  Å
    /pbc         (n_frames, 3)        bool
    /energy      (n_frames,)          float64  eV (total)
    /stress      (n_frames, 3, 3)     float64  eV/Å^3, ASE sign; NaN where absent
    /weight      (n_frames,)          float64  per-configuration loss weight
    /config_type (n_frames,)          str
    attrs: format = "attnmace-frames", version = 1 (2 when a frame has no forces), source, keys
"""

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

import h5py
import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

HDF5_FORMAT = "attnmace-frames"
HDF5_VERSION = 2  # the newest layout read; files whose frames all have forces are written as 1


@dataclass(frozen=True)
class DataKeys:
    """Where the labels live in an extended-XYZ file."""

    energy: str = "REF_energy"
    forces: Optional[str] = "REF_forces"  # None: energy-only data
    stress: Optional[str] = None  # eV/Å^3, ASE sign (3x3 or Voigt 6)
    virial: Optional[str] = None  # eV, virial = -stress * volume (GAP/MACE convention)
    weight: str = "config_weight"
    config_type: str = "config_type"


@dataclass
class Frame:
    """One labelled structure."""

    numbers: np.ndarray  # (n_atoms,)
    positions: np.ndarray  # (n_atoms, 3)
    cell: np.ndarray  # (3, 3)
    pbc: np.ndarray  # (3,)
    energy: float
    forces: np.ndarray  # (n_atoms, 3); zeros where the frame has no forces
    stress: Optional[np.ndarray] = None  # (3, 3)
    weight: float = 1.0
    config_type: str = "default"
    has_forces: bool = True  # False: an energy-only frame, whose forces enter no loss or metric

    def to_atoms(self) -> Atoms:
        return Atoms(numbers=self.numbers, positions=self.positions, cell=self.cell, pbc=self.pbc)


class DataError(ValueError):
    """A malformed data file or frame; the message names the file and frame."""


def _as_3x3(value, what: str, where: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape == (6,):
        xx, yy, zz, yz, xz, xy = arr
        arr = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
    elif arr.shape == (9,):
        arr = arr.reshape(3, 3)
    if arr.shape != (3, 3):
        raise DataError(f"{where}: {what} has shape {arr.shape}, expected 3x3, 9 or Voigt 6")
    return arr


def frame_from_atoms(atoms: Atoms, keys: DataKeys, where: str) -> Frame:
    """Extract labels from an ASE ``Atoms`` read from a file (``where`` names file and frame)."""
    info, arrays = atoms.info, atoms.arrays
    calc = atoms.calc
    calc_results = calc.results if calc is not None else {}

    def lookup(key, per_atom):
        if per_atom and key in arrays:
            return arrays[key]
        if not per_atom and key in info:
            return info[key]
        # ASE may move known keys (energy, forces, stress) to a SinglePointCalculator
        plain = {"REF_energy": "energy", "REF_forces": "forces"}.get(key, key)
        return calc_results.get(plain) if plain in ("energy", "forces", "stress", "free_energy") else None

    energy = lookup(keys.energy, per_atom=False)
    if energy is None:
        raise DataError(f"{where}: no energy under key {keys.energy!r} (info keys: {sorted(info)})")
    forces = lookup(keys.forces, per_atom=True) if keys.forces is not None else None
    has_forces = forces is not None
    forces = np.asarray(forces, dtype=np.float64) if has_forces else np.zeros((len(atoms), 3))
    if forces.shape != (len(atoms), 3):
        raise DataError(f"{where}: forces have shape {forces.shape}, expected ({len(atoms)}, 3)")
    stress = None
    if keys.stress is not None and lookup(keys.stress, per_atom=False) is not None:
        stress = _as_3x3(lookup(keys.stress, per_atom=False), "stress", where)
    elif keys.virial is not None and keys.virial in info:
        volume = atoms.get_volume() if atoms.pbc.all() else 0.0
        if volume <= 0:
            raise DataError(f"{where}: virial given for a structure without a 3-D periodic cell")
        stress = -_as_3x3(info[keys.virial], "virial", where) / volume
    try:
        energy = float(energy)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: energy {energy!r} is not a number") from err
    values = [np.array([energy]), forces, atoms.positions] + ([stress] if stress is not None else [])
    if not all(np.isfinite(v).all() for v in values):
        raise DataError(f"{where}: energy, forces, positions or stress contain NaN or infinity")
    return Frame(
        numbers=atoms.numbers.astype(np.int32),
        positions=atoms.positions.astype(np.float64),
        cell=np.asarray(atoms.cell, dtype=np.float64),
        pbc=atoms.pbc.astype(bool),
        energy=energy,
        forces=forces,
        stress=stress,
        weight=float(info.get(keys.weight, 1.0)),
        config_type=str(info.get(keys.config_type, "default")),
        has_forces=has_forces,
    )


def read_extxyz(path: Union[str, os.PathLike], keys: DataKeys = DataKeys(), index: str = ":") -> List[Frame]:
    """Read all labelled frames of an extended-XYZ file."""
    import ase.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no data file at {path}")
    try:
        images = ase.io.read(path, index=index, format="extxyz")
    except Exception as err:  # ASE raises many types for malformed files
        raise DataError(f"{path}: cannot be read as extended XYZ: {err}") from err
    if isinstance(images, Atoms):
        images = [images]
    if not images:
        raise DataError(f"{path}: contains no frames")
    frames = [frame_from_atoms(a, keys, f"{path}, frame {i}") for i, a in enumerate(images)]
    if keys.forces is not None and not any(f.has_forces for f in frames):  # most likely a wrong key
        raise DataError(
            f"{path}: no frame has forces under key {keys.forces!r} (arrays of frame 0: "
            f"{sorted(images[0].arrays)}); name the key with --forces-key, or give --forces-key none "
            "for energy-only data"
        )
    return frames


def write_hdf5(frames: Sequence[Frame], path: Union[str, os.PathLike], source: str = "", keys: DataKeys = DataKeys()):
    """Write frames in the layout described in the module docstring (atomically)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    counts = np.array([len(f.numbers) for f in frames], dtype=np.int64)
    all_forces = all(f.has_forces for f in frames)
    with h5py.File(tmp, "w") as h5:
        h5.attrs.update(format=HDF5_FORMAT, version=1 if all_forces else 2, source=str(source))
        h5.attrs["keys"] = str(dataclasses.asdict(keys))
        h5["offsets"] = np.concatenate([[0], np.cumsum(counts)])
        h5["numbers"] = np.concatenate([f.numbers for f in frames]).astype(np.int32)
        h5["positions"] = np.concatenate([f.positions for f in frames])
        h5["forces"] = np.concatenate([f.forces if f.has_forces else np.full_like(f.forces, np.nan) for f in frames])
        h5["cell"] = np.stack([f.cell for f in frames])
        h5["pbc"] = np.stack([f.pbc for f in frames])
        h5["energy"] = np.array([f.energy for f in frames])
        h5["stress"] = np.stack([f.stress if f.stress is not None else np.full((3, 3), np.nan) for f in frames])
        h5["weight"] = np.array([f.weight for f in frames])
        h5.create_dataset("config_type", data=np.array([f.config_type for f in frames], dtype=h5py.string_dtype()))
    os.replace(tmp, path)


def _text(value) -> str:
    """An HDF5 string entry (bytes from h5py's variable-length strings) as ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


class HDF5Dataset:
    """Frames of an attnmace HDF5 file, read one at a time (datasets larger than memory work)."""

    _fields = ("offsets", "numbers", "positions", "forces", "cell", "pbc", "energy", "stress", "weight", "config_type")

    def __init__(self, path: Union[str, os.PathLike]):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no data file at {self.path}")
        try:
            with h5py.File(self.path, "r") as h5:
                if h5.attrs.get("format") != HDF5_FORMAT:
                    raise DataError(
                        f"{self.path}: not an attnmace HDF5 file (format attribute {h5.attrs.get('format')!r})"
                    )
                if int(h5.attrs.get("version", 0)) > HDF5_VERSION:
                    raise DataError(
                        f"{self.path}: HDF5 layout version {h5.attrs['version']} is newer than this attnmace reads"
                    )
                missing = [k for k in self._fields if k not in h5]
                if missing:
                    raise DataError(f"{self.path}: missing datasets {missing}")
                self.offsets = h5["offsets"][:]
        except OSError as err:
            raise DataError(f"{self.path}: cannot be read as HDF5: {err}") from err
        self._h5: Optional[h5py.File] = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def num_atoms(self, index: int) -> int:
        """Atoms of frame ``index``, without reading the frame."""
        return int(self.offsets[index + 1] - self.offsets[index])

    def config_types(self) -> List[str]:
        """The configuration type of every frame, without reading the frames."""
        with h5py.File(self.path, "r") as h5:
            return [_text(t) for t in h5["config_type"][:]]

    def __getstate__(self):  # picklable for worker processes: reopen lazily
        state = dict(self.__dict__)
        state["_h5"] = None
        return state

    def __getitem__(self, index: int) -> Frame:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if self._h5 is None:
            self._h5 = h5py.File(self.path, "r")
        h5 = self._h5
        a, b = int(self.offsets[index]), int(self.offsets[index + 1])
        stress = h5["stress"][index]
        config_type = h5["config_type"][index]
        forces = h5["forces"][a:b]
        has_forces = not np.isnan(forces).any()
        return Frame(
            numbers=h5["numbers"][a:b],
            positions=h5["positions"][a:b],
            cell=h5["cell"][index],
            pbc=h5["pbc"][index],
            energy=float(h5["energy"][index]),
            forces=forces if has_forces else np.zeros_like(forces),
            stress=None if np.isnan(stress).any() else stress,
            weight=float(h5["weight"][index]),
            config_type=_text(config_type),
            has_forces=has_forces,
        )

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self)):
            yield self[i]


def load_frames(path: Union[str, os.PathLike], keys: DataKeys = DataKeys()):
    """A sequence of frames: an :class:`HDF5Dataset` for ``.h5``/``.hdf5``, else a list read from extxyz."""
    suffix = Path(path).suffix.lower()
    if suffix in (".h5", ".hdf5"):
        return HDF5Dataset(path)
    return read_extxyz(path, keys)


def check_species(frames, species_numbers: Sequence[int], source: str) -> None:
    """Raise :class:`DataError` naming the first frame with an element the model does not know."""
    known = set(int(z) for z in species_numbers)
    for i in range(len(frames)):
        numbers = frames[i].numbers
        unknown = set(int(z) for z in np.unique(numbers)) - known
        if unknown:
            raise DataError(
                f"{source}, frame {i}: element(s) {[chemical_symbols[z] for z in sorted(unknown)]} not in the "
                f"model's species {[chemical_symbols[z] for z in sorted(known)]}"
            )


def species_in(frames) -> List[int]:
    """Sorted atomic numbers present in a collection of frames."""
    present = set()
    for i in range(len(frames)):
        present.update(int(z) for z in np.unique(frames[i].numbers))
    return sorted(present)


def config_types_of(frames) -> List[str]:
    """The ``config_type`` of every frame; an :class:`HDF5Dataset` answers without reading frames."""
    if isinstance(frames, HDF5Dataset):
        return frames.config_types()
    return [frames[i].config_type for i in range(len(frames))]


def num_atoms_of(frames, index: int) -> int:
    """Atoms of frame ``index``; an :class:`HDF5Dataset` answers without reading the frame."""
    if isinstance(frames, HDF5Dataset):
        return frames.num_atoms(index)
    return len(frames[index].numbers)


def split_by_config_type(
    frames: Sequence[Frame], fraction: float, seed: int, at_least_one_per_type: bool = False
) -> Dict[str, List[int]]:
    """Train/validation indices, stratified by ``config_type``.

    ``round(fraction * n)`` of the ``n`` frames go to validation, shared among the config types
    in proportion to their sizes (largest remainders): a type with too few frames for a share of
    its own gives none, and no type gives all its frames. Single-atom frames (the isolated atoms
    that set E0) always stay in training. With ``at_least_one_per_type`` every type of two or more
    frames gives ``round(fraction * size)`` but at least one: the validation set then covers every
    type, at more than ``fraction`` of the data when there are many small types (the GAP-20
    recipe's split, ``examples/gap20/prepare.py``).
    """
    if not 0 < fraction < 1:
        raise ValueError(f"valid fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    groups: Dict[str, List[int]] = {}
    train: List[int] = []
    for i, config_type in enumerate(config_types_of(frames)):
        if num_atoms_of(frames, i) == 1:
            train.append(i)
        else:
            groups.setdefault(config_type, []).append(i)
    names = sorted(groups)
    shuffled = {name: rng.permutation(groups[name]) for name in names}
    counts = {name: len(groups[name]) for name in names}
    if at_least_one_per_type:
        n_valid = {name: int(round(fraction * n)) for name, n in counts.items()}
        n_valid = {name: min(max(v, 1), counts[name] - 1) if counts[name] >= 2 else v for name, v in n_valid.items()}
    else:
        n_valid = _largest_remainders(counts, int(round(fraction * sum(counts.values()))))
    valid: List[int] = []
    for name in names:
        valid.extend(shuffled[name][: n_valid[name]].tolist())
        train.extend(shuffled[name][n_valid[name] :].tolist())
    return {"train": sorted(train), "valid": sorted(valid)}


def _largest_remainders(counts: Dict[str, int], total: int) -> Dict[str, int]:
    """``total`` shared among the keys of ``counts`` in proportion to their values (Hamilton's
    method, ties to the larger group, then by name), at most ``count - 1`` each."""
    whole = sum(counts.values())
    quota = {name: total * n / whole for name, n in counts.items()} if whole else {}
    share = {name: min(int(np.floor(q)), max(counts[name] - 1, 0)) for name, q in quota.items()}
    left = total - sum(share.values())
    order = sorted(quota, key=lambda name: (-(quota[name] - np.floor(quota[name])), -counts[name], name))
    for name in order:
        if left <= 0:
            break
        if share[name] < counts[name] - 1:
            share[name] += 1
            left -= 1
    return share
