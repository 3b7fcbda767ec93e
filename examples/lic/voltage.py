"""Li intercalation in graphite: formation energies, convex hull and the voltage profile.

Reaction x Li (bcc metal) + C6 (AB graphite) -> Li_xC6.  With relaxed energies (cell and
positions, FrechetCellFilter + BFGS), per C6 unit,

    E_f(x) = E(Li_xC6) - x E(Li, bcc, per atom) - E(C6, AB graphite)            (eV per C6)

The phases on the lower convex hull of E_f(x) are stable at 0 K; between two neighbouring hull
points x1 < x2 they coexist and the cell voltage against Li metal is constant,

    V = -[E_f(x2) - E_f(x1)] / (x2 - x1)                                           (V; e = 1 per Li)

Zero-point energy, entropy and pV are neglected, so the dilute and "liquid-like" stage-2L
regions, which are stabilised by configurational entropy, are not reproduced; the stage-2
(LiC12) and stage-1 (LiC6) compounds are.

Structures: AB graphite (x = 0), stage-II LiC12 (x = 1/2), stage-I LiC6 (x = 1, AA layers, Li in
every gallery on a sqrt(3) x sqrt(3) lattice of hexagon centres), bcc Li; the full run adds
dilute cells (<= 25 atoms) from structures.py: LiC24 (2sqrt3 x 2sqrt3, every gallery), LiC24_AAB
(one gallery in three filled), LiC18 (3x3), LiC16_AA (one gallery in two, 2x2) and LiC8 (2x2).

References (approximate; printed next to the model's numbers):
* Experimental room-temperature plateaus of Li/graphite cells, about 0.2 V (dilute -> stage 2L,
  x < 0.25), 0.12 V (stage 2L -> 2, 0.25 < x < 0.5) and 0.09 V (stage 2 LiC12 -> stage 1 LiC6,
  0.5 < x < 1); J. R. Dahn, Phys. Rev. B 44, 9170 (1991).  Reported values differ by 10-20 mV
  between studies and between charge and discharge.
* Formation energy of LiC6 from van der Waals density functionals, -0.2 to -0.3 eV per Li
  (E. Hazrati, G. A. de Wijs, G. Brocks, Phys. Rev. B 90, 155448 (2014)); the experimental
  plateaus above integrate to about -0.13 eV per Li (a free energy at room temperature).

    python examples/lic/voltage.py                  # models/lic.pt, 8 structures, a few minutes
    python examples/lic/voltage.py --quick          # graphite, LiC12, LiC6, Li: < 1 min
    python examples/lic/voltage.py --model my.pt --plot voltage.png
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import common
import numpy as np
from ase import Atoms

#: (x from, x to, volts, transition): approximate experimental plateaus (Dahn 1991, see above).
EXPERIMENT_PLATEAUS = (
    (0.0, 0.25, 0.20, "dilute -> stage 2L"),
    (0.25, 0.5, 0.12, "stage 2L -> stage 2 (LiC12)"),
    (0.5, 1.0, 0.09, "stage 2 (LiC12) -> stage 1 (LiC6)"),
)
#: E_f(LiC6) per Li from vdW-DFT (Hazrati, de Wijs, Brocks 2014), eV.
DFT_LIC6_RANGE = (-0.30, -0.20)

#: The ids of the unperturbed cells in the labelled DFT data (``common.DFT_DATA``).
DFT_CELLS = {"graphite": "graphite_ab_000", "Li_bcc": "li_bcc_000", "LiC12": "lic12_000", "LiC6": "lic6_000"}

QUICK = {"fmax": 0.05, "relax_steps": 150}
FULL = {"fmax": 0.01, "relax_steps": 400}


def candidate_structures(quick: bool = False) -> Dict[str, Atoms]:
    """The unrelaxed cells by name: graphite, Li (bcc) and Li_xC6 phases (more in the full run)."""
    cells = {"graphite": common.graphite_ab(), "Li_bcc": common.li_bcc()}
    if not quick:
        cells.update({name: common.dilute(name) for name in ("LiC24", "LiC24_AAB", "LiC18", "LiC16_AA")})
    cells["LiC12"] = common.lic12()
    if not quick:
        cells["LiC8"] = common.dilute("LiC8")
    cells["LiC6"] = common.lic6()
    return cells


def relax_all(cells: Dict[str, Atoms], calc, fmax: float, steps: int) -> Dict[str, dict]:
    """Relax every cell (cell and positions); returns energy, composition and optimiser record."""
    out = {}
    for name, atoms in cells.items():
        atoms = atoms.copy()
        atoms.calc = calc
        start = time.perf_counter()
        record = common.relax(atoms, fmax=fmax, steps=steps, cell=True)
        n_li, n_c = common.composition(atoms)
        out[name] = {**record, "n_li": n_li, "n_c": n_c, "atoms": atoms, "seconds": time.perf_counter() - start}
    return out


def formation_energy(energy: float, n_li: int, n_c: int, e_li: float, e_c: float) -> Tuple[float, float]:
    """``(x, E_f)`` of a Li_xC6 cell: x = 6 n_Li / n_C and E_f per C6 unit (eV), referred to
    ``e_li`` (eV per Li atom of the metal) and ``e_c`` (eV per C atom of graphite)."""
    units = n_c / 6.0
    return n_li / units, (energy - n_li * e_li - n_c * e_c) / units


def lower_hull(x: Sequence[float], e: Sequence[float]) -> np.ndarray:
    """Indices of the points on the lower convex hull of ``(x, e)``, sorted by x.

    Andrew's monotone chain on the lower side; of several points at the same x only the lowest can
    be on the hull, and points on a straight hull segment are left out (they add no voltage step).
    """
    x, e = np.asarray(x, dtype=float), np.asarray(e, dtype=float)
    order = np.lexsort((e, x))  # by x, then by energy
    hull: List[int] = []
    for i in order:
        if hull and x[hull[-1]] == x[i]:
            continue  # same x, higher energy
        while len(hull) >= 2:
            (x1, e1), (x2, e2) = (x[hull[-2]], e[hull[-2]]), (x[hull[-1]], e[hull[-1]])
            # drop the middle point unless the turn is strictly counter-clockwise (convex from below)
            if (x2 - x1) * (e[i] - e1) - (e2 - e1) * (x[i] - x1) <= 1e-12:
                hull.pop()
            else:
                break
        hull.append(int(i))
    return np.array(hull, dtype=np.int64)


def hull_voltages(x_hull: Sequence[float], e_hull: Sequence[float]) -> List[Tuple[float, float, float]]:
    """``(x1, x2, V)`` for each pair of neighbouring hull points: V = -(E2 - E1) / (x2 - x1) volts."""
    x_hull, e_hull = np.asarray(x_hull, dtype=float), np.asarray(e_hull, dtype=float)
    volts = -np.diff(e_hull) / np.diff(x_hull)
    return [(float(a), float(b), float(v)) for a, b, v in zip(x_hull[:-1], x_hull[1:], volts)]


def average_voltage(x_hull: Sequence[float], e_hull: Sequence[float], x1: float, x2: float) -> float:
    """Mean hull voltage between compositions ``x1 < x2`` (inside the hull's x range)."""
    e1, e2 = np.interp([x1, x2], x_hull, e_hull)
    return float(-(e2 - e1) / (x2 - x1))


def energy_above_hull(x: Sequence[float], e: Sequence[float], x_hull, e_hull) -> np.ndarray:
    """E_f minus the hull at the same x (eV per C6; 0 on the hull)."""
    return np.asarray(e, dtype=float) - np.interp(x, x_hull, e_hull)


def run(calc, quick: bool = False, fmax: float = 0.01, relax_steps: int = 400) -> dict:
    """Relax all structures with ``calc`` and build the hull; returns a dictionary of results."""
    relaxed = relax_all(candidate_structures(quick), calc, fmax, relax_steps)
    e_li = relaxed["Li_bcc"]["energy"] / relaxed["Li_bcc"]["n_li"]
    e_c = relaxed["graphite"]["energy"] / relaxed["graphite"]["n_c"]
    names = [n for n in relaxed if n != "Li_bcc"]
    points = np.array(
        [formation_energy(relaxed[n]["energy"], relaxed[n]["n_li"], relaxed[n]["n_c"], e_li, e_c) for n in names]
    )
    x, e = points[:, 0], points[:, 1]
    hull = lower_hull(x, e)
    return {
        "dft_check": dft_check(calc),
        "relaxed": relaxed,
        "names": names,
        "x": x,
        "e_f": e,
        "hull": hull,
        "steps": hull_voltages(x[hull], e[hull]),
        "e_above_hull": energy_above_hull(x, e, x[hull], e[hull]),
        "mu_li": e_li,
        "e_c": e_c,
    }


def dft_check(calc, data=common.DFT_DATA) -> Dict[str, Tuple[float, float]]:
    """E_f per Li of LiC12 and LiC6 at the unrelaxed reference cells: ``{name: (model, DFT)}``.

    Both from single points on the same geometries (the experimental lattices of
    ``structures.py``, not relaxed), referred to AB graphite and bcc Li at those lattices: the
    model against the reference it was trained to reproduce. Empty if the data file or one of
    the cells is missing.
    """
    import ase.io  # noqa: I001

    if not Path(data).is_file():
        return {}
    by_id = {a.info.get("structure_id"): a for a in ase.io.read(data, ":")}
    if any(sid not in by_id for sid in DFT_CELLS.values()):
        return {}

    def energies(name):
        atoms = by_id[DFT_CELLS[name]]
        ref = float(atoms.info["REF_energy"])
        atoms = atoms.copy()
        atoms.calc = calc
        return float(atoms.get_potential_energy()), ref, common.composition(atoms)

    model_li, dft_li, (n_li, _) = energies("Li_bcc")
    model_c, dft_c, (_, n_c) = energies("graphite")
    out = {}
    for name in ("LiC12", "LiC6"):
        model, dft, (li, c) = energies(name)
        out[name] = tuple(
            (e - li * e_li / n_li - c * e_c / n_c) / li
            for e, e_li, e_c in ((model, model_li, model_c), (dft, dft_li, dft_c))
        )
    return out


def report(res: dict) -> None:
    """Print the table of structures, the voltage steps and the comparison with the references."""
    header = f"{'structure':12} {'x':>6} {'atoms':>5} {'steps':>5} {'E_f (eV/C6)':>12} {'E_f/x (eV/Li)':>14}"
    print(header + f" {'above hull':>11}")
    for k, name in enumerate(res["names"]):
        r = res["relaxed"][name]
        x, e = res["x"][k], res["e_f"][k]
        per_li = f"{e / x:14.4f}" if x > 0 else f"{'-':>14}"
        note = "" if r["converged"] else "  (not converged)"
        print(
            f"{name:12} {x:6.3f} {len(r['atoms']):5d} {r['steps']:5d} {e:12.4f} {per_li} "
            f"{res['e_above_hull'][k]:11.4f}{note}"
        )
    r = res["relaxed"]["Li_bcc"]
    print(f"bcc Li: a = {r['atoms'].cell.lengths()[0]:.3f} Å, {r['steps']} steps; mu_Li = {res['mu_li']:.4f} eV/atom")
    hull_names = " -> ".join(res["names"][i] for i in res["hull"])
    print(f"convex hull: {hull_names}")
    for x1, x2, v in res["steps"]:
        print(f"  voltage step x = {x1:.3f} -> {x2:.3f}: V = {v:+.3f} V")

    x_hull, e_hull = res["x"][res["hull"]], res["e_f"][res["hull"]]
    print("comparison with experiment (mean model voltage over each experimental plateau):")
    for x1, x2, v_exp, label in EXPERIMENT_PLATEAUS:
        if x1 < x_hull[0] or x2 > x_hull[-1]:
            continue
        v = average_voltage(x_hull, e_hull, x1, x2)
        print("  " + common.compare(f"x = {x1:.2f}-{x2:.2f}, {label}", v, v_exp, "V", "exp. approx., Dahn 1991"))
    if "LiC6" in res["names"]:
        e6 = res["e_f"][res["names"].index("LiC6")]
        low, high = DFT_LIC6_RANGE
        print("  " + common.compare_range("E_f(LiC6)", e6, low, high, "eV/Li", "vdW-DFT, Hazrati et al. 2014"))
        v_exp = sum((b - a) * v for a, b, v, _ in EXPERIMENT_PLATEAUS)
        print("  " + common.compare("E_f(LiC6)", e6, -v_exp, "eV/Li", "exp. plateaus integrated, approx."))
    if res.get("dft_check"):
        print("comparison with the training reference (single points at the unrelaxed reference cells):")
        for name, (model, dft) in res["dft_check"].items():
            print("  " + common.compare(f"E_f({name})", model, dft, "eV/Li", "PBE-D3(BJ), data/lic_dft.extxyz"))


def plot(res: dict, path) -> None:
    """Formation energies with the hull (left) and the voltage profile (right)."""
    fig, ax = common.new_figure(2)
    x, e, hull = res["x"], res["e_f"], res["hull"]
    ax[0, 0].plot(x[hull], e[hull], "-", color="C0", label="convex hull")
    ax[0, 0].plot(x, e, "o", color="C1", label="relaxed structures")
    for k, name in enumerate(res["names"]):
        ax[0, 0].annotate(name, (x[k], e[k]), textcoords="offset points", xytext=(3, 4), fontsize=8)
    ax[0, 0].set(xlabel="x in Li$_x$C$_6$", ylabel="E$_f$ (eV per C$_6$)", title="formation energy")
    ax[0, 0].legend(fontsize=8)
    for i, (x1, x2, v) in enumerate(res["steps"]):
        ax[0, 1].plot([x1, x2], [v, v], "-", color="C0", lw=2, label="model (hull)" if i == 0 else None)
    for i, (x1, x2, v, _) in enumerate(EXPERIMENT_PLATEAUS):
        ax[0, 1].plot([x1, x2], [v, v], "--", color="k", label="experiment (approx.)" if i == 0 else None)
    ax[0, 1].set(xlabel="x in Li$_x$C$_6$", ylabel="V vs Li/Li$^+$ (V)", title="voltage", xlim=(0, 1))
    ax[0, 1].legend(fontsize=8)
    common.save_figure(fig, path)


def main(argv: Optional[Sequence[str]] = None, calc=None) -> dict:
    """Command line; ``calc`` (a calculator or model object) replaces ``--model`` (used by the tests)."""
    parser = common.base_parser(__doc__, "lic_voltage.png")
    parser.add_argument("--fmax", type=float, default=None, help="eV/Å (quick 0.05, full 0.01)")
    parser.add_argument("--relax-steps", type=int, default=None, help="most BFGS steps per structure")

    def compute(calc, args):
        return run(calc, quick=args.quick, fmax=args.fmax, relax_steps=args.relax_steps)

    return common.run_main(parser, argv, calc, QUICK, FULL, compute, report, plot)


if __name__ == "__main__":
    main()
