"""In-plane Li diffusion in LiC6 from Langevin molecular dynamics and an Arrhenius fit.

Perfect LiC6 has no empty Li sites, so Li moves through vacancies: the cell is a LiC6 supercell
(2x2x1 of the 7-atom cell) with one Li vacancy per gallery (Li_0.75C6, 27 atoms).  At each
temperature the script runs Langevin NVT (ase.md.langevin; weak friction, so the dynamics between
collisions is nearly Newtonian), records the unwrapped Li positions (ASE does not wrap positions
during MD; the drift of the carbon framework is subtracted), and computes the in-plane mean-square
displacement averaged over Li atoms and time origins.  In two dimensions MSD(t) = 4 D t, so

    D = slope of MSD(t) / 4        (fitted beyond the first 20 % of the lag times)

A few picoseconds per temperature give only a handful of hops, and the MSD of so few hops is
noisy, so the script also counts the hops: every recorded frame, each Li is assigned to the
hexagon centre of its gallery it is within 1 Å of (the Li sites, occupied or vacant, and the empty
centres between them, 2.46 Å apart), and a hop is a change of centre (time spent in between, over a
C-C bridge, is not one).  With N hops of length l = 2.46 Å by n Li in time t,

    D_hop = N l^2 / (4 n t)        (uncorrelated hops: back-and-forth hops between a site and an
                                    empty centre count too, so D_hop is an upper bound; the
                                    relative error is about 1/sqrt(N))

and the weighted Arrhenius fit ln D_hop = ln D0 - Ea / (kB T) (weights sqrt(N); temperatures
without a hop are left out) gives Ea with its standard error.  At fixed vacancy content Ea is the
migration barrier (compare with neb.py); D itself scales with the vacancy fraction (here 1/4).
High temperatures are used because hops must happen within picoseconds.

References (approximate):
* vacancy-hop barrier in LiC6 from DFT about 0.3 to 0.5 eV (K. Persson et al., Phys. Rev. B 82,
  125416 (2010)); Ea from MD should fall in (or near) that range;
* measured room-temperature Li diffusion coefficients in graphite / LiC6 span about 1e-11 to
  1e-6 cm^2/s depending on the method and the sample; in-plane in HOPG about 1e-7 to 1e-6 cm^2/s
  (K. Persson et al., J. Phys. Chem. Lett. 1, 1176 (2010)).  The script extrapolates the
  Arrhenius fit to 300 K for this comparison.

    python examples/lic/diffusion.py                # models/lic.pt, 1100-1700 K, 2 ps each (float32)
    python examples/lic/diffusion.py --quick        # 1000 and 1400 K, 0.2 ps each: a smoke test
    python examples/lic/diffusion.py --temperatures 900 1100 1300 --steps 20000 --device cuda
"""

from __future__ import annotations

import time
from typing import Optional, Sequence, Tuple

import common
import numpy as np
from ase import Atoms, units
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary

try:  # ASE >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

KB = units.kB  # eV/K
#: 1 Å^2/fs in cm^2/s
A2_PER_FS_TO_CM2_PER_S = 1e-16 / 1e-15
#: Reference ranges, see the module docstring.
REFERENCE_EA = (0.3, 0.5)  # eV
REFERENCE_D300 = (1e-11, 1e-6)  # cm^2/s

QUICK = {"temperatures": (1000.0, 1400.0), "steps": 200, "equilibration": 100}
FULL = {"temperatures": (1100.0, 1300.0, 1500.0, 1700.0), "steps": 2000, "equilibration": 300}


def run_md(
    atoms: Atoms,
    temperature: float,
    steps: int,
    timestep: float = 1.0,
    interval: int = 10,
    equilibration: int = 0,
    friction: float = 0.01,
    seed: int = 0,
) -> Tuple[np.ndarray, np.ndarray]:
    """Langevin NVT of ``atoms`` (with a calculator) and the unwrapped Li positions.

    Args:
        temperature: K.  steps: production steps.  timestep: fs.  interval: steps between frames.
        equilibration: steps run first and discarded, with 5 x ``friction`` to thermalise quickly.
        friction: of the production run, 1/fs (weak: the hops stay close to Newtonian dynamics).

    Returns:
        ``(times, positions)``: times in fs ``(frames,)`` and Li positions ``(frames, n_li, 3)`` in Å,
        with the displacement of the carbon centre of mass removed.
    """
    rng = np.random.default_rng(seed)
    thermalize_momenta(atoms, temperature_K=temperature, rng=rng)
    Stationary(atoms)

    def langevin(gamma):
        return Langevin(
            atoms, timestep * units.fs, temperature_K=temperature, friction=gamma / units.fs, fixcm=False, rng=rng
        )

    if equilibration:
        langevin(5 * friction).run(equilibration)
    li, carbon = atoms.numbers == 3, atoms.numbers == 6
    frames = []
    dyn = langevin(friction)  # a fresh integrator records the first frame at step 0
    dyn.attach(lambda: frames.append(atoms.get_positions()), interval=interval)
    dyn.run(steps)
    positions = np.array(frames)
    drift = positions[:, carbon].mean(axis=1) - positions[0, carbon].mean(axis=0)
    times = np.arange(len(frames)) * interval * timestep
    return times, positions[:, li] - drift[:, None, :]


def msd(positions: np.ndarray, axes: Sequence[int] = (0, 1), max_lag: Optional[int] = None) -> np.ndarray:
    """Mean-square displacement for lags 0 .. max_lag (frames), averaged over atoms and time origins.

    Args:
        positions: unwrapped positions ``(frames, atoms, 3)``.
        axes: Cartesian components counted (in-plane ``(0, 1)`` for layers normal to z).
        max_lag: largest lag; half the trajectory by default.

    Returns:
        ``(max_lag + 1,)`` in Å^2.
    """
    r = np.asarray(positions, dtype=float)[:, :, list(axes)]
    max_lag = len(r) // 2 if max_lag is None else min(max_lag, len(r) - 1)
    out = np.zeros(max_lag + 1)
    for lag in range(1, max_lag + 1):  # vectorised over origins and atoms
        out[lag] = ((r[lag:] - r[:-lag]) ** 2).sum(axis=2).mean()
    return out


def diffusion_coefficient(
    times: np.ndarray, msd_values: np.ndarray, dim: int = 2, fit_range: Tuple[float, float] = (0.2, 1.0)
) -> float:
    """D in cm^2/s from the slope of MSD(t) = 2 dim D t (times in fs, MSD in Å^2).

    The straight line is fitted to the lags between ``fit_range`` fractions of the longest lag
    (the start skips the ballistic/vibrational part).
    """
    times, msd_values = np.asarray(times, dtype=float), np.asarray(msd_values, dtype=float)
    n = len(msd_values)
    lo, hi = int(fit_range[0] * (n - 1)), int(np.ceil(fit_range[1] * (n - 1))) + 1
    if hi - lo < 2:
        lo, hi = 0, n
    slope = np.polyfit(times[lo:hi], msd_values[lo:hi], 1)[0]
    return float(slope / (2 * dim) * A2_PER_FS_TO_CM2_PER_S)


def arrhenius_fit(temperatures: Sequence[float], d: Sequence[float]) -> Tuple[float, float]:
    """Fit ln D = ln D0 - Ea / (kB T).

    Returns:
        ``(Ea, D0)``: activation energy (eV) and prefactor (units of ``d``).

    Raises:
        ValueError: fewer than two temperatures with D > 0.
    """
    t, d = np.asarray(temperatures, dtype=float), np.asarray(d, dtype=float)
    ok = d > 0
    if ok.sum() < 2:
        raise ValueError("an Arrhenius fit needs D > 0 at two or more temperatures")
    slope, intercept = np.polyfit(1.0 / t[ok], np.log(d[ok]), 1)
    return float(-slope * KB), float(np.exp(intercept))


def count_hops(positions: np.ndarray, sites: np.ndarray, atoms: Atoms, capture: float = 1.0) -> np.ndarray:
    """Site-to-site hops of each atom over a trajectory.

    Args:
        positions: ``(frames, n, 3)`` positions (unwrapped or not: distances are minimum-image).
        sites: ``(n_sites, 3)`` the sites (e.g. every Li site of the start cell, vacant ones too).
        atoms: gives the cell and periodicity.
        capture: an atom is on a site within this distance (Å) of it.

    Returns:
        ``(n,)`` hops per atom: the number of times it was found on a site other than the last one
        it was on (it starts on its nearest site).
    """
    positions = np.asarray(positions, dtype=float)
    frames, n = positions.shape[:2]
    diff = positions[:, :, None, :] - np.asarray(sites, dtype=float)[None, None, :, :]
    distance = np.linalg.norm(common.mic_vectors(diff.reshape(-1, 3), atoms), axis=1).reshape(frames, n, -1)
    nearest, on_site = distance.argmin(axis=2), distance.min(axis=2) < capture
    current, hops = nearest[0].copy(), np.zeros(n, dtype=int)
    for f in range(1, frames):  # over frames; atoms and sites are vectorised
        moved = on_site[f] & (nearest[f] != current)
        hops += moved
        current = np.where(on_site[f], nearest[f], current)
    return hops


def hexagon_centres(cell: Atoms, tol: float = 0.5) -> np.ndarray:
    """Every hexagon centre of the Li galleries of a LiC6 (vacancy) supercell, ``(n, 3)`` in Å.

    The Li sites (occupied, and vacant from ``info["vacancy_sites"]``) are one third of them; the
    other two thirds are the same sites moved by one and two graphene lattice vectors (2.46 Å). A Li
    atom leaving its site first hops to one of those empty centres.
    """
    li = cell.positions[cell.numbers == 3]
    sites = np.concatenate([li, np.asarray(cell.info.get("vacancy_sites", np.zeros((0, 3))))])
    step = common.lattice_step(cell, int(np.flatnonzero(cell.numbers == 3)[0]))
    out: list = []
    for candidate in np.concatenate([sites, sites + step, sites + 2 * step]):
        if not out or np.linalg.norm(common.mic_vectors(np.array(out) - candidate, cell), axis=1).min() > tol:
            out.append(candidate)
    return np.array(out)


def hop_diffusion(hops: int, n_atoms: int, duration: float, length: float, dim: int = 2) -> float:
    """D in cm^2/s of ``hops`` uncorrelated hops of ``length`` Å by ``n_atoms`` atoms in ``duration`` fs."""
    return float(hops * length**2 / (2 * dim * n_atoms * duration) * A2_PER_FS_TO_CM2_PER_S)


def hop_arrhenius(temperatures: Sequence[float], d: Sequence[float], hops: Sequence[int]) -> dict:
    """Weighted fit ln D = ln D0 - Ea / (kB T), the error of ln D being 1 / sqrt(hops).

    Returns:
        ``Ea`` (eV), ``Ea_error`` (its standard error from the counting statistics), ``D0`` (units of ``d``).

    Raises:
        ValueError: fewer than two temperatures with a hop.
    """
    t, d, n = (np.asarray(v, dtype=float) for v in (temperatures, d, hops))
    ok = n > 0
    if ok.sum() < 2:
        raise ValueError("an Arrhenius fit needs hops at two or more temperatures")
    (slope, intercept), cov = np.polyfit(1.0 / t[ok], np.log(d[ok]), 1, w=np.sqrt(n[ok]), cov="unscaled")
    return {"Ea": float(-slope * KB), "Ea_error": float(np.sqrt(cov[0, 0]) * KB), "D0": float(np.exp(intercept))}


def displaced_fraction(positions: np.ndarray, hop: float) -> float:
    """Fraction of atoms whose final in-plane displacement exceeds half a hop distance ``hop`` (Å)."""
    d = np.linalg.norm(positions[-1, :, :2] - positions[0, :, :2], axis=1)
    return float((d > 0.5 * hop).mean())


def run(
    calc,
    temperatures: Sequence[float] = FULL["temperatures"],
    steps: int = 2000,
    equilibration: int = 300,
    timestep: float = 1.0,
    interval: int = 10,
    repeat: Sequence[int] = (2, 2, 1),
    fmax: float = 0.05,
    seed: int = 0,
) -> dict:
    """Relax LiC6, make the vacancy supercell and run MD at each temperature; returns the results."""
    base = common.lic6()
    base.calc = calc
    common.relax(base, fmax=fmax, steps=200, cell=True)
    start_cell = common.lic6_vacancy_supercell(repeat, vacancies=repeat[2], base=base)
    hop = float(base.cell.lengths()[0])  # Li-Li distance in LiC6 = a of the sqrt(3) cell
    sites = hexagon_centres(start_cell)
    step = hop / np.sqrt(3)  # between neighbouring hexagon centres: a of graphene
    runs = []
    for k, temperature in enumerate(temperatures):
        atoms = start_cell.copy()
        atoms.calc = calc
        t0 = time.perf_counter()
        try:
            times, positions = run_md(atoms, temperature, steps, timestep, interval, equilibration, seed=seed + k)
        except ValueError as error:  # the calculator refuses collapsed geometries (atoms on top of each other)
            if "overlapping atoms" not in str(error):
                raise
            runs.append({"temperature": float(temperature), "failed": str(error), "seconds": time.perf_counter() - t0})
            continue
        values = msd(positions)
        hops = int(count_hops(positions, sites, start_cell).sum())
        runs.append(
            {
                "temperature": float(temperature),
                "times": times[: len(values)],
                "msd": values,
                "D": diffusion_coefficient(times[: len(values)], values),
                "hops": hops,
                "D_hop": hop_diffusion(hops, positions.shape[1], float(times[-1]), step),
                "displaced": displaced_fraction(positions, hop),
                "T_final": float(atoms.get_temperature()),
                "seconds": time.perf_counter() - t0,
            }
        )
    res = {"runs": runs, "n_atoms": len(start_cell), "n_li": int((start_cell.numbers == 3).sum()), "hop": hop}
    res.update(step=step, n_sites=len(sites))
    res["dft_check"] = common.dft_hop_check(calc)
    done = [r for r in runs if "failed" not in r]
    try:
        res["Ea"], res["D0"] = arrhenius_fit([r["temperature"] for r in done], [r["D"] for r in done])
    except ValueError as error:
        res["fit_error"] = str(error)
    try:
        res["hop_fit"] = hop_arrhenius(
            [r["temperature"] for r in done], [r["D_hop"] for r in done], [r["hops"] for r in done]
        )
    except ValueError as error:
        res["hop_fit_error"] = str(error)
    return res


def report(res: dict) -> None:
    """Print D per temperature, the Arrhenius parameters and the comparison with references."""
    print(f"LiC6 supercell with Li vacancies: {res['n_atoms']} atoms, {res['n_li']} Li; Li-Li hop {res['hop']:.2f} Å")
    if "step" in res:
        print(f"hops counted between the {res['n_sites']} hexagon centres of the galleries, {res['step']:.2f} Å apart")
    for r in res["runs"]:
        if "failed" in r:
            print(
                f"  T = {r['temperature']:6.0f} K: MD stopped after {r['seconds']:.1f} s, {r['failed']}: the "
                "model let atoms collapse, so this temperature is outside what it was trained on"
            )
            continue
        print(
            f"  T = {r['temperature']:6.0f} K (final {r['T_final']:6.0f} K): D(MSD) = {r['D']:.3e} cm^2/s, "
            f"{r['hops']} hops, D(hops) = {r['D_hop']:.3e} cm^2/s, "
            f"{100 * r['displaced']:.0f} % of Li away from their first site at the end, {r['seconds']:.1f} s"
        )
    done = [r for r in res["runs"] if "failed" not in r]
    if done and all(r["displaced"] == 0 for r in done):
        print("  warning: no Li left its site; D measures vibrations only (run longer or hotter)")
    low, high = REFERENCE_EA
    if "hop_fit" in res:
        fit = res["hop_fit"]
        total = sum(r["hops"] for r in done)
        print(
            f"Arrhenius fit of the hop counts ({total} hops): Ea = {fit['Ea']:.3f} ± {fit['Ea_error']:.3f} eV, "
            f"D0 = {fit['D0']:.3e} cm^2/s"
        )
        print(common.compare_range("activation energy (hops)", fit["Ea"], low, high, "eV", "DFT vacancy hop, approx."))
        check = res.get("dft_check")
        if check:
            source = "PBE-D3(BJ) on the labelled 27-atom vacancy-hop path"
            print(common.compare("activation energy (hops)", fit["Ea"], check["dft_barrier"], "eV", source))
    else:
        print(f"Arrhenius fit of the hop counts not possible: {res['hop_fit_error']}")
    if "fit_error" in res:
        print(f"Arrhenius fit of D(MSD) not possible: {res['fit_error']}")
    else:
        print(f"Arrhenius fit of D(MSD): Ea = {res['Ea']:.3f} eV, D0 = {res['D0']:.3e} cm^2/s")
        print(common.compare_range("activation energy (MSD)", res["Ea"], low, high, "eV", "DFT vacancy hop, approx."))
    best, name = (res["hop_fit"], "hop") if "hop_fit" in res else (res, "MSD")
    if "Ea" not in best:
        return
    d300 = best["D0"] * np.exp(-best["Ea"] / (KB * 300.0))
    low, high = REFERENCE_D300
    where = "inside" if low <= d300 <= high else "outside"
    print(
        f"D(300 K) extrapolated ({name} fit): model {d300:.2e} cm^2/s, reference {low:.0e} to {high:.0e} "
        f"cm^2/s (experiments, method-dependent), {where} the range (factor {d300 / np.clip(d300, low, high):.2g})"
    )


def plot(res: dict, path) -> None:
    """MSD curves (left) and the Arrhenius plot (right)."""
    fig, ax = common.new_figure(2)
    runs = [r for r in res["runs"] if "failed" not in r]
    for k, r in enumerate(runs):
        ax[0, 0].plot(r["times"] / 1000, r["msd"], color=f"C{k}", label=f"{r['temperature']:.0f} K")
    ax[0, 0].set(xlabel="lag time (ps)", ylabel="in-plane Li MSD (Å$^2$)", title="mean-square displacement")
    ax[0, 0].legend(fontsize=8)
    t = np.array([r["temperature"] for r in runs])
    d = np.array([r["D"] for r in runs])
    ok = d > 0
    ax[0, 1].semilogy(1000 / t[ok], d[ok], "o", label="D from MSD")
    n = np.array([r["hops"] for r in runs])
    d_hop = np.array([r["D_hop"] for r in runs])
    hopped = n > 0
    if hopped.any():  # error bars: relative error 1/sqrt(N)
        rel = 1 / np.sqrt(n[hopped])
        err = [d_hop[hopped] * (1 - np.exp(-rel)), d_hop[hopped] * (np.exp(rel) - 1)]
        ax[0, 1].errorbar(1000 / t[hopped], d_hop[hopped], yerr=err, fmt="s", label="D from hop counts")
    x = np.linspace(1000 / t.max(), 1000 / t.min(), 50) if len(t) else np.array([])
    if "Ea" in res and len(t):
        fit = res["D0"] * np.exp(-res["Ea"] / (KB * 1000 / x))
        ax[0, 1].semilogy(x, fit, "-", label=f"MSD fit, Ea = {res['Ea']:.2f} eV")
    if "hop_fit" in res and len(t):
        h = res["hop_fit"]
        fit = h["D0"] * np.exp(-h["Ea"] / (KB * 1000 / x))
        ax[0, 1].semilogy(x, fit, "--", label=f"hop fit, Ea = {h['Ea']:.2f} ± {h['Ea_error']:.2f} eV")
    ax[0, 1].set_yscale("log")
    ax[0, 1].set(xlabel="1000 / T (1/K)", ylabel="D (cm$^2$/s)", title="Arrhenius")
    ax[0, 1].legend(fontsize=8)
    common.save_figure(fig, path)


def main(argv: Optional[Sequence[str]] = None, calc=None) -> dict:
    """Command line; ``calc`` (a calculator or model object) replaces ``--model`` (used by the tests)."""
    parser = common.base_parser(__doc__, "lic_diffusion.png", dtype="float32")  # MD: float32 is enough
    parser.add_argument("--temperatures", type=float, nargs="+", default=None, help="K (quick 1000 1400)")
    parser.add_argument("--steps", type=int, default=None, help="production MD steps per temperature")
    parser.add_argument("--equilibration", type=int, default=None, help="MD steps discarded first")
    parser.add_argument("--timestep", type=float, default=1.0, help="fs")
    parser.add_argument("--interval", type=int, default=10, help="steps between recorded frames")
    parser.add_argument("--seed", type=int, default=0)

    def compute(calc, args):
        return run(
            calc, args.temperatures, args.steps, args.equilibration, args.timestep, args.interval, seed=args.seed
        )

    return common.run_main(parser, argv, calc, QUICK, FULL, compute, report, plot)


if __name__ == "__main__":
    main()
