"""The GAP-20 recipe and example scripts (examples/gap20) on synthetic data and a tiny model."""

import importlib.util
import json
import sys
from pathlib import Path

import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from helpers import tiny_model

from attnmace import AttnMACECalculator, export_model

GAP20 = Path(__file__).parents[2] / "examples" / "gap20"
sys.path.insert(0, str(GAP20))  # the scripts import each other from their folder

import attention_pattern  # noqa: E402
import average_weights  # noqa: E402
import bilayer  # noqa: E402
import check_energies  # noqa: E402
import check_kpoints  # noqa: E402
import check_test_labels  # noqa: E402
import check_virial  # noqa: E402
import committee  # noqa: E402
import compare  # noqa: E402
import coverage  # noqa: E402
import diamond_graphite  # noqa: E402
import errors_by_width  # noqa: E402
import graphite  # noqa: E402
import hot_md  # noqa: E402
import logit_cap  # noqa: E402
import nve_amorphous  # noqa: E402
import prepare  # noqa: E402
import short_range  # noqa: E402

# by path and under its own name: examples/lic has a card.py too
_spec = importlib.util.spec_from_file_location("gap20_card", GAP20 / "card.py")
card = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(card)


def _frame(energy_per_atom, config_type, n=2):
    atoms = Atoms(f"C{n}", positions=np.arange(3 * n).reshape(n, 3), cell=np.eye(3) * 10, pbc=True)
    atoms.info.update(REF_energy=energy_per_atom * n, config_type=config_type)
    return atoms


def test_split_drops_faulty_frames_and_is_stratified():
    frames = [_frame(-9.0, "A") for _ in range(40)] + [_frame(-8.0, "B") for _ in range(20)]
    frames.insert(7, _frame(-13.03, "Nanotubes"))
    parts = prepare.split(frames, fraction=0.1, seed=0)
    assert list(parts["dropped"]) == ["7"] and "faulty" in parts["dropped"]["7"]
    assert sorted(parts["train"] + parts["valid"]) == [i for i in range(len(frames)) if i != 7]
    valid_types = [frames[i].info["config_type"] for i in parts["valid"]]
    assert valid_types.count("A") == 4 and valid_types.count("B") == 2
    assert prepare.split(frames, fraction=0.1, seed=0) == parts  # fixed seed: the same split


def test_split_drops_cells_too_narrow_for_converged_kpoints():
    wide = _frame(-9.0, "A")
    narrow = bulk("C", "diamond", a=3.57, cubic=True)  # 3.57 A wide
    narrow.info.update(REF_energy=-8.0 * len(narrow), config_type="Diamond")
    slanted = wide.copy()
    slanted.cell = [[10, 0, 0], [9.9, 1.0, 0], [0, 0, 10]]  # long vectors, but only 1 A wide
    slab = wide.copy()
    slab.pbc = [True, True, False]
    slab.cell = [[8, 0, 0], [0, 8, 0], [0, 0, 2]]  # narrow only along the non-periodic axis
    assert prepare.cell_width(narrow) == pytest.approx(3.57)
    assert prepare.cell_width(slanted) == pytest.approx(1.0)
    assert prepare.cell_width(slab) == pytest.approx(8.0)
    frames = [wide.copy() for _ in range(10)] + [narrow, slanted, slab]
    parts = prepare.split(frames, fraction=0.1, seed=0)
    assert sorted(parts["dropped"]) == ["10", "11"]
    assert all("k-point" in why for why in parts["dropped"].values())


def test_dimer_frames_are_dropped_and_config_weights_are_written(tmp_path, monkeypatch):
    frames = [_frame(-9.0, "A") for _ in range(20)] + [_frame(-8.0, "B") for _ in range(20)]
    frames += [_frame(-1.0, "Dimer") for _ in range(3)]
    (tmp_path / "in").mkdir()
    ase.io.write(tmp_path / "in" / "gap20_subset_train.extxyz", frames)
    monkeypatch.setattr(prepare, "CONFIG_WEIGHTS", {"B": 0.1})
    prepare.main([str(tmp_path / "in"), "--output", str(tmp_path / "out")])
    written = ase.io.read(tmp_path / "out" / "train.extxyz", ":") + ase.io.read(tmp_path / "out" / "valid.extxyz", ":")
    weights = {a.info["config_type"]: set() for a in written}
    for a in written:
        weights[a.info["config_type"]].add(a.info["config_weight"])
    assert weights == {"A": {1.0}, "B": {0.1}}  # no Dimer left
    dropped = json.loads((tmp_path / "out" / "split.json").read_text())["dropped"]
    assert sorted(dropped) == ["40", "41", "42"] and all("twice E0" in why for why in dropped.values())
    assert "config_weight" not in frames[0].info  # the input frames are not modified


def test_train_min_width_leaves_narrow_training_frames_out_and_keeps_the_split(tmp_path, capsys):
    frames = [_frame(-9.0, "A") for _ in range(20)] + [_frame(-8.0, "B") for _ in range(20)]
    for i in range(0, 40, 3):  # 7 A wide: kept by the recipe, left out by --train-min-width 8
        frames[i].cell = np.eye(3) * 7.0
    (tmp_path / "in").mkdir()
    ase.io.write(tmp_path / "in" / "gap20_subset_train.extxyz", frames)
    prepare.main([str(tmp_path / "in"), "--output", str(tmp_path / "recipe")])
    prepare.main([str(tmp_path / "in"), "--output", str(tmp_path / "wide"), "--train-min-width", "8"])
    recipe = json.loads((tmp_path / "recipe" / "split.json").read_text())
    wide = json.loads((tmp_path / "wide" / "split.json").read_text())
    assert wide["valid"] == recipe["valid"]  # the same validation frames, so runs compare
    assert (tmp_path / "wide" / "valid.extxyz").read_bytes() == (tmp_path / "recipe" / "valid.extxyz").read_bytes()
    narrow = [i for i in recipe["train"] if frames[i].cell[0, 0] < 8]
    assert narrow and wide["train_narrow"] == narrow and wide["train_min_width"] == 8.0
    assert wide["train"] == [i for i in recipe["train"] if i not in narrow]
    written = ase.io.read(tmp_path / "wide" / "train.extxyz", ":")
    assert len(written) == len(wide["train"]) and all(prepare.cell_width(a) >= 8 for a in written)
    with pytest.raises(SystemExit):  # below the recipe's own screen it would change nothing
        prepare.main([str(tmp_path / "in"), "--output", str(tmp_path / "x"), "--train-min-width", "5"])
    assert "--train-min-width must exceed the recipe's 6.0 Å, got 5.0" in capsys.readouterr().err


def test_shipped_split_file_matches_the_recipe_settings():
    parts = json.loads((GAP20 / "split.json").read_text())
    assert parts["seed"] == prepare.SEED and parts["valid_fraction"] == prepare.VALID_FRACTION
    assert not set(parts["train"]) & set(parts["valid"]) and not set(parts["dropped"]) & set(parts["train"])
    reasons = [why.split(": ")[-1] for why in parts["dropped"].values()]
    assert reasons.count("faulty label") == 3
    assert reasons.count(prepare.DROPPED_TYPES["Dimer"]) == 23
    assert reasons.count("k-point sampling not converged") == len(reasons) - 26


def _diamond_frames(rng, repeat, n, energy_per_feature, offset=0.0):
    frames = []
    for _ in range(n):
        atoms = bulk("C", "diamond", a=3.57 * rng.uniform(0.97, 1.03), cubic=True).repeat(repeat)
        atoms.rattle(0.05, seed=int(rng.integers(1 << 30)))
        energy = check_energies.radial_features(atoms) @ energy_per_feature + offset * len(atoms)
        atoms.info.update(REF_energy=energy, config_type="Diamond")
        frames.append(atoms)
    return frames


def test_energy_consistency_check_finds_an_offset_in_small_cells():
    rng = np.random.default_rng(0)
    w = rng.normal(size=len(check_energies.CENTRES) * 2 + 1) * 0.01
    wide = _diamond_frames(rng, 2, 30, w)  # 7.1 A wide
    small_ok = _diamond_frames(rng, 1, 5, w)
    small_bad = _diamond_frames(rng, 1, 5, w, offset=2.0)  # the Gamma-point error of such cells
    residual, widths, reference, _, (again,) = check_energies.consistency(
        wide + small_ok + small_bad, reference_width=6.5, others=[small_bad]
    )
    np.testing.assert_allclose(again, residual[35:])
    assert reference[:30].all() and not reference[30:].any()
    np.testing.assert_allclose(residual[:30], 0.0, atol=1e-6)  # the reference is fitted exactly
    np.testing.assert_allclose(residual[30:35], 0.0, atol=0.15)  # small cells: a short extrapolation
    np.testing.assert_allclose(residual[35:], 2.0, atol=0.15)
    rows = check_energies.table(residual, widths)
    assert sum(r["frames"] for r in rows) == 40
    narrow = [r for r in rows if r["width_max"] <= 4.0]
    assert len(narrow) == 1 and narrow[0]["frames"] == 10 and narrow[0]["p90"] > 1.8
    assert all(abs(r["p50"]) < 0.05 for r in rows if r["width_min"] >= 6.0)


def test_kpoint_check_picks_a_relaxed_frame_and_the_wide_cell_reference():
    frames = []
    for e, fmax, n, width in [(-7.3, 0.1, 4, 2.5), (-7.4, 2.0, 4, 2.5), (-7.2, 0.2, 4, 2.5), (-10.5, 0.1, 8, 9.0)]:
        atoms = Atoms(f"C{n}", positions=np.zeros((n, 3)), cell=np.eye(3) * width, pbc=True)
        atoms.info.update(REF_energy=e * n, config_type="Graphite")
        atoms.arrays["REF_forces"] = np.full((n, 3), fmax)
        frames.append(atoms)
    assert check_kpoints.pick(frames, "Graphite", 4) == 0  # frame 1 is lower but has large forces
    assert check_kpoints.large_cell_energy(frames, "Graphite") == pytest.approx(-10.5)


def test_virial_check_recovers_pressure_of_consistent_data():
    """On data whose virials are right, the E(V) slope and the virial pressure agree."""
    frames = []
    for v in np.linspace(4.5, 6.5, 15):  # E/N = (V/N - 5.5)^2  =>  P = -2 (V/N - 5.5)
        a = (2 * v) ** (1 / 3)
        atoms = Atoms("C2", positions=[[0, 0, 0], [a / 2] * 3], cell=np.eye(3) * a, pbc=True)
        p = -2 * (v - 5.5)
        atoms.info.update(REF_energy=2 * (v - 5.5) ** 2, REF_virial=(p * atoms.get_volume() * np.eye(3)).tolist())
        frames.append(atoms)
    _, p_fit, p_virial = check_virial.pressures(frames)
    np.testing.assert_allclose(p_fit, p_virial, rtol=1e-6, atol=1e-6)


def test_defected_graphite_centre_has_two_neighbours():
    atoms, centre = attention_pattern.defected_graphite(n=4)
    assert len(atoms) == 2 * 2 * 16 - 1
    d = atoms.get_distances(centre, range(len(atoms)), mic=True)
    assert np.sum((d > 0.1) & (d < 1.6)) == 2  # an under-coordinated atom next to the vacancy


def test_attention_pattern_and_shells():
    atoms, centre = attention_pattern.defected_graphite(n=4)
    calc = AttnMACECalculator(tiny_model(2, cutoffs=(2.2, 3.0)), device="cpu")
    layers = attention_pattern.pattern(calc, atoms, centre)
    assert len(layers) == 2
    for dist, weights in layers:
        assert np.all(np.diff(dist) >= 0)
        np.testing.assert_allclose(weights.sum(axis=0), 1.0, rtol=1e-10)
        first, second = attention_pattern.shells(dist, weights)
        assert np.all(first + second <= 1.0 + 1e-12)


def test_graphite_builder_and_parameters():
    atoms = graphite.ab_graphite(a=2.5, c=6.8)
    got = graphite.graphite_parameters(atoms)
    assert got == pytest.approx({"a": 2.5, "c": 6.8, "spacing": 3.4})
    d = atoms.get_all_distances(mic=True)
    assert d[d > 0].min() == pytest.approx(2.5 / np.sqrt(3))  # the C-C bond of the sheet


def test_relax_and_energy_difference_run_on_a_tiny_model():
    calc = AttnMACECalculator(tiny_model(2, cutoffs=(2.2, 3.0)), device="cpu")
    relaxed = graphite.relax(graphite.ab_graphite(), calc, fmax=0.5, steps=3)
    assert len(relaxed) == 4 and np.isfinite(relaxed.get_potential_energy())
    de, a_diamond, params = diamond_graphite.energy_difference(calc, fmax=10.0)
    assert np.isfinite(de) and 3.0 < a_diamond < 4.2 and params["a"] > 2.0


def test_random_carbon_density_and_spacing():
    atoms = nve_amorphous.random_carbon(n=32, density=2.4, min_distance=1.35, seed=3)
    density = atoms.get_masses().sum() / atoms.get_volume() * 1.66054
    assert density == pytest.approx(2.4, rel=1e-3)
    d = atoms.get_all_distances(mic=True)
    assert d[np.triu_indices(len(atoms), 1)].min() >= 1.35
    with pytest.raises(RuntimeError, match="could not place"):
        nve_amorphous.random_carbon(n=32, density=6.0, min_distance=1.6)


def test_comparison_table_and_budget(tmp_path):
    (tmp_path / "metrics.csv").write_text("epoch,seconds,valid_loss\n1,1800,2.0\n2,1800,3.0\n")
    (tmp_path / "config.yaml").write_text("max_steps_per_epoch: 100\nbatch_size: 4\n")
    budget = compare.budget(tmp_path)
    assert budget["epochs"] == 2 and budget["steps"] == 200 and budget["hours"] == pytest.approx(1.0)
    assert budget["best_epoch"] == 1
    block = {
        "energy_rmse_meV_per_atom": 10.0,
        "energy_mean_error_meV_per_atom": -4.0,
        "forces_rmse_meV_per_A": 300.0,
        "n_frames": 3,
    }
    result = {
        "preset": "attention",
        "parameters": 84544,
        "valid": {"overall": block, "per_config_type": {"Graphite": block}},
        "test": {"overall": block, "per_cell_size": {"64": block}},
        "budget": budget,
    }
    text = compare.table({"attention": result})
    assert "| attention | 84,544 | 10.0 | 300 |" in text and "163K" in text and "| Graphite | 3 |" in text
    assert "(model of epoch 1)" in text and "| 64 | 3 | 300 / 10.0 / -4.0 |" in text


def test_compare_evaluates_best_and_last_weights_of_a_run(tmp_path):
    from attnmace.train.cli import export_main, train_main

    fixture = Path(__file__).parents[1] / "fixtures" / "gap20_small.extxyz"
    frames = [a for a in ase.io.read(fixture, ":") if len(a) > 1]
    (tmp_path / "data").mkdir()
    ase.io.write(tmp_path / "data" / "valid.extxyz", frames[:6])
    ase.io.write(tmp_path / "data" / "gap20_amorphous_test.extxyz", frames[6:12])
    ase.io.write(tmp_path / "data" / "train.extxyz", frames[12:40])
    run = tmp_path / "run"
    tiny = ["--channels", "4", "--heads", "2", "--max-l", "1", "--sh-max-l", "1", "--correlation", "2"]
    tiny += ["--radial-mlp", "8", "--num-radial", "4", "--attn-channels", "2", "--cutoffs", "2.5,3.5"]
    data = [
        "--train-file",
        str(tmp_path / "data" / "train.extxyz"),
        "--valid-file",
        str(tmp_path / "data" / "valid.extxyz"),
    ]
    train_main(
        [*tiny, *data, "--max-epochs", "2", "--batch-size", "8", "--device", "cpu", "--output-dir", str(run)]
        + ["--snapshot-every", "1"]
    )
    common = ["--data-dir", str(tmp_path / "data"), "--split-dir", str(tmp_path / "data"), f"attention={run}"]
    for last in (False, True):
        out = tmp_path / f"out{int(last)}"
        compare.main([*common, "--output", str(out)] + (["--last"] if last else []))
        result = json.loads((out / "metrics.json").read_text())["attention"]
        assert result["test"]["overall"]["n_frames"] == 6 and result["parameters"] > 0
        assert sum(m["n_frames"] for m in result["test"]["per_cell_size"].values()) == 6
        assert (out / "force_outliers.png").is_file() and "Test set by atoms per cell" in (out / "table.md").read_text()
        assert ("checkpoint" in result["weights"]) == last
    assert result["budget"]["best_epoch"] == 2  # --last: the checkpoint's epoch
    assert result["budget"]["cutoffs"] == result["config"]["cutoffs"] == [2.5, 3.5]
    # --epoch: the same-epochs comparison, from the snapshot, with the budget of those epochs
    compare.main([*common, "--output", str(tmp_path / "epoch1"), "--epoch", "1"])
    result = json.loads((tmp_path / "epoch1" / "metrics.json").read_text())["attention"]
    assert "epoch_0001.pt" in result["weights"] and result["budget"]["epochs"] == result["budget"]["best_epoch"] == 1
    assert compare.model_file(run, epoch=2) == run / "snapshots" / "epoch_0002.pt"
    (run / "snapshots" / "epoch_0002.pt").unlink()
    assert compare.model_file(run, epoch=2) == run / "checkpoint.pt"  # the epoch the checkpoint holds
    with pytest.raises(SystemExit, match="no weights of epoch 3.*epoch_0001"):
        compare.model_file(run, epoch=3)
    with pytest.raises(SystemExit, match="trained 2 epochs, not 5"):
        compare.budget(run, 5)
    # name=file.pt: a snapshot (its run is the folder above), and an exported file with --run
    exported = tmp_path / "capped.pt"
    export_main([str(run / "snapshots" / "epoch_0001.pt"), str(exported), "--logit-cap", "1.5"])
    out = tmp_path / "files"
    compare.main(
        [*common[:-1], "--output", str(out), f"snap={run / 'snapshots' / 'epoch_0001.pt'}", f"capped={exported}"]
        + ["--run", f"capped={run}"]
    )
    by_file = json.loads((out / "metrics.json").read_text())
    from_run = json.loads((tmp_path / "epoch1" / "metrics.json").read_text())["attention"]
    assert by_file["snap"]["valid"] == from_run["valid"] and by_file["snap"]["budget"] == from_run["budget"]
    assert by_file["capped"]["budget"] == from_run["budget"] and by_file["capped"]["config"]["attn_logit_cap"] == 1.5
    assert by_file["capped"]["weights"] == f"{exported}, epoch 1"
    with pytest.raises(SystemExit, match="name its training run with --run"):
        compare.main([*common[:-1], "--output", str(out), f"capped={exported}"])
    with pytest.raises(SystemExit, match="is a model file: --last and --epoch"):
        compare.main([*common[:-1], "--output", str(out), f"capped={exported}", "--last"])

    # the physics examples write their numbers, and card.py makes the model card of all of it
    results, model = tmp_path / "out1", str(run / "model.pt")
    graphite.main(["--model", model, "--fmax", "5", "--json", str(results / "graphite.json")])
    diamond_graphite.main(["--model", model, "--fmax", "5", "--json", str(results / "diamond_graphite.json")])
    nve = ["--model", model, "--anneal-steps", "2", "--nve-steps", "3", "--json", str(results / "nve.json")]
    nve_amorphous.main(nve)
    card_file = tmp_path / "card.json"
    card.main(["--results", str(results), "--limits", "untrained", "--output", str(card_file)])
    made = json.loads(card_file.read_text())
    assert made["status"] == "release"
    assert made["metrics"]["test"]["frames"] == 6 and made["training"]["epochs"] == 2
    assert "checkpoint.pt" in made["training"]["weights"] and made["limits"] == "untrained"
    assert set(made["checks"]) == {"graphite", "diamond_graphite", "nve"}
    assert made["checks"]["nve"]["atoms"] == 64 and made["checks"]["nve"]["nve_steps"] == 3
    assert made["checks"]["graphite"]["experiment"]["spacing"] == 3.35
    assert np.isfinite(made["checks"]["diamond_graphite"]["diamond_minus_graphite_meV_per_atom"])
    assert made["data"]["frames"]["train"] == 1172 and "CC BY 4.0" in made["licence"]
    with pytest.raises(SystemExit, match="no model named 'baseline'"):
        card.build_card(results, "", name="baseline")
    card.main(
        ["--results", str(results), "--limits", "", "--status", "preliminary: bar missed", "--output", str(card_file)]
        + ["--weights", "EMA weights of epoch 2, the checkpoint of commit abc1234"]
    )
    remade = json.loads(card_file.read_text())
    assert remade["status"] == "preliminary: bar missed"
    assert remade["training"]["weights"] == "EMA weights of epoch 2, the checkpoint of commit abc1234"
    assert "soft-capped" not in made["description"]
    metrics = json.loads((results / "metrics.json").read_text())
    metrics["attention"]["config"]["attn_logit_cap"] = 2.5
    (results / "metrics.json").write_text(json.dumps(metrics))
    assert "attention logits soft-capped at 2.5 (c·tanh(l/c)" in card.build_card(results, "")["description"]


def _recipe(name):
    from attnmace.train.cli import resolve_options

    return resolve_options(["--config", str(GAP20 / f"{name}.yaml")])


def test_recipe_configs_differ_only_in_preset_and_output_dir():
    attention, baseline = _recipe("attention"), _recipe("baseline")
    assert {k for k in attention if attention[k] != baseline[k]} == {"preset", "output_dir"}
    assert (attention["preset"], baseline["preset"]) == ("attention", "baseline")
    # the runs are committed so that they resume across sessions; runs/ is ignored by git
    for options in (attention, baseline):
        assert Path(options["output_dir"]).parts[:3] == ("examples", "gap20", "training")
        assert options["patience"] > options["max_epochs"]  # no early stopping on the noisy validation


# Settings of one invocation, not of the recipe: the device, the time budget, an earlier stop
# (--max-epochs; the next --resume with the recipe's file runs on to its max_epochs), and the
# validation batch size and the atoms per pass, which set the memory of a step, not its result.
_INVOCATION = {"device", "extra", "max_hours", "max_epochs", "valid_batch_size", "max_atoms_per_pass"}


@pytest.mark.parametrize("preset, heads, channels", [("attention", 4, 16), ("baseline", 0, 64)])
def test_committed_run_resumes_with_the_recipe(preset, heads, channels):
    """The committed checkpoint is the run of ``<preset>.yaml``: ``--resume`` continues it."""
    from dataclasses import fields

    from attnmace.train.checkpoint import read_checkpoint
    from attnmace.train.trainer import TrainSettings

    options = _recipe(preset)
    run = Path(__file__).parents[2] / options["output_dir"]
    config, weights, state = read_checkpoint(run / "checkpoint.pt")
    assert state["ema"] is not None and set(weights) == set(state["model"])
    assert config.cutoffs == tuple(options["cutoffs"])
    assert (config.heads, config.channels) == (heads, channels)
    settings = {f.name for f in fields(TrainSettings)} - _INVOCATION
    assert {k: state["settings"][k] for k in settings} == {k: options[k] for k in settings}
    with open(run / "metrics.csv") as fh:
        rows = fh.read().splitlines()[1:]
    assert len(rows) == state["epoch"] == len(state["history"]) > 0


def test_anneal_recipe_starts_from_a_committed_snapshot_of_the_attention_run():
    """``anneal.yaml`` changes the schedule only: the same data, loss, batches and EMA as the
    plateau run, from the EMA weights of one of its committed snapshots."""
    from dataclasses import fields

    from attnmace.train.checkpoint import read_checkpoint
    from attnmace.train.trainer import TrainSettings

    root = Path(__file__).parents[2]
    attention, anneal = _recipe("attention"), _recipe("anneal")
    schedule = {"lr", "scheduler", "max_epochs", "plateau_patience", "snapshot_every", "output_dir"}
    same = {f.name for f in fields(TrainSettings)} - schedule - _INVOCATION
    assert {k: anneal[k] for k in same} == {k: attention[k] for k in same}
    for key in ("train_file", "valid_file", "energy_key", "forces_key", "e0s", "species"):
        assert anneal[key] == attention[key]
    assert anneal["scheduler"] == "cosine" and anneal["patience"] > anneal["max_epochs"]
    start = Path(anneal["init_from"])
    assert start.parent == Path(attention["output_dir"]) / "snapshots" and (root / start).is_file()
    assert Path(anneal["output_dir"]).parts[:3] == ("examples", "gap20", "training")
    # the anneal's checkpoint is committed, as the plateau run's is: it is the run of this file
    config, _, state = read_checkpoint(root / anneal["output_dir"] / "checkpoint.pt")
    assert config == read_checkpoint(root / start)[0]  # the architecture of the snapshot
    settings = same | {"lr", "scheduler", "max_epochs"}
    assert {k: state["settings"][k] for k in settings} == {k: anneal[k] for k in settings}


def _amorphous(n_atoms, density, seed):
    """Random carbon of ``n_atoms`` at ``density`` g/cm³ in a cubic cell, no two atoms closer than 1.2 Å."""
    rng = np.random.default_rng(seed)
    length = (n_atoms * 12.011 * 1.66053907 / density) ** (1 / 3)
    atoms = Atoms(f"C{n_atoms}", cell=np.eye(3) * length, pbc=True)
    positions = []
    while len(positions) < n_atoms:
        p = rng.uniform(0, length, 3)
        d = np.array(positions) - p if positions else np.zeros((0, 3))
        d -= length * np.round(d / length)
        if not len(d) or np.linalg.norm(d, axis=1).min() > 1.2:
            positions.append(p)
    atoms.positions = positions
    return atoms


def test_short_range_finds_an_energy_hole_and_its_barrier():
    r = [1.6, 1.5, 1.4, 1.3, 1.2, 1.1, 1.0]
    rising = [-1.0, -2.0, -1.5, 0.0, 2.0, 5.0, 9.0]  # a minimum at 1.5 Å, then only up
    assert short_range.hole_onset(r, rising) == (None, pytest.approx(11.0))
    hole = [-1.0, -2.0, -1.5, 0.0, 2.0, -50.0, -900.0]  # turns over below 1.2 Å
    assert short_range.hole_onset(r, hole) == (1.2, pytest.approx(4.0))
    assert short_range.hole_onset(r[::-1], hole[::-1]) == (1.2, pytest.approx(4.0))  # any order


def test_short_range_probes_run_on_a_model(tmp_path, capsys):
    model = tmp_path / "tiny.pt"
    export_model(tiny_model(2, cutoffs=(2.2, 3.0)), str(model))
    short_range.main(["--model", str(model), "--json", str(tmp_path / "short.json")])
    result = json.loads((tmp_path / "short.json").read_text())
    for probe in ("pair", "compression"):
        block = result[probe]
        assert len(block["distances_A"]) == len(block["energies"]) and np.all(np.isfinite(block["energies"]))
        assert block["hole_onset_A"] is None or min(block["distances_A"]) < block["hole_onset_A"]
    assert result["pair"]["energies"][0] == pytest.approx(0.0, abs=1e-8)  # the unperturbed cell
    zbl = dict(zip(result["pair"]["distances_A"], result["pair"]["zbl_pair_energies_eV"]))
    assert zbl[1.0] == 0.0 and zbl[0.5] > zbl[0.7] > 0.0  # switched off at 0.6 x 1.52 Å, rising inside
    assert "pair: distance" in capsys.readouterr().out


def test_test_label_check_picks_frames_spread_over_density():
    frames = [_amorphous(4, rho, i) for i, rho in enumerate([3.0, 1.5, 2.0, 2.5, 3.5])] + [_amorphous(6, 2.0, 9)]
    picked = check_test_labels.pick_frames(frames, {4: 3, 6: 1})
    assert picked == [2, 3, 0, 5]  # 4 atoms by density: 1 (1.5), 2, 3, 0, 4 (3.5): the inner three
    assert check_test_labels.density(frames[1]) == pytest.approx(1.5)


def test_test_label_check_separates_sampling_error_from_model_error():
    """Labels made of the model's forces minus a known sampling error: against the corrected labels
    the model is exact, and the estimate for a whole test set removes that error size by size."""
    rng = np.random.default_rng(0)
    calc = AttnMACECalculator(tiny_model(2, cutoffs=(2.2, 3.0)), device="cpu")
    frames = [_amorphous(8, 2.0, 1), _amorphous(8, 2.5, 2), _amorphous(12, 2.2, 3)]
    rows = []
    for i, atoms in enumerate(frames):
        a = atoms.copy()
        a.calc = calc
        forces, energy = a.get_forces(), a.get_potential_energy()
        gamma = rng.normal(size=forces.shape)
        sampling = 0.1 * (i + 1) * rng.normal(size=forces.shape)  # converged - Gamma
        rows.append(
            dict(
                frame=i,
                atoms=len(a),
                density=check_test_labels.density(a),
                cell_width=prepare.cell_width(a),
                label_energy=energy - 0.01 * len(a),
                label_forces=(forces - sampling).tolist(),
                gamma_energy=-5.0,
                gamma_forces=gamma.tolist(),
                mesh_energy=-5.0 - 0.01 * len(a),
                mesh_forces=(gamma + sampling).tolist(),
                mesh_kmesh=[3, 3, 3],
            )
        )
    summary = check_test_labels.summarise(rows, frames, calc)
    rms = summary["pooled_force_rms"]
    assert rms["model_minus_corrected_label"] == pytest.approx(0.0, abs=1e-6)
    assert rms["model_minus_label"] == pytest.approx(rms["cp2k_mesh_minus_gamma"])
    assert summary["pooled_force_correlation"] == pytest.approx(1.0)
    frame = summary["per_frame"][0]
    assert frame["model_minus_label_energy"] == pytest.approx(10.0)  # meV/atom
    assert frame["cp2k_mesh_minus_gamma_energy"] == pytest.approx(-10.0)
    assert sorted(summary["per_cell_size"]) == ["12", "8"] and summary["per_cell_size"]["8"]["frames"] == 2
    # a whole test set with sizes 8, 12 and an unlabelled 16 (takes the 12 atoms' correction)
    test = {
        "8": dict(forces_rmse_meV_per_A=summary["per_cell_size"]["8"]["model_minus_label"] * 1.5, n_atoms=80),
        "12": dict(forces_rmse_meV_per_A=summary["per_cell_size"]["12"]["model_minus_label"], n_atoms=120),
        "16": dict(forces_rmse_meV_per_A=1000.0, n_atoms=160),
    }
    estimate = check_test_labels.whole_test_estimate(summary, test)
    assert estimate["per_cell_size"]["12"]["corrected"] == pytest.approx(0.0, abs=1e-3)
    raw8 = summary["per_cell_size"]["8"]["model_minus_label"]
    assert estimate["per_cell_size"]["8"]["corrected"] == pytest.approx(raw8 * 1.25**0.5)
    assert estimate["per_cell_size"]["16"]["from_size"] == 12
    assert estimate["corrected"] < estimate["raw"]
    noise = summary["per_cell_size"]
    expected = (80 * noise["8"]["cp2k_mesh_minus_gamma"] ** 2 + 280 * noise["12"]["cp2k_mesh_minus_gamma"] ** 2) / 360
    assert estimate["label_noise"] == pytest.approx(expected**0.5)
    with pytest.raises(ValueError, match="atoms"):
        check_test_labels.summarise(rows[:1], [_amorphous(9, 2.0, 4)], calc)


def test_recompute_compares_labels_with_other_cp2k_settings():
    """Labels = 1.1 x the recomputed forces; the PBE forces differ from the recomputed ones by 0.5 eV/Å
    in every component: each RMS difference is that offset's, pooled over the frames that have it."""
    rng = np.random.default_rng(1)
    rows, pbe = [], {}
    for i, n in enumerate((4, 6)):
        cp2k = rng.normal(size=(n, 3))
        rows.append(
            dict(frame=i, atoms=n, density=2.0, seconds=1.0, forces=cp2k.tolist(), label_forces=(1.1 * cp2k).tolist())
        )
        if i == 0:  # only frame 0 has a PBE label
            pbe[i] = dict(gamma_forces=(cp2k + 0.5).tolist())
    summary = check_test_labels.compare_settings(rows, pbe)
    first, second = summary["per_frame"]
    cp2k0 = np.asarray(rows[0]["forces"])
    assert first["label_minus_cp2k_force_rms"] == pytest.approx(100 * np.sqrt(np.mean(cp2k0**2)))
    assert first["cp2k_minus_pbe_gamma_force_rms"] == pytest.approx(500.0)
    assert first["label_cp2k_slope"] == pytest.approx(1.1) and first["label_cp2k_correlation"] == pytest.approx(1.0)
    assert "label_minus_pbe_gamma_force_rms" not in second
    assert summary["pooled_frames"] == {"label_minus_cp2k": 2, "label_minus_pbe_gamma": 1, "cp2k_minus_pbe_gamma": 1}
    assert summary["pooled_force_rms"]["cp2k_minus_pbe_gamma"] == pytest.approx(500.0)
    assert summary["atoms"] == 10
    folder = check_test_labels.recompute_folder("PBE-D3(BJ)", "TZV2P-MOLOPT-GTH", [2, 2, 2])
    assert folder.name == "pbe-d3_TZV2P-MOLOPT-GTH_2x2x2" and folder.parent.name == "recompute"


class _NoCp2kShell:
    """Stands in for ASE's CP2K shell, which starts the ``cp2k`` binary when the calculator is made:
    the test checks the calculator's parameters on machines without CP2K."""

    def __init__(self, command, debug):
        self.command = command

    def close(self):
        pass


def test_cp2k_templates_write_the_chosen_functional(monkeypatch):
    """PBE-D3(BJ) (the Li-C labels, ASE writes the functional) and optB88-vdW (the GAP-20 labels'
    functional, written whole in the template, so ASE gets xc=None)."""
    import ase.calculators.cp2k

    monkeypatch.setattr(ase.calculators.cp2k, "Cp2kShell", _NoCp2kShell)
    cp2k = check_test_labels._cp2k_setup()
    pbe = cp2k.build_template((1, 1, 1), 10)
    assert "DFTD3(BJ)" in pbe and "XC_FUNCTIONAL" not in pbe and "NON_LOCAL" not in pbe
    opt = cp2k.build_template((3, 3, 3), 10, settings=cp2k.OPTB88_VDW)
    for key in ("GGA_X_OPTB88_VDW", "&PW92", "TYPE DRSLL", "vdW_kernel_table.dat", "CUTOFF [Ry] 50.0", "MONKHORST"):
        assert key in opt
    assert "DFTD3" not in opt
    atoms = bulk("C", "diamond", a=3.57)
    assert cp2k.make_calc(atoms, "unused", kmesh=(1, 1, 1)).parameters["xc"] == "PBE"
    assert cp2k.make_calc(atoms, "unused", kmesh=(1, 1, 1), settings=cp2k.OPTB88_VDW).parameters["xc"] is None
    with pytest.raises(ValueError, match="unknown functional 'PBE0'"):
        cp2k.build_template((1, 1, 1), 10, settings=dict(cp2k.SETTINGS, functional="PBE0"))


def test_test_label_analysis_names_a_model_missing_from_the_test_metrics(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"attention": {"test": {"per_cell_size": {}}}}))
    argv = ["analyse", str(tmp_path / "no_data"), "--test-metrics", str(metrics), "--test-metrics-name", "baseline"]
    with pytest.raises(SystemExit, match=r"no model 'baseline' in .*metrics.json; it has \['attention'\]"):
        check_test_labels.main(argv)


def test_test_label_estimate_spread_over_redrawn_frames():
    """Drawing the labelled frames again: frames that agree leave no spread; frames that differ
    spread the estimate around its value from all frames."""

    def frame(atoms, raw, corrected, noise):
        return dict(
            atoms=atoms,
            model_minus_label_force_rms=raw,
            model_minus_corrected_label_force_rms=corrected,
            cp2k_mesh_minus_gamma_force_rms=noise,
        )

    test = {"8": dict(forces_rmse_meV_per_A=600.0, n_atoms=80), "12": dict(forces_rmse_meV_per_A=500.0, n_atoms=120)}
    same = [frame(8, 500.0, 400.0, 300.0), frame(8, 500.0, 400.0, 300.0), frame(12, 450.0, 400.0, 200.0)]
    spread = check_test_labels.bootstrap_estimate({"per_frame": same}, test, draws=50)
    per_size = {"8": dict(model_minus_label=500.0, model_minus_corrected_label=400.0, cp2k_mesh_minus_gamma=300.0)}
    per_size["12"] = dict(model_minus_label=450.0, model_minus_corrected_label=400.0, cp2k_mesh_minus_gamma=200.0)
    exact = check_test_labels.whole_test_estimate({"per_cell_size": per_size}, test)
    for key in ("corrected", "label_noise"):
        assert spread[key]["p5"] == pytest.approx(exact[key]) and spread[key]["p95"] == pytest.approx(exact[key])

    differ = [frame(8, 500.0, 450.0, 200.0), frame(8, 500.0, 300.0, 400.0), frame(12, 450.0, 400.0, 200.0)]
    spread = check_test_labels.bootstrap_estimate({"per_frame": differ}, test, draws=400)
    per_size["8"] = dict(
        model_minus_label=500.0,
        model_minus_corrected_label=((450.0**2 + 300.0**2) / 2) ** 0.5,
        cp2k_mesh_minus_gamma=((200.0**2 + 400.0**2) / 2) ** 0.5,
    )
    exact = check_test_labels.whole_test_estimate({"per_cell_size": per_size}, test)
    assert spread["corrected"]["p5"] < exact["corrected"] < spread["corrected"]["p95"]
    assert spread["label_noise"]["p5"] < spread["label_noise"]["p50"] < spread["label_noise"]["p95"]
    assert spread["draws"] == 400


def test_test_label_check_compares_a_denser_mesh(tmp_path):
    forces = np.zeros((2, 3))
    row = dict(frame=3, atoms=2, mesh_kmesh=[3, 3, 3], mesh_forces=forces.tolist(), mesh_energy=-10.0)
    row["gamma_forces"] = (forces + 1.0).tolist()
    dense = dict(row, mesh_kmesh=[5, 5, 5], mesh_forces=(forces + 0.002).tolist(), mesh_energy=-10.001)
    (tmp_path / "frame_0003.json").write_text(json.dumps(dense))
    (entry,) = check_test_labels.convergence([row, dict(row, frame=4)], tmp_path)
    assert entry["dense_mesh"] == [5, 5, 5]
    assert entry["force_rms"] == pytest.approx(2.0) and entry["energy"] == pytest.approx(0.5)


def test_width_bins_of_the_error_breakdown():
    atoms = Atoms("C", cell=np.eye(3) * 7.0, pbc=True)
    assert errors_by_width.width_bin(atoms) == "6-8"
    atoms.cell = np.eye(3) * 11.0
    assert errors_by_width.width_bin(atoms) == "10-12"
    atoms.cell = np.eye(3) * 20.0
    assert errors_by_width.width_bin(atoms) == ">=12"
    atoms.pbc = False
    assert errors_by_width.width_bin(atoms) == ">=12"


def _checkpoint(path, model, epoch):
    import torch

    history = [{"epoch": e, "lr": 0.001, "seconds": 1.0} for e in range(1, epoch + 1)]
    state = {"model": model.state_dict(), "ema": None, "epoch": epoch, "history": history}
    settings = {"max_steps_per_epoch": 2, "batch_size": 4, "dtype": "float32"}
    torch.save({**state, "settings": settings, "model_config": model.config.to_dict()}, path)
    return path


def test_average_weights_of_checkpoints_of_one_model(tmp_path):
    import torch

    from attnmace.train.checkpoint import model_from_checkpoint, read_checkpoint

    one, two = tiny_model(seed=0), tiny_model(seed=1)
    paths = [_checkpoint(tmp_path / "a.pt", one, 3), _checkpoint(tmp_path / "b.pt", two, 5)]
    average_weights.main([str(tmp_path / "avg"), *map(str, paths)])
    config, weights, state = read_checkpoint(tmp_path / "avg" / "checkpoint.pt")
    assert config == one.config and state["epoch"] == 5 and "epochs [3, 5]" in state["weights"]
    name = "layers.0.product.weight"
    assert not torch.equal(one.state_dict()[name], two.state_dict()[name])
    torch.testing.assert_close(weights[name], (one.state_dict()[name] + two.state_dict()[name]) / 2)
    model_from_checkpoint(tmp_path / "avg" / "checkpoint.pt")  # evaluable like a run's checkpoint
    budget = compare.budget(tmp_path / "avg")  # compare.py --last reads the last input's metrics
    assert (budget["epochs"], budget["steps"], budget["batch_size"]) == (5, 10, 4)
    with pytest.raises(SystemExit, match="at least two"):
        average_weights.average(paths[:1])
    other = _checkpoint(tmp_path / "c.pt", tiny_model(cutoffs=(2.2, 3.5)), 6)
    with pytest.raises(SystemExit, match="c.pt holds another model"):
        average_weights.average([paths[0], other])


def test_hot_md_names_each_kind_of_collapse():
    first = {"energy_per_atom": -7.0, "shortest_distance": 1.3}
    assert hot_md.collapse_reason({"energy_per_atom": -7.5, "shortest_distance": 1.1}, first, 0.8, 3.0) is None
    assert "0.700 Å" in hot_md.collapse_reason({"energy_per_atom": -7.5, "shortest_distance": 0.7}, first, 0.8, 3.0)
    fell = hot_md.collapse_reason({"energy_per_atom": -12.0, "shortest_distance": 1.1}, first, 0.8, 3.0)
    assert "fell 5.00 eV/atom" in fell
    assert hot_md.collapse_reason({"energy_per_atom": float("nan"), "shortest_distance": 1.1}, first, 0.8, 3.0)


def test_hot_md_runs_and_stops_at_a_collapse(tmp_path, capsys):
    from attnmace import export_model

    model = export_model(tiny_model(2, cutoffs=(2.2, 3.0)), tmp_path / "tiny.pt")
    hot_md.main(["--model", str(model), "--steps", "4", "--every", "2", "--json", str(tmp_path / "hot.json")])
    result = json.loads((tmp_path / "hot.json").read_text())
    assert [row["step"] for row in result["rows"]] == [0, 2, 4] and result["collapse"] is None
    assert all(row["shortest_distance"] > 0.8 and np.isfinite(row["energy_per_atom"]) for row in result["rows"])
    assert "no collapse in 2 fs" in capsys.readouterr().out
    # the random start keeps pairs 1.35 Å apart: a 2 Å threshold calls that a collapse at once
    stopped = hot_md.run(AttnMACECalculator(model), 3000.0, 2.4, 4, every=2, collapse_distance=2.0)
    assert stopped["collapse"]["step"] == 0 and "a pair at" in stopped["collapse"]["reason"]


def test_hot_md_knock_aims_the_energy_at_the_nearest_neighbour():
    atoms = nve_amorphous.random_carbon(seed=1)
    atoms.set_momenta(np.zeros((len(atoms), 3)))
    hot_md.knock(atoms, 100.0)
    assert atoms.get_kinetic_energy() == pytest.approx(100.0)
    distances = atoms.get_distances(0, range(1, len(atoms)), mic=True, vector=True)
    nearest = distances[np.argmin(np.linalg.norm(distances, axis=1))]
    velocity = atoms.get_velocities()[0]
    assert np.dot(velocity, nearest) / np.linalg.norm(velocity) / np.linalg.norm(nearest) == pytest.approx(1.0)


def _bilayer(separation, energy_per_atom, config_type="Graphite", rattle=0.0):
    """Two flat AB-stacked graphene layers (16 atoms) ``separation`` apart in a cell 20 Å high."""
    from ase.build import graphene as graphene_sheet

    layer = graphene_sheet("C2", a=2.46, size=(2, 2, 1), vacuum=None)
    lower, upper = layer.copy(), layer.copy()
    upper.positions += [1.23, 0.71, separation]
    atoms = lower + upper
    atoms.cell[2] = [0, 0, 20.0]
    atoms.pbc = True
    atoms.positions += np.random.default_rng(0).normal(scale=rattle, size=atoms.positions.shape)
    atoms.info.update(REF_energy=energy_per_atom * len(atoms), config_type=config_type)
    atoms.arrays["REF_forces"] = np.zeros((len(atoms), 3))
    return atoms


def test_bilayer_scan_frames_are_two_flat_layers_of_a_graphite_type():
    assert bilayer.layer_separation(_bilayer(3.35, -9.0)) == pytest.approx(3.35)
    assert bilayer.is_scan_frame(_bilayer(4.5, -9.0, "Graphite_Layer_Sep"))
    assert not bilayer.is_scan_frame(_bilayer(3.35, -9.0, "Defects"))  # another config type
    assert not bilayer.is_scan_frame(_bilayer(3.35, -9.0, rattle=0.05))  # not flat
    three = _bilayer(3.35, -9.0) + _bilayer(3.35, -9.0)[:8]
    three.positions[-8:, 2] += 6.7
    assert bilayer.layer_separation(three) is None  # three planes


def test_bilayer_weight_file_weights_only_the_scan(tmp_path, capsys):
    frames = [_bilayer(d, -9.0) for d in (3.0, 3.5, 4.0)] + [_bilayer(3.35, -9.0, rattle=0.05), _frame(-9.0, "A")]
    ase.io.write(tmp_path / "train.extxyz", frames, format="extxyz")
    bilayer.main(["weight", "10", "--split-dir", str(tmp_path)])
    written = ase.io.read(tmp_path / "train_bilayer10.extxyz", ":")
    assert [a.info["config_weight"] for a in written] == [10.0, 10.0, 10.0, 1.0, 1.0]
    assert [a.info["REF_energy"] for a in written] == [a.info["REF_energy"] for a in frames]
    assert "3 scan frames with config_weight 10" in capsys.readouterr().out
    bilayer.main(["weight", "1", "--only", "--split-dir", str(tmp_path)])
    alone = ase.io.read(tmp_path / "train_bilayer_only.extxyz", ":")
    assert [bilayer.layer_separation(a) for a in alone] == pytest.approx([3.0, 3.5, 4.0])
    ase.io.write(tmp_path / "train.extxyz", frames[3:], format="extxyz")
    with pytest.raises(SystemExit, match="no bilayer scan frames"):
        bilayer.main(["weight", "10", "--split-dir", str(tmp_path)])
    with pytest.raises(SystemExit, match="finite and >= 0"):
        bilayer.main(["weight", "-1", "--split-dir", str(tmp_path)])


def test_bilayer_scan_compares_the_model_curve_with_the_reference(tmp_path, capsys):
    model = tmp_path / "tiny.pt"
    from attnmace import export_model

    export_model(tiny_model(2, cutoffs=(2.2, 3.0)), str(model))
    separations = [2.6, 3.5, 4.0, 5.0]
    reference = [-8.99, -9.01, -9.005, -9.0]  # a minimum of -10 meV/atom at 3.5 Å
    ase.io.write(
        tmp_path / "train.extxyz", [_bilayer(d, e) for d, e in zip(separations[:3], reference)], format="extxyz"
    )
    ase.io.write(tmp_path / "valid.extxyz", [_bilayer(5.0, -9.0, "Graphite_Layer_Sep")], format="extxyz")
    out = tmp_path / "scan.json"
    bilayer.main(
        [
            "scan",
            "--model",
            str(model),
            "--split-dir",
            str(tmp_path),
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "scan.png"),
        ]
    )
    result = json.loads(out.read_text())
    assert result["separation"] == pytest.approx(separations)
    assert result["reference_mev_per_atom"] == pytest.approx([10.0, -10.0, -5.0, 0.0])
    assert result["reference"] == {
        "minimum_separation": pytest.approx(3.5),
        "minimum_mev_per_atom": pytest.approx(-10.0),
    }
    # the tiny model's 3 Å cutoff: layers 4 and 5 Å apart do not interact, the closer ones do
    model_curve = np.array(result["model_mev_per_atom"])
    assert model_curve[-1] == 0.0 and model_curve[2] == pytest.approx(0.0, abs=1e-9) and model_curve[0] != 0.0
    rms = np.sqrt(np.mean((model_curve - np.array(result["reference_mev_per_atom"])) ** 2))
    assert result["rms_difference_mev_per_atom"] == pytest.approx(rms)
    offset = np.array(result["model_minus_reference_mev_per_atom"])  # absolute: the tiny model is not fitted
    assert offset - offset[-1] == pytest.approx(model_curve - np.array(result["reference_mev_per_atom"]))
    assert (tmp_path / "scan.png").stat().st_size > 0
    assert "reference minimum: -10.00 meV/atom at 3.50 Å" in capsys.readouterr().out


def test_budget_of_a_fine_tune_adds_the_epochs_of_the_run_it_started_from(tmp_path):
    base, tune = tmp_path / "base", tmp_path / "tune"
    (base / "snapshots").mkdir(parents=True)
    tune.mkdir()
    rows = "".join(f"{e},360,{1.0 / e}\n" for e in range(1, 6))  # 5 epochs of 0.1 h; the base went on
    (base / "metrics.csv").write_text("epoch,seconds,valid_loss\n" + rows)
    (base / "config.yaml").write_text("max_steps_per_epoch: 100\nbatch_size: 4\n")
    snapshot = _checkpoint(base / "snapshots" / "epoch_0003.pt", tiny_model(), 3)
    (tune / "metrics.csv").write_text("epoch,seconds,valid_loss\n1,1800,2.0\n2,1800,3.0\n")
    (tune / "config.yaml").write_text(f"max_steps_per_epoch: 50\nbatch_size: 4\ninit_from: {snapshot}\n")
    budget = compare.budget(tune)
    assert budget["epochs"] == 3 + 2 and budget["steps"] == 300 + 100 and budget["hours"] == pytest.approx(1.3)
    assert budget["fine_tune"] == {
        "init_from": str(snapshot),
        "from_epoch": 3,
        "epochs": 2,
        "steps": 100,
        "hours": pytest.approx(1.0),
    }
    assert budget["best_epoch"] == 1  # of the fine-tune's own epochs
    assert compare.budget(tune, epochs=1)["epochs"] == 3 + 1
    # from an exported model of the base run: the epoch its export recorded
    exported = export_model(tiny_model(), base / "model.pt", extra={"epoch": 4})
    (tune / "config.yaml").write_text(f"max_steps_per_epoch: 50\nbatch_size: 4\ninit_from: {exported}\n")
    assert compare.budget(tune)["fine_tune"]["from_epoch"] == 4 and compare.budget(tune)["epochs"] == 4 + 2
    # from a shipped model by name: not part of a run here, so the fine-tune's own budget
    (tune / "config.yaml").write_text("max_steps_per_epoch: 50\nbatch_size: 4\ninit_from: gap20.pt\n")
    assert compare.budget(tune)["epochs"] == 2 and "fine_tune" not in compare.budget(tune)
    (tune / "config.yaml").write_text(f"max_steps_per_epoch: 50\nbatch_size: 4\ninit_from: {snapshot}\n")
    snapshot.unlink()
    with pytest.raises(SystemExit, match="budget is unknown"):
        compare.budget(tune)


@pytest.mark.parametrize("name, weight", [("bilayer", 100.0), ("bilayer_only", 1.0), ("bilayer_only_cosine", 1.0)])
def test_bilayer_recipes_start_from_a_committed_snapshot_and_read_the_files_bilayer_py_writes(name, weight):
    """``bilayer.yaml`` (energy-weighted fine-tune), ``bilayer_only.yaml`` and
    ``bilayer_only_cosine.yaml`` (the scan alone) read the training file that ``bilayer.py weight``
    writes under its default name, with the keys of the plateau run (and its validation file, but
    for the annealed scan-alone run, validated on the scan itself), from the EMA weights of one of
    its committed snapshots."""
    root = Path(__file__).parents[2]
    attention, recipe = _recipe("attention"), _recipe(name)
    for key in ("energy_key", "forces_key", "species", "dtype", "seed"):
        assert recipe[key] == attention[key]
    written = f"train_bilayer{weight:g}.extxyz" if name == "bilayer" else "train_bilayer_only.extxyz"
    assert Path(recipe["train_file"]) == Path(attention["train_file"]).parent / written
    expected_valid = recipe["train_file"] if name == "bilayer_only_cosine" else attention["valid_file"]
    assert recipe["valid_file"] == expected_valid
    if name == "bilayer_only_cosine":
        assert recipe["scheduler"] == "cosine" and recipe["max_epochs"] * 6 == 300  # 23 frames, batch 4
    start = Path(recipe["init_from"])
    assert start.parent == Path(attention["output_dir"]) / "snapshots" and (root / start).is_file()
    assert (
        recipe["energy_weight"] > attention["energy_weight"] and recipe["forces_weight"] == attention["forces_weight"]
    )


def test_committee_separates_the_error_two_models_share():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(4000, 3))
    shared = 0.3 * rng.normal(size=ref.shape)  # 300 meV/Å RMS made by both models
    one = ref + shared + 0.4 * rng.normal(size=ref.shape)
    two = ref + shared + 0.4 * rng.normal(size=ref.shape)
    summary = committee.committee_summary({"one": one, "two": two, "same": one.copy()}, ref)
    assert summary["models"]["one"]["rmse"] == pytest.approx(500, rel=0.02)
    pair = summary["pairs"][0]
    assert pair["models"] == ["one", "two"]
    assert pair["shared_rmse"] == pytest.approx(300, rel=0.03)
    assert pair["correlation"] == pytest.approx(0.09 / 0.25, abs=0.02)
    assert pair["mean_rmse"] == pytest.approx(np.sqrt(0.09 + 0.16 / 2) * 1000, rel=0.02)
    same = summary["pairs"][1]  # a model and its copy share all of their error
    assert same["models"] == ["one", "same"] and same["correlation"] == pytest.approx(1.0)
    assert same["shared_rmse"] == pytest.approx(same["mean_rmse"]) == pytest.approx(summary["models"]["one"]["rmse"])
    assert [c["models"] for c in summary["committees"]] == [
        ["one", "two"],
        ["one", "same"],
        ["two", "same"],
        ["one", "two", "same"],
    ]
    with pytest.raises(SystemExit, match="at least two models"):
        committee.committee_summary({"one": one}, ref)
    with pytest.raises(SystemExit, match="two predicts"):
        committee.committee_summary({"one": one, "two": two[:10]}, ref)


def test_committee_evaluates_models_once_and_reuses_their_predictions(tmp_path, capsys, monkeypatch):
    from attnmace import export_model

    fixture = Path(__file__).parents[1] / "fixtures" / "gap20_small.extxyz"
    data = tmp_path / "test.extxyz"
    ase.io.write(data, [a for a in ase.io.read(fixture, ":") if len(a) > 1][:3])
    for seed in (0, 1):
        export_model(tiny_model(seed=seed), str(tmp_path / f"m{seed}.pt"))
    out, kept = tmp_path / "summary.json", tmp_path / "predictions"
    args = [f"a={tmp_path / 'm0.pt'}", f"b={tmp_path / 'm1.pt'}", "--data", str(data), "--predictions", str(kept)]
    committee.main([*args, "--output", str(out)])
    summary = json.loads(out.read_text())
    assert set(summary["models"]) == {"a", "b"} and summary["pairs"][0]["models"] == ["a", "b"]
    assert summary["models"]["a"]["file"].endswith("m0.pt") and sorted(p.name for p in kept.iterdir()) == [
        "a.npz",
        "b.npz",
    ]
    assert "best committee: a + b" in capsys.readouterr().out

    def no_evaluation(*args, **kwargs):
        raise AssertionError("evaluated again")

    monkeypatch.setattr(committee, "evaluate_file", no_evaluation)
    committee.main([*args, "--output", str(out)])  # from the kept predictions
    assert json.loads(out.read_text()) == summary
    labels = ase.io.read(data, "1").arrays["REF_forces"]
    row = dict(frame=1, label_forces=labels.tolist(), gamma_forces=(0 * labels).tolist(), mesh_forces=labels.tolist())
    (tmp_path / "frame_0001.json").write_text(json.dumps(row))
    committee.main([*args, "--output", str(out), "--labelled", str(tmp_path), "--by-environment"])
    labelled = json.loads(out.read_text())["labelled"]
    assert labelled["frames"] == [1] and labelled["against_labels"]["n_atoms"] == len(labels)
    by_group = json.loads(out.read_text())["by_environment"]
    assert sum(g["n_atoms"] for name, g in by_group.items() if name.startswith("CN")) == summary["n_atoms"]
    assert (
        labelled["against_corrected_labels"]["models"]["a"]["rmse"] != labelled["against_labels"]["models"]["a"]["rmse"]
    )
    export_model(tiny_model(seed=2), str(tmp_path / "m1.pt"))  # other weights in the same file
    with pytest.raises(AssertionError, match="evaluated again"):
        committee.main([*args, "--output", str(out)])
    with pytest.raises(SystemExit, match="expected name=model_file"):
        committee.main([str(tmp_path / "m0.pt"), *args[1:]])


def test_committee_on_the_cp2k_labelled_frames_against_corrected_labels(tmp_path):
    rng = np.random.default_rng(1)
    num_atoms = [3, 5, 4]
    ref = rng.normal(size=(12, 3))
    labelled = tmp_path / "labels"
    labelled.mkdir()
    sampling = rng.normal(size=(5, 3))
    row = dict(frame=1, label_forces=ref[3:8].tolist(), gamma_forces=np.zeros((5, 3)).tolist())
    (labelled / "frame_0001.json").write_text(json.dumps({**row, "mesh_forces": sampling.tolist()}))
    (labelled / "summary.json").write_text("{}")  # not a frame
    mask, corrected, frames = committee.labelled_frames(labelled, ref, num_atoms)
    assert frames == [1] and mask.tolist() == [False] * 3 + [True] * 5 + [False] * 4
    assert np.allclose(corrected, ref[3:8] + sampling)
    # two models that make the sampling error and nothing else share it against the labels only
    both = {"one": ref[mask] + sampling, "two": ref[mask] + sampling}
    assert committee.committee_summary(both, ref[mask])["pairs"][0]["correlation"] == pytest.approx(1.0)
    assert committee.committee_summary(both, corrected)["pairs"][0]["shared_rmse"] == pytest.approx(0.0)
    with pytest.raises(SystemExit, match="other labels than frame 1"):
        committee.labelled_frames(labelled, ref + 1.0, num_atoms)
    with pytest.raises(SystemExit, match="no frame_NNNN.json"):
        committee.labelled_frames(tmp_path, ref, num_atoms)


def test_committee_breaks_the_errors_down_by_coordination_and_density():
    diamond = bulk("C", "diamond", a=3.567)  # 2 atoms, 4 neighbours each, 3.5 g/cm³
    dimer = Atoms("C2", positions=[[0, 0, 0], [1.3, 0, 0]], cell=np.eye(3) * 10, pbc=True)
    groups = committee.environment_groups([diamond, dimer])
    assert set(groups) == {"CN 1", "CN 4", "density 0-2", "density 3-10"}
    assert groups["CN 4"].tolist() == groups["density 3-10"].tolist() == [True, True, False, False]
    assert groups["CN 1"].tolist() == [False, False, True, True]
    ref = np.array([[1.0, 0, 0], [-1.0, 0, 0], [0, 0.5, 0], [0, -0.5, 0]])
    forces = {"one": ref + 0.1, "two": ref - 0.1}
    by_group = committee.environment_summary(forces, ref, groups)
    assert by_group["CN 4"]["n_atoms"] == 2 and by_group["CN 4"]["label_rms"] == pytest.approx(np.sqrt(1 / 3) * 1000)
    assert by_group["CN 1"]["models"]["one"]["rmse"] == pytest.approx(100.0)
    assert by_group["CN 1"]["pairs"][0]["correlation"] == pytest.approx(-1.0)  # opposite errors
    assert by_group["CN 1"]["pairs"][0]["mean_rmse"] == pytest.approx(0.0)


def test_logit_cap_choice_bounds_the_harm_to_every_config_type():
    def row(cap, overall, a, b):
        per_type = {"A": {"forces_rmse_meV_per_A": a}, "B": {"forces_rmse_meV_per_A": b}}
        return {"cap": cap, "valid": {"overall": {"forces_rmse_meV_per_A": overall}, "per_config_type": per_type}}

    rows = [row(0.0, 900.0, 100.0, 2000.0), row(4.0, 500.0, 100.5, 900.0), row(2.0, 400.0, 103.0, 600.0)]
    assert logit_cap.largest_rise(rows[2], rows[0]) == pytest.approx(0.03)
    assert logit_cap.choose(rows) == 4.0  # cap 2 is lower overall but raises type A by 3 %
    assert logit_cap.choose(rows, tolerance=0.05) == 2.0
    assert logit_cap.choose(rows, tolerance=None) == 2.0
    assert logit_cap.choose(rows[:1]) == 0.0


def test_logit_cap_scan_chooses_on_validation_and_reports_the_test_set(tmp_path, capsys):
    from attnmace import export_model

    fixture = Path(__file__).parents[1] / "fixtures" / "gap20_small.extxyz"
    frames = [a for a in ase.io.read(fixture, ":") if len(a) > 1]
    ase.io.write(tmp_path / "valid.extxyz", frames[:5])
    ase.io.write(tmp_path / "gap20_amorphous_test.extxyz", frames[5:9])
    model = export_model(tiny_model(2), tmp_path / "model.pt")
    out = tmp_path / "scan.json"
    common = ["--split-dir", str(tmp_path), "--data-dir", str(tmp_path), "--output", str(out)]
    logit_cap.main([str(model), "--caps", "0,1,0.05", "--test", *common])
    result = json.loads(out.read_text())
    rows = {row["cap"]: row for row in result["scan"]}
    assert sorted(rows) == [0.0, 0.05, 1.0] and all(set(row) == {"cap", "valid", "test"} for row in rows.values())
    forces = {cap: row["valid"]["overall"]["forces_rmse_meV_per_A"] for cap, row in rows.items()}
    rises = {cap: row["valid"]["largest_type_rise_percent"] for cap, row in rows.items()}
    eligible = {cap: f for cap, f in forces.items() if rises[cap] <= 1.0}
    assert rises[0.0] == 0 and result["chosen"] == min(eligible, key=eligible.get)
    assert f"chosen cap: {result['chosen']:g}" in capsys.readouterr().out
    assert forces[0.05] != forces[0.0]  # a cap this small acts on the tiny model's logits
    # cap 0 is the model as it is: the same errors as compare.py's evaluation of the file
    plain, _ = compare.evaluate(model, tmp_path / "valid.extxyz")
    assert forces[0.0] == pytest.approx(plain["overall"]["forces_rmse_meV_per_A"], abs=0.01)
    assert rows[0.0]["test"]["overall"]["frames"] == 4
    worst = result["worst_validation_frame"]
    assert worst["index"] == rows[0.0]["valid"]["worst_frame"]["index"]
    explained = worst["explained"]
    assert [e["cap"] for e in explained] == list(dict.fromkeys([0.0, result["chosen"]]))
    assert explained[0]["forces_rmse_meV_per_A"] == pytest.approx(
        rows[0.0]["valid"]["worst_frame"]["forces_rmse_meV_per_A"], abs=0.2
    )
    errors = [w["force_error_eV_per_A"] for w in explained[0]["worst_atoms"]]
    assert len(errors) == 3 and errors == sorted(errors, reverse=True)
    assert all(len(w["layers"]) == 2 and w["layers"][0]["multiplier"] > 0 for w in explained[0]["worst_atoms"])
    logit_cap.main([str(model), "--caps", "0,1", "--physics", "--fmax", "5", *common])
    rows = json.loads(out.read_text())["scan"]
    assert all(np.isfinite(row["physics"]["diamond_minus_graphite_meV_per_atom"]) for row in rows)
    assert set(rows[0]["physics"]) == {
        "diamond_minus_graphite_meV_per_atom",
        "diamond_a",
        "graphite_a",
        "graphite_spacing",
    }
    baseline = export_model(tiny_model(0), tmp_path / "baseline.pt")
    with pytest.raises(SystemExit, match="no attention heads"):
        logit_cap.main([str(baseline), *common])


def test_coverage_bins_errors_by_distance_from_the_training_data():
    rng = np.random.default_rng(0)
    train = rng.normal(size=(500, 4))
    dist, index = coverage.nearest(train[:7], train)
    assert np.allclose(dist, 0.0, atol=1e-5) and index.tolist() == list(range(7))
    far = train[:3] + np.array([5.0, 0, 0, 0])
    exact = np.sqrt(((far[:, None] - train[None]) ** 2).sum(-1))
    dist, index = coverage.nearest(far, train, chunk=2)
    assert np.allclose(dist, exact.min(1), atol=1e-5) and index.tolist() == exact.argmin(1).tolist()
    errors = np.array([[0.1, 0, 0], [1.0, 0, 0], [0.1, 0, 0], [0.1, 0, 0]])
    rows = coverage.by_type(np.array(["a", "b", "a", "a"]), errors)
    assert rows["a"]["n_atoms"] == 3 and rows["a"]["forces_rmse_meV_per_A"] == pytest.approx(1000 * np.sqrt(0.01 / 3))
    assert rows["b"]["fraction"] == 0.25

    valid_novelty = rng.uniform(0, 1, size=1000)
    valid_errors = 0.3 * rng.normal(size=(1000, 3))
    test_novelty = rng.uniform(0, 4, size=2000)
    test_errors = (0.3 + 0.5 * test_novelty)[:, None] * rng.normal(size=(2000, 3))  # error grows with novelty
    summary = coverage.summarise(valid_novelty, valid_errors, test_novelty, test_errors)
    quantiles = np.array(coverage.QUANTILES)
    assert summary["edges"] == pytest.approx(quantiles, abs=0.05)  # uniform on [0, 1]
    expected = 1000 * np.diff(np.concatenate([[0], quantiles, [1]]))
    assert [r["n_atoms"] for r in summary["valid"]] == pytest.approx(expected, abs=30)
    assert sum(r["n_atoms"] for r in summary["test"]) == 2000 and summary["test"][-1]["novelty_to"] is None
    assert summary["test"][-1]["fraction"] == pytest.approx((4 - quantiles[-1]) / 4, abs=0.05)
    assert summary["valid"][0]["forces_rmse_meV_per_A"] == pytest.approx(300, rel=0.1)
    rmse = [r["forces_rmse_meV_per_A"] for r in summary["test"]]
    assert rmse[-1] > 3 * rmse[0] and summary["test_spearman_error_novelty"] > 0.3  # the error grows with novelty


def test_coverage_runs_on_a_tiny_model(tmp_path, capsys):
    fixture = Path(__file__).parents[1] / "fixtures" / "gap20_small.extxyz"
    frames = [a for a in ase.io.read(fixture, ":") if len(a) > 1]
    split = tmp_path / "split"
    split.mkdir()
    ase.io.write(split / "train.extxyz", frames[:6])
    ase.io.write(split / "valid.extxyz", frames[6:8])
    ase.io.write(tmp_path / "test.extxyz", frames[8:10])
    model = export_model(tiny_model(), str(tmp_path / "model.pt"))
    out = tmp_path / "coverage" / "summary.json"
    summary = coverage.main(
        [str(model), "--split-dir", str(split), "--test", str(tmp_path / "test.extxyz"), "--output", str(out)]
    )
    assert json.loads(out.read_text()) == json.loads(json.dumps(summary)) and out.with_suffix(".png").is_file()
    assert summary["n_train_atoms"] == sum(len(a) for a in frames[:6])
    assert sum(r["n_atoms"] for r in summary["test"]) == sum(len(a) for a in frames[8:10])
    assert "Spearman" in capsys.readouterr().out
    nearest_types = summary["test_by_nearest_training_type"]
    assert set(nearest_types) <= {a.info["config_type"] for a in frames[:6]}
    assert sum(row["n_atoms"] for row in nearest_types.values()) == sum(len(a) for a in frames[8:10])
    assert set(summary["valid_novelty_median_by_type"]) == {a.info["config_type"] for a in frames[6:8]}
