"""Shared helpers of the Li–C examples (voltage.py, interlayer.py, neb.py, diffusion.py).

* model loading: :func:`load_calculator` (``lic.pt`` by default; a clear message, not a traceback,
  while that model has not been trained and shipped yet);
* structures: :func:`graphite_ab`, :func:`lic6`, :func:`lic12`, :func:`li_bcc`, :func:`dilute`
  and :func:`lic6_vacancy_supercell`, built from the geometry helpers of ``structures.py`` (the
  cells the DFT training data were generated from) and rescaled to the requested lattice;
* :func:`relax` (cell and positions: ``FrechetCellFilter`` + BFGS or FIRE), the command-line
  options every script shares (:func:`base_parser`, :func:`apply_defaults`), the lines that
  compare a number with its reference (:func:`compare`, :func:`compare_range`) and plotting
  (:func:`new_figure`, :func:`save_figure`).

The scripts import this module as ``common``: Python puts a script's own folder on ``sys.path``,
so ``python examples/lic/voltage.py`` works from any directory.
"""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import structures
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.filters import FrechetCellFilter
from ase.geometry import find_mic
from ase.optimize import BFGS, FIRE

from attnmace import AttnMACECalculator

#: This folder (the scripts, ``structures.py`` and ``data/``).
HERE = Path(__file__).resolve().parent

#: The model the examples are written for (``models/lic.pt``, trained on ``data/lic_dft.extxyz``).
DEFAULT_MODEL = "lic.pt"

#: Starting lattice parameters (Å), the same as the DFT structure generator.
A_GRAPHITE = structures.A_GRAPHITE  # 2.46
D_GRAPHITE = structures.C_GRAPHITE / 2  # 3.35, AB graphite interlayer spacing
A_LIC6 = structures.A_LIC6  # 4.31, sqrt(3) x sqrt(3) cell
D_LIC6 = structures.C_LIC6  # 3.70, one layer per cell (AA stacking, Li in every gallery)
C_LIC12 = structures.C_LIC12  # 7.05, two layers per cell, Li in every second gallery
A_LI_BCC = structures.A_LI_BCC  # 3.44

#: The labelled DFT data (``label.py``); some examples compare the model with them.
DFT_DATA = HERE / "data" / "lic_dft.extxyz"

#: Names of the dilute cells of ``structures.dilute_cells()`` (see :func:`dilute`).
DILUTE = ("LiC8", "LiC16_AA", "LiC18", "LiC24", "LiC24_AAB")


# ------------------------------------------------------------------------------------------ model
def missing_model_message(model: Union[str, Path], error: Exception) -> str:
    """The message printed when the model file does not exist."""
    lines = [f"error: {error}."]
    if Path(str(model)).name == DEFAULT_MODEL:
        lines.append(
            f"The Li–C model {DEFAULT_MODEL} has not been trained and shipped yet (it will be "
            f"models/{DEFAULT_MODEL}, trained on examples/lic/data/lic_dft.extxyz)."
        )
    lines.append("Select another model file with --model PATH.")
    return "\n".join(lines)


def load_calculator(
    model: Union[str, Path, Calculator, object] = DEFAULT_MODEL,
    device: Optional[str] = None,
    dtype: str = "float64",
) -> Calculator:
    """An :class:`~attnmace.AttnMACECalculator` for ``model``.

    Args:
        model: a model file, the name of a shipped model (``"lic.pt"``), an ``AttnMACE`` model
            object, or a ready ASE calculator (returned unchanged).
        device: ``"cpu"``, ``"cuda"``, ...; CUDA when available by default.
        dtype: ``"float64"`` or ``"float32"``.

    Raises:
        SystemExit: the model file does not exist; the message says that ``lic.pt`` has not been
            trained yet (when that is the name) and that ``--model PATH`` selects another file.
    """
    if isinstance(model, Calculator):
        return model
    try:
        return AttnMACECalculator(model, device=device, dtype=dtype)
    except FileNotFoundError as error:
        raise SystemExit(missing_model_message(model, error)) from None


# ------------------------------------------------------------------------------------- structures
@functools.cache
def _template(name: str) -> Atoms:
    """The unscaled cells of ``structures.py`` (cached: finding hollow sites takes ~0.1 s)."""
    if name == "graphite":
        return structures.graphite("AB")
    if name == "LiC6":
        return structures.lic6()
    if name == "LiC12":
        return structures.lic12()
    cells = dict(structures.dilute_cells())
    if name not in cells:
        raise KeyError(f"unknown structure {name!r}; known: graphite, LiC6, LiC12, {', '.join(cells)}")
    return cells[name]


def _rescaled(atoms: Atoms, a: Optional[float], c: Optional[float], a0: float, c0: float) -> Atoms:
    """Copy of ``atoms`` with the in-plane vectors scaled by ``a/a0`` and the third by ``c/c0``."""
    atoms = atoms.copy()
    atoms.info.clear()
    cell = atoms.cell.array.copy()
    cell[:2] *= (a if a is not None else a0) / a0
    cell[2] *= (c if c is not None else c0) / c0
    atoms.set_cell(cell, scale_atoms=True)
    atoms.wrap()
    return atoms


def graphite_ab(a: float = A_GRAPHITE, d: float = D_GRAPHITE) -> Atoms:
    """AB (Bernal) graphite, 4 atoms, in-plane lattice constant ``a``, interlayer spacing ``d`` = c/2."""
    return _rescaled(_template("graphite"), a, 2 * d, A_GRAPHITE, 2 * D_GRAPHITE)


def lic6(a: float = A_LIC6, d: float = D_LIC6) -> Atoms:
    """Stage-I LiC6, 7 atoms: AA-stacked graphene, one Li in every third hexagon centre of every
    gallery (sqrt(3) x sqrt(3) R30 cell of lattice constant ``a``, interlayer spacing ``d`` = c)."""
    return _rescaled(_template("LiC6"), a, d, A_LIC6, D_LIC6)


def lic12(a: float = A_LIC6, c: float = C_LIC12) -> Atoms:
    """Stage-II LiC12, 13 atoms: two AA-stacked layers per cell, Li (sqrt(3) x sqrt(3)) in every
    second gallery; the filled gallery is 3.70/7.05 of ``c``."""
    return _rescaled(_template("LiC12"), a, c, A_LIC6, C_LIC12)


def li_bcc(a: float = A_LI_BCC) -> Atoms:
    """bcc Li, conventional 2-atom cube."""
    return _rescaled(structures.li_bcc(), a, a, A_LI_BCC, A_LI_BCC)


def dilute(name: str) -> Atoms:
    """A dilute Li_xC6 cell of ``structures.dilute_cells()`` by name (see :data:`DILUTE`): LiC8 (2x2),
    LiC18 (3x3) and LiC24 (2sqrt3 x 2sqrt3) single-layer AA cells (every gallery filled), LiC16_AA
    (two AA galleries, one filled) and LiC24_AAB (A-Li-A-B: one gallery in three filled)."""
    return _template(name).copy()


def composition(atoms: Atoms) -> Tuple[int, int]:
    """Numbers of Li and C atoms."""
    return int((atoms.numbers == 3).sum()), int((atoms.numbers == 6).sum())


def li_per_c6(atoms: Atoms) -> float:
    """x in Li_xC6."""
    n_li, n_c = composition(atoms)
    return 6.0 * n_li / n_c


def layer_labels(atoms: Atoms, tol: float = 0.5) -> np.ndarray:
    """A layer label (0, 1, ...) for every atom: heights along the cell normal, folded into the cell
    and clustered (a gap of more than ``tol`` Å starts a new layer)."""
    normal = np.cross(atoms.cell[0], atoms.cell[1])
    normal /= np.linalg.norm(normal)
    height = atoms.get_volume() / np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1]))
    z = (atoms.positions @ normal) % height
    order = np.argsort(z)
    new_layer = np.diff(z[order], prepend=z[order][0]) > tol
    labels = np.empty(len(z), dtype=np.int64)
    labels[order] = np.cumsum(new_layer)
    # the first and the last cluster are one layer when it straddles the cell boundary
    if len(z) > 1 and z[order][0] + height - z[order][-1] < tol:
        labels[labels == labels[order][-1]] = 0
    return labels


def lic6_vacancy_supercell(
    repeat: Sequence[int] = (2, 2, 1), vacancies: int = 1, base: Optional[Atoms] = None
) -> Atoms:
    """A LiC6 supercell with Li vacancies.

    Args:
        repeat: repetitions of the 7-atom LiC6 cell; ``(2, 2, 1)`` is 28 atoms, 4 Li per gallery.
        vacancies: Li atoms removed, one per gallery in turn (gallery 0, 1, ..., 0, ...).
        base: the LiC6 cell to repeat (e.g. a relaxed one); :func:`lic6` by default.

    Returns:
        The supercell; ``info["vacancy_sites"]`` holds the Cartesian positions of the removed Li.
    """
    atoms = (base if base is not None else lic6()).repeat(tuple(repeat))
    li = np.flatnonzero(atoms.numbers == 3)
    layer = layer_labels(atoms)[li]
    galleries = np.unique(layer)
    if vacancies > len(li) - 1:
        raise ValueError(f"cannot remove {vacancies} of {len(li)} Li atoms")
    removed = []
    for k in range(vacancies):
        candidates = [i for i in li[layer == galleries[k % len(galleries)]] if i not in removed]
        removed.append(candidates[0])
    sites = atoms.positions[removed].copy()
    del atoms[removed]
    atoms.info["vacancy_sites"] = sites
    return atoms


def mic_vectors(vectors: np.ndarray, atoms: Atoms) -> np.ndarray:
    """Minimum-image versions of Cartesian ``vectors`` (n, 3) in the cell of ``atoms``."""
    return find_mic(np.atleast_2d(vectors), atoms.cell, atoms.pbc)[0]


# --------------------------------------------------------------------------------------- relaxing
def relax(
    atoms: Atoms,
    fmax: float = 0.01,
    steps: int = 300,
    cell: bool = True,
    optimizer: str = "BFGS",
) -> Dict[str, object]:
    """Relax ``atoms`` in place (it must have a calculator).

    Args:
        fmax: force criterion (eV/Å; for the cell degrees of freedom of ``FrechetCellFilter`` the
            same number in eV/Å per cell DOF, i.e. stress x volume).
        steps: most optimiser steps.
        cell: relax the cell too (``FrechetCellFilter``); positions only otherwise.
        optimizer: ``"BFGS"`` or ``"FIRE"``.

    Returns:
        ``{"energy": eV, "steps": n, "converged": bool}``.
    """
    target = FrechetCellFilter(atoms) if cell and atoms.pbc.all() else atoms
    opt = {"BFGS": BFGS, "FIRE": FIRE}[optimizer](target, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    return {"energy": float(atoms.get_potential_energy()), "steps": opt.get_number_of_steps(), "converged": converged}


# -------------------------------------------------------------------------------- hop paths
def lattice_step(atoms: Atoms, index: int, length: float = 2.46, tol: float = 0.15) -> np.ndarray:
    """An in-plane graphene lattice vector (|v| = a, about 2.46 Å) from the carbon layer nearest atom
    ``index``: moving a Li by it takes it from one hexagon centre over a C-C bridge to the next."""
    carbon = np.flatnonzero(atoms.numbers == 6)
    dz = np.abs(mic_vectors(atoms.positions[carbon] - atoms.positions[index], atoms)[:, 2])
    layer = carbon[np.abs(dz - dz.min()) < 0.3]
    vectors = mic_vectors(atoms.positions[layer] - atoms.positions[layer[0]], atoms)
    ok = (np.abs(np.linalg.norm(vectors, axis=1) - length) < tol) & (np.abs(vectors[:, 2]) < 0.3)
    if not ok.any():
        raise ValueError(f"no in-plane lattice vector of {length} Å in the layer next to atom {index}")
    return vectors[np.flatnonzero(ok)[0]] * np.array([1.0, 1.0, 0.0])


def hop_profiles(frames: Sequence[Atoms], calc=None, energy_key: str = "REF_energy") -> Dict[str, dict]:
    """Energy along every labelled hop path (frames with ``info["hop"]``), relative to its image 0.

    Returns, per path: ``images`` (indices along the path), ``n_images`` (of the whole path),
    ``complete`` (every image from the initial state to the middle is there), ``dft`` (eV) and
    ``dft_barrier`` (the largest; the far half mirrors the near one), and with ``calc`` the same for
    the model (``model``, ``model_barrier``) on the same geometries.
    """
    paths: Dict[str, List[Atoms]] = {}
    for atoms in frames:
        if "hop" in atoms.info and energy_key in atoms.info:
            paths.setdefault(str(atoms.info["hop"]), []).append(atoms)
    out = {}
    for name, images in paths.items():
        images = sorted(images, key=lambda a: int(a.info["image"]))
        index = [int(a.info["image"]) for a in images]
        if index[0] != 0:
            continue  # no initial state yet: nothing to measure from
        n_images = int(images[0].info["images"])
        dft = np.array([float(a.info[energy_key]) for a in images])
        entry = {
            "images": index,
            "n_images": n_images,
            "complete": index == list(range(n_images // 2 + 1)),
            "dft": (dft - dft[0]).tolist(),
            "dft_barrier": float((dft - dft[0]).max()),
        }
        if calc is not None:
            model = []
            for atoms in images:
                probe = Atoms(atoms.numbers, atoms.positions, cell=atoms.cell, pbc=atoms.pbc)
                probe.calc = calc
                model.append(probe.get_potential_energy())
            model = np.array(model) - model[0]
            entry.update(model=model.tolist(), model_barrier=float(model.max()))
        out[name] = entry
    return out


def dft_hop_check(calc, hop: str = "LiC6_vacancy", data: Union[str, Path] = DFT_DATA) -> Optional[dict]:
    """DFT and model energy along the labelled hop path ``hop`` (active-learning round 2), as
    :func:`hop_profiles` gives it; None when the data file or the path's initial image is missing."""
    import ase.io  # noqa: I001

    if not Path(data).is_file():
        return None
    frames = [a for a in ase.io.read(data, ":") if a.info.get("hop") == hop]
    return hop_profiles(frames, calc).get(hop)


# -------------------------------------------------------------------------------- command line
def base_parser(doc: str, plot: str, dtype: str = "float64") -> argparse.ArgumentParser:
    """Options every script has: --model, --quick, --device, --dtype, --plot."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"model file or shipped model name (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--quick", action="store_true", help="fewer/smaller structures, shorter runs (< 1 min)")
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda when available)")
    parser.add_argument("--dtype", default=dtype, choices=["float64", "float32"], help=f"default {dtype}")
    parser.add_argument("--plot", default=plot, help=f"output PNG (default {plot})")
    return parser


def apply_defaults(args: argparse.Namespace, quick: dict, full: dict) -> argparse.Namespace:
    """Fill every option left at ``None`` from ``quick`` or ``full`` (by ``args.quick``)."""
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    return args


def run_main(parser, argv, calc, quick: dict, full: dict, compute, report, plot) -> dict:
    """The body every script's ``main`` shares.

    Parses ``argv`` (filling defaults from ``quick``/``full``), loads the calculator (``calc``, a
    calculator or model object, replaces ``--model``), runs ``compute(calc, args)``, prints the
    ``report``, writes the ``plot`` and the total time, and returns the results.
    """
    args = apply_defaults(parser.parse_args(argv), quick, full)
    calc = load_calculator(calc if calc is not None else args.model, args.device, args.dtype)
    start = time.perf_counter()
    res = compute(calc, args)
    report(res)
    plot(res, args.plot)
    print(f"total time {time.perf_counter() - start:.1f} s")
    return res


def compare(label: str, value: float, reference: float, unit: str, source: str, digits: int = 3) -> str:
    """``label: model X unit, reference Y unit (source), difference +Z unit``."""
    f = f".{digits}f"
    return (
        f"{label}: model {value:{f}} {unit}, reference {reference:{f}} {unit} ({source}), "
        f"difference {value - reference:+{f}} {unit}"
    )


def compare_range(label: str, value: float, low: float, high: float, unit: str, source: str, digits: int = 3) -> str:
    """Like :func:`compare` for a reference range: the difference is to the nearer end, 0 inside."""
    f = f".{digits}f"
    diff = value - high if value > high else value - low if value < low else 0.0
    where = "inside the range" if diff == 0 else f"difference {diff:+{f}} {unit} to the nearer end"
    return f"{label}: model {value:{f}} {unit}, reference {low:{f}} to {high:{f}} {unit} ({source}), {where}"


# ------------------------------------------------------------------------------------ plotting
def new_figure(ncols: int = 1, width: float = 5.0, height: float = 4.0):
    """``(figure, axes)`` with the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)


def save_figure(fig, path: Union[str, Path]) -> Path:
    """Write ``fig`` to ``path`` (PNG) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"plot written to {path}")
    return path
