"""Diamond–graphite energy difference and lattice constants from relaxed cells.

    python examples/gap20/diamond_graphite.py [--model gap20.pt]

Relaxes cubic diamond and AB graphite (cell and positions) and prints E(diamond) - E(graphite)
per atom. Experiment: graphite is the more stable phase by 1.9 kJ/mol = 20 meV/atom at 298 K
(the standard enthalpy of formation of diamond); dispersion-corrected DFT gives a few tens of
meV/atom in either direction, and the GAP-20 paper's optB88-vdW data put graphite lower.
Diamond's lattice constant: 3.567 Å (experiment).
"""

import argparse

from ase.build import bulk
from graphite import ab_graphite, graphite_parameters, relax, write_json

from attnmace import AttnMACECalculator

EXPERIMENT_DE_MEV = 19.6  # 1.895 kJ/mol, diamond above graphite
EXPERIMENT_A_DIAMOND = 3.567


def energy_difference(calc, fmax: float = 1e-3):
    """``(E_diamond - E_graphite)`` per atom in meV, the relaxed diamond a and graphite parameters."""
    diamond = relax(bulk("C", "diamond", a=3.567), calc, fmax)
    graphite = relax(ab_graphite(), calc, fmax)
    de = 1e3 * (diamond.get_potential_energy() / len(diamond) - graphite.get_potential_energy() / len(graphite))
    a_diamond = float(diamond.cell.lengths()[0] * 2**0.5)  # fcc primitive vector -> cubic a
    return de, a_diamond, graphite_parameters(graphite)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gap20.pt")
    parser.add_argument("--fmax", type=float, default=1e-3)
    parser.add_argument("--json", help="also write the results here (for the model card)")
    args = parser.parse_args(argv)
    de, a_d, g = energy_difference(AttnMACECalculator(args.model), args.fmax)
    print(
        f"E(diamond) - E(graphite): {de:+.1f} meV/atom   (experiment {EXPERIMENT_DE_MEV:+.1f}; "
        f"difference {de - EXPERIMENT_DE_MEV:+.1f} meV/atom)"
    )
    diff = a_d - EXPERIMENT_A_DIAMOND
    print(f"diamond a: {a_d:.3f} Å   (experiment {EXPERIMENT_A_DIAMOND}; difference {diff:+.3f} Å)")
    print(f"graphite a: {g['a']:.3f} Å, c/2: {g['spacing']:.3f} Å   (experiment 2.46, 3.35)")
    if args.json:
        experiment = {"diamond_minus_graphite_meV_per_atom": EXPERIMENT_DE_MEV, "diamond_a": EXPERIMENT_A_DIAMOND}
        result = {"model": str(args.model), "diamond_minus_graphite_meV_per_atom": de, "diamond_a": a_d}
        write_json(args.json, result | {"graphite": g, "experiment": experiment})


if __name__ == "__main__":
    main()
