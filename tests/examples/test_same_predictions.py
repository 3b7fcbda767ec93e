"""examples/same_predictions.py: finds no difference where there is none, and one where there is."""

import json
import sys
from pathlib import Path

from helpers import tiny_model

from attnmace import export_model
from attnmace.model import with_inner_cutoffs

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))

import same_predictions  # noqa: E402

FIXTURE = Path(__file__).parents[1] / "fixtures" / "gap20_small.extxyz"


def test_inner_cutoffs_below_the_data_change_nothing_and_above_it_do(tmp_path):
    model = tiny_model()
    plain = export_model(model, tmp_path / "plain.pt")
    below = export_model(with_inner_cutoffs(model, model.config, [[1.0]]), tmp_path / "below.pt")
    above = export_model(with_inner_cutoffs(model, model.config, [[1.4]]), tmp_path / "above.pt")
    same_predictions.main([str(plain), str(below), str(FIXTURE), "--closest", "3", "--json", str(tmp_path / "s.json")])
    row = json.loads((tmp_path / "s.json").read_text())["results"][0]
    assert 1.0 < row["shortest_distance_A"] < 1.4 and row["frames"] >= 10
    assert row["max_energy_difference_eV"] < 1e-10 and row["max_force_difference_eV_per_A"] < 1e-10
    same_predictions.main([str(plain), str(above), str(FIXTURE), "--closest", "3", "--json", str(tmp_path / "a.json")])
    row = json.loads((tmp_path / "a.json").read_text())["results"][0]
    assert row["max_force_difference_eV_per_A"] > 1e-3
