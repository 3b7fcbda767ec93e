"""Resumable CP2K (PBE-D3(BJ)) labelling of the Li-C structures.

    nohup python3 examples/lic/label.py --workers 1 > examples/lic/data/label.log 2>&1 &

* Structures come from structures.generate_structures() (deterministic).
* Each result is appended to data/lic_dft.extxyz as soon as it is computed;
  the file is rewritten through a temporary file + fsync + os.replace, so a
  kill can never leave a truncated/corrupted frame.
* A restart skips structure ids already in the output (and ids listed in
  data/failures.jsonl unless --retry-failed is given).
* SCF failures / CP2K crashes are retried once with more conservative mixing,
  then logged to data/failures.jsonl and skipped.
Keys: info REF_energy (eV), arrays REF_forces (eV/A), info REF_stress (Voigt
6: xx yy zz yz xz xy, eV/A^3, ASE sign convention), config_type, structure_id.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import sys
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cp2k_setup import SETTINGS, kpoint_mesh, make_calc, scf_converged  # noqa
from structures import generate_structures  # noqa: E402

DATA = os.path.join(HERE, "data")
OUTPUT = os.path.join(DATA, "lic_dft.extxyz")
FAILURES = os.path.join(DATA, "failures.jsonl")
TEMPLATE = os.path.join(DATA, "cp2k_input_template.inp")
WORK = os.path.join(DATA, "work")
CP2K_VERSION = "CP2K 2023.1 (Debian package cp2k 2023.1-2, cp2k.psmp, 1 MPI rank, 1 thread)"


def log(msg):
    print(time.strftime("%Y-%m-%d %H:%M:%S ") + msg, flush=True)


# ------------------------------------------------------------------ output
def read_done(path):
    from ase.io import iread

    done = {}
    if not os.path.exists(path):
        return done
    for at in iread(path, index=":", format="extxyz"):
        done[at.info["structure_id"]] = at.info.get("structure_hash")
    return done


def read_failures(path):
    failed = {}
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                line = line.strip()
                if line:
                    try:
                        d = json.loads(line)
                        failed[d["structure_id"]] = d
                    except (json.JSONDecodeError, KeyError):
                        pass
    return failed


def fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)
    except OSError:
        pass


def atomic_append_frame(path, atoms):
    """old content + new frame -> tmp file -> fsync -> os.replace."""
    from ase.io import write

    buf = io.StringIO()
    write(buf, atoms, format="extxyz", write_info=True, write_results=False)
    new = buf.getvalue().encode()
    old = b""
    if os.path.exists(path):
        with open(path, "rb") as fh:
            old = fh.read()
    tmp = path + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(old + new)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def append_jsonl(path, d):
    with open(path, "a") as fh:
        fh.write(json.dumps(d) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


# ------------------------------------------------------------------ compute
def compute_one(atoms, workdir, attempt_settings):
    """Run CP2K on `atoms`; returns dict(ok=..., ...). Never raises."""
    sid = atoms.info["structure_id"]
    os.makedirs(workdir, exist_ok=True)
    label = os.path.join(workdir, sid)
    t0 = time.time()
    calc = None
    try:
        s = dict(SETTINGS)
        s.update(attempt_settings)
        kmesh = kpoint_mesh(atoms)
        calc = make_calc(atoms, label, kmesh=kmesh, settings=s)
        at = atoms.copy()
        at.calc = calc
        e = at.get_potential_energy()
        f = at.get_forces()
        st = at.get_stress(voigt=True)
        calc.close()
        calc = None
        if not scf_converged(label + ".out"):
            raise RuntimeError("SCF not converged (see CP2K output)")
        if not (np.isfinite(e) and np.all(np.isfinite(f)) and np.all(np.isfinite(st))):
            raise RuntimeError("non-finite result")
        return dict(
            ok=True,
            energy=float(e),
            forces=f,
            stress=st,
            kmesh=kmesh,
            time=time.time() - t0,
            inp=label + ".inp",
            out=label + ".out",
        )
    except Exception as exc:  # noqa: BLE001 - any failure is logged
        return dict(
            ok=False,
            error=f"{type(exc).__name__}: {exc}",
            tb=traceback.format_exc(limit=3),
            time=time.time() - t0,
            out=label + ".out",
        )
    finally:
        if calc is not None:
            try:
                calc.close()
            except Exception:  # noqa: BLE001
                pass


ATTEMPTS = [dict(), dict(mixing_alpha=0.05, max_scf=400, smear_temperature_k=SETTINGS["smear_temperature_k"])]


def label_structure(atoms):
    """Worker entry point: up to two attempts."""
    sid = atoms.info["structure_id"]
    workdir = os.path.join(WORK, sid)
    errors = []
    total = 0.0
    for k, att in enumerate(ATTEMPTS):
        r = compute_one(atoms, workdir, att)
        total += r["time"]
        if r["ok"]:
            r["attempt"] = k
            r["time"] = total
            r["workdir"] = workdir
            return r
        errors.append(r["error"])
        # keep the CP2K output of the failed attempt for diagnosis
        if os.path.exists(r["out"]):
            shutil.copy(
                r["out"],
                os.path.join(DATA, "failed_outputs", f"{sid}_attempt{k}.out")
                if os.path.isdir(os.path.join(DATA, "failed_outputs"))
                else r["out"] + f".attempt{k}",
            )
    shutil.rmtree(workdir, ignore_errors=True)
    return dict(ok=False, error=" | ".join(errors), time=total)


def make_frame(atoms, r):
    at = atoms.copy()
    at.calc = None
    at.info["REF_energy"] = r["energy"]
    at.info["REF_stress"] = np.asarray(r["stress"], float)  # Voigt-6, ASE
    at.arrays["REF_forces"] = np.asarray(r["forces"], float)
    at.info["kpoints"] = " ".join(str(k) for k in r["kmesh"])
    at.info["cp2k_cutoff_Ry"] = SETTINGS["cutoff_ry"]
    at.info["cp2k_rel_cutoff_Ry"] = SETTINGS["rel_cutoff_ry"]
    at.info["smear_K"] = SETTINGS["smear_temperature_k"]
    at.info["method"] = "PBE-D3(BJ)/DZVP-MOLOPT-SR-GTH/GTH-PBE CP2K-2023.1"
    at.info["wall_time_s"] = round(r["time"], 1)
    if "vacuum_axis" in at.info:
        at.info["vacuum_axis"] = int(at.info["vacuum_axis"])
    return at


def write_template(inp_path, sid):
    with open(inp_path) as fh:
        txt = fh.read()
    head = (
        "! Exact CP2K input generated by ASE's CP2K calculator for structure "
        f"{sid}.\n"
        "! Identical for all structures except: SUBSYS/COORD+CELL, "
        "KPOINTS mesh\n! (smallest odd n_i >= -1 + "
        f"{SETTINGS['kspacing_length']} A * |b_i|, 1 along vacuum), "
        "ADDED_MOS (max(8, 0.3*N_occ+4)) and\n! GLOBAL/PROJECT.  Retries of "
        "failed SCFs use MIXING ALPHA 0.05 and MAX_SCF 400.\n"
        f"! Code: {CP2K_VERSION}\n"
    )
    tmp = TEMPLATE + ".tmp"
    with open(tmp, "w") as fh:
        fh.write(head + txt + "\n")
    os.replace(tmp, TEMPLATE)


def read_structures(path):
    """Structures to label from an extxyz file; each needs ``structure_id`` and ``structure_hash``."""
    from ase.io import read

    structs = read(path, index=":", format="extxyz")
    for i, a in enumerate(structs):
        for key in ("structure_id", "structure_hash"):
            if key not in a.info:
                raise SystemExit(f"{path}: frame {i} has no '{key}' in its info")
        a.info["structure_hash"] = str(a.info["structure_hash"])
        a.calc = None
    ids = [a.info["structure_id"] for a in structs]
    if len(set(ids)) != len(ids):
        raise SystemExit(f"{path}: structure ids are not unique")
    return structs


# --------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=1, help="parallel CP2K processes (1 core each)")
    p.add_argument("--output", default=OUTPUT)
    p.add_argument("--limit", type=int, default=None, help="label at most this many new structures")
    p.add_argument("--ids", nargs="*", default=None, help="only these structure ids")
    p.add_argument("--max-hours", type=float, default=None, help="stop submitting new work after this many hours")
    p.add_argument("--retry-failed", action="store_true", help="retry ids listed in failures.jsonl")
    p.add_argument(
        "--structures",
        default=None,
        help="label the structures of this extxyz file (e.g. an active-learning round from\n"
        "active_learning.py) instead of the list of structures.py",
    )
    args = p.parse_args(argv)

    os.makedirs(DATA, exist_ok=True)
    os.makedirs(WORK, exist_ok=True)
    os.makedirs(os.path.join(DATA, "failed_outputs"), exist_ok=True)
    t_start = time.time()

    structs = read_structures(args.structures) if args.structures else generate_structures()
    by_id = {a.info["structure_id"]: a for a in structs}
    done = read_done(args.output)
    for sid, h in done.items():
        if sid in by_id and h is not None and by_id[sid].info["structure_hash"] != h:
            raise SystemExit(
                f"structure {sid} in {args.output} has hash {h} "
                f"but structures.py now generates "
                f"{by_id[sid].info['structure_hash']}: the "
                "generator changed; use a new output file."
            )
    failed = {} if args.retry_failed else read_failures(FAILURES)
    todo = [a for a in structs if a.info["structure_id"] not in done and a.info["structure_id"] not in failed]
    if args.ids:
        todo = [a for a in todo if a.info["structure_id"] in set(args.ids)]
    if args.limit is not None:
        todo = todo[: args.limit]
    log(
        f"{len(structs)} structures in the list, {len(done)} done, "
        f"{len(failed)} failed earlier (skipped), {len(todo)} to do, "
        f"workers={args.workers}, output={args.output}"
    )
    log("settings: " + json.dumps(SETTINGS))

    stop = {"flag": False}

    def _sig(signum, frame):  # finish gracefully on SIGTERM/SIGINT
        log(f"signal {signum}: stopping after the running calculation(s)")
        stop["flag"] = True
        if stop.get("twice"):
            raise SystemExit(1)
        stop["twice"] = True

    signal.signal(signal.SIGTERM, _sig)
    signal.signal(signal.SIGINT, _sig)

    n_ok = n_fail = 0
    template_written = os.path.exists(TEMPLATE)
    queue = list(todo)
    ntot = len(todo)
    with ProcessPoolExecutor(max_workers=max(1, args.workers)) as ex:
        running = {}

        def submit_more():
            while queue and len(running) < max(1, args.workers) and not stop["flag"]:
                if args.max_hours is not None and time.time() - t_start > 3600 * args.max_hours:
                    log("--max-hours reached: not submitting more")
                    queue.clear()
                    break
                a = queue.pop(0)
                running[ex.submit(label_structure, a)] = a

        submit_more()
        while running:
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                a = running.pop(fut)
                sid = a.info["structure_id"]
                try:
                    r = fut.result()
                except Exception as exc:  # noqa: BLE001 (worker died)
                    r = dict(ok=False, error=f"worker: {exc!r}", time=0.0)
                k = n_ok + n_fail + 1
                if r["ok"]:
                    frame = make_frame(a, r)
                    atomic_append_frame(args.output, frame)
                    if not template_written:
                        write_template(r["inp"], sid)
                        template_written = True
                    shutil.rmtree(r["workdir"], ignore_errors=True)
                    n_ok += 1
                    f = r["forces"]
                    log(
                        f"[{k}/{ntot}] OK   {sid:24s} {a.get_chemical_formula():8s}"
                        f" N={len(a):2d} k={'x'.join(map(str, r['kmesh']))}"
                        f" E={r['energy']:.5f} eV E/N={r['energy'] / len(a):.4f}"
                        f" fmax={np.abs(f).max():.3f} |sumF|="
                        f"{np.linalg.norm(f.sum(0)):.1e}"
                        f" P={-np.mean(r['stress'][:3]) * 160.2177:.2f} GPa"
                        f" attempt={r['attempt']} wall={r['time']:.1f}s"
                        f" elapsed={(time.time() - t_start) / 3600:.2f}h"
                        f" done_total={len(done) + n_ok}/{len(structs)}"
                    )
                else:
                    n_fail += 1
                    append_jsonl(
                        FAILURES,
                        dict(
                            structure_id=sid,
                            config_type=a.info["config_type"],
                            error=r["error"],
                            wall_s=round(r["time"], 1),
                            time=time.strftime("%Y-%m-%dT%H:%M:%S"),
                        ),
                    )
                    log(f"[{k}/{ntot}] FAIL {sid:24s} {r['error'][:200]} wall={r['time']:.1f}s")
            submit_more()
    log(
        f"finished: {n_ok} labelled, {n_fail} failed in this run, "
        f"{len(done) + n_ok}/{len(structs)} in {args.output}, "
        f"{(time.time() - t_start) / 3600:.2f} h"
    )


if __name__ == "__main__":
    main()
