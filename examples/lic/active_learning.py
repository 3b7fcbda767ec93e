"""Active learning for the Li–C data: label what a committee of early models disagrees on most.

One round has three steps::

    # 1. a committee of small attention models, trained on what is labelled so far
    python examples/lic/active_learning.py train --members 3 --epochs 60
    # 2. short Langevin MD from the reference cells with member 0; every snapshot is scored by
    #    the committee's force disagreement; the most uncertain ones become new structures
    python examples/lic/active_learning.py sample --round 1 --select 40
    # 3. DFT labels for them, resumable as for the generated structures
    python examples/lic/label.py --structures examples/lic/data/al_round1.extxyz

MD at a few hundred kelvin rarely crosses a Li hop barrier, so round 2 adds the hop paths
themselves (``hops``): the current model's nudged elastic band for a Li hop in small cells (a Li
vacancy hop in a 27-atom Li_0.75C6 cell, hollow -> bridge -> hollow hops of a single Li in dilute
cells, and the concerted hop of the Li sublattice of LiC6 and LiC12). The images from the initial
state to the middle of each path (the far half mirrors it) become new structures, so their DFT
labels also give the reference's energy profile along the model's path::

    python examples/lic/active_learning.py hops --round 2 --model models/lic.pt
    python examples/lic/label.py --structures examples/lic/data/al_round2.extxyz --workers 2

The score of a snapshot is the largest per-atom committee spread of the force,
``σ_F,i = sqrt(mean_k |F_i^(k) - mean_k F_i^(k)|²)`` (eV/Å), over its atoms. Snapshots whose
atoms came closer than ``--min-distance`` end their trajectory and are not proposed (an early
model may let atoms collapse; such geometries teach the model nothing a DFT code can converge
on). At most ``--per-trajectory`` snapshots come from one trajectory, so one unstable cell cannot
take the whole round. Every proposed structure keeps its parent's k-mesh (``kmesh``), so
``label.py`` labels it with the same settings as the parent.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np
from ase import Atoms, units
from ase.io import read, write
from ase.md.langevin import Langevin

try:  # ASE >= 3.28
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # pragma: no cover
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution as thermalize_momenta

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import common  # noqa: E402
import neb  # noqa: E402
import structures  # noqa: E402

DATA = HERE / "data"
LABELLED = DATA / "lic_dft.extxyz"
COMMITTEE = Path("runs/lic/committee")
CONFIG = HERE / "committee.yaml"

#: Info keys copied from the parent cell to every proposed snapshot.
PARENT_KEYS = ("kmesh", "vacuum_axis", "family", "config_type")


# ------------------------------------------------------------------------------- committee
def committee_force_std(calcs: Sequence, atoms: Atoms) -> np.ndarray:
    """Per-atom spread of the committee's forces, ``(n_atoms,)`` in eV/Å."""
    forces = []
    for calc in calcs:
        probe = atoms.copy()
        probe.calc = calc
        forces.append(probe.get_forces())
    forces = np.stack(forces)  # (members, n_atoms, 3)
    return np.sqrt(((forces - forces.mean(axis=0)) ** 2).sum(axis=2).mean(axis=0))


def sample_trajectory(
    atoms: Atoms,
    calc,
    temperature: float,
    steps: int,
    every: int,
    timestep: float = 1.0,
    friction: float = 0.02,  # 1/fs
    min_dist: float = 1.0,
    seed: int = 0,
) -> List[Atoms]:
    """Snapshots every ``every`` steps of Langevin NVT at ``temperature`` K (fs time step).

    Stops early, without the offending snapshot, if two atoms come closer than ``min_dist`` Å.
    """
    md_atoms = atoms.copy()
    md_atoms.calc = calc
    rng = np.random.default_rng(seed)
    thermalize_momenta(md_atoms, temperature_K=temperature, rng=rng)
    dyn = Langevin(
        md_atoms, timestep * units.fs, temperature_K=temperature, friction=friction / units.fs, fixcm=False, rng=rng
    )
    snapshots: List[Atoms] = []
    for step in range(every, steps + 1, every):
        dyn.run(every)
        if structures.min_distance(md_atoms) < min_dist or not np.isfinite(md_atoms.positions).all():
            break
        snap = Atoms(md_atoms.numbers, md_atoms.positions, cell=md_atoms.cell, pbc=md_atoms.pbc)
        snap.info["md_step"] = step
        snapshots.append(snap)
    return snapshots


def select(scores: Sequence[float], trajectories: Sequence[int], count: int, per_trajectory: int) -> List[int]:
    """Indices of the ``count`` highest scores, at most ``per_trajectory`` from each trajectory."""
    taken: Dict[int, int] = {}
    chosen: List[int] = []
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        t = int(trajectories[i])
        if taken.get(t, 0) >= per_trajectory:
            continue
        chosen.append(int(i))
        taken[t] = taken.get(t, 0) + 1
        if len(chosen) == count:
            break
    return chosen


def parents(ids: Sequence[str] | None = None) -> List[Atoms]:
    """The unperturbed reference cell of every family (``<family>_000``), or the given ids."""
    wanted = set(ids) if ids else None
    out = []
    for atoms in structures.generate_structures():
        sid = atoms.info["structure_id"]
        if (wanted is None and sid.endswith("_000")) or (wanted is not None and sid in wanted):
            out.append(atoms)
    return out


def propose(
    calcs: Sequence,
    starts: Sequence[Atoms],
    temperatures: Sequence[float],
    steps: int,
    every: int,
    count: int,
    per_trajectory: int,
    round_index: int,
    min_dist: float = 1.0,
    seed: int = 0,
    log=None,
) -> List[Atoms]:
    """Run the MD, score every snapshot with the committee and return the selected structures.

    ``log``, if given, is called with one line per trajectory.
    """
    candidates, scores, trajectory = [], [], []
    t = 0
    for parent in starts:
        for temperature in temperatures:
            snaps = sample_trajectory(parent, calcs[0], temperature, steps, every, min_dist=min_dist, seed=seed + t)
            for snap in snaps:
                spread = committee_force_std(calcs, snap)
                for key in PARENT_KEYS:
                    if key in parent.info:
                        snap.info[key] = parent.info[key]
                snap.info["parent_id"] = parent.info.get("structure_id", "")
                snap.info["md_temperature_K"] = float(temperature)
                snap.info["committee_force_std_max"] = float(spread.max())
                snap.info["committee_force_std_mean"] = float(spread.mean())
                candidates.append(snap)
                scores.append(float(spread.max()))
                trajectory.append(t)
            if log is not None:
                mine = [s for s, k in zip(scores, trajectory) if k == t]
                log(
                    f"{parent.info.get('structure_id', '?')} at {temperature:g} K: {len(snaps)} snapshots"
                    + (f", largest force spread {max(mine):.3f} eV/Å" if mine else "")
                )
            t += 1
    chosen = select(scores, trajectory, count, per_trajectory)
    out = []
    for n, i in enumerate(chosen):
        atoms = candidates[i]
        atoms.info["structure_id"] = f"al{round_index}_{n:03d}"
        atoms.info["structure_hash"] = structures.geometry_hash(atoms)
        atoms.info["config_type"] = f"{atoms.info.get('config_type', 'unknown')}_md"
        out.append(atoms)
    return out


# ------------------------------------------------------------------------------------ hop paths
def hop_path(
    initial: Atoms, final: Atoms, index: int, calc, images: int, via=None, steps: int = 200, relax_steps: int = 300
) -> List[Atoms]:
    """The model's (non-climbing) NEB from ``initial`` to ``final`` (end points relaxed at fixed cell):
    ``images + 2`` images, evenly spaced along a path that is symmetric when the hop is."""
    for atoms in (initial, final):
        atoms.calc = calc
        common.relax(atoms, fmax=0.02, steps=relax_steps, cell=False)
    path = neb.make_images(initial, final, images, index, via)
    res = neb.run_neb(path, calc, fmax=0.05, steps=steps, climb=False)
    return res["images"]


def hop_structures(calc, images: int = 3, vacancy_images: int = 7) -> List[Atoms]:
    """Hop-path images of the model in small cells, from the initial state to the middle of the path.

    Every image keeps the k-mesh of its unstrained cell; ``info["hop"]`` names the path and
    ``info["image"]`` the position along it (0 = initial state).
    """
    out: List[Atoms] = []

    def keep(path: Sequence[Atoms], name: str, parent: Atoms) -> None:
        for k, image in enumerate(path[: len(path) // 2 + 1]):
            atoms = Atoms(image.numbers, image.positions, cell=image.cell, pbc=image.pbc)
            atoms.info.update({"hop": name, "image": k, "images": len(path), "family": parent.info.get("family", name)})
            atoms.info["kmesh"] = parent.info["kmesh"]
            atoms.info["config_type"] = f"{name}_hop"
            out.append(atoms)

    # Li vacancy hop in Li_0.75C6 (27 atoms), through the empty hexagon centre next to both sites
    base = common.lic6()
    base.calc = calc
    common.relax(base, fmax=0.01, steps=300, cell=True)
    cell = structures.set_kmesh(common.lic6_vacancy_supercell((2, 2, 1), 1, base=base))
    cell.info["family"] = "lic6"
    initial, final, index = neb.hop_endpoints(cell)
    via = neb.intermediate_hollow(initial, initial.positions[index], final.positions[index])
    keep(hop_path(initial, final, index, calc, vacancy_images, via), "LiC6_vacancy", cell)

    # hollow -> bridge -> hollow: one Li in dilute cells, the whole Li sublattice of LiC6 / LiC12
    cells = [(n, a) for n, a in structures.dilute_cells() if n in ("LiC8", "LiC16_AA", "LiC18")]
    cells += [("LiC6", structures.lic6()), ("LiC12", structures.lic12())]
    for name, parent in cells:
        parent = structures.set_kmesh(parent.copy())
        parent.info.setdefault("family", name)
        index = int(np.flatnonzero(parent.numbers == 3)[0])
        final = parent.copy()
        final.positions[index] += common.lattice_step(parent, index)
        keep(hop_path(parent.copy(), final, index, calc, images), name, parent)
    return out


# ------------------------------------------------------------------------------------ CLI
def train_committee(members: int, epochs: int, data: Path, output: Path, config: Path) -> List[Path]:
    """Train (or resume) ``members`` models differing only in their seed; returns their files.

    The data file is copied to ``output/train_data.extxyz`` on the first call and every member,
    resumed ones too, trains on that copy: the labelling job keeps appending to ``data``.
    """
    import shutil

    from attnmace.train.cli import train_main

    output.mkdir(parents=True, exist_ok=True)
    frozen = output / "train_data.extxyz"
    if not frozen.is_file():
        shutil.copyfile(data, f"{frozen}.tmp")
        os.replace(f"{frozen}.tmp", frozen)
    files = []
    for k in range(members):
        out = output / f"member{k}"
        argv = ["--config", str(config), "--train-file", str(frozen), "--seed", str(k)]
        argv += ["--output-dir", str(out), "--max-epochs", str(epochs), "--resume"]
        code = train_main(argv)
        if code:
            raise SystemExit(f"training member {k} failed with exit code {code}")
        files.append(out / "model.pt")
    return files


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="train the committee on the labelled data")
    tr.add_argument("--members", type=int, default=3)
    tr.add_argument("--epochs", type=int, default=60)
    tr.add_argument("--data", type=Path, default=LABELLED)
    tr.add_argument("--output", type=Path, default=COMMITTEE)
    tr.add_argument("--config", type=Path, default=CONFIG)
    sa = sub.add_parser("sample", help="MD with member 0, committee scores, selection")
    sa.add_argument("--round", type=int, required=True, help="round number (names the ids al<round>_nnn)")
    sa.add_argument("--models", type=Path, nargs="*", help="committee model files (default: the trained ones)")
    sa.add_argument("--parents", nargs="*", help="structure ids to start from (default: every <family>_000)")
    sa.add_argument("--temperatures", type=float, nargs="+", default=[300.0, 900.0])
    sa.add_argument("--steps", type=int, default=400, help="MD steps of 1 fs per trajectory")
    sa.add_argument("--every", type=int, default=20, help="steps between snapshots")
    sa.add_argument("--select", type=int, default=40)
    sa.add_argument("--per-trajectory", type=int, default=3)
    sa.add_argument("--min-distance", type=float, default=1.0, help="Å; closer atoms end a trajectory")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--output", type=Path, help="default: data/al_round<round>.extxyz")
    ho = sub.add_parser("hops", help="the model's Li hop paths in small cells")
    ho.add_argument("--round", type=int, required=True, help="round number (names the ids al<round>_nnn)")
    ho.add_argument("--model", default="models/lic.pt")
    ho.add_argument("--output", type=Path, help="default: data/al_round<round>.extxyz")
    pr = sub.add_parser("profile", help="DFT and model energy along the labelled hop paths")
    pr.add_argument("--data", type=Path, default=LABELLED)
    pr.add_argument("--model", default="models/lic.pt")
    pr.add_argument("--output", type=Path, default=HERE / "results" / "hop_profiles.json")
    args = parser.parse_args(argv)

    if args.command == "train":
        files = train_committee(args.members, args.epochs, args.data, args.output, args.config)
        print("committee:", " ".join(str(f) for f in files))
        return 0

    from attnmace import AttnMACECalculator

    if args.command == "profile":
        calc = AttnMACECalculator(args.model, device="cpu", dtype="float64")
        profiles = common.hop_profiles(read(str(args.data), index=":", format="extxyz"), calc)
        for name, p in profiles.items():
            print(f"{name}: images {p['images']} of {p['n_images']}" + ("" if p["complete"] else " (incomplete)"))
            for k, dft, model in zip(p["images"], p["dft"], p["model"]):
                print(f"  image {k}: DFT {dft:+.3f} eV, model {model:+.3f} eV, difference {model - dft:+.3f}")
            print(f"  barrier along the path: DFT {p['dft_barrier']:.3f} eV, model {p['model_barrier']:.3f} eV")
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps({"model": str(args.model), "paths": profiles}, indent=1) + "\n")
        return 0

    if args.command == "hops":
        chosen = hop_structures(AttnMACECalculator(args.model, device="cpu", dtype="float64"))
        for n, atoms in enumerate(chosen):
            atoms.info["structure_id"] = f"al{args.round}_{n:03d}"
            atoms.info["structure_hash"] = structures.geometry_hash(atoms)
        output = args.output or DATA / f"al_round{args.round}.extxyz"
        write(f"{output}.tmp", chosen, format="extxyz")
        os.replace(f"{output}.tmp", output)
        summary = {"round": args.round, "model": str(args.model), "hops": {}}
        for atoms in chosen:
            summary["hops"].setdefault(atoms.info["hop"], []).append(atoms.info["structure_id"])
        Path(f"{output}.json").write_text(json.dumps(summary, indent=1))
        print(json.dumps(summary, indent=1))
        return 0

    models = args.models or sorted(COMMITTEE.glob("member*/model.pt"))
    if len(models) < 2:
        raise SystemExit(f"a committee needs at least 2 models, found {len(models)} (run the train step first)")
    calcs = [AttnMACECalculator(str(m), device="cpu", dtype="float32") for m in models]
    starts = parents(args.parents)
    chosen = propose(
        calcs,
        starts,
        args.temperatures,
        args.steps,
        args.every,
        args.select,
        args.per_trajectory,
        args.round,
        min_dist=args.min_distance,
        seed=args.seed,
        log=lambda line: print(line, flush=True),
    )
    output = args.output or DATA / f"al_round{args.round}.extxyz"
    tmp = f"{output}.tmp"
    write(tmp, chosen, format="extxyz")
    os.replace(tmp, output)
    spreads = [a.info["committee_force_std_max"] for a in chosen]
    summary = {
        "round": args.round,
        "models": [str(m) for m in models],
        "parents": [a.info["structure_id"] for a in starts],
        "temperatures_K": args.temperatures,
        "steps": args.steps,
        "every": args.every,
        "selected": len(chosen),
        "committee_force_std_max_eV_per_A": {"min": min(spreads, default=0), "max": max(spreads, default=0)},
    }
    Path(f"{output}.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 0


def read_candidates(path: Path) -> List[Atoms]:
    """The structures of a round file, as ``label.py --structures`` reads them."""
    return read(str(path), index=":", format="extxyz")


if __name__ == "__main__":
    raise SystemExit(main())
