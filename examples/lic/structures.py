"""Deterministic list of Li-C structures to label with DFT (PBE-D3(BJ)).

Usage:
    python3 examples/lic/structures.py          # print the family counts
    from structures import generate_structures  # list of ase.Atoms

Every structure carries atoms.info['structure_id'] (stable for a fixed SEED
and fixed code), atoms.info['config_type'] (family) and, for slabs,
atoms.info['vacuum_axis'] = 2.  All cells have <= 30 atoms.  The list is
ordered round-robin over the families so that an early stop of the
(many-hour) labelling still gives a diverse set.

DO NOT change the generators once labelling has started: ids would then refer
to different geometries (label.py checks a geometry hash and refuses to mix).
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
from ase import Atoms

SEED = 20240611
MAX_ATOMS = 30

# Lattice references (Angstrom)
A_GRAPHITE = 2.46  # graphene / graphite in-plane lattice constant
C_GRAPHITE = 6.70  # AB graphite (2 layers per cell)
D_AA_GRAPHITE = 3.55  # AA graphite interlayer distance (larger than AB)
A_LIC6 = 4.31  # sqrt(3) x sqrt(3) of graphene (a*sqrt(3) = 4.26 -> 4.31)
C_LIC6 = 3.70  # LiC6, AA stacking, Li above hexagon centres
C_LIC12 = 7.05  # LiC12 stage II: one Li gallery (3.70) + one empty (3.35)
A_LI_BCC = 3.44
VAC_GRAPHENE = 16.0  # cell height for graphene slabs
VAC_BILAYER = 20.0  # cell height for bilayer slabs


# ---------------------------------------------------------------- builders
def _hex_cell(a, c):
    return np.array([[a, 0.0, 0.0], [-0.5 * a, np.sqrt(3) / 2 * a, 0.0], [0.0, 0.0, c]])


# graphene sublattice sites in fractional in-plane coordinates
_SITE = {"A": [(0.0, 0.0), (1 / 3, 2 / 3)], "B": [(1 / 3, 2 / 3), (2 / 3, 1 / 3)], "C": [(2 / 3, 1 / 3), (0.0, 0.0)]}
# hexagon centre (hollow site) above a layer of stacking X
_HOLLOW = {"A": (2 / 3, 1 / 3), "B": (0.0, 0.0), "C": (1 / 3, 2 / 3)}


def carbon_layers(stacking, z_list, a, c, vacuum_axis=False):
    """Primitive-cell graphene layers with the given stacking letters at
    Cartesian heights z_list inside a hexagonal cell of height c."""
    cell = _hex_cell(a, c)
    pos = []
    for s, z in zip(stacking, z_list):
        for fa, fb in _SITE[s]:
            pos.append(fa * cell[0] + fb * cell[1] + [0, 0, z])
    at = Atoms(f"C{len(pos)}", positions=pos, cell=cell, pbc=True)
    if vacuum_axis:
        at.info["vacuum_axis"] = 2
    return at


def graphite(stacking="AB"):
    if stacking == "AB":
        return carbon_layers("AB", [0.25 * C_GRAPHITE, 0.75 * C_GRAPHITE], A_GRAPHITE, C_GRAPHITE)
    return carbon_layers("A", [0.5 * D_AA_GRAPHITE], A_GRAPHITE, D_AA_GRAPHITE)


def graphene():
    return carbon_layers("A", [VAC_GRAPHENE / 2], A_GRAPHITE, VAC_GRAPHENE, vacuum_axis=True)


def bilayer(stacking="AB", d=3.35):
    z0 = VAC_BILAYER / 2
    return carbon_layers(stacking, [z0 - d / 2, z0 + d / 2], A_GRAPHITE, VAC_BILAYER, vacuum_axis=True)


def sqrt3_supercell(at):
    """sqrt(3) x sqrt(3) R30 in-plane supercell (3 x the atoms)."""
    P = np.array([[2, 1, 0], [-1, 1, 0], [0, 0, 1]])
    return _make_supercell(at, P)


def _make_supercell(at, P):
    from ase.build import make_supercell

    info = dict(at.info)
    sc = make_supercell(at, P)
    sc.info.update(info)
    return sc


def add_li(at, frac_xy, z):
    """Add one Li at in-plane fractional coordinates of the (super)cell."""
    cell = at.cell.array
    p = frac_xy[0] * cell[0] + frac_xy[1] * cell[1] + [0, 0, z]
    at = at.copy()
    at += Atoms("Li", positions=[p])
    return at


def lic6():
    """Stage-I LiC6: AA carbon, Li above hexagon centres, 7 atoms."""
    base = carbon_layers("A", [0.0], A_LIC6 / np.sqrt(3), C_LIC6)
    sc = sqrt3_supercell(base)
    # hollow of the primitive A layer at (2/3,1/3)_prim -> in the sqrt3 cell
    # the hexagon centre not occupied by C; find it numerically
    return add_li(sc, _free_hollow(sc), C_LIC6 / 2)


def _free_hollow(sc):
    """Fractional in-plane coordinates of a hexagon centre of an A layer in a
    supercell (point farthest from all C atoms on a fine grid)."""
    cell = sc.cell.array
    best, bestd = None, -1.0
    C = sc.positions[sc.numbers == 6][:, :2]
    for fa in np.arange(0, 1, 1 / 24):
        for fb in np.arange(0, 1, 1 / 24):
            p = (fa * cell[0] + fb * cell[1])[:2]
            d = np.inf
            for da in (-1, 0, 1):
                for db in (-1, 0, 1):
                    sh = (da * cell[0] + db * cell[1])[:2]
                    d = min(d, np.min(np.linalg.norm(C + sh - p, axis=1)))
            if d > bestd + 1e-9:
                best, bestd = (fa, fb), d
    return best


def lic12():
    """Stage-II LiC12: AA carbon layers, Li in every second gallery."""
    d_li = 3.70  # Li gallery; the empty gallery is C_LIC12 - 3.70
    base = carbon_layers("AA", [0.0, d_li], A_LIC6 / np.sqrt(3), C_LIC12)
    sc = sqrt3_supercell(base)
    return add_li(sc, _free_hollow(sc), d_li / 2)


def li_bcc(n=1):
    a = A_LI_BCC
    at = Atoms("Li2", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=[a, a, a], pbc=True)
    return at.repeat((n, n, n)) if n > 1 else at


def li_bcc_prim():
    a = A_LI_BCC
    cell = 0.5 * a * np.array([[-1, 1, 1], [1, -1, 1], [1, 1, -1]])
    return Atoms("Li", positions=[[0, 0, 0]], cell=cell, pbc=True)


def set_kmesh(at):
    """k-mesh of the unstrained parent cell (kept for strained copies)."""
    from cp2k_setup import kpoint_mesh

    if "kmesh" not in at.info:
        at.info["kmesh"] = " ".join(str(n) for n in kpoint_mesh(at))
    return at


# --------------------------------------------------------------- perturbing
def perturb(at, rng, inplane=0.03, along_c=0.08, shear=0.01, rattle=(0.03, 0.1), iso=None):
    """Random homogeneous strain + Gaussian rattle.  For slabs (vacuum along
    z) only the in-plane cell is strained and the z-coordinates are kept."""
    at = at.copy()
    set_kmesh(at)
    eps = np.zeros((3, 3))
    if iso is not None:  # e.g. bcc Li: isotropic + shear
        eps += np.eye(3) * rng.uniform(-iso, iso)
        off = rng.uniform(-shear, shear, 3)
        eps[0, 1] = eps[1, 0] = off[0]
        eps[0, 2] = eps[2, 0] = off[1]
        eps[1, 2] = eps[2, 1] = off[2]
    else:
        eps[0, 0] = rng.uniform(-inplane, inplane)
        eps[1, 1] = rng.uniform(-inplane, inplane)
        eps[0, 1] = eps[1, 0] = rng.uniform(-shear, shear)
        if "vacuum_axis" not in at.info:
            eps[2, 2] = rng.uniform(-along_c, along_c)
    F = np.eye(3) + eps
    if "vacuum_axis" in at.info:
        z = at.positions[:, 2].copy()
        at.set_cell(at.cell.array @ F, scale_atoms=True)
        at.positions[:, 2] = z
        cell = at.cell.array.copy()
        cell[2] = [0, 0, at.cell.array[2, 2]]
        at.set_cell(cell, scale_atoms=False)
    else:
        at.set_cell(at.cell.array @ F, scale_atoms=True)
    if rattle:
        if len(at) <= 4:
            # in 1-4 atom cells a displacement moves a whole sublattice
            # coherently; 0.1 A there gives C-C bonds of 1.1 A and 15 eV/A
            rattle = (0.02, 0.05)
        sigma = rng.uniform(*rattle)
        at.positions += rng.normal(0.0, sigma, at.positions.shape)
        at.info["rattle_sigma"] = round(float(sigma), 4)
    at.info["strain"] = np.round(eps, 5).ravel().tolist()
    at.wrap()
    return at


def scale_gap(at, dz):
    """Change the interlayer distance of a bilayer slab by dz (upper half of
    the atoms moves up)."""
    at = at.copy()
    zc = at.cell.array[2, 2] / 2
    up = at.positions[:, 2] > zc + 0.01
    at.positions[up, 2] += dz
    return at


# ----------------------------------------------------------------- families
def fam_graphite_ab(rng):
    out = [("graphite_AB", graphite("AB"))]
    g = graphite("AB")
    for i in range(30):
        base = g.repeat((2, 2, 1)) if i % 3 == 2 else g
        out.append(("graphite_AB", perturb(base, rng)))
    return out


def fam_graphite_c_scan(rng):
    """Interlayer binding curve of AB graphite and LiC6 (no rattle)."""
    out = []
    for s in (0.88, 1.0, 1.15, 0.94, 1.3, 1.06, 1.5, 0.91, 1.1, 1.22, 0.97, 1.03, 1.8):
        g = set_kmesh(graphite("AB"))
        g.set_cell(g.cell.array @ np.diag([1, 1, s]), scale_atoms=True)
        g.info["c_scale"] = s
        out.append(("graphite_AB_cscan", g))
    for s in (0.9, 1.1, 0.95, 1.05, 1.2):
        g = set_kmesh(lic6())
        g.set_cell(g.cell.array @ np.diag([1, 1, s]), scale_atoms=True)
        g.info["c_scale"] = s
        out.append(("LiC6_cscan", g))
    return out


def fam_graphite_aa(rng):
    out = [("graphite_AA", graphite("AA"))]
    g = graphite("AA")
    for i in range(20):
        base = g.repeat((2, 2, 2)) if i % 2 else g.repeat((1, 1, 2))
        out.append(("graphite_AA", perturb(base, rng)))
    return out


def fam_graphene(rng):
    out = [("graphene", graphene())]
    g = graphene()
    for i in range(22):
        base = [g, g.repeat((2, 2, 1)), g.repeat((3, 3, 1))][i % 3]
        out.append(("graphene", perturb(base, rng)))
    return out


def fam_bilayer(rng):
    out = [("bilayer_graphene", bilayer("AB")), ("bilayer_graphene", bilayer("AA", 3.55))]
    for i in range(24):
        st = "AB" if i % 3 else "AA"
        b = bilayer(st, 3.35 if st == "AB" else 3.55)
        b = scale_gap(b, rng.uniform(-0.08, 0.08) * 3.4)
        base = b.repeat((2, 2, 1)) if i % 2 else b
        out.append(("bilayer_graphene", perturb(base, rng)))
    return out


def fam_li_bcc(rng):
    out = [("Li_bcc", li_bcc()), ("Li_bcc", li_bcc_prim())]
    for i in range(30):
        base = [li_bcc(), li_bcc(2), li_bcc_prim().repeat((3, 3, 3)), li_bcc_prim()][i % 4]
        rat = (0.0, 0.0) if len(base) == 1 else (0.03, 0.15)
        out.append(("Li_bcc", perturb(base, rng, iso=0.05, shear=0.02, rattle=rat if rat[1] > 0 else None)))
    return out


def fam_lic6(rng):
    out = [("LiC6", lic6())]
    for i in range(36):
        base = lic6()
        if i % 3 == 1:
            base = base.repeat((1, 1, 2))  # 14 atoms
        elif i % 3 == 2:
            base = base.repeat((2, 2, 1))  # 28 atoms
        out.append(("LiC6", perturb(base, rng)))
    return out


def fam_lic12(rng):
    out = [("LiC12", lic12())]
    for i in range(30):
        base = lic12()
        if i % 3 == 2:
            base = base.repeat((2, 1, 1))  # 26 atoms
        out.append(("LiC12", perturb(base, rng)))
    return out


def dilute_cells():
    """Dilute Li_xC_(1-x) in AA or AB graphite, Li in a hollow site."""
    cells = []
    # LiC8: 2x2 AA single-layer cell (9 atoms), x = 1/9
    g = carbon_layers("A", [0.0], A_GRAPHITE, C_LIC6).repeat((2, 2, 1))
    cells.append(("LiC8", add_li(g, _free_hollow(g), C_LIC6 / 2)))
    # LiC18: 3x3 AA single-layer cell (19 atoms)
    g = carbon_layers("A", [0.0], A_GRAPHITE, C_LIC6).repeat((3, 3, 1))
    cells.append(("LiC18", add_li(g, _free_hollow(g), C_LIC6 / 2)))
    # LiC24: 2sqrt3 x 2sqrt3 AA single-layer cell (25 atoms), most dilute
    g = sqrt3_supercell(carbon_layers("A", [0.0], A_GRAPHITE, C_LIC6))
    g = g.repeat((2, 2, 1))
    cells.append(("LiC24", add_li(g, _free_hollow(g), C_LIC6 / 2)))
    # LiC24 (stage-II-like, 3 layers): 2x2 cell, stacking A Li A B, i.e. the
    # Li gallery is AA (3.70 A) and the two empty galleries AB (3.35 A); 25 at.
    c = 3.70 + 2 * 3.35
    g = carbon_layers("AAB", [0.0, 3.70, 7.05], A_GRAPHITE, c)
    g = g.repeat((2, 2, 1))
    lay = carbon_layers("A", [0.0], A_GRAPHITE, c).repeat((2, 2, 1))
    cells.append(("LiC24_AAB", add_li(g, _free_hollow(lay), 1.85)))
    # LiC16: 2x2 AA graphite with two galleries, Li in one of them (17 at.)
    c = 2 * 3.55
    g = carbon_layers("AA", [0.0, 3.55], A_GRAPHITE, c).repeat((2, 2, 1))
    cells.append(("LiC16_AA", add_li(g, _free_hollow(g), 1.775)))
    return cells


def fam_dilute(rng):
    cells = dilute_cells()
    out = [("LixC_dilute_" + n, a) for n, a in cells]
    for i in range(45):
        n, a = cells[i % len(cells)]
        out.append(("LixC_dilute_" + n, perturb(a, rng)))
    return out


def fam_bilayer_li(rng):
    """Li intercalated between / adsorbed on bilayer graphene."""
    cells = []
    # C6LiC6: sqrt3 AA bilayer, Li between (13 atoms)
    b = sqrt3_supercell(bilayer("AA", 3.70))
    z0 = VAC_BILAYER / 2
    cells.append(("between_sqrt3", add_li(b, _free_hollow(b), z0)))
    # 2x2 AA bilayer, Li between (17 atoms)
    b = bilayer("AA", 3.60).repeat((2, 2, 1))
    cells.append(("between_2x2", add_li(b, _free_hollow(b), z0)))
    # 2x2 AB bilayer, Li adsorbed on top (1.75 A above the top layer)
    b = bilayer("AB", 3.35).repeat((2, 2, 1))
    top = b.positions[:, 2].max()
    sub = b.copy()
    del sub[[i for i in range(len(sub)) if sub.positions[i, 2] < top - 0.1]]
    cells.append(("ontop_2x2", add_li(b, _free_hollow(sub), top + 1.75)))
    # sqrt3 AA bilayer with Li between and Li on top (14 atoms)
    b = sqrt3_supercell(bilayer("AA", 3.70))
    h = _free_hollow(b)
    b = add_li(b, h, z0)
    cells.append(("between_ontop_sqrt3", add_li(b, h, z0 + 1.85 + 1.75)))
    out = [("bilayer_Li_" + n, a) for n, a in cells]
    for i in range(36):
        n, a = cells[i % len(cells)]
        out.append(("bilayer_Li_" + n, perturb(a, rng)))
    return out


FAMILIES = [
    fam_lic6,
    fam_graphite_ab,
    fam_li_bcc,
    fam_dilute,
    fam_lic12,
    fam_bilayer_li,
    fam_graphene,
    fam_graphite_aa,
    fam_bilayer,
    fam_graphite_c_scan,
]


def geometry_hash(at):
    h = hashlib.sha1()
    h.update(np.asarray(at.numbers, dtype=np.int64).tobytes())
    h.update(np.round(at.cell.array, 5).tobytes())
    h.update(np.round(at.positions, 5).tobytes())
    return "h" + h.hexdigest()[:12]  # prefix: never parsed as a number


def generate_structures(seed=SEED):
    per_family = []
    for k, fam in enumerate(FAMILIES):
        rng = np.random.default_rng([seed, k])  # independent stream/family
        items = []
        for j, (ctype, at) in enumerate(fam(rng)):
            at = set_kmesh(at.copy())
            at.info["config_type"] = ctype
            at.info["structure_id"] = f"{fam.__name__[4:]}_{j:03d}"
            at.info["structure_hash"] = geometry_hash(at)
            at.info["family"] = fam.__name__[4:]
            assert len(at) <= MAX_ATOMS, (ctype, len(at))
            items.append(at)
        per_family.append(items)
    out = []
    for i in range(max(len(x) for x in per_family)):
        for items in per_family:
            if i < len(items):
                out.append(items[i])
    return out


def min_distance(at):
    from ase.neighborlist import neighbor_list

    d = neighbor_list("d", at, 2.5)
    return d.min() if len(d) else np.inf


if __name__ == "__main__":
    from collections import Counter

    structs = generate_structures()
    fam = Counter(a.info["family"] for a in structs)
    ct = Counter(a.info["config_type"] for a in structs)
    print(f"{len(structs)} structures, max atoms {max(len(a) for a in structs)}")
    for k, v in fam.items():
        print(f"  family {k:20s} {v}")
    for k, v in sorted(ct.items()):
        print(f"  config_type {k:35s} {v}")
    if "-v" in sys.argv:
        for a in structs:
            print(a.info["structure_id"], a.get_chemical_formula(), len(a), f"dmin={min_distance(a):.2f}")
