"""Quick start: Langevin MD, an NVE segment with its energy drift, and a relaxation.

Uses a shipped model when one is installed (``gap20.pt``), otherwise builds and exports an
untrained attention model (the physics checks still apply: smooth, conservative forces).

    python examples/md_quickstart.py                      # 64-atom carbon, 500 NVE steps
    python examples/md_quickstart.py --model my.pt --nve-steps 2000 --dtype float32
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from ase import Atoms, units
from ase.build import bulk
from ase.filters import FrechetCellFilter
from ase.md.langevin import Langevin
from ase.md.velocitydistribution import Stationary

try:  # ASE >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # older ASE
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta
from ase.md.verlet import VelocityVerlet
from ase.optimize import BFGS

from attnmace import AttnMACECalculator, build_model, export_model, shipped_models


def default_model(folder: Path, repulsion: bool = True) -> str:
    """``gap20.pt`` if shipped, else an untrained attention model exported to ``folder``."""
    if "gap20.pt" in shipped_models() and repulsion:
        return "gap20.pt"
    path = folder / "carbon-untrained.pt"
    model = build_model("attention", species=["C"], cutoffs=(3.0, 5.0, 5.0), seed=0, pair_repulsion=repulsion)
    export_model(model, path)
    return str(path)


def carbon_cell(repeat: int = 2, seed: int = 0) -> Atoms:
    """Diamond (8 atoms x repeat^3), rattled."""
    atoms = bulk("C", "diamond", a=3.567, cubic=True) * (repeat, repeat, repeat)
    atoms.rattle(0.05, seed=seed)
    return atoms


def langevin_dynamics(atoms: Atoms, temperature: float = 300.0, timestep: float = 0.5, seed: int = 0) -> Langevin:
    """Momenta drawn at ``temperature`` (no net momentum) and a Langevin integrator for them
    (friction 0.02 / fs)."""
    thermalize_momenta(atoms, temperature_K=temperature, rng=np.random.default_rng(seed))
    Stationary(atoms)
    return Langevin(
        atoms,
        timestep * units.fs,
        temperature_K=temperature,
        friction=0.02 / units.fs,
        fixcm=False,
        rng=np.random.default_rng(seed),
    )


def langevin(atoms: Atoms, steps: int, temperature: float = 300.0, timestep: float = 0.5, seed: int = 0) -> None:
    """Thermalise with Langevin dynamics (friction 0.02 / fs)."""
    langevin_dynamics(atoms, temperature, timestep, seed).run(steps)


def nve_drift(atoms: Atoms, steps: int, timestep: float = 0.5) -> dict:
    """Velocity-Verlet NVE; returns the total-energy drift statistics in meV/atom."""
    totals = []
    dyn = VelocityVerlet(atoms, timestep * units.fs)
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=1)
    dyn.run(steps)
    totals = np.array(totals)
    n = len(atoms)
    t = np.arange(len(totals)) * timestep
    slope = np.polyfit(t, totals, 1)[0] if len(totals) > 1 else 0.0
    return {
        "max_deviation_meV_per_atom": 1e3 * np.abs(totals - totals[0]).max() / n,
        "final_drift_meV_per_atom": 1e3 * (totals[-1] - totals[0]) / n,
        "slope_meV_per_atom_per_ps": 1e3 * slope * 1e3 / n,
        "temperature_K": atoms.get_temperature(),
    }


def relax(atoms: Atoms, fmax: float = 0.01, steps: int = 200, cell: bool = True) -> int:
    """BFGS relaxation of positions (and the cell through FrechetCellFilter); returns steps taken."""
    atoms.set_velocities(np.zeros_like(atoms.positions))
    target = FrechetCellFilter(atoms) if cell and atoms.pbc.all() else atoms
    opt = BFGS(target, logfile=None)
    opt.run(fmax=fmax, steps=steps)
    return opt.get_number_of_steps()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model file or shipped model name (default: gap20.pt or untrained)")
    parser.add_argument("--repeat", type=int, default=2, help="diamond supercell repeat (2 -> 64 atoms)")
    parser.add_argument("--langevin-steps", type=int, default=100)
    parser.add_argument("--nve-steps", type=int, default=500)
    parser.add_argument("--timestep", type=float, default=0.5, help="fs")
    parser.add_argument("--temperature", type=float, default=300.0, help="K")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--device", default=None)
    parser.add_argument(
        "--no-repulsion", action="store_true", help="untrained model without the ZBL term (shows why it exists)"
    )
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or default_model(Path(tmp), repulsion=not args.no_repulsion)
        calc = AttnMACECalculator(model, device=args.device, dtype=args.dtype)
    atoms = carbon_cell(args.repeat)
    atoms.calc = calc
    print(f"model {model}: {len(atoms)} C atoms, {args.dtype}, E = {atoms.get_potential_energy():.6f} eV")

    start = time.perf_counter()
    langevin(atoms, args.langevin_steps, args.temperature, args.timestep)
    print(f"Langevin {args.langevin_steps} steps at {args.temperature} K: T = {atoms.get_temperature():.1f} K")
    drift = nve_drift(atoms, args.nve_steps, args.timestep)
    elapsed = time.perf_counter() - start
    steps = args.langevin_steps + args.nve_steps
    print(
        f"NVE {args.nve_steps} steps x {args.timestep} fs: max |E - E0| = "
        f"{drift['max_deviation_meV_per_atom']:.4f} meV/atom, final drift "
        f"{drift['final_drift_meV_per_atom']:+.4f} meV/atom ({drift['slope_meV_per_atom_per_ps']:+.4f} meV/atom/ps)"
    )
    print(f"MD speed: {elapsed / steps:.3f} s/step ({1e6 * elapsed / steps / len(atoms):.0f} us/atom/step)")
    n = relax(atoms)
    print(
        f"BFGS + FrechetCellFilter: {n} steps, E = {atoms.get_potential_energy():.6f} eV, "
        f"max |F| = {np.abs(atoms.get_forces()).max():.4f} eV/Å, volume {atoms.get_volume() / len(atoms):.3f} Å^3/atom"
    )
    return drift


if __name__ == "__main__":
    main()
