"""Were the amorphous test labels computed at the Gamma point only? How much of the test error is that?

    python examples/gap20/check_test_labels.py label ../shared/data/gap20    # CP2K, resumable
    python examples/gap20/check_test_labels.py analyse ../shared/data/gap20 --model gap20.pt \\
        --output examples/gap20/results/test_labels/summary.json

The small training cells of this GAP-20 copy carry the energy error of Gamma-point-only sampling
(``check_kpoints.py``), and the test cells are 5.4-11.6 Å wide. ``label`` takes a few test frames
of each cell size (spread over their density range) and computes each with CP2K twice (the
settings of ``examples/lic/cp2k_setup.py``: PBE-D3(BJ), DZVP-MOLOPT-SR, 500 Ry), at the Gamma
point and with the converged Monkhorst-Pack mesh of ``check_kpoints.py`` (``n_i >= 25 Å |b_i| -
1``, odd). One JSON per frame goes to ``--results`` (energies, forces, meshes, CP2K seconds);
frames already there are skipped, so an interrupted run resumes.

``analyse`` compares, frame by frame and pooled over the atoms:

* the labels with CP2K at the Gamma point and with the mesh: the functional differs (optB88-vdW
  against PBE-D3), so neither agrees exactly, but the labels lie closer to the one computed with
  the same sampling;
* the model's force error against the labels and against the labels corrected by CP2K's sampling
  error, ``F_label + (F_mesh - F_gamma)``: if the model has learned the converged physics from the
  wide training cells, what remains after the correction is its error proper;
* the model's energy error per atom beside CP2K's ``(E_mesh - E_gamma) / N``.

CP2K runs serially, one process per ``--workers``; about 10 CPU hours for the default frames.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import ase.io
import numpy as np
from prepare import cell_width

LIC = Path(__file__).parents[1] / "lic"
RESULTS = Path(__file__).parent / "results" / "test_labels"
#: frames per cell size (spread over the density range of that size)
PER_SIZE = {27: 3, 48: 2, 64: 4, 125: 2}
KSPACING_LENGTH = 25.0  # Å, as check_kpoints.py


def _cp2k_setup():
    spec = importlib.util.spec_from_file_location("cp2k_setup", LIC / "cp2k_setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def density(atoms) -> float:
    """Mass density in g/cm³."""
    return float(atoms.get_masses().sum() * 1.66053907 / atoms.get_volume())


def pick_frames(frames, per_size=PER_SIZE) -> list[int]:
    """Indices of ``per_size[n]`` frames of each cell size n, at evenly spaced ranks of density."""
    chosen = []
    for n_atoms, count in per_size.items():
        indices = [i for i, a in enumerate(frames) if len(a) == n_atoms]
        indices.sort(key=lambda i: density(frames[i]))
        ranks = np.linspace(0, len(indices) - 1, count + 2)[1:-1] if count > 0 else []
        chosen += [indices[int(round(r))] for r in ranks]
    return chosen


def _label_one(args) -> dict:
    index, atoms, workdir = args
    cp2k = _cp2k_setup()
    row = dict(
        frame=index,
        atoms=len(atoms),
        cell_width=cell_width(atoms),
        density=density(atoms),
        label_energy=float(atoms.info["REF_energy"]),
        label_forces=np.asarray(atoms.arrays["REF_forces"]).tolist(),
    )
    for name, mesh in (("gamma", (1, 1, 1)), ("mesh", cp2k.kpoint_mesh(atoms, KSPACING_LENGTH))):
        start = time.perf_counter()
        calc = cp2k.make_calc(atoms, str(workdir / f"frame{index:04d}_{name}"), kmesh=mesh)
        copy = atoms.copy()
        copy.calc = calc
        row[f"{name}_energy"] = float(copy.get_potential_energy())
        row[f"{name}_forces"] = copy.get_forces().tolist()
        calc.close()
        row[f"{name}_kmesh"] = list(mesh)
        row[f"{name}_seconds"] = time.perf_counter() - start
        out = workdir / f"frame{index:04d}_{name}.out"
        row[f"{name}_scf_converged"] = bool(cp2k.scf_converged(out)) if out.exists() else None
    return row


def label(args) -> None:
    frames = ase.io.read(args.data_dir / "gap20_amorphous_test.extxyz", ":")
    indices = args.frames or pick_frames(frames)
    args.results.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in indices if not (args.results / f"frame_{i:04d}.json").exists()]
    # smallest cells first: the first results come early
    todo.sort(key=lambda i: len(frames[i]))
    print(f"{len(indices)} frames, {len(indices) - len(todo)} done, {len(todo)} to label", flush=True)
    jobs = [(i, frames[i], args.workdir) for i in todo]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        for row in pool.map(_label_one, jobs):
            path = args.results / f"frame_{row['frame']:04d}.json"
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(row) + "\n")
            tmp.replace(path)
            print(
                f"frame {row['frame']} ({row['atoms']} atoms, {row['density']:.2f} g/cm³): "
                f"Gamma {row['gamma_seconds']:.0f} s, mesh {row['mesh_kmesh']} {row['mesh_seconds']:.0f} s",
                flush=True,
            )


def _rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def analyse(args) -> None:
    import torch

    from attnmace import AttnMACECalculator

    frames = ase.io.read(args.data_dir / "gap20_amorphous_test.extxyz", ":")
    rows = [json.loads(p.read_text()) for p in sorted(args.results.glob("frame_*.json"))]
    if not rows:
        raise SystemExit(f"no labelled frames in {args.results}: run the 'label' step first")
    calc = AttnMACECalculator(args.model, dtype="float64")
    per_frame = []
    pooled: dict[str, list] = {}
    for row in rows:
        atoms = frames[row["frame"]].copy()
        atoms.calc = calc
        n = len(atoms)
        model_f = atoms.get_forces()
        model_e = atoms.get_potential_energy()
        f_label, f_gamma, f_mesh = (np.asarray(row[k]) for k in ("label_forces", "gamma_forces", "mesh_forces"))
        sampling = f_mesh - f_gamma  # CP2K's force error of Gamma-point sampling, sign: converged - Gamma
        diffs = {
            "label_minus_cp2k_gamma": f_label - f_gamma,
            "label_minus_cp2k_mesh": f_label - f_mesh,
            "cp2k_mesh_minus_gamma": sampling,
            "model_minus_label": model_f - f_label,
            "model_minus_corrected_label": model_f - (f_label + sampling),
        }
        entry = dict(
            frame=row["frame"],
            atoms=n,
            density=row["density"],
            cell_width=row["cell_width"],
            kmesh=row["mesh_kmesh"],
            **{f"{k}_force_rms": _rms(v) * 1000 for k, v in diffs.items()},
            # energies per atom, meV: CP2K's sampling error against the model's error
            cp2k_mesh_minus_gamma_energy=(row["mesh_energy"] - row["gamma_energy"]) / n * 1000,
            model_minus_label_energy=(model_e - row["label_energy"]) / n * 1000,
            force_error_correlation=float(np.corrcoef((model_f - f_label).ravel(), sampling.ravel())[0, 1]),
        )
        per_frame.append(entry)
        for k, v in diffs.items():
            pooled.setdefault(k, []).append(v)
    summary = dict(
        model=str(args.model),
        frames=len(rows),
        atoms=int(sum(r["atoms"] for r in rows)),
        pooled_force_rms={k: _rms(np.concatenate(v)) * 1000 for k, v in pooled.items()},
        pooled_force_correlation=float(
            np.corrcoef(
                np.concatenate(pooled["model_minus_label"]).ravel(),
                np.concatenate(pooled["cp2k_mesh_minus_gamma"]).ravel(),
            )[0, 1]
        ),
        per_frame=per_frame,
        units="forces meV/Å, energies meV/atom",
        torch=torch.__version__,
    )
    print(f"{summary['frames']} frames, {summary['atoms']} atoms; pooled force RMS (meV/Å):")
    for k, v in summary["pooled_force_rms"].items():
        print(f"  {k:32s} {v:8.1f}")
    print(f"  correlation of the model's error with CP2K's sampling error: {summary['pooled_force_correlation']:.3f}")
    print("frame atoms  g/cm3  mesh     label-Γ label-mesh  mesh-Γ  model-label  model-corr   corr  ΔE_cp2k  ΔE_model")
    for e in per_frame:
        print(
            f"{e['frame']:5d} {e['atoms']:5d} {e['density']:6.2f}  {'x'.join(map(str, e['kmesh'])):7s}"
            f" {e['label_minus_cp2k_gamma_force_rms']:8.0f} {e['label_minus_cp2k_mesh_force_rms']:9.0f}"
            f" {e['cp2k_mesh_minus_gamma_force_rms']:8.0f} {e['model_minus_label_force_rms']:11.0f}"
            f" {e['model_minus_corrected_label_force_rms']:11.0f} {e['force_error_correlation']:6.2f}"
            f" {e['cp2k_mesh_minus_gamma_energy']:8.1f} {e['model_minus_label_energy']:9.1f}"
        )
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=1) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    for name in ("label", "analyse"):
        p = sub.add_parser(name)
        p.add_argument("data_dir", type=Path)
        p.add_argument("--results", type=Path, default=RESULTS)
    p_label = sub.choices["label"]
    p_label.add_argument("--frames", type=int, nargs="*", default=None, help="test frame indices (default: pick)")
    p_label.add_argument("--workdir", type=Path, default=Path("runs/gap20/test_labels"))
    p_label.add_argument("--workers", type=int, default=2)
    p_an = sub.choices["analyse"]
    p_an.add_argument("--model", default="gap20.pt")
    p_an.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    label(args) if args.step == "label" else analyse(args)


if __name__ == "__main__":
    main()
