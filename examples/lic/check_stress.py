"""Finite-difference check of the CP2K stress sign/magnitude (ASE convention).

Graphite AB compressed by 5% along c (plus 1% in-plane): compares the
analytical stress returned through ASE with (1/V) dE/d(eps) from central
differences of the energy (h = 0.004).  Reduced k-mesh 5x5x3 (same for all
evaluations), otherwise the production settings.  ~2-3 minutes on one core.
"""

import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cp2k_setup import make_calc  # noqa: E402
from structures import graphite  # noqa: E402

KM = (5, 5, 3)
wd = tempfile.mkdtemp(prefix="lic_fd_")


def ev(at, tag, stress=False):
    calc = make_calc(at, os.path.join(wd, tag), kmesh=KM)
    a = at.copy()
    a.calc = calc
    try:
        e = a.get_potential_energy()
        s = a.get_stress(voigt=False) if stress else None
        f = a.get_forces()
    finally:
        calc.close()
    return e, s, f


g = graphite("AB")
g.set_cell(g.cell.array @ np.diag([1.01, 1.01, 0.95]), scale_atoms=True)
V = g.get_volume()
e0, s0, f0 = ev(g, "ref", stress=True)
print("analytical stress (ASE, eV/A^3):\n", np.round(s0, 6))
print(f"analytical stress (GPa): xx={s0[0, 0] * 160.2177:.3f} zz={s0[2, 2] * 160.2177:.3f}")
print("sum of forces:", f0.sum(0))
h = 0.004
for i, name in ((2, "zz"), (0, "xx")):
    es = []
    for sgn in (+1, -1):
        eps = np.eye(3)
        eps[i, i] += sgn * h
        a = g.copy()
        a.set_cell(g.cell.array @ eps, scale_atoms=True)
        es.append(ev(a, f"{name}{sgn:+d}")[0])
    fd = (es[0] - es[1]) / (2 * h) / V
    print(
        f"{name}: FD (1/V)dE/deps = {fd:.6f} eV/A^3 ({fd * 160.2177:.3f} GPa)"
        f"  analytical = {s0[i, i]:.6f} eV/A^3 ({s0[i, i] * 160.2177:.3f} GPa)"
    )
