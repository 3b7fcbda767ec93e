"""Where does the model's short-range repulsion end? Two probes of close C-C contacts.

    python examples/gap20/short_range.py [--model gap20.pt] [--json results.json]

A network fitted to bonds of 1.2-1.6 Å extrapolates below them, and a polynomial of many
products can turn over and fall without bound (an "energy hole"): MD that reaches it collapses.
The ZBL pair term (``pair_repulsion``) only acts below 0.6 × the sum of covalent radii (0.91 Å
for C-C), or, in a model with inner cutoffs, takes over below them. Two probes of the model,
each an energy curve scanned from long to short distances:

* **pair**: in a 64-atom diamond cell, one atom pushed along a bond towards its neighbour,
  1.545 Å down to 0.5 Å; the other atoms stay put;
* **compression**: the 8-atom diamond cell compressed uniformly, bond length 1.65 Å down to
  0.9 Å (16 neighbours within 2 Å at 1.2 Å, about 7.5 g/cm³).

For each it prints the curve and, if there is one, the **hole**: past the minimum the energy of
physical carbon rises at every shorter distance; the script reports the distance below which the
model's energy falls instead, and the height of the barrier in front of it.
"""

import argparse

import numpy as np
import torch
from ase.build import bulk
from ase.data import atomic_numbers
from ase.neighborlist import neighbor_list
from graphite import write_json

from attnmace import AttnMACECalculator
from attnmace.nn.repulsion import ZBLRepulsion

DIAMOND_A = 3.567  # Å, experiment
BOND = DIAMOND_A * 3**0.5 / 4  # 1.545 Å


def hole_onset(distances, energies):
    """Scanning ``distances`` from long to short: past the first minimum the energy should only
    rise. Returns the last distance before it falls again (the top of the barrier; the hole lies
    below it) and the barrier's height above that minimum, or ``(None, rise to the shortest
    distance)`` if it never falls."""
    order = np.argsort(distances)[::-1]  # long to short
    r, e = np.asarray(distances, dtype=float)[order], np.asarray(energies, dtype=float)[order]
    k = 0
    while k + 1 < len(e) and e[k + 1] <= e[k]:  # down to the first minimum
        k += 1
    for j in range(k + 1, len(e)):
        if e[j] < e[j - 1]:
            return float(r[j - 1]), float(e[j - 1] - e[k])
    return None, float(e[-1] - e[k])


def pair_curve(calc, distances):
    """Energy (eV, relative to the unperturbed cell) of a 64-atom diamond cell with atom 0 moved
    along one of its bonds, at each distance to that neighbour."""
    cell = bulk("C", "diamond", a=DIAMOND_A, cubic=True).repeat(2)
    first, second, vectors = neighbor_list("ijD", cell, 1.7)
    k = int(np.flatnonzero(first == 0)[0])
    neighbour, direction = int(second[k]), vectors[k] / np.linalg.norm(vectors[k])
    cell.calc = calc
    reference = cell.get_potential_energy()
    energies = []
    for r in distances:
        moved = cell.copy()
        moved.positions[0] = moved.positions[neighbour] - direction * r  # the same image as the bond's
        moved.calc = calc
        energies.append(moved.get_potential_energy() - reference)
    return energies


def zbl_pair(config, distances):
    """The ZBL energy (eV) of one C-C pair at each distance for a model of ``config`` (its
    metadata's model configuration; zeros without the pair repulsion)."""
    if not config.get("pair_repulsion", False):
        return [0.0] * len(distances)
    numbers = [atomic_numbers[s] for s in config["species"]]
    inner = config.get("inner_cutoffs") or None  # with inner cutoffs, the ZBL term hands over there
    zbl = ZBLRepulsion(numbers, config["repulsion_factor"], inner=inner, width=config.get("inner_width", 0.1))
    r = torch.as_tensor(np.repeat(distances, 2), dtype=torch.float64)  # each pair appears twice
    n = len(distances)
    receivers = torch.arange(2 * n)
    senders = receivers + 1 - 2 * (receivers % 2)  # 0<->1, 2<->3, ...
    carbon = torch.full((2 * n,), config["species"].index("C"), dtype=torch.long)
    site = zbl.double()(carbon, receivers, senders, r)
    return site.reshape(n, 2).sum(1).tolist()


def compression_curve(calc, bond_lengths):
    """Energy per atom (eV) of the cubic diamond cell at each nearest-neighbour distance."""
    energies = []
    for b in bond_lengths:
        atoms = bulk("C", "diamond", a=b * 4 / 3**0.5, cubic=True)
        atoms.calc = calc
        energies.append(atoms.get_potential_energy() / len(atoms))
    return energies


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gap20.pt")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    calc = AttnMACECalculator(args.model, dtype="float64")
    probes = {
        "pair": (np.concatenate([[BOND], np.round(np.arange(1.45, 0.49, -0.05), 3)]), pair_curve, "eV"),
        "compression": (np.round(np.arange(1.65, 0.89, -0.05), 3), compression_curve, "eV/atom"),
    }
    result = {"model": str(args.model)}
    for name, (distances, curve, unit) in probes.items():
        energies = curve(calc, distances)
        onset, barrier = hole_onset(distances, energies)
        result[name] = dict(
            distances_A=distances.tolist(), energies=energies, unit=unit, hole_onset_A=onset, barrier=barrier
        )
        zbl = zbl_pair(calc.metadata["config"], distances) if name == "pair" else None
        if zbl is not None:
            result[name]["zbl_pair_energies_eV"] = zbl
        print(f"{name}: distance (Å), energy ({unit})" + (", the ZBL energy of that pair (eV)" if zbl else ""))
        for k, (r, e) in enumerate(zip(distances, energies)):
            print(f"  {r:6.3f} {e:14.3f}" + (f" {zbl[k]:10.3f}" if zbl else ""))
        if onset is None:
            print(
                f"  no energy hole: the energy rises by {barrier:.2f} {unit} from its minimum to the shortest distance"
            )
        else:
            print(f"  energy hole: the energy falls below {onset:.2f} Å, behind a barrier of {barrier:.2f} {unit}")
    if args.json:
        write_json(args.json, result)


if __name__ == "__main__":
    main()
