"""Were the amorphous test labels computed at the Gamma point only? How much of the test error is that?

    python examples/gap20/check_test_labels.py label ../shared/data/gap20    # CP2K, resumable
    python examples/gap20/check_test_labels.py analyse ../shared/data/gap20 --model gap20.pt \\
        --output examples/gap20/results/test_labels/summary.json
    python examples/gap20/check_test_labels.py recompute ../shared/data/gap20 --frames 31 87 115 \\
        [--functional optB88-vdW] [--basis DZVP-MOLOPT-SR-GTH] [--kmesh 1 1 1]

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

``recompute`` computes test frames once more with other CP2K settings (by default the labels' own
functional, optB88-vdW, at the Gamma point; ``--basis``, ``--kmesh``) and compares the labels with
them and with the PBE-D3 Gamma-point forces of ``label``: which setting, if any, brings CP2K to the
labels? One JSON per frame and a ``summary.json`` in ``results/recompute/<functional>_<basis>_<mesh>``.

CP2K runs serially, one process per ``--workers``. Measured on 2 cores (one frame per core): a
27-atom frame 7-13 minutes for both runs, 48 atoms 19-28, 64 atoms 39-47; a 125-atom frame with
its 3x3x3 mesh takes about 10 minutes per SCF step and 10-12 GB of memory, so label the 125-atom
frames with ``--workers 1`` on a 24 GB machine (two at once were stopped by the out-of-memory
killer).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    index, atoms, workdir, length = args
    cp2k = _cp2k_setup()
    row = dict(
        frame=index,
        atoms=len(atoms),
        cell_width=cell_width(atoms),
        density=density(atoms),
        label_energy=float(atoms.info["REF_energy"]),
        label_forces=np.asarray(atoms.arrays["REF_forces"]).tolist(),
        kspacing_length=length,
    )
    for name, mesh in (("gamma", (1, 1, 1)), ("mesh", cp2k.kpoint_mesh(atoms, length))):
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


def _run_frames(worker, jobs: dict, results: Path, workers: int, describe) -> None:
    """Run ``worker(job)`` for each frame index -> job in a process pool; each returned row goes to
    ``results/frame_NNNN.json`` (written atomically) as soon as it comes."""
    failed = []
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(worker, job): i for i, job in jobs.items()}
        for future in as_completed(futures):
            index = futures[future]
            try:
                row = future.result()
            except Exception as error:  # a CP2K run that died (memory, SCF): the other frames go on
                failed.append(index)
                print(f"frame {index} failed: {type(error).__name__}: {error}", flush=True)
                continue
            path = results / f"frame_{row['frame']:04d}.json"
            tmp = path.with_suffix(".json.tmp")
            tmp.write_text(json.dumps(row) + "\n")
            tmp.replace(path)
            print(describe(row), flush=True)
    if failed:
        raise SystemExit(f"frames {failed} failed; run the same command again to retry them")


def _todo(args, frames, indices) -> list[int]:
    """The frames of ``indices`` without a result in ``args.results``, smallest cells first."""
    args.results.mkdir(parents=True, exist_ok=True)
    args.workdir.mkdir(parents=True, exist_ok=True)
    todo = [i for i in indices if not (args.results / f"frame_{i:04d}.json").exists()]
    todo.sort(key=lambda i: len(frames[i]))  # the first results come early
    print(f"{len(indices)} frames, {len(indices) - len(todo)} done, {len(todo)} to label", flush=True)
    return todo


def label(args) -> None:
    frames = ase.io.read(args.data_dir / "gap20_amorphous_test.extxyz", ":")
    todo = _todo(args, frames, args.frames or pick_frames(frames))
    jobs = {i: (i, frames[i], args.workdir, args.kspacing_length) for i in todo}
    _run_frames(
        _label_one,
        jobs,
        args.results,
        args.workers,
        lambda row: (
            f"frame {row['frame']} ({row['atoms']} atoms, {row['density']:.2f} g/cm³): "
            f"Gamma {row['gamma_seconds']:.0f} s, mesh {row['mesh_kmesh']} {row['mesh_seconds']:.0f} s"
        ),
    )


#: short names of the functionals in result folders
_SLUGS = {"optB88-vdW": "optb88", "PBE-D3(BJ)": "pbe-d3"}


def recompute_folder(functional: str, basis: str, kmesh) -> Path:
    """Default result folder of ``recompute`` for these settings."""
    return RESULTS.parent / "recompute" / f"{_SLUGS[functional]}_{basis}_{'x'.join(map(str, kmesh))}"


def _recompute_one(args) -> dict:
    index, atoms, workdir, functional, basis, kmesh = args
    cp2k = _cp2k_setup()
    settings = dict(cp2k.FUNCTIONALS[functional], basis_set=basis)
    start = time.perf_counter()
    name = str(workdir / f"frame{index:04d}_{recompute_folder(functional, basis, kmesh).name}")
    calc = cp2k.make_calc(atoms, name, kmesh=tuple(kmesh), settings=settings)
    copy = atoms.copy()
    copy.calc = calc
    row = dict(
        frame=index,
        atoms=len(atoms),
        density=density(atoms),
        functional=functional,
        basis_set=basis,
        kmesh=list(kmesh),
        label_energy=float(atoms.info["REF_energy"]),
        label_forces=np.asarray(atoms.arrays["REF_forces"]).tolist(),
        energy=float(copy.get_potential_energy()),
        forces=copy.get_forces().tolist(),
    )
    calc.close()
    row["seconds"] = time.perf_counter() - start
    out = Path(name + ".out")
    row["scf_converged"] = bool(cp2k.scf_converged(out)) if out.exists() else None
    return row


def compare_settings(rows: list[dict], pbe_rows: dict) -> dict:
    """The labels against CP2K with other settings (``rows``, e.g. the labels' own functional,
    optB88-vdW) and, where ``pbe_rows`` (frame -> ``label`` row) has the frame, against CP2K's
    PBE-D3(BJ) at the Gamma point: if the settings explained the gap between labels and CP2K, the
    new forces would lie much closer to the labels."""
    per_frame, pooled = [], {}
    for row in rows:
        f_label, f_cp2k = np.asarray(row["label_forces"]), np.asarray(row["forces"])
        diffs = {"label_minus_cp2k": f_label - f_cp2k}
        if row["frame"] in pbe_rows:
            f_pbe = np.asarray(pbe_rows[row["frame"]]["gamma_forces"])
            diffs.update(label_minus_pbe_gamma=f_label - f_pbe, cp2k_minus_pbe_gamma=f_cp2k - f_pbe)
        a, b = f_label.ravel(), f_cp2k.ravel()
        per_frame.append(
            dict(
                frame=row["frame"],
                atoms=row["atoms"],
                density=row["density"],
                seconds=row["seconds"],
                label_force_rms=_rms(f_label) * 1000,
                **{f"{k}_force_rms": _rms(v) * 1000 for k, v in diffs.items()},
                label_cp2k_correlation=float(np.corrcoef(a, b)[0, 1]),
                label_cp2k_slope=float(a @ b / (b @ b)),  # least squares label = slope * CP2K
            )
        )
        for k, v in diffs.items():
            pooled.setdefault(k, []).append(v)
    return dict(
        frames=len(rows),
        atoms=int(sum(r["atoms"] for r in rows)),
        pooled_force_rms={k: _rms(np.concatenate(v)) * 1000 for k, v in pooled.items()},
        pooled_frames={k: len(v) for k, v in pooled.items()},
        per_frame=per_frame,
        units="forces meV/Å",
    )


def recompute(args) -> None:
    frames = ase.io.read(args.data_dir / "gap20_amorphous_test.extxyz", ":")
    if args.results is None:
        args.results = recompute_folder(args.functional, args.basis, args.kmesh)
    indices = args.frames or sorted(int(p.stem.split("_")[1]) for p in RESULTS.glob("frame_*.json"))
    todo = _todo(args, frames, indices)
    jobs = {i: (i, frames[i], args.workdir, args.functional, args.basis, args.kmesh) for i in todo}
    _run_frames(
        _recompute_one,
        jobs,
        args.results,
        args.workers,
        lambda row: f"frame {row['frame']} ({row['atoms']} atoms): {args.results.name}, {row['seconds']:.0f} s",
    )
    rows = [json.loads(p.read_text()) for p in sorted(args.results.glob("frame_*.json"))]
    pbe = {r["frame"]: r for r in (json.loads(p.read_text()) for p in sorted(args.pbe_results.glob("frame_*.json")))}
    summary = dict(functional=args.functional, basis_set=args.basis, kmesh=list(args.kmesh))
    summary.update(compare_settings(rows, pbe))
    nan = float("nan")
    print(f"{args.results.name}: forces, meV/Å RMS (PBE: PBE-D3(BJ) at the Gamma point, {args.pbe_results})")
    print("frame atoms  label-CP2K  label-PBE  CP2K-PBE  |label|   corr  slope")
    for e in summary["per_frame"]:
        print(
            f"{e['frame']:5d} {e['atoms']:5d} {e['label_minus_cp2k_force_rms']:10.0f}"
            f" {e.get('label_minus_pbe_gamma_force_rms', nan):10.0f}"
            f" {e.get('cp2k_minus_pbe_gamma_force_rms', nan):9.0f}"
            f" {e['label_force_rms']:7.0f} {e['label_cp2k_correlation']:6.3f} {e['label_cp2k_slope']:6.3f}"
        )
    print("pooled:", ", ".join(f"{k} {v:.0f}" for k, v in summary["pooled_force_rms"].items()))
    (args.results / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def _rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def summarise(rows: list[dict], frames, calc) -> dict:
    """Force and energy comparisons of labelled frames (``rows``, the JSON of ``label``) for the
    model behind ``calc``: per frame, pooled over all atoms and pooled per cell size."""
    per_frame = []
    pooled: dict[str, list] = {}
    by_size: dict[int, dict[str, list]] = {}
    for row in rows:
        atoms = frames[row["frame"]].copy()
        atoms.calc = calc
        n = len(atoms)
        if n != row["atoms"]:
            raise ValueError(f"frame {row['frame']} has {n} atoms, its label file {row['atoms']}: another test file?")
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
            kspacing_length=row.get("kspacing_length", KSPACING_LENGTH),
            **{f"{k}_force_rms": _rms(v) * 1000 for k, v in diffs.items()},
            # energies per atom, meV: CP2K's sampling error against the model's error
            cp2k_mesh_minus_gamma_energy=(row["mesh_energy"] - row["gamma_energy"]) / n * 1000,
            model_minus_label_energy=(model_e - row["label_energy"]) / n * 1000,
            force_error_correlation=float(np.corrcoef((model_f - f_label).ravel(), sampling.ravel())[0, 1]),
        )
        per_frame.append(entry)
        for k, v in diffs.items():
            pooled.setdefault(k, []).append(v)
            by_size.setdefault(n, {}).setdefault(k, []).append(v)
    return dict(
        frames=len(rows),
        atoms=int(sum(r["atoms"] for r in rows)),
        pooled_force_rms={k: _rms(np.concatenate(v)) * 1000 for k, v in pooled.items()},
        pooled_force_correlation=float(
            np.corrcoef(
                np.concatenate(pooled["model_minus_label"]).ravel(),
                np.concatenate(pooled["cp2k_mesh_minus_gamma"]).ravel(),
            )[0, 1]
        ),
        per_cell_size={
            str(n): dict(
                frames=len(d["model_minus_label"]), **{k: _rms(np.concatenate(v)) * 1000 for k, v in d.items()}
            )
            for n, d in sorted(by_size.items())
        },
        per_frame=per_frame,
        units="forces meV/Å, energies meV/atom",
    )


def whole_test_estimate(summary: dict, test_per_cell_size: dict) -> dict:
    """Estimate of the model's force RMSE over the whole test set against corrected labels.

    ``test_per_cell_size`` is ``compare.py``'s ``per_cell_size`` of the same model on all test
    frames. For each cell size the mean square error falls by what it fell in the labelled frames
    of that size (``raw² - corrected²``), or of the nearest labelled size where none is labelled;
    the sizes are then pooled by their atoms. ``label_noise`` pools CP2K's sampling error of each
    size the same way: the force RMSE against the labels of a model exact in the converged
    physics. An estimate from a few frames per size, not a measurement."""
    labelled = {int(n): v for n, v in summary["per_cell_size"].items()}
    total_sq, noise_sq, total_atoms, rows = 0.0, 0.0, 0, {}
    for size, m in test_per_cell_size.items():
        nearest = min(labelled, key=lambda k: (abs(k - int(size)), k))
        drop = labelled[nearest]["model_minus_label"] ** 2 - labelled[nearest]["model_minus_corrected_label"] ** 2
        corrected_sq = max(m["forces_rmse_meV_per_A"] ** 2 - drop, 0.0)
        rows[size] = dict(
            raw=m["forces_rmse_meV_per_A"], corrected=corrected_sq**0.5, from_size=nearest, atoms=m["n_atoms"]
        )
        total_sq += corrected_sq * m["n_atoms"]
        noise_sq += labelled[nearest]["cp2k_mesh_minus_gamma"] ** 2 * m["n_atoms"]
        total_atoms += m["n_atoms"]
    raw = (
        sum(m["forces_rmse_meV_per_A"] ** 2 * m["n_atoms"] for m in test_per_cell_size.values()) / total_atoms
    ) ** 0.5
    return dict(
        raw=raw,
        corrected=(total_sq / total_atoms) ** 0.5,
        label_noise=(noise_sq / total_atoms) ** 0.5,
        per_cell_size=rows,
    )


RESAMPLED = ("model_minus_label", "model_minus_corrected_label", "cp2k_mesh_minus_gamma")


def bootstrap_estimate(summary: dict, test_per_cell_size: dict, draws: int = 2000, seed: int = 0) -> dict:
    """How much the whole-test estimate rests on which frames were labelled: the labelled frames
    of each cell size are drawn again with replacement ``draws`` times and the estimate redone.
    Frames of one size have the same number of atoms, so a size's RMS is the root of its frames'
    mean squares. Returns the 5th, 50th and 95th percentiles of ``corrected`` and ``label_noise``
    in meV/Å; with a handful of frames per size this is a rough spread, not a confidence level."""
    rng = np.random.default_rng(seed)
    by_size: dict[int, list[dict]] = {}
    for e in summary["per_frame"]:
        by_size.setdefault(e["atoms"], []).append(e)
    results = {"corrected": [], "label_noise": []}
    for _ in range(draws):
        per_size = {}
        for n, entries in by_size.items():
            pick = rng.integers(len(entries), size=len(entries))
            per_size[str(n)] = {
                k: float(np.sqrt(np.mean([entries[i][f"{k}_force_rms"] ** 2 for i in pick]))) for k in RESAMPLED
            }
        estimate = whole_test_estimate({"per_cell_size": per_size}, test_per_cell_size)
        for k in results:
            results[k].append(estimate[k])
    return dict(
        draws=draws,
        seed=seed,
        **{k: dict(zip(("p5", "p50", "p95"), np.percentile(v, [5, 50, 95]).tolist())) for k, v in results.items()},
    )


def analyse(args) -> None:
    import torch

    from attnmace import AttnMACECalculator

    if args.test_metrics is not None:  # checked before the model runs
        metrics = json.loads(args.test_metrics.read_text())
        name = args.test_metrics_name or next(iter(metrics))
        if name not in metrics:
            raise SystemExit(f"no model '{name}' in {args.test_metrics}; it has {sorted(metrics)}")
        test_per_cell_size = metrics[name]["test"]["per_cell_size"]
    frames = ase.io.read(args.data_dir / "gap20_amorphous_test.extxyz", ":")
    rows = [json.loads(p.read_text()) for p in sorted(args.results.glob("frame_*.json"))]
    unconverged = [r["frame"] for r in rows if False in (r.get("gamma_scf_converged"), r.get("mesh_scf_converged"))]
    if unconverged:
        print(f"left out, CP2K's SCF did not converge: frames {unconverged}")
        rows = [r for r in rows if r["frame"] not in unconverged]
    if not rows:
        raise SystemExit(f"no labelled frames in {args.results}: run the 'label' step first")
    summary = dict(model=str(args.model), torch=torch.__version__, unconverged_frames=unconverged)
    summary.update(summarise(rows, frames, AttnMACECalculator(args.model, dtype="float64")))
    print(f"{summary['frames']} frames, {summary['atoms']} atoms; pooled force RMS (meV/Å):")
    for k, v in summary["pooled_force_rms"].items():
        print(f"  {k:32s} {v:8.1f}")
    print(f"  correlation of the model's error with CP2K's sampling error: {summary['pooled_force_correlation']:.3f}")
    for n, v in summary["per_cell_size"].items():
        print(
            f"  {n} atoms ({v['frames']} frames): sampling error {v['cp2k_mesh_minus_gamma']:.0f}, model against "
            f"labels {v['model_minus_label']:.0f}, against corrected labels {v['model_minus_corrected_label']:.0f}"
        )
    print("frame atoms  g/cm3  mesh     label-Γ label-mesh  mesh-Γ  model-label  model-corr   corr  ΔE_cp2k  ΔE_model")
    for e in summary["per_frame"]:
        print(
            f"{e['frame']:5d} {e['atoms']:5d} {e['density']:6.2f}  {'x'.join(map(str, e['kmesh'])):7s}"
            f" {e['label_minus_cp2k_gamma_force_rms']:8.0f} {e['label_minus_cp2k_mesh_force_rms']:9.0f}"
            f" {e['cp2k_mesh_minus_gamma_force_rms']:8.0f} {e['model_minus_label_force_rms']:11.0f}"
            f" {e['model_minus_corrected_label_force_rms']:11.0f} {e['force_error_correlation']:6.2f}"
            f" {e['cp2k_mesh_minus_gamma_energy']:8.1f} {e['model_minus_label_energy']:9.1f}"
        )
    if args.test_metrics is not None:
        estimate = whole_test_estimate(summary, test_per_cell_size)
        spread = bootstrap_estimate(summary, test_per_cell_size)
        summary["whole_test_estimate"] = dict(metrics=str(args.test_metrics), name=name, **estimate, bootstrap=spread)
        print(
            f"whole test set ({args.test_metrics}, '{name}'): force RMSE {estimate['raw']:.0f} meV/Å against the "
            f"labels; estimated {estimate['corrected']:.0f} against corrected labels; the labels' own sampling "
            f"error, estimated the same way: {estimate['label_noise']:.0f}"
        )
        print(
            f"  labelled frames drawn again ({spread['draws']} times), 5th-95th percentile: corrected "
            f"{spread['corrected']['p5']:.0f}-{spread['corrected']['p95']:.0f}, label error "
            f"{spread['label_noise']['p5']:.0f}-{spread['label_noise']['p95']:.0f}"
        )
    if args.convergence is not None:
        summary["mesh_convergence"] = convergence(rows, args.convergence)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(summary, indent=1) + "\n")


def convergence(rows, folder: Path) -> list[dict]:
    """The frames labelled again with a denser mesh (``label --kspacing-length``, in ``folder``):
    how far the default mesh's forces and energy are from the denser one's."""
    out = []
    for row in rows:
        path = folder / f"frame_{row['frame']:04d}.json"
        if not path.exists():
            continue
        dense = json.loads(path.read_text())
        n = row["atoms"]
        entry = dict(
            frame=row["frame"],
            mesh=row["mesh_kmesh"],
            dense_mesh=dense["mesh_kmesh"],
            force_rms=_rms(np.asarray(row["mesh_forces"]) - np.asarray(dense["mesh_forces"])) * 1000,
            energy=(row["mesh_energy"] - dense["mesh_energy"]) / n * 1000,
            dense_minus_gamma_force_rms=_rms(np.asarray(dense["mesh_forces"]) - np.asarray(row["gamma_forces"])) * 1000,
        )
        out.append(entry)
        print(
            f"mesh convergence, frame {entry['frame']}: {entry['mesh']} against {entry['dense_mesh']}: "
            f"forces differ by {entry['force_rms']:.1f} meV/Å RMS, energy by {entry['energy']:+.2f} meV/atom "
            f"(the denser mesh's sampling correction: {entry['dense_minus_gamma_force_rms']:.0f} meV/Å)"
        )
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    for name, results in (("label", RESULTS), ("analyse", RESULTS), ("recompute", None)):
        p = sub.add_parser(name)
        p.add_argument("data_dir", type=Path)
        p.add_argument("--results", type=Path, default=results)
    for name in ("label", "recompute"):
        p = sub.choices[name]
        p.add_argument(
            "--frames", type=int, nargs="*", default=None, help="test frame indices (default: pick / those labelled)"
        )
        p.add_argument("--workdir", type=Path, default=Path("runs/gap20/test_labels"))
        p.add_argument("--workers", type=int, default=2)
    p_re = sub.choices["recompute"]
    p_re.add_argument("--functional", default="optB88-vdW", choices=sorted(_SLUGS), help="default: the labels' own")
    p_re.add_argument("--basis", default="DZVP-MOLOPT-SR-GTH", help="CP2K basis set (default: the labelling one)")
    p_re.add_argument("--kmesh", type=int, nargs=3, default=[1, 1, 1], help="Monkhorst-Pack mesh (default: Gamma)")
    p_re.add_argument(
        "--pbe-results", type=Path, default=RESULTS, help="the 'label' results to compare with (PBE-D3 at Gamma)"
    )
    p_label = sub.choices["label"]
    p_label.add_argument(
        "--kspacing-length",
        type=float,
        default=KSPACING_LENGTH,
        help="mesh density: n_i = smallest odd integer >= L |b_i| - 1 (Å); a larger L checks convergence",
    )
    p_an = sub.choices["analyse"]
    p_an.add_argument("--model", default="gap20.pt")
    p_an.add_argument("--output", type=Path, default=None)
    p_an.add_argument(
        "--test-metrics", type=Path, default=None, help="compare.py's metrics.json of the same model on all test frames"
    )
    p_an.add_argument("--test-metrics-name", default=None, help="the model's name in that file (default: the first)")
    p_an.add_argument(
        "--convergence", type=Path, default=None, help="results of a denser mesh (label --kspacing-length)"
    )
    args = parser.parse_args(argv)
    dict(label=label, analyse=analyse, recompute=recompute)[args.step](args)


if __name__ == "__main__":
    main()
