"""Check the GAP-20 ``REF_virial`` against the energy-volume curve of the same data.

    python examples/gap20/check_virial.py ../shared/data/gap20

For the ``Diamond`` frames with small forces (max |F| < 1 eV/Å: strained, hardly rattled cells
of 2 and 8 atoms at many volumes), the pressure is ``P = -dE/dV``. This fits ``E/N`` against
``V/N`` with a cubic polynomial and prints, per volume
bin, the pressure from that slope beside ``P = trace(virial) / (3 V)`` from the stored virials
(GAP convention ``virial = -stress · V``). If the two disagree by orders of magnitude, the stored
virials are not usable as stress labels.
"""

import argparse
from pathlib import Path

import ase.io
import numpy as np
from ase.units import GPa


def pressures(frames):
    """Volume per atom, pressure from the E(V) fit and from the virial (GPa), sorted by volume."""
    v = np.array([a.get_volume() / len(a) for a in frames])
    e = np.array([a.info["REF_energy"] / len(a) for a in frames])
    vir = np.array([np.trace(np.reshape(a.info["REF_virial"], (3, 3))) / (3 * a.get_volume()) for a in frames])
    fit = np.polynomial.Polynomial.fit(v, e, 3)
    rms = np.sqrt(np.mean((fit(v) - e) ** 2))
    print(f"E(V) fit residual: {1e3 * rms:.1f} meV/atom")
    p_fit = -fit.deriv()(v)
    order = np.argsort(v)
    return v[order], p_fit[order] / GPa, vir[order] / GPa


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    args = parser.parse_args(argv)
    frames = [
        a
        for a in ase.io.read(args.data_dir / "gap20_subset_train.extxyz", ":")
        if a.info.get("config_type") == "Diamond" and np.abs(a.arrays["REF_forces"]).max() < 1.0
    ]
    v, p_fit, p_vir = pressures(frames)
    print(f"{len(frames)} Diamond frames")
    print(f"{'V/N (Å^3)':>10} {'P = -dE/dV (GPa)':>18} {'P from virial (GPa)':>20}")
    for i in np.linspace(0, len(v) - 1, 10).astype(int):
        print(f"{v[i]:10.3f} {p_fit[i]:18.1f} {p_vir[i]:20.2f}")
    big = np.abs(p_fit) > 20
    ratio = np.median(np.abs(p_fit[big] / p_vir[big])) if big.any() else float("nan")
    print(f"median |P_fit / P_virial| where |P_fit| > 20 GPa: {ratio:.0f}")


if __name__ == "__main__":
    main()
