"""Formation energy of LiC6 at the reference cells with the production or other DFT settings.

    python examples/lic/check_formation.py                          # production settings
    python examples/lic/check_formation.py --uzh-basis TZV2P-MOLOPT-PBE-GTH

E_f(LiC6) = E(LiC6) - E(Li, bcc, per atom) - 6 E(C, AB graphite, per atom), in eV per Li, from
single points at the unrelaxed cells of ``structures.py`` (the experimental lattices), each with the
k-mesh ``label.py`` uses. With the production settings it reproduces the value from the labelled
reference cells in ``data/lic_dft.extxyz``. Three CP2K runs of 2-7 atoms: a few minutes on one core.

The D3(BJ) pair potential is added to the PBE energy after the SCF, so the formation energy splits
exactly into a PBE and a D3 part at fixed geometry; the script reads each cell's D3 energy from
CP2K's output and prints both parts.
"""

import argparse
import json
import os
import sys
import tempfile

from ase.units import Hartree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cp2k_setup import SETTINGS, make_calc  # noqa: E402
from structures import graphite, li_bcc, lic6  # noqa: E402


def uzh_basis_file(name: str, workdir: str, data_dir: str = "/usr/share/cp2k") -> str:
    """A basis file holding ``name`` for Li (``-q3``) and C (``-q4``) from ``BASIS_MOLOPT_UZH``.

    The UZH file names its sets per valence (``TZV2P-MOLOPT-PBE-GTH-q3``), and ASE's CP2K calculator
    gives every element the same basis name; the copy renames both entries to ``name``.
    """
    lines = open(os.path.join(data_dir, "BASIS_MOLOPT_UZH")).read().split("\n")

    def entry(element, full_name):
        for i, line in enumerate(lines):
            words = line.split()
            if len(words) >= 2 and words[0] == element and full_name in words[1:]:
                out, j = [f"{element} {name}", lines[i + 1]], i + 2
                for _ in range(int(lines[i + 1].split()[0])):  # contracted sets
                    n_exponents = int(lines[j].split()[3])
                    out += lines[j : j + 1 + n_exponents]
                    j += 1 + n_exponents
                return out
        raise KeyError(f"{full_name} for {element} is not in BASIS_MOLOPT_UZH")

    path = os.path.join(workdir, "BASIS_CHECK")
    with open(path, "w") as fh:
        fh.write("\n".join(entry("Li", f"{name}-q3") + entry("C", f"{name}-q4")) + "\n")
    return path


def dispersion_energy(output: str) -> float:
    """The last ``Dispersion energy:`` of a CP2K output file, in eV."""
    values = [line.split()[-1] for line in open(output) if line.strip().startswith("Dispersion energy:")]
    if not values:
        raise ValueError(f"{output} has no 'Dispersion energy:' line (is the D3 pair potential on?)")
    return float(values[-1]) * Hartree


def energy(atoms, settings, workdir, tag):
    """Total (free) energy and its D3 part, in eV, of ``atoms`` with ``settings`` (one CP2K shell)."""
    label = os.path.join(workdir, tag)
    calc = make_calc(atoms, label, settings=settings)
    atoms = atoms.copy()
    atoms.calc = calc
    try:
        total = float(atoms.get_potential_energy())
    finally:
        calc.close()
    return total, dispersion_energy(label + ".out")


def formation_energy(e_lic6: float, e_li_per_atom: float, e_c_per_atom: float) -> float:
    """E_f of LiC6 per Li (eV)."""
    return e_lic6 - e_li_per_atom - 6 * e_c_per_atom


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--basis", default=SETTINGS["basis_set"], help="basis set name for Li and C")
    parser.add_argument("--basis-file", default=SETTINGS["basis_set_file"])
    parser.add_argument("--uzh-basis", help="a BASIS_MOLOPT_UZH set, e.g. TZV2P-MOLOPT-PBE-GTH")
    parser.add_argument("--cutoff", type=float, default=SETTINGS["cutoff_ry"], help="Ry")
    parser.add_argument("--smear", type=float, default=SETTINGS["smear_temperature_k"], help="K")
    parser.add_argument("--json", help="append the result as one JSON line to this file")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="lic_ef_")
    settings = dict(SETTINGS, basis_set=args.basis, basis_set_file=args.basis_file)
    settings.update(cutoff_ry=args.cutoff, smear_temperature_k=args.smear)
    if args.uzh_basis:
        settings.update(basis_set=args.uzh_basis, basis_set_file=uzh_basis_file(args.uzh_basis, workdir))
    cells = {"LiC6": lic6(), "Li_bcc": li_bcc(), "graphite": graphite("AB")}
    both = {name: energy(atoms, settings, workdir, name) for name, atoms in cells.items()}
    e = {name: total for name, (total, _) in both.items()}
    d3 = {name: dispersion for name, (_, dispersion) in both.items()}

    def e_f_of(x):
        return formation_energy(x["LiC6"], x["Li_bcc"] / len(cells["Li_bcc"]), x["graphite"] / len(cells["graphite"]))

    e_f, e_f_d3 = e_f_of(e), e_f_of(d3)
    result = {"settings": {k: settings[k] for k in ("basis_set", "basis_set_file", "cutoff_ry", "smear_temperature_k")}}
    if args.uzh_basis:
        result["settings"]["basis_set_file"] = "BASIS_MOLOPT_UZH (-q3 for Li, -q4 for C)"
    result.update(energies_eV=e, d3_energies_eV=d3, E_f_LiC6_eV_per_Li=round(e_f, 4))
    result.update(E_f_d3_part_eV_per_Li=round(e_f_d3, 4), E_f_pbe_part_eV_per_Li=round(e_f - e_f_d3, 4))
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "a") as fh:
            fh.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
