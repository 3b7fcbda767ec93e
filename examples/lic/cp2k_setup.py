"""CP2K (PBE-D3(BJ)) settings shared by the Li-C labelling scripts.

All numerical settings live in SETTINGS so that label.py, converge.py and the
README/template stay in sync.  The calculator is ASE's CP2K shell interface.
"""

from __future__ import annotations

import math
import os

import numpy as np

CP2K_DATA_DIR = "/usr/share/cp2k"  # Debian package cp2k 2023.1 (cp2k-data)

SETTINGS = dict(
    xc="PBE",
    basis_set="DZVP-MOLOPT-SR-GTH",
    basis_set_file="BASIS_MOLOPT",
    pseudo_potential="GTH-PBE",  # Li: GTH-PBE-q3 (1s2s semicore), C: GTH-PBE-q4
    potential_file="GTH_POTENTIALS",
    cutoff_ry=500.0,  # MGRID CUTOFF (finest grid), Rydberg
    rel_cutoff_ry=50.0,  # MGRID REL_CUTOFF, Rydberg
    ngrids=4,
    smear_temperature_k=1000.0,  # Fermi-Dirac electronic temperature
    kspacing_length=25.0,  # n_i = smallest odd >= L*|b_i|-1 (b_i without 2*pi), Angstrom
    eps_scf=1.0e-6,
    eps_default=1.0e-12,
    max_scf=200,
    mixing_alpha=0.2,
    vdw="DFTD3(BJ)",
    vdw_reference_functional="PBE",
    vdw_r_cutoff_ang=15.0,
    functional="PBE-D3(BJ)",  # or "optB88-vdW" (xc_section)
)

#: optB88-vdW, the functional of the GAP-20 labels (VASP): optB88 exchange, LDA correlation and
#: the vdW-DF1 non-local correlation (DRSLL kernel), all written by xc_section (so ASE gets no
#: ``xc``). The GTH-PBE pseudopotentials and the basis stay; ``check_test_labels.py recompute``
#: compares it with the labels.
OPTB88_VDW = dict(SETTINGS, functional="optB88-vdW", xc=None, nonlocal_cutoff_ry=50.0)

#: the settings of each functional, by name
FUNCTIONALS = {"PBE-D3(BJ)": SETTINGS, "optB88-vdW": OPTB88_VDW}

# Valence electrons of the GTH-PBE pseudopotentials used.
ZVAL = {"Li": 3, "C": 4}


def kpoint_mesh(atoms, length=None):
    """Monkhorst-Pack mesh n_i = smallest odd integer >= L*|b_i| - 1, b_i reciprocal vectors
    without 2*pi.  Directions that are not periodic or that carry a vacuum
    (info['vacuum_axis']) get 1 k-point.  Meshes are odd, i.e. Gamma-centred
    (they then contain K of graphene for n % 3 == 0)."""
    if length is None and "kmesh" in atoms.info:
        # fixed by structures.py from the unstrained parent cell, so that
        # all strained copies of one cell use the same mesh
        km = atoms.info["kmesh"]  # "n1 n2 n3" (extxyz may read an array)
        if isinstance(km, str):
            km = km.split()
        return tuple(int(x) for x in np.ravel(km))
    L = SETTINGS["kspacing_length"] if length is None else length
    rec = np.linalg.norm(atoms.cell.reciprocal(), axis=1)
    # smallest odd integer >= L*|b_i| - 1
    mesh = [max(1, 2 * math.ceil((L * r - 2.0) / 2.0 - 1e-9) + 1) for r in rec]
    vac = atoms.info.get("vacuum_axis", None)
    for i in range(3):
        if not atoms.pbc[i] or (vac is not None and int(vac) == i):
            mesh[i] = 1
    return tuple(int(m) for m in mesh)


def n_added_mos(atoms):
    nel = sum(ZVAL[s] for s in atoms.get_chemical_symbols())
    nocc = (nel + 1) // 2
    return max(8, int(0.3 * nocc) + 4)


def xc_section(settings) -> str:
    """The template's &XC block for ``settings["functional"]``. For PBE-D3(BJ), ASE writes the
    XC_FUNCTIONAL itself (``xc=PBE``) and this block adds the D3 pair potential; for optB88-vdW
    the block holds the whole functional (its settings have ``xc=None``)."""
    s = settings
    functional = s.get("functional", "PBE-D3(BJ)")
    if functional == "PBE-D3(BJ)":
        return f"""    &XC
      &VDW_POTENTIAL
        POTENTIAL_TYPE PAIR_POTENTIAL
        &PAIR_POTENTIAL
          TYPE {s["vdw"]}
          PARAMETER_FILE_NAME dftd3.dat
          REFERENCE_FUNCTIONAL {s["vdw_reference_functional"]}
          R_CUTOFF [angstrom] {s["vdw_r_cutoff_ang"]:.1f}
        &END PAIR_POTENTIAL
      &END VDW_POTENTIAL
    &END XC
"""
    if functional == "optB88-vdW":
        return f"""    &XC
      &XC_FUNCTIONAL
        &GGA_X_OPTB88_VDW
        &END GGA_X_OPTB88_VDW
        &PW92
        &END PW92
      &END XC_FUNCTIONAL
      &VDW_POTENTIAL
        POTENTIAL_TYPE NON_LOCAL
        &NON_LOCAL
          TYPE DRSLL
          KERNEL_FILE_NAME vdW_kernel_table.dat
          CUTOFF [Ry] {s["nonlocal_cutoff_ry"]:.1f}
        &END NON_LOCAL
      &END VDW_POTENTIAL
    &END XC
"""
    raise ValueError(f"unknown functional {functional!r}: use 'PBE-D3(BJ)' or 'optB88-vdW'")


def build_template(kmesh, added_mos, rel_cutoff=None, temperature=None, settings=None):
    """CP2K input template (ASE adds coordinates, cell, KIND, XC functional,
    CUTOFF, MAX_SCF, STRESS_TENSOR)."""
    s = dict(SETTINGS if settings is None else settings)
    rel = s["rel_cutoff_ry"] if rel_cutoff is None else rel_cutoff
    temp = s["smear_temperature_k"] if temperature is None else temperature
    kp = ""
    if tuple(kmesh) != (1, 1, 1):
        kp = f"""    &KPOINTS
      SCHEME MONKHORST-PACK {kmesh[0]} {kmesh[1]} {kmesh[2]}
      SYMMETRY OFF
      FULL_GRID OFF
    &END KPOINTS
"""
    return f"""&GLOBAL
  EXTENDED_FFT_LENGTHS T
&END GLOBAL
&FORCE_EVAL
  &DFT
    &QS
      EPS_DEFAULT {s["eps_default"]:.1e}
      METHOD GPW
    &END QS
    &MGRID
      NGRIDS {s["ngrids"]}
      REL_CUTOFF [Ry] {rel:.1f}
    &END MGRID
{kp}    &SCF
      SCF_GUESS ATOMIC
      EPS_SCF {s["eps_scf"]:.1e}
      ADDED_MOS {added_mos}
      &DIAGONALIZATION ON
        ALGORITHM STANDARD
      &END DIAGONALIZATION
      &MIXING
        METHOD BROYDEN_MIXING
        ALPHA {s["mixing_alpha"]}
        NBROYDEN 8
      &END MIXING
      &SMEAR ON
        METHOD FERMI_DIRAC
        ELECTRONIC_TEMPERATURE [K] {temp:.1f}
      &END SMEAR
      &PRINT
        &RESTART OFF
        &END RESTART
      &END PRINT
    &END SCF
{xc_section(s)}  &END DFT
&END FORCE_EVAL
"""


def make_calc(atoms, label, cutoff_ry=None, rel_cutoff=None, temperature=None, kmesh=None, settings=None):
    """Return an ASE CP2K calculator for `atoms` (one serial CP2K shell)."""
    from ase.calculators.cp2k import CP2K
    from ase.units import Rydberg

    s = dict(SETTINGS if settings is None else settings)
    os.environ.setdefault("CP2K_DATA_DIR", CP2K_DATA_DIR)
    os.environ["OMP_NUM_THREADS"] = "1"
    if kmesh is None:
        kmesh = kpoint_mesh(atoms)
    inp = build_template(kmesh, n_added_mos(atoms), rel_cutoff=rel_cutoff, temperature=temperature, settings=s)
    cut = s["cutoff_ry"] if cutoff_ry is None else cutoff_ry
    # Debian ships only the MPI+OpenMP binary (cp2k.psmp); launched without
    # mpirun it runs as a single MPI rank, with 1 OpenMP thread -> 1 core.
    command = (
        "env OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "
        "OMPI_MCA_btl=self OMPI_MCA_hwloc_base_binding_policy=none "
        "cp2k.psmp -s"
    )
    calc = CP2K(
        label=label,
        command=command,
        xc=s["xc"],
        basis_set=s["basis_set"],
        basis_set_file=s["basis_set_file"],
        pseudo_potential=s["pseudo_potential"],
        potential_file=s["potential_file"],
        cutoff=cut * Rydberg,
        max_scf=s["max_scf"],
        stress_tensor=True,
        print_level="LOW",
        inp=inp,
    )
    return calc


def scf_converged(outfile):
    """Parse a CP2K output: True if no 'SCF run NOT converged' warning."""
    try:
        with open(outfile, errors="replace") as fh:
            txt = fh.read()
    except OSError:
        return False
    return "NOT converged" not in txt and "SCF run converged" in txt
