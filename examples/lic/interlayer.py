"""Interlayer expansion on Li intercalation: AB graphite -> LiC6.

Relaxes AB graphite (4 atoms, two layers per cell: spacing d = c/2) and stage-I LiC6 (7 atoms, AA
layers, one layer per cell: d = c) with FrechetCellFilter + BFGS (cell and positions) and compares
the interlayer spacings and the relative expansion (d_LiC6 - d_graphite) / d_graphite with
experiment.  The spacing is measured as the cell height along the layer normal divided by the
number of carbon layers in the cell (:func:`interlayer_spacing`), so it also works for sheared
cells and for LiC12.  The plot shows the energy of both crystals when the spacing is scaled at
fixed in-plane lattice and fractional coordinates (the interlayer binding curve).

References (room temperature; approximate):
* graphite d = 3.35 Å (c = 6.71 Å), a = 2.46 Å (e.g. Trucano and Chen, Nature 258, 136 (1975));
* LiC6 d = 3.70 Å, a = 4.31 Å (sqrt(3) cell) (Guérard and Hérold, Carbon 13, 337 (1975); layer
  spacing against x in Dahn, Phys. Rev. B 44, 9170 (1991));
* expansion graphite -> LiC6: about 10 %.
The model is trained on PBE-D3(BJ), which need not agree with experiment exactly.

    python examples/lic/interlayer.py               # models/lic.pt
    python examples/lic/interlayer.py --quick --model my.pt --plot interlayer.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import common
import numpy as np
from ase import Atoms

#: Experimental interlayer spacings and in-plane lattice constants (Å), see the module docstring.
EXPERIMENT = {"graphite": {"d": 3.35, "a": 2.46}, "LiC6": {"d": 3.70, "a": 4.31}}
EXPERIMENT_EXPANSION = 100 * (3.70 - 3.35) / 3.35  # about 10 %

QUICK = {"fmax": 0.02, "relax_steps": 150, "scan_points": 7}
FULL = {"fmax": 0.005, "relax_steps": 400, "scan_points": 15}


def layer_height(atoms: Atoms) -> float:
    """The cell height along the layer normal, V / |a x b| (Å)."""
    return float(atoms.get_volume() / np.linalg.norm(np.cross(atoms.cell[0], atoms.cell[1])))


def interlayer_spacing(atoms: Atoms, tol: float = 0.5) -> float:
    """Mean interlayer spacing: cell height / number of carbon layers (c/2 for AB graphite, c for LiC6)."""
    carbon = atoms[atoms.numbers == 6]
    n_layers = len(np.unique(common.layer_labels(carbon, tol)))
    return layer_height(atoms) / n_layers


def relax_crystals(calc, fmax: float, steps: int) -> Dict[str, dict]:
    """Relax AB graphite and LiC6; returns their relaxed atoms, spacing d, in-plane a and record."""
    out = {}
    for name, atoms in (("graphite", common.graphite_ab()), ("LiC6", common.lic6())):
        atoms.calc = calc
        record = common.relax(atoms, fmax=fmax, steps=steps, cell=True)
        out[name] = {**record, "atoms": atoms, "d": interlayer_spacing(atoms), "a": float(atoms.cell.lengths()[0])}
    return out


def binding_curve(atoms: Atoms, calc, spacings: Sequence[float]) -> np.ndarray:
    """Energies (eV per atom) of ``atoms`` with its spacing set to each of ``spacings`` (in-plane cell
    and fractional coordinates fixed; exact for graphite and LiC6 whose layers sit on symmetry planes)."""
    d0 = interlayer_spacing(atoms)
    energies = []
    for d in spacings:
        scaled = atoms.copy()
        cell = scaled.cell.array.copy()
        cell[2] *= d / d0
        scaled.set_cell(cell, scale_atoms=True)
        scaled.calc = calc
        energies.append(scaled.get_potential_energy() / len(scaled))
    return np.array(energies)


#: The unrattled interlayer scans of the DFT data (``common.DFT_DATA``; fixed experimental in-plane lattice).
DFT_SCANS = {"graphite": ("C4", "graphite_ab_000"), "LiC6": ("C6Li", "lic6_000")}


def scan_minimum(d: Sequence[float], e: Sequence[float]) -> float:
    """Spacing at the minimum of a scan: the vertex of the parabola through the lowest point and its
    two neighbours (the lowest point itself if it is at an end of the scan)."""
    order = np.argsort(d)
    d, e = np.asarray(d, float)[order], np.asarray(e, float)[order]
    k = int(np.argmin(e))
    if k == 0 or k == len(d) - 1:
        return float(d[k])
    # about the lowest point, so that the fit is well conditioned
    a, b, _ = np.polyfit(d[k - 1 : k + 2] - d[k], e[k - 1 : k + 2] - e[k], 2)
    return float(d[k] - b / (2 * a))


def dft_check(calc, data=common.DFT_DATA) -> Dict[str, tuple]:
    """Minimum of the DFT interlayer scans and of the model's energies on the same geometries.

    The scans (``graphite_c_scan`` frames and the reference cell, unrattled, experimental in-plane
    lattice) are the only DFT data with one parameter varied; ``{name: (model d, DFT d, points)}``,
    empty if the data file is missing.
    """
    import ase.io  # noqa: I001

    if not Path(data).is_file():
        return {}
    frames = ase.io.read(data, ":")
    out = {}
    for name, (formula, reference_id) in DFT_SCANS.items():
        # the scan points themselves: not the MD snapshots started from them (``*_cscan_md``), which
        # share their family; one frame per spacing (the reference cell repeats a scan point)
        scan = {}
        for a in frames:
            scan_point = a.info.get("family") == "graphite_c_scan" and str(a.info.get("config_type")).endswith("_cscan")
            if a.get_chemical_formula() == formula and (scan_point or a.info.get("structure_id") == reference_id):
                scan.setdefault(round(interlayer_spacing(a), 4), a)
        if len(scan) < 3:
            continue
        d = list(scan)
        dft = [a.info["REF_energy"] / len(a) for a in scan.values()]
        model = []
        for a in scan.values():
            a = a.copy()
            a.calc = calc
            model.append(a.get_potential_energy() / len(a))
        out[name] = (scan_minimum(d, model), scan_minimum(d, dft), len(scan))
    return out


def run(calc, fmax: float = 0.005, relax_steps: int = 400, scan_points: int = 15) -> dict:
    """Relax both crystals and scan their binding curves; returns a dictionary of results."""
    res = relax_crystals(calc, fmax, relax_steps)
    for r in res.values():
        r["scan_d"] = r["d"] * np.linspace(0.9, 1.2, scan_points)
        r["scan_e"] = binding_curve(r["atoms"], calc, r["scan_d"])
    res["expansion"] = 100 * (res["LiC6"]["d"] - res["graphite"]["d"]) / res["graphite"]["d"]
    res["dft_check"] = dft_check(calc)
    return res


def report(res: dict) -> None:
    """Print spacings, lattice constants and the expansion next to experiment."""
    for name in ("graphite", "LiC6"):
        r = res[name]
        note = "" if r["converged"] else ", not converged"
        print(f"{name}: relaxed in {r['steps']} steps{note}")
        label = "c/2" if name == "graphite" else "c"
        print("  " + common.compare(f"interlayer spacing d = {label}", r["d"], EXPERIMENT[name]["d"], "Å", "exp."))
        print("  " + common.compare("in-plane a", r["a"], EXPERIMENT[name]["a"], "Å", "exp."))
    print(common.compare("expansion graphite -> LiC6", res["expansion"], EXPERIMENT_EXPANSION, "%", "exp.", 1))
    if res.get("dft_check"):
        print("comparison with the training reference (minimum of the interlayer scan at the experimental a):")
        for name, (model, dft, n) in res["dft_check"].items():
            source = f"PBE-D3(BJ), {n} points of data/lic_dft.extxyz"
            print("  " + common.compare(f"{name} d", model, dft, "Å", source))


def plot(res: dict, path) -> None:
    """Binding curves of graphite and LiC6 with the model's and experiment's spacings."""
    fig, ax = common.new_figure(1, width=6.0)
    ax = ax[0, 0]
    for k, name in enumerate(("graphite", "LiC6")):
        r = res[name]
        ax.plot(r["scan_d"], 1e3 * (r["scan_e"] - r["scan_e"].min()), "o-", color=f"C{k}", label=f"{name} (model)")
        ax.axvline(EXPERIMENT[name]["d"], color=f"C{k}", ls="--", lw=1, label=f"{name} exp. {EXPERIMENT[name]['d']} Å")
    ax.set(xlabel="interlayer spacing d (Å)", ylabel="E - E$_{min}$ (meV/atom)", title="interlayer binding")
    ax.legend(fontsize=8)
    common.save_figure(fig, path)


def main(argv: Optional[Sequence[str]] = None, calc=None) -> dict:
    """Command line; ``calc`` (a calculator or model object) replaces ``--model`` (used by the tests)."""
    parser = common.base_parser(__doc__, "lic_interlayer.png")
    parser.add_argument("--fmax", type=float, default=None, help="eV/Å (quick 0.02, full 0.005)")
    parser.add_argument("--relax-steps", type=int, default=None, help="most BFGS steps per crystal")
    parser.add_argument("--scan-points", type=int, default=None, help="points of the binding curve (0.9-1.2 d)")

    def compute(calc, args):
        return run(calc, fmax=args.fmax, relax_steps=args.relax_steps, scan_points=args.scan_points)

    return common.run_main(parser, argv, calc, QUICK, FULL, compute, report, plot)


if __name__ == "__main__":
    main()
