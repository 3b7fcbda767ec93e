"""examples/ship_model.py: ship an exported model.pt, or the EMA weights of a training checkpoint.pt."""

import json
import sys
from pathlib import Path

import ase.io
import pytest
import torch
from helpers import diamond, tiny_model

from attnmace import AttnMACECalculator, export_model, read_metadata

sys.path.insert(0, str(Path(__file__).parents[2] / "examples"))

import ship_model  # noqa: E402


def _trained_file(kind: str, folder: Path) -> Path:
    """``model.pt`` as the trainer exports it, or a ``checkpoint.pt`` whose EMA weights are
    ``tiny_model()``'s and whose raw weights differ from them."""
    model = tiny_model()
    if kind == "model.pt":
        return export_model(model, folder / "model.pt", extra={"epoch": 3})
    ema = model.state_dict()
    raw = {k: v + 0.01 if v.is_floating_point() else v for k, v in ema.items()}
    state = {
        "model_config": model.config.to_dict(),
        "model": raw,
        "ema": ema,
        "epoch": 3,
        "history": [{"epoch": 3, "valid_forces_rmse_meV_per_A": 123.0}],
        "settings": {"extra": {"n_train": 10}},
    }
    torch.save(state, folder / "checkpoint.pt")
    return folder / "checkpoint.pt"


@pytest.mark.parametrize("kind", ["model.pt", "checkpoint.pt"])
def test_ships_the_trained_weights_with_card_and_fixture_values(tmp_path, monkeypatch, kind):
    trained = _trained_file(kind, tmp_path)
    fixture = tmp_path / "frames.extxyz"
    ase.io.write(fixture, [diamond(seed=1), diamond(seed=2)])
    card = tmp_path / "card.json"
    card.write_text(json.dumps({"licence": "CC BY 4.0"}))
    (tmp_path / "tests" / "fixtures").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)  # the script writes tests/fixtures/<name>_reference.json
    ship_model.main(
        [str(trained), str(tmp_path / "tiny.pt"), "--card", str(card), "--fixture", str(fixture), "--frames", "0,1"]
    )
    extra = read_metadata(tmp_path / "tiny.pt")["extra"]
    assert extra["epoch"] == 3 and extra["card"] == {"licence": "CC BY 4.0"}
    reference = json.loads((tmp_path / "tests" / "fixtures" / "tiny_reference.json").read_text())
    expected = AttnMACECalculator(tiny_model(), device="cpu")
    for row, atoms in zip(reference["frames"], ase.io.read(fixture, index=":")):
        assert row["energy"] == pytest.approx(expected.get_potential_energy(atoms), abs=1e-9)
