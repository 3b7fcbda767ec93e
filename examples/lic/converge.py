"""Short convergence test of the CP2K settings on one structure (LiC6).

Run:  python3 examples/lic/converge.py   (one core, ~5-10 minutes)
Writes examples/lic/data/convergence.json; CONVERGENCE.md summarises it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from cp2k_setup import SETTINGS, kpoint_mesh, make_calc  # noqa: E402
from structures import graphite, lic6  # noqa: E402


def run(atoms, tag, workdir, **kw):
    calc = make_calc(atoms, os.path.join(workdir, tag), **kw)
    at = atoms.copy()
    at.calc = calc
    t0 = time.time()
    try:
        e = at.get_potential_energy()
        f = at.get_forces()
        s = at.get_stress(voigt=False)
    finally:
        calc.close()
    dt = time.time() - t0
    return dict(
        tag=tag,
        natoms=len(at),
        e=float(e),
        f=f.tolist(),
        s=s.tolist(),
        time=dt,
        kw={k: (list(v) if isinstance(v, tuple) else v) for k, v in kw.items()},
    )


def compare(ref, other):
    n = ref["natoms"]
    de = (other["e"] - ref["e"]) / n * 1000.0  # meV/atom
    df = np.abs(np.array(other["f"]) - np.array(ref["f"])).max() * 1000.0
    ds = np.abs(np.array(other["s"]) - np.array(ref["s"])).max() * 160.21766
    return de, df, ds


def main():
    rng = np.random.default_rng(7)
    at = lic6()
    at.set_cell(at.cell * [1.0, 1.0, 1.02], scale_atoms=True)
    at.positions += rng.normal(0, 0.05, at.positions.shape)
    workdir = tempfile.mkdtemp(prefix="lic_conv_")
    k0 = kpoint_mesh(at)
    results = {}
    plan = [
        ("cut400", dict(cutoff_ry=400, kmesh=k0)),
        ("cut500", dict(cutoff_ry=500, kmesh=k0)),
        ("cut600", dict(cutoff_ry=600, kmesh=k0)),
        ("cut800", dict(cutoff_ry=800, kmesh=k0)),
        ("rel40", dict(cutoff_ry=500, rel_cutoff=40, kmesh=k0)),
        ("rel60", dict(cutoff_ry=500, rel_cutoff=60, kmesh=k0)),
        ("T500", dict(cutoff_ry=500, temperature=500.0, kmesh=k0)),
        ("T2000", dict(cutoff_ry=500, temperature=2000.0, kmesh=k0)),
        ("k333", dict(cutoff_ry=500, kmesh=(3, 3, 3))),
        ("kL25", dict(cutoff_ry=500, kmesh=(7, 7, 7))),
        ("k999", dict(cutoff_ry=500, kmesh=(9, 9, 9))),
    ]
    if len(sys.argv) > 2 and sys.argv[1] == "--only":
        # e.g. --only cut500,kL25,k999 : LiC6 rows only, compared to the first
        tags = sys.argv[2].split(",")
        rows = {}
        for tag, kw in plan:
            if tag in tags:
                rows[tag] = run(at, tag, workdir, **kw)
                print(f"{tag:8s} k={kw.get('kmesh')} E={rows[tag]['e']:.6f} t={rows[tag]['time']:.1f}s", flush=True)
        ref = rows[tags[-1]]
        for tag in tags:
            de, df, ds = compare(ref, rows[tag])
            print(f"{tag:8s} vs {tags[-1]}: dE={de:8.3f} meV/atom max|dF|={df:7.2f} meV/A max|dS|={ds:6.3f} GPa")
        with open(os.path.join(HERE, "data", "convergence_only.json"), "w") as fh:
            json.dump(rows, fh, indent=1)
        return
    for tag, kw in plan:
        r = run(at, tag, workdir, **kw)
        results[tag] = r
        print(f"{tag:8s} k={kw.get('kmesh')} E={r['e']:.6f} eV t={r['time']:.1f}s", flush=True)
    ref = results["cut800"]
    lines = []
    for tag, r in results.items():
        base = ref if tag.startswith("cut") else results["cut500"]
        de, df, ds = compare(base, r)
        lines.append(
            dict(
                tag=tag,
                kw=r["kw"],
                dE_meV_atom=de,
                dF_meV_A=df,
                dS_GPa=ds,
                time_s=r["time"],
                vs=("cut800" if tag.startswith("cut") else "cut500"),
            )
        )
        print(
            f"{tag:8s} vs {lines[-1]['vs']}: dE={de:8.3f} meV/atom "
            f"max|dF|={df:7.2f} meV/A max|dS|={ds:6.3f} GPa "
            f"t={r['time']:.1f}s"
        )

    # Graphite AB: k-mesh convergence (primitive 4-atom cell) and a Gamma-only
    # 16-atom 2x2x1 supercell vs. the same supercell with k-points.
    g = graphite("AB")
    g.positions += rng.normal(0, 0.03, g.positions.shape)
    gk = {}
    for L in (12, 17, 25):
        r = run(g, f"graphite_L{L}", workdir, cutoff_ry=500, kmesh=kpoint_mesh(g, L))
        gk[L] = r
        print(f"graphite L={L} k={kpoint_mesh(g, L)} E/atom={r['e'] / 4:.5f} t={r['time']:.1f}s", flush=True)
    for L in (12, 17):
        de, df, ds = compare(gk[25], gk[L])
        lines.append(
            dict(
                tag=f"graphite_L{L}",
                kw=gk[L]["kw"],
                dE_meV_atom=de,
                dF_meV_A=df,
                dS_GPa=ds,
                time_s=gk[L]["time"],
                vs="graphite_L25",
            )
        )
        print(f"graphite L={L} vs L=25: dE={de:.3f} meV/atom dF={df:.2f} meV/A dS={ds:.3f} GPa")
    g2 = g.repeat((2, 2, 1))
    rg = run(g2, "graphite221_gamma", workdir, cutoff_ry=500, kmesh=(1, 1, 1))
    rk = run(g2, "graphite221_k", workdir, cutoff_ry=500)
    de = (rg["e"] - rk["e"]) / len(g2) * 1000
    print(
        f"graphite 2x2x1 (16 at) Gamma: t={rg['time']:.1f}s, "
        f"k={kpoint_mesh(g2)}: t={rk['time']:.1f}s; "
        f"dE(Gamma-k)={de:.1f} meV/atom"
    )
    lines.append(
        dict(
            tag="graphite221_gamma_vs_k",
            dE_meV_atom=de,
            time_gamma=rg["time"],
            time_k=rk["time"],
            kmesh=list(kpoint_mesh(g2)),
        )
    )
    out = os.path.join(HERE, "data", "convergence.json")
    with open(out, "w") as fh:
        json.dump(dict(settings=SETTINGS, lic6_kmesh=list(k0), rows=lines), fh, indent=1)
    print("wrote", out)


if __name__ == "__main__":
    main()
