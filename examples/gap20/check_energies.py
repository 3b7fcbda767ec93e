"""Check that the GAP-20 energies of small and large cells are consistent with each other.

    python examples/gap20/check_energies.py ../shared/data/gap20 \
        --output examples/gap20/results/energy_consistency.json

A cheap reference model is fitted to the frames whose cells are at least ``--reference-width``
(8 Å) wide along every periodic direction, where the k-point sampling of the DFT matters least:
a ridge regression of the total energy on smooth radial-distribution features (per atom, the
neighbour distances smeared with Gaussians from 0.8 to 5 Å; the features and their squares are
summed over the atoms, plus the atom count). Frames the reference disagrees with by more than 5
robust standard deviations are left out of the fit and it is fitted again. The script then prints
the residual ``(E_ref - E_fit) / N`` of every frame, binned by cell width. Consistent data give
residuals centred on zero at every width; the GAP-20 subset's cells narrower than about 6 Å lie
eV/atom above the reference, which is why ``prepare.py`` drops them (``check_kpoints.py`` shows
that Gamma-point-only sampling gives offsets of this size).
"""

import argparse
import json
from pathlib import Path

import ase.io
import numpy as np
from ase.neighborlist import neighbor_list
from prepare import cell_width

CENTRES = np.linspace(0.8, 5.0, 43)  # Å, Gaussian centres of the radial features
SMEARING = 0.1  # Å
WIDTH_BINS = (0.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 12.0, np.inf)


def radial_features(atoms) -> np.ndarray:
    """Sum over atoms of the smeared neighbour-distance histogram, of its square, and the count."""
    i, d = neighbor_list("id", atoms, CENTRES[-1])
    gauss = np.exp(-(((d[:, None] - CENTRES[None, :]) / SMEARING) ** 2))
    per_atom = np.zeros((len(atoms), len(CENTRES)))
    np.add.at(per_atom, i, gauss)
    return np.concatenate([per_atom.sum(0), (per_atom**2).sum(0) / 10.0, [len(atoms)]])


def fit_reference(features, energies, mask, ridge=1e-3, rounds=3):
    """Ridge weights fitted on ``mask``, refitted without outliers (> 5 robust std)."""
    n_atoms = features[:, -1]
    mask = mask.copy()
    for _ in range(rounds):
        x, y = features[mask], energies[mask]
        weights = np.linalg.solve(x.T @ x + ridge * np.eye(x.shape[1]), x.T @ y)
        residual = (energies - features @ weights) / n_atoms
        centre = np.median(residual[mask])
        spread = 1.4826 * np.median(np.abs(residual[mask] - centre))
        mask &= np.abs(residual - centre) < 5 * spread
    return weights, centre, spread


def consistency(frames, energy_key="REF_energy", reference_width=8.0, skip=("Dimer", "Single_Atom"), others=()):
    """Per-frame residual (eV/atom) against a reference fitted on the widest cells, and widths.

    Returns ``(residual, widths, reference, spread, other_residuals)``: ``reference`` marks the
    frames of the fit, ``spread`` is its robust standard deviation, and ``other_residuals`` holds
    the residuals of each list of frames in ``others`` (e.g. a test set) against the same fit.
    """
    features = np.array([radial_features(a) for a in frames])
    energies = np.array([a.info[energy_key] for a in frames])
    widths = np.array([cell_width(a) for a in frames])
    types = np.array([a.info.get("config_type", "") for a in frames])
    reference = (widths >= reference_width) & ~np.isin(types, skip)
    weights, centre, spread = fit_reference(features, energies, reference)
    residual = (energies - features @ weights) / features[:, -1] - centre
    other_residuals = []
    for other in others:
        x = np.array([radial_features(a) for a in other])
        e = np.array([a.info[energy_key] for a in other])
        other_residuals.append((e - x @ weights) / x[:, -1] - centre)
    return residual, widths, reference, spread, other_residuals


def table(residual, widths):
    """Rows of (width range, frames, 10th/50th/90th percentile of the residual)."""
    rows = []
    for lo, hi in zip(WIDTH_BINS[:-1], WIDTH_BINS[1:]):
        m = (widths >= lo) & (widths < hi)
        if m.any():
            p10, p50, p90 = np.percentile(residual[m], [10, 50, 90])
            rows.append(dict(width_min=lo, width_max=hi, frames=int(m.sum()), p10=p10, p50=p50, p90=p90))
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--reference-width", type=float, default=8.0)
    parser.add_argument("--output", type=Path, default=None, help="JSON file for the table")
    args = parser.parse_args(argv)
    frames = ase.io.read(args.data_dir / "gap20_subset_train.extxyz", ":")
    test = ase.io.read(args.data_dir / "gap20_amorphous_test.extxyz", ":")
    residual, widths, reference, spread, (test_residual,) = consistency(
        frames, reference_width=args.reference_width, others=[test]
    )
    print(f"reference: {reference.sum()} frames >= {args.reference_width} A wide, robust std {spread:.3f} eV/atom")
    test_widths = np.array([cell_width(a) for a in test])
    out = dict(reference_width=args.reference_width, reference_frames=int(reference.sum()), robust_std=spread)
    for name, r, w in (("training file", residual, widths), ("amorphous test set", test_residual, test_widths)):
        print(f"{name}:")
        print(f"{'cell width (A)':>15} {'frames':>7} {'residual (eV/atom): 10%':>24} {'50%':>6} {'90%':>6}")
        rows = table(r, w)
        for row in rows:
            print(
                f"{row['width_min']:6.1f} - {row['width_max']:<6.1f} {row['frames']:7d} "
                f"{row['p10']:24.2f} {row['p50']:6.2f} {row['p90']:6.2f}"
            )
        out[name.replace(" ", "_")] = rows
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(out, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
