"""Li migration barrier in LiC6: a vacancy hop in the graphite gallery by climbing-image NEB.

In stage-I LiC6 the Li atoms fill one third of the hexagon centres of every gallery (a
sqrt(3) x sqrt(3) lattice, Li-Li 4.3 Å); they move in-plane by hopping into a Li vacancy.  The
straight line between two Li sites passes over two carbon atoms, so the minimum-energy path is
curved, through the empty hexagon centre next to both sites (hollow -> bridge -> hollow ->
bridge -> hollow).  The script

1. relaxes the 7-atom LiC6 cell (cell and positions),
2. builds a supercell (2x2x1 in-plane, 27 atoms, with --quick; 2x2x2, 55 atoms, otherwise) with one
   Li vacancy, moves the neighbouring Li into the vacancy to get the final state, and relaxes both
   end points at fixed cell,
3. starts the path through the intermediate hexagon centre and runs a climbing-image NEB (FIRE,
   improved-tangent method), and
4. reports the barrier E_max - E_initial and plots the energy along the path.

``--start idpp`` starts instead from ASE's image-dependent pair potential interpolation
(``NEB.interpolate(method="idpp")``) of the straight line.  That path lies on a mirror plane of
the crystal (Li over the C-C bond), where the forces across the plane vanish by symmetry, so the
NEB stays on it and finds the higher barrier of the straight hop over the carbon atoms: compare the
two to see the curvature of the path matter.

Reference (approximate): DFT migration barriers for a Li vacancy hop in LiC6 of about 0.3 to 0.5 eV
depending on the functional and the Li arrangement (e.g. K. Persson et al., Phys. Rev. B 82,
125416 (2010), and J. Phys. Chem. Lett. 1, 1176 (2010)); the exact number depends on the cell size.

    python examples/lic/neb.py                      # models/lic.pt, 55 atoms, 5 images
    python examples/lic/neb.py --quick --model my.pt --plot neb.png
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import common
import numpy as np
from ase import Atoms
from ase.mep import NEB
from ase.optimize import FIRE

#: Reference range for the barrier (eV), see the module docstring.
REFERENCE_BARRIER = (0.3, 0.5)

QUICK = {"repeat": (2, 2, 1), "images": 3, "fmax": 0.1, "relax_steps": 150, "neb_steps": 150}
FULL = {"repeat": (2, 2, 2), "images": 5, "fmax": 0.05, "relax_steps": 300, "neb_steps": 400}


def hop_endpoints(vacancy_cell: Atoms) -> Tuple[Atoms, Atoms, int]:
    """Initial and final states of a vacancy hop and the index of the hopping Li.

    The Li nearest to the first vacancy site (``info["vacancy_sites"]``) within the same gallery
    moves onto that site; its final position is continuous with the initial one (no wrapping), so
    the states can be interpolated directly.
    """
    site = np.asarray(vacancy_cell.info["vacancy_sites"])[0]
    li = np.flatnonzero(vacancy_cell.numbers == 3)
    to_site = common.mic_vectors(site - vacancy_cell.positions[li], vacancy_cell)
    same_gallery = np.abs(to_site[:, 2]) < 0.5
    if not same_gallery.any():
        raise ValueError("no Li in the gallery of the vacancy")
    distance = np.where(same_gallery, np.linalg.norm(to_site, axis=1), np.inf)
    k = int(np.argmin(distance))
    initial = vacancy_cell.copy()
    final = vacancy_cell.copy()
    final.positions[li[k]] += to_site[k]
    return initial, final, int(li[k])


def intermediate_hollow(atoms: Atoms, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The empty hexagon centre next to both ``start`` and ``end`` (two Li sites sqrt(3) a apart).

    It lies at 30° from the straight path, at a distance |end - start| / sqrt(3) from ``start``; of the
    two candidates (either side) the one farther from all atoms is returned.
    """
    d = np.asarray(end, dtype=float) - np.asarray(start, dtype=float)
    best, best_distance = None, -np.inf
    for sign in (1.0, -1.0):
        angle = sign * np.pi / 6
        rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1]])
        point = start + rotation @ d / np.sqrt(3)
        gap = np.linalg.norm(common.mic_vectors(atoms.positions - point, atoms), axis=1).min()
        if gap > best_distance:
            best, best_distance = point, gap
    return best


def make_images(
    initial: Atoms, final: Atoms, n_images: int, index: int, via: Optional[np.ndarray] = None
) -> List[Atoms]:
    """``n_images + 2`` images from ``initial`` to ``final``: all atoms interpolated linearly, except
    atom ``index`` that goes through ``via`` (a Cartesian point) when given."""
    images = [initial.copy()]
    p0, p1 = initial.positions[index], final.positions[index]
    for t in np.arange(1, n_images + 1) / (n_images + 1):
        image = initial.copy()
        image.positions = (1 - t) * initial.positions + t * final.positions
        if via is not None:
            image.positions[index] = p0 + 2 * t * (via - p0) if t <= 0.5 else via + (2 * t - 1) * (p1 - via)
        images.append(image)
    images.append(final.copy())
    return images


def path_coordinate(images: Sequence[Atoms]) -> np.ndarray:
    """Cumulative distance along the path, sqrt(sum over atoms of |dr|^2) between images (Å)."""
    steps = [
        np.sqrt((common.mic_vectors(b.positions - a.positions, a) ** 2).sum()) for a, b in zip(images[:-1], images[1:])
    ]
    return np.concatenate([[0.0], np.cumsum(steps)])


def run_neb(
    images: List[Atoms], calc, fmax: float = 0.05, steps: int = 300, climb: bool = True, idpp: bool = False
) -> dict:
    """Climbing-image NEB (FIRE) over ``images`` (end points fixed) with one shared calculator.

    ``idpp=True`` first replaces the intermediate images by ASE's IDPP interpolation.

    Returns:
        ``energies`` (eV, relative to the first image), ``coordinate`` (Å), ``barrier`` (eV,
        highest image minus initial), ``reaction_energy`` (final minus initial), ``steps`` and
        ``converged``.
    """
    for image in images:
        image.calc = calc
    neb = NEB(images, climb=climb, method="improvedtangent", allow_shared_calculator=True)
    if idpp:  # straight line refined by IDPP (the end points are continuous: no minimum image needed)
        neb.interpolate(method="idpp", mic=False)
    opt = FIRE(neb, logfile=None)
    converged = bool(opt.run(fmax=fmax, steps=steps))
    energies = np.array([image.get_potential_energy() for image in images])
    energies -= energies[0]
    return {
        "energies": energies,
        "coordinate": path_coordinate(images),
        "barrier": float(energies.max()),
        "reaction_energy": float(energies[-1]),
        "steps": opt.get_number_of_steps(),
        "converged": converged,
        "images": images,
    }


def run(
    calc,
    repeat: Sequence[int] = (2, 2, 2),
    images: int = 5,
    fmax: float = 0.05,
    relax_steps: int = 300,
    neb_steps: int = 400,
    start: str = "hollow",
) -> dict:
    """Relax LiC6, build the vacancy supercell and its hop, relax the end points and run the NEB.

    ``start``: ``"hollow"`` (path through the empty hexagon centre) or ``"idpp"`` (straight line + IDPP).
    """
    base = common.lic6()
    base.calc = calc
    common.relax(base, fmax=min(fmax, 0.02), steps=relax_steps, cell=True)
    cell = common.lic6_vacancy_supercell(repeat, 1, base=base)
    initial, final, index = hop_endpoints(cell)
    ends = []
    for atoms in (initial, final):
        atoms.calc = calc
        ends.append(common.relax(atoms, fmax=fmax / 2, steps=relax_steps, cell=False))
    via = intermediate_hollow(initial, initial.positions[index], final.positions[index]) if start == "hollow" else None
    path = make_images(initial, final, images, index, via)
    res = run_neb(path, calc, fmax=fmax, steps=neb_steps, idpp=start == "idpp")
    res.update(
        {"n_atoms": len(initial), "repeat": tuple(repeat), "end_relaxations": ends, "index": index, "start": start}
    )
    res["dft_check"] = common.dft_hop_check(calc)
    return res


def report(res: dict) -> None:
    """Print the path energies and the barrier next to the reference range."""
    ends = res["end_relaxations"]
    print(
        f"LiC6 {res['repeat']} supercell with one Li vacancy: {res['n_atoms']} atoms; end points relaxed in "
        f"{ends[0]['steps']} / {ends[1]['steps']} steps"
    )
    state = "converged" if res["converged"] else "NOT converged (raise --neb-steps)"
    start = "through the empty hexagon centre" if res.get("start", "hollow") == "hollow" else "straight line + IDPP"
    print(f"NEB, {len(res['energies']) - 2} images, climbing image, start {start}, {res['steps']} FIRE steps: {state}")
    for s, e in zip(res["coordinate"], res["energies"]):
        print(f"  path {s:6.3f} Å  E - E_initial = {e:+.4f} eV")
    print(f"final - initial: {res['reaction_energy']:+.4f} eV (0 by symmetry for a converged relaxation)")
    low, high = REFERENCE_BARRIER
    print(common.compare_range("migration barrier", res["barrier"], low, high, "eV", "DFT, approx., Persson 2010"))
    check = res.get("dft_check")
    if check:
        print(
            "comparison with the training reference: the labelled vacancy-hop path (active-learning round 2, "
            f"27 atoms, images {check['images']} of {check['n_images']}, the far half mirrors them):"
        )
        for k, dft, model in zip(check["images"], check["dft"], check["model"]):
            print(f"  image {k}: model {model:+.3f} eV, PBE-D3(BJ) {dft:+.3f} eV")
        model, dft = check["model_barrier"], check["dft_barrier"]
        print("  " + common.compare("highest image on that path", model, dft, "eV", "PBE-D3(BJ), data/lic_dft.extxyz"))


def plot(res: dict, path) -> None:
    """Energy along the path with the reference range shaded."""
    fig, ax = common.new_figure(1, width=6.0)
    ax = ax[0, 0]
    ax.axhspan(*REFERENCE_BARRIER, color="0.85", label="reference barrier range (approx.)")
    ax.plot(res["coordinate"], res["energies"], "o-", label="model, CI-NEB")
    ax.set(xlabel="path coordinate (Å)", ylabel="E - E$_{initial}$ (eV)", title="Li vacancy hop in LiC$_6$")
    ax.legend(fontsize=8)
    common.save_figure(fig, path)


def main(argv: Optional[Sequence[str]] = None, calc=None) -> dict:
    """Command line; ``calc`` (a calculator or model object) replaces ``--model`` (used by the tests)."""
    parser = common.base_parser(__doc__, "lic_neb.png")
    parser.add_argument("--repeat", type=int, nargs=3, default=None, help="supercell of LiC6 (quick 2 2 1, full 2 2 2)")
    parser.add_argument("--images", type=int, default=None, help="intermediate images (quick 3, full 5)")
    parser.add_argument("--fmax", type=float, default=None, help="NEB force criterion, eV/Å (quick 0.1, full 0.05)")
    parser.add_argument("--relax-steps", type=int, default=None, help="most BFGS steps per end point")
    parser.add_argument("--neb-steps", type=int, default=None, help="most FIRE steps of the NEB")
    parser.add_argument(
        "--start", choices=["hollow", "idpp"], default="hollow", help="initial path (default: via the hollow)"
    )

    def compute(calc, args):
        return run(calc, args.repeat, args.images, args.fmax, args.relax_steps, args.neb_steps, args.start)

    return common.run_main(parser, argv, calc, QUICK, FULL, compute, report, plot)


if __name__ == "__main__":
    main()
