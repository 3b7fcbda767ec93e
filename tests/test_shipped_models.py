"""Every shipped model loads by name from any directory and reproduces the values recorded at export."""

import json
from pathlib import Path

import ase.io
import numpy as np
import pytest

from attnmace import AttnMACECalculator, shipped_models

FIXTURES = Path(__file__).parent / "fixtures"
REFERENCES = sorted(FIXTURES.glob("*_reference.json"))


def test_every_shipped_model_has_reference_values():
    recorded = {json.loads(p.read_text())["model"] for p in REFERENCES}
    assert set(shipped_models()) <= recorded, "run examples/ship_model.py for each model in models/"


@pytest.mark.parametrize("reference", REFERENCES, ids=[p.stem for p in REFERENCES])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_shipped_model_reproduces_export_values(reference, dtype, tmp_path, monkeypatch):
    ref = json.loads(reference.read_text())
    monkeypatch.chdir(tmp_path)  # by name, from a directory without model files
    calc = AttnMACECalculator(ref["model"], device="cpu", dtype=dtype)
    fixture = Path(__file__).parents[1] / ref["fixture"]
    tol = {"float64": (1e-9, 1e-8), "float32": (2e-5, 2e-3)}[dtype]  # (relative energy, eV/Å)
    for frame in ref["frames"]:
        atoms = ase.io.read(fixture, index=frame["index"])
        atoms.calc = calc
        assert atoms.get_chemical_formula() == frame["formula"]
        assert atoms.get_potential_energy() == pytest.approx(frame["energy"], rel=tol[0])
        np.testing.assert_allclose(atoms.get_forces(), frame["forces"], rtol=0, atol=tol[1])


def test_descriptors_of_a_shipped_model_and_its_older_torchscript_module():
    """The shipped files were exported before descriptors existed: the default (eager) calculator
    gives them, and the file's own TorchScript module says why it cannot."""
    atoms = ase.io.read(Path(__file__).parent / "fixtures" / "gap20_small.extxyz", index=0)
    calc = AttnMACECalculator("gap20.pt", device="cpu")
    descriptors = calc.get_descriptors(atoms)
    assert descriptors.shape == (len(atoms), 32) and np.isfinite(descriptors).all()
    with pytest.raises(ValueError, match="exported by an older attnmace"):
        AttnMACECalculator("gap20.pt", device="cpu", torchscript=True).get_descriptors(atoms)
