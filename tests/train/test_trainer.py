"""Training end to end: outputs, YAML options, kill -9 and resume, evaluation, DDP on 2 CPUs."""

import csv
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from attnmace import AttnMACECalculator, build_model, export_model, keys, read_metadata
from attnmace.calculator import resolve_model_path
from attnmace.config import ModelConfig
from attnmace.export import rebuild_eager
from attnmace.graph import atoms_to_graph
from attnmace.train.checkpoint import model_from_checkpoint, read_checkpoint, snapshot_from_checkpoint
from attnmace.train.cli import (
    _architecture_options,
    build_trainer,
    eval_main,
    export_main,
    preprocess_main,
    resolve_options,
    train_main,
)
from attnmace.train.data import DataKeys, read_extxyz
from attnmace.train.stats import average_neighbours

FIXTURE = str(Path(__file__).parents[1] / "fixtures" / "gap20_small.extxyz")
TINY = [
    "--train-file",
    FIXTURE,
    "--virial-key",
    "REF_virial",
    "--cutoffs",
    "2.5,3.5",
    "--channels",
    "4",
    "--heads",
    "2",
    "--max-l",
    "1",
    "--sh-max-l",
    "1",
    "--correlation",
    "2",
    "--radial-mlp",
    "8",
    "--num-radial",
    "4",
    "--attn-channels",
    "2",
    "--batch-size",
    "4",
    "--dtype",
    "float64",
    "--device",
    "cpu",
]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _train_cmd(out, epochs, *extra):
    return [
        sys.executable,
        "-m",
        "attnmace.train",
        *TINY,
        "--max-epochs",
        str(epochs),
        "--output-dir",
        str(out),
        *extra,
    ]


def test_outputs_and_yaml_options(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({"max_epochs": 5, "lr": 0.01, "ema-decay": 0.9, "seed": 7}))
    opts = resolve_options([*TINY, "--config", str(config), "--max-epochs", "2", "--output-dir", str(tmp_path / "r")])
    assert opts["max_epochs"] == 2  # the flag wins over the file
    assert opts["lr"] == 0.01 and opts["ema_decay"] == 0.9 and opts["seed"] == 7  # from the file
    assert opts["cutoffs"] == [2.5, 3.5] and opts["correlation"] == [2]
    assert train_main([*TINY, "--config", str(config), "--max-epochs", "2", "--output-dir", str(tmp_path / "r")]) == 0
    out = tmp_path / "r"
    for name in ("model.pt", "checkpoint.pt", "metrics.csv", "learning_curve.png", "config.yaml"):
        assert (out / name).is_file(), name
    rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(rows) == 3 and "valid_forces_rmse_meV_per_A" in rows[0]
    meta = read_metadata(out / "model.pt")
    assert meta["species"] == ["C"] and meta["cutoffs"] == [2.5, 3.5]
    with open(out / "metrics.csv") as fh:
        history = list(csv.DictReader(fh))
    best = min(history, key=lambda r: float(r["valid_loss"]))
    assert meta["extra"]["epoch"] == int(best["epoch"])  # the epoch whose weights were exported
    assert meta["extra"]["valid_metrics"]["forces_rmse_meV_per_A"] == pytest.approx(
        float(best["valid_forces_rmse_meV_per_A"])
    )
    assert meta["config"]["avg_num_neighbors"][0] < meta["config"]["avg_num_neighbors"][1]
    with pytest.raises(SystemExit, match="unknown option"):
        bad = tmp_path / "bad.yaml"
        bad.write_text("learning_rate: 1")
        resolve_options(["--config", str(bad)])


def test_eval_matches_calculator(tmp_path, capsys):
    train_main([*TINY, "--max-epochs", "1", "--output-dir", str(tmp_path / "r")])
    report = tmp_path / "eval.json"
    assert (
        eval_main(
            [
                str(tmp_path / "r" / "model.pt"),
                FIXTURE,
                "--virial-key",
                "REF_virial",
                "--json",
                str(report),
                "--plots",
                str(tmp_path / "plots"),
            ]
        )
        == 0
    )
    metrics = json.loads(report.read_text())
    assert set(metrics["per_config_type"]) >= {"Diamond", "Graphite", "Dimer"}
    assert len(metrics["force_outliers"]["fraction"]) == 13
    assert (tmp_path / "plots" / "parity.png").is_file()
    calc = AttnMACECalculator(tmp_path / "r" / "model.pt", device="cpu")
    frames = read_extxyz(FIXTURE, DataKeys(virial="REF_virial"))
    errors = []
    for frame, pred in list(zip(frames, metrics["predictions"]))[:6]:
        energy = calc.get_potential_energy(frame.to_atoms())
        assert energy == pytest.approx(pred["energy"], abs=1e-9)
        errors.append((energy - frame.energy) / len(frame.numbers))
    assert metrics["overall"]["n_frames"] == 100
    per_atom = [(p["energy"] - p["ref_energy"]) / p["num_atoms"] for p in metrics["predictions"]]
    assert per_atom[:6] == pytest.approx(errors, abs=1e-9)
    assert metrics["overall"]["energy_mean_error_meV_per_atom"] == pytest.approx(1e3 * np.mean(per_atom))
    assert "E mean" in capsys.readouterr().out
    # the training checkpoint evaluates with its EMA weights: after one epoch those are model.pt's
    from_checkpoint = tmp_path / "eval_checkpoint.json"
    assert eval_main([str(tmp_path / "r" / "checkpoint.pt"), FIXTURE, "--json", str(from_checkpoint)]) == 0
    again = json.loads(from_checkpoint.read_text())["predictions"]
    assert [p["energy"] for p in again] == pytest.approx([p["energy"] for p in metrics["predictions"]], abs=1e-9)
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="neither an exported attnmace model nor a training checkpoint"):
        eval_main([str(tmp_path / "other.pt"), FIXTURE])


def test_export_writes_the_last_epochs_ema_weights_of_a_checkpoint(tmp_path, capsys):
    run = tmp_path / "r"
    assert train_main([*TINY, "--max-epochs", "2", "--output-dir", str(run)]) == 0
    assert export_main([str(run / "checkpoint.pt"), str(tmp_path / "last.pt")]) == 0
    assert "EMA weights of epoch 2" in capsys.readouterr().out
    extra = read_metadata(tmp_path / "last.pt")["extra"]
    with open(run / "metrics.csv") as fh:
        last_row = list(csv.DictReader(fh))[-1]
    assert extra["epoch"] == 2 and extra["weights"] == "ema"
    assert extra["valid_metrics"]["forces_rmse_meV_per_A"] == pytest.approx(
        float(last_row["valid_forces_rmse_meV_per_A"])
    )
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    model = build_model(config=ModelConfig.from_dict(state["model_config"]), dtype=torch.float64)
    model.load_state_dict(state["ema"])
    atoms = read_extxyz(FIXTURE, DataKeys())[5].to_atoms()
    energy = AttnMACECalculator(tmp_path / "last.pt", device="cpu").get_potential_energy(atoms)
    graph = atoms_to_graph(atoms, model.config.atomic_numbers, model.r_max)
    assert energy == pytest.approx(model(graph, compute_forces=False)[keys.ENERGY].sum().item(), abs=1e-9)
    torch.save({"something": "else"}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a training checkpoint"):
        export_main([str(tmp_path / "other.pt"), str(tmp_path / "x.pt")])
    assert not (tmp_path / "x.pt").exists()


def _final_state(out):
    return torch.load(out / "checkpoint.pt", weights_only=False)


def test_kill_and_resume_matches_uninterrupted(tmp_path):
    ref_dir, cut_dir = tmp_path / "ref", tmp_path / "cut"
    subprocess.run(_train_cmd(ref_dir, 4), check=True, env=ENV, capture_output=True)
    proc = subprocess.Popen(_train_cmd(cut_dir, 4), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (cut_dir / "metrics.csv").is_file():
        time.sleep(0.02)
    time.sleep(0.3)  # somewhere inside epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = _final_state(cut_dir)
    assert 1 <= state["epoch"] < 4, "the kill should interrupt the run before its end"
    subprocess.run(_train_cmd(cut_dir, 4, "--resume"), check=True, env=ENV, capture_output=True)
    ref, resumed = _final_state(ref_dir), _final_state(cut_dir)
    assert resumed["epoch"] == ref["epoch"] == 4
    for part in ("model", "ema"):
        for name, value in ref[part].items():
            assert torch.equal(value, resumed[part][name]), f"{part}.{name}"
    assert [r["train_loss"] for r in ref["history"]] == [r["train_loss"] for r in resumed["history"]]


def test_max_atoms_per_pass_trains_the_same_weights(tmp_path):
    """Batches passed through the model in parts (gradients accumulated) give the same training:
    losses, weights and validation errors, to rounding."""
    runs = {}
    for cap in ("0", "1"):  # whole batches; every structure alone
        out = tmp_path / f"cap{cap}"
        argv = [*TINY, "--output-dir", str(out), "--max-epochs", "2", "--max-steps-per-epoch", "3"]
        assert train_main([*argv, "--max-atoms-per-pass", cap, "--valid-batch-size", "8"]) == 0
        runs[cap] = _final_state(out)
    whole, parts = runs["0"], runs["1"]
    assert parts["settings"]["max_atoms_per_pass"] == 1
    for a, b in zip(whole["history"], parts["history"]):
        for key in ("train_loss", "valid_loss", "train_forces_rmse_meV_per_A", "valid_energy_rmse_meV_per_atom"):
            assert b[key] == pytest.approx(a[key], rel=1e-9), key
    for part in ("model", "ema"):
        for name, value in whole[part].items():
            assert torch.allclose(parts[part][name], value, rtol=1e-9, atol=1e-12), f"{part}.{name}"


def test_max_atoms_per_pass_refuses_a_negative_bound():
    with pytest.raises(SystemExit, match="max-atoms-per-pass must be 0"):
        resolve_options([*TINY, "--max-atoms-per-pass", "-1"])


def _ddp_run(out, *extra):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        "-m",
        "attnmace.train",
        *TINY,
        "--max-epochs",
        "2",
        "--max-steps-per-epoch",
        "4",
        "--output-dir",
        str(out),
        *extra,
    ]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_process_gloo(tmp_path):
    result = _ddp_run(tmp_path / "ddp")
    assert (tmp_path / "ddp" / "model.pt").is_file()
    assert result.stdout.count("epoch 2 ") == 1  # only rank 0 logs
    state = _final_state(tmp_path / "ddp")
    assert state["epoch"] == 2 and np.isfinite(state["history"][-1]["valid_loss"])
    # batches in parts of at most 16 atoms (the fixture's frames have 1-16): the ranks' batches
    # split into different numbers of parts, and the gradients are all-reduced once per step,
    # after each rank's last part
    _ddp_run(tmp_path / "parts", "--max-atoms-per-pass", "16")
    parts = _final_state(tmp_path / "parts")
    assert [r["train_loss"] for r in parts["history"]] == pytest.approx([r["train_loss"] for r in state["history"]])
    for name, value in state["model"].items():
        assert torch.allclose(parts["model"][name], value, rtol=1e-9, atol=1e-12), name


def test_resume_with_other_loss_weights_restarts_the_best_loss(tmp_path, caplog):
    out = tmp_path / "run"
    base = [*TINY, "--output-dir", str(out), "--max-steps-per-epoch", "2"]
    assert train_main([*base, "--max-epochs", "1"]) == 0
    assert _final_state(out)["best_valid"] < float("inf")
    caplog.set_level("WARNING")
    assert train_main([*base, "--max-epochs", "2", "--resume", "--energy-weight", "7"]) == 0
    assert "energy_weight 1.0 -> 7.0" in caplog.text
    state = _final_state(out)
    assert state["epoch"] == 2
    # the best loss is epoch 2's, measured with the new weights, not epoch 1's smaller one
    assert state["best_valid"] == pytest.approx(state["history"][-1]["valid_loss"])
    assert state["settings"]["energy_weight"] == 7.0


def test_resume_with_another_learning_rate_uses_it(tmp_path, caplog):
    out = tmp_path / "run"
    base = [*TINY, "--output-dir", str(out), "--max-steps-per-epoch", "2", "--lr", "0.01"]
    assert train_main([*base, "--max-epochs", "1"]) == 0
    assert _final_state(out)["history"][-1]["lr"] == pytest.approx(0.01)
    caplog.set_level("WARNING")
    assert train_main([*base[:-1], "0.002", "--max-epochs", "2", "--resume"]) == 0
    assert "learning rate differs" in caplog.text
    state = _final_state(out)
    assert state["history"][-1]["lr"] == pytest.approx(0.002)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(0.002)
    assert state["settings"]["lr"] == pytest.approx(0.002)


def test_init_from_starts_a_new_run_from_the_ema_weights_of_a_checkpoint(tmp_path, caplog):
    first = tmp_path / "first"
    assert train_main([*TINY, "--output-dir", str(first), "--max-epochs", "1", "--max-steps-per-epoch", "2"]) == 0
    saved = torch.load(first / "checkpoint.pt", map_location="cpu", weights_only=False)
    # other architecture options are overridden by the checkpoint's
    caplog.set_level("INFO")
    options = resolve_options(
        [*TINY, "--channels", "8", "--output-dir", str(tmp_path / "tuned"), "--init-from", str(first / "checkpoint.pt")]
    )
    trainer = build_trainer(options)
    assert "fine-tuning the model of" in caplog.text
    assert trainer.model.config.to_dict() == saved["model_config"]
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, saved["ema"][name].to(value.dtype)), name
    assert trainer.epoch == 0 and trainer.history == []
    # the run trains from there and keeps its own checkpoint
    tuned = tmp_path / "tuned"
    argv = [*TINY, "--output-dir", str(tuned), "--max-epochs", "1", "--max-steps-per-epoch", "2"]
    assert train_main([*argv, "--init-from", str(first / "checkpoint.pt"), "--lr", "0.001"]) == 0
    state = _final_state(tuned)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert state["history"][0]["lr"] == pytest.approx(0.001)


def test_init_from_takes_an_exported_model_and_may_set_its_logit_cap(tmp_path, one_step_run, caplog):
    """Fine-tuning a model file (a shipped model, say) starts from exactly its weights; the logit
    cap, which changes no weight, may be set for the fine-tune."""
    exported = tmp_path / "exported.pt"
    assert export_main([str(one_step_run / "checkpoint.pt"), str(exported)]) == 0
    given = rebuild_eager(exported)
    argv = [*TINY, "--output-dir", str(tmp_path / "tuned"), "--init-from", str(exported)]
    trainer = build_trainer(resolve_options(argv))
    assert trainer.model.config == given.config and given.config.attn_logit_cap == 0
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, given.state_dict()[name].to(value.dtype)), name
    caplog.set_level("INFO")
    capped = build_trainer(resolve_options([*argv, "--attn-logit-cap", "2.5"]))
    assert capped.model.config == dataclasses.replace(given.config, attn_logit_cap=2.5)
    assert "attention logit cap: 2.5 (the model of --init-from had 0)" in caplog.text
    for name, value in capped.model.state_dict().items():
        assert torch.equal(value, given.state_dict()[name].to(value.dtype)), name
    with pytest.raises(SystemExit, match="--attn-logit-cap: attn_logit_cap must be 0"):
        build_trainer(resolve_options([*argv, "--attn-logit-cap", "-1"]))
    plain = export_model(
        build_model(None, species=["C"], cutoffs=(2.5, 3.5), heads=0, channels=4, max_l=1), tmp_path / "plain.pt"
    )
    no_heads = [*TINY, "--output-dir", str(tmp_path / "p"), "--init-from", str(plain), "--attn-logit-cap", "2"]
    with pytest.raises(SystemExit, match=r"--attn-logit-cap: this model has no attention heads \(heads=0\)"):
        build_trainer(resolve_options(no_heads))
    # a shipped model by the name the calculator takes
    shipped = build_trainer(resolve_options([*TINY, "--output-dir", str(tmp_path / "g"), "--init-from", "gap20.pt"]))
    assert shipped.model.config.to_dict() == read_metadata(resolve_model_path("gap20.pt"))["config"]


@pytest.fixture(scope="module")
def one_step_run(tmp_path_factory):
    """The output directory of a tiny run of one step, shared by the tests that only read it."""
    run = tmp_path_factory.mktemp("one_step_run")
    assert train_main([*TINY, "--output-dir", str(run), "--max-epochs", "1", "--max-steps-per-epoch", "1"]) == 0
    return run


def test_config_yaml_records_the_architecture_of_a_model_taken_from_a_checkpoint(tmp_path, one_step_run):
    first = one_step_run
    trained = read_checkpoint(first / "checkpoint.pt")[0]
    # no architecture flags: the command line's defaults (cutoffs 5,5,5, preset attention) are ignored
    plain = ["--train-file", FIXTURE, "--batch-size", "4", "--dtype", "float64", "--device", "cpu"]
    tuned = tmp_path / "tuned"
    argv = [*plain, "--output-dir", str(tuned), "--max-epochs", "1", "--max-steps-per-epoch", "1"]
    assert train_main([*argv, "--init-from", str(first / "checkpoint.pt")]) == 0
    recorded = yaml.safe_load((tuned / "config.yaml").read_text())
    assert recorded["cutoffs"] == [2.5, 3.5] and recorded["channels"] == 4 and recorded["heads"] == 2
    assert recorded["correlation"] == [2, 2] and recorded["radial_mlp"] == [8]
    assert recorded["preset"] is None  # 4 channels is neither preset
    assert recorded["model"] == trained.to_dict()
    # the file itself, `model` record and all, is a --config that builds the same architecture
    again = resolve_options(
        ["--config", str(tuned / "config.yaml"), "--init-from", "", "--output-dir", str(tmp_path / "a")]
    )
    assert "model" not in again
    assert build_trainer(again).model.config == trained


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"channels": 8}, r"channels: 8 there, 4 here"),
        ({"cutoffs": [2.5, 4.0]}, r"cutoffs: \[2.5, 4.0\] there, \[2.5, 3.5\] here"),
        ({"species": ["C", "H"]}, r"species: \['C', 'H'\] there, \['C'\] here"),
        ({"num_heads": 4}, r"unknown field\(s\) \['num_heads'\]"),
    ],
)
def test_a_model_record_that_the_options_do_not_build_is_refused(tmp_path, one_step_run, edit, message):
    run = one_step_run
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert not any(k.startswith("_") for k in recorded)  # the record check leaves no private keys
    recorded["model"].update(edit)
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(recorded))
    options = resolve_options(["--config", str(edited), "--output-dir", str(tmp_path / "again")])
    with pytest.raises(SystemExit, match=message):
        build_trainer(options)


def test_config_yaml_names_the_preset_the_model_matches(tmp_path):
    argv = ["--train-file", FIXTURE, "--cutoffs", "2.5,3.5", "--preset", "baseline", "--radial-mlp", "8"]
    config = build_trainer(
        resolve_options([*argv, "--output-dir", str(tmp_path / "r"), "--dtype", "float64"])
    ).model.config
    recorded = _architecture_options(config)
    assert recorded["preset"] == "baseline" and recorded["channels"] == 64 and recorded["heads"] == 0


def test_add_layer_trains_a_deeper_model_that_starts_from_the_checkpoints_predictions(tmp_path, one_step_run, caplog):
    source = one_step_run / "checkpoint.pt"
    given = model_from_checkpoint(source)[0]
    deeper_dir = tmp_path / "deeper"
    argv = [*TINY, "--output-dir", str(deeper_dir), "--init-from", str(source), "--add-layer", "3.0"]
    caplog.set_level("INFO")
    trainer = build_trainer(resolve_options(argv))
    assert "--add-layer 3: 2 -> 3 layers" in caplog.text
    config = trainer.model.config
    assert config.cutoffs == (2.5, 3.5, 3.0) and config.correlation == (2, 2, 2)
    # the new layer's neighbour normalisation is measured on the training split
    assert config.avg_num_neighbors[2] == pytest.approx(average_neighbours(trainer.train_set.frames, [3.0])[0])
    assert config.avg_num_neighbors[2] != pytest.approx(config.avg_num_neighbors[1])
    frames = read_extxyz(FIXTURE, DataKeys(energy="REF_energy", forces="REF_forces"))
    data = atoms_to_graph(frames[0].to_atoms(), config.atomic_numbers, config.r_max)
    deeper = trainer.model.to(torch.float64).eval()
    before, after = given(dict(data)), deeper(dict(data))
    torch.testing.assert_close(after[keys.ENERGY], before[keys.ENERGY], rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(after[keys.FORCES], before[keys.FORCES], rtol=1e-10, atol=1e-10)
    # it trains, and its checkpoint and config.yaml describe the 3-layer model
    assert train_main([*argv, "--max-epochs", "1", "--max-steps-per-epoch", "2"]) == 0
    assert read_checkpoint(deeper_dir / "checkpoint.pt")[0].cutoffs == (2.5, 3.5, 3.0)
    assert yaml.safe_load((deeper_dir / "config.yaml").read_text())["cutoffs"] == [2.5, 3.5, 3.0]


def test_add_layer_needs_init_from(tmp_path):
    with pytest.raises(SystemExit, match="--add-layer deepens the model of --init-from"):
        resolve_options([*TINY, "--output-dir", str(tmp_path / "r"), "--add-layer", "3.0"])


@pytest.mark.parametrize("kind", ["missing", "other file", "other species"])
def test_init_from_refuses_what_is_not_a_usable_checkpoint(tmp_path, one_step_run, kind):
    first = one_step_run
    torch.save({"something": "else"}, tmp_path / "other.pt")
    sources = {"missing": tmp_path / "nothing.pt", "other file": tmp_path / "other.pt"}
    source = sources.get(kind, first / "checkpoint.pt")
    argv = [*TINY, "--output-dir", str(tmp_path / "tuned"), "--init-from", str(source)]
    if kind == "other species":
        argv += ["--species", "C,H"]  # the fixture holds C only: the data check passes, the model lacks H
        match = "knows"
    else:
        match = {"missing": "no such file.*shipped models", "other file": "not a training checkpoint"}[kind]
    with pytest.raises(SystemExit, match=match):
        build_trainer(resolve_options(argv))


@pytest.mark.parametrize("fmt", ["extxyz", "h5"])
def test_isolated_atom_frames_set_e0_and_leave_the_loss(tmp_path, fmt, caplog):
    data = FIXTURE
    if fmt == "h5":
        data = str(tmp_path / "data.h5")
        assert preprocess_main([FIXTURE, data, "--virial-key", "REF_virial"]) == 0
    frames = read_extxyz(FIXTURE, DataKeys(virial="REF_virial"))
    single = [f for f in frames if len(f.numbers) == 1]
    assert len(single) == 1  # the fixture's Single_Atom frame
    common = [*TINY, "--train-file", data, "--output-dir", str(tmp_path / "r"), "--lazy"]
    with caplog.at_level("INFO", logger="attnmace"):
        trainer = build_trainer(resolve_options([*common, "--e0s", "isolated"]))
    assert "1 single-atom frame(s) set E0" in caplog.text
    assert trainer.model.config.e0s == pytest.approx((single[0].energy,))
    kept = [trainer.train_set[i] for i in range(len(trainer.train_set))]
    kept += [trainer.valid_set[i] for i in range(len(trainer.valid_set))]
    assert len(kept) == len(frames) - 1 and min(int(g["num_atoms"].sum()) for g in kept) > 1
    fitted = build_trainer(resolve_options([*common, "--e0s", "fit"]))  # fitted E0s: the frame stays
    assert len(fitted.train_set) + len(fitted.valid_set) == len(frames)


def test_max_hours_stops_before_an_epoch_that_would_end_late(tmp_path, caplog):
    out = tmp_path / "run"
    base = [*TINY, "--output-dir", str(out), "--max-steps-per-epoch", "2", "--max-epochs", "50"]
    caplog.set_level("INFO")
    # a limit shorter than one epoch: the first epoch runs (its checkpoint is written), no second
    assert train_main([*base, "--max-hours", "1e-9"]) == 0
    assert _final_state(out)["epoch"] == 1 and "time limit" in caplog.text
    # --resume continues with a fresh budget; a generous one leaves max_epochs to end the run
    assert train_main([*base, "--max-epochs", "3", "--resume", "--max-hours", "1"]) == 0
    state = _final_state(out)
    assert state["epoch"] == 3 and len(state["history"]) == 3


def test_snapshots_keep_the_ema_weights_of_every_nth_epoch(tmp_path):
    from attnmace.train.checkpoint import model_from_checkpoint, read_checkpoint

    out = tmp_path / "run"
    args = [*TINY, "--output-dir", str(out), "--max-steps-per-epoch", "2", "--max-epochs", "4"]
    assert train_main([*args, "--snapshot-every", "2"]) == 0
    kept = sorted(p.name for p in (out / "snapshots").iterdir())
    assert kept == ["epoch_0002.pt", "epoch_0004.pt"]
    final = _final_state(out)
    config, weights, state = read_checkpoint(out / "snapshots" / "epoch_0004.pt")
    assert "optimizer" not in state and config.to_dict() == final["model_config"]
    for name, value in final["ema"].items():  # the EMA weights, not the raw ones
        assert torch.equal(weights[name], value), name
    model, extra = model_from_checkpoint(out / "snapshots" / "epoch_0002.pt")
    assert extra["epoch"] == 2 and extra["weights"] == "ema"
    assert extra["valid_metrics"]["forces_rmse_meV_per_A"] == pytest.approx(
        final["history"][1]["valid_forces_rmse_meV_per_A"]
    )
    # attnmace-eval reads a snapshot like a checkpoint: the last one gives the checkpoint's numbers
    reports = []
    for name in ("snapshots/epoch_0004.pt", "checkpoint.pt"):
        reports.append(tmp_path / f"{Path(name).stem}.json")
        assert eval_main([str(out / name), FIXTURE, "--virial-key", "REF_virial", "--json", str(reports[-1])]) == 0
    first, second = (json.loads(r.read_text())["overall"] for r in reports)
    assert first == second and np.isfinite(first["forces_rmse_meV_per_A"])
    # a stopped run's last epoch kept afterwards from its checkpoint: the snapshot the trainer writes
    copy = tmp_path / "copy"
    copy.mkdir()
    shutil.copy(out / "checkpoint.pt", copy / "checkpoint.pt")
    assert snapshot_from_checkpoint(copy) == copy / "snapshots" / "epoch_0004.pt"
    kept_later = torch.load(copy / "snapshots" / "epoch_0004.pt", weights_only=False)
    by_trainer = torch.load(out / "snapshots" / "epoch_0004.pt", weights_only=False)
    assert kept_later.keys() == by_trainer.keys() and kept_later["weights"] == "ema" and kept_later["epoch"] == 4
    for name, value in by_trainer["model"].items():
        assert torch.equal(kept_later["model"][name], value), name


@pytest.mark.parametrize("fmt", ["extxyz", "h5"])
def test_config_type_weights_scale_the_training_frames_only(tmp_path, fmt):
    data = FIXTURE
    if fmt == "h5":
        data = str(tmp_path / "data.h5")
        assert preprocess_main([FIXTURE, data, "--virial-key", "REF_virial"]) == 0
    common = [*TINY, "--train-file", data, "--output-dir", str(tmp_path / "r"), "--valid-fraction", "0.2"]
    plain = build_trainer(resolve_options(common))
    config = tmp_path / "weights.yaml"
    config.write_text(yaml.safe_dump({"config_type_weights": {"LD_iter1": 4, "Diamond": 0.5}}))
    weighted = build_trainer(resolve_options([*common, "--config", str(config)]))
    factor = {"LD_iter1": 4.0, "Diamond": 0.5}
    types = [plain.train_set.frames[i].config_type for i in range(len(plain.train_set))]
    assert {"LD_iter1", "Diamond"} <= set(types)
    for i, config_type in enumerate(types):
        # same frames in the same order, each weight scaled by its type's factor
        assert weighted.train_set.frames[i].config_type == config_type
        expected = float(plain.train_set[i]["weight"]) * factor.get(config_type, 1.0)
        assert float(weighted.train_set[i]["weight"]) == pytest.approx(expected)
    valid = [float(weighted.valid_set[i]["weight"]) for i in range(len(weighted.valid_set))]
    assert valid == [float(plain.valid_set[i]["weight"]) for i in range(len(plain.valid_set))]
    # JSON on the command line does the same
    flag = build_trainer(resolve_options([*common, "--config-type-weights", '{"LD_iter1": 4, "Diamond": 0.5}']))
    assert [float(flag.train_set[i]["weight"]) for i in range(len(types))] == [
        float(weighted.train_set[i]["weight"]) for i in range(len(types))
    ]


@pytest.mark.parametrize(
    "given, message",
    [
        ('{"LD_iter2": 4}', r"names \['LD_iter2'\], not among"),
        ('{"LD_iter1": -1}', "must be finite and >= 0"),
        ('{"LD_iter1": "four"}', "is not a number"),
        ("LD_iter1=4", "is not JSON"),
        ("[4]", "must map config types to weights"),
    ],
)
def test_config_type_weights_refuse_what_they_cannot_apply(tmp_path, given, message):
    options = resolve_options([*TINY, "--output-dir", str(tmp_path / "r"), "--config-type-weights", given])
    with pytest.raises(SystemExit, match=message):
        build_trainer(options)


def test_training_sets_inner_cutoffs_from_the_shortest_training_distances(one_step_run):
    from attnmace.train.data import split_by_config_type
    from attnmace.train.stats import shortest_distances

    config = read_checkpoint(one_step_run / "checkpoint.pt")[0]
    frames = read_extxyz(FIXTURE, DataKeys())
    train = [frames[i] for i in split_by_config_type(frames, 0.1, 0)["train"]]
    shortest = shortest_distances(train, [6], 2.5)[0, 0]
    assert config.inner_cutoffs == ((np.floor(shortest * 100) / 100,),)
    recorded = yaml.safe_load((one_step_run / "config.yaml").read_text())
    assert recorded["model"]["inner_cutoffs"] == [[config.inner_cutoffs[0][0]]]
    assert "inner_cutoffs" not in recorded or recorded["inner_cutoffs"] == "auto"  # the option, not the matrix


@pytest.mark.parametrize(
    "option, expected",
    [("off", ()), ('{"C-C": 0.9}', ((0.9,),))],
)
def test_inner_cutoffs_option(tmp_path, option, expected):
    options = resolve_options([*TINY, "--output-dir", str(tmp_path), "--inner-cutoffs", option])
    assert build_trainer(options).model.config.inner_cutoffs == expected


def test_inner_cutoffs_option_names_a_bad_pair(tmp_path):
    options = resolve_options([*TINY, "--output-dir", str(tmp_path), "--inner-cutoffs", '{"C-Li": 0.9}'])
    with pytest.raises(SystemExit, match="'C-Li' is not two of \\['C'\\]"):
        build_trainer(options)


def test_export_sets_the_inner_cutoffs_of_a_model_file(tmp_path, one_step_run, capsys):
    plain = tmp_path / "plain.pt"
    assert export_main([str(one_step_run / "checkpoint.pt"), str(plain), "--inner-cutoffs", "off"]) == 0
    assert read_metadata(plain)["config"]["inner_cutoffs"] == []
    floored = tmp_path / "floored.pt"
    assert export_main([str(plain), str(floored), "--inner-cutoffs", "auto", "--data", FIXTURE]) == 0
    assert f"EMA weights of epoch 1 of {plain}" in capsys.readouterr().out  # the source's record
    metadata = read_metadata(floored)
    shortest = min(
        a.get_all_distances(mic=True)[np.triu_indices(len(a), 1)].min() for a in _fixture_atoms() if len(a) > 1
    )
    assert metadata["config"]["inner_cutoffs"] == [[np.floor(shortest * 100) / 100]]
    assert metadata["extra"]["inner_cutoffs"] == {"option": "auto", "data": [FIXTURE]}
    assert metadata["extra"]["epoch"] == read_metadata(plain)["extra"]["epoch"]  # the source's record stays
    calcs = [AttnMACECalculator(p, device="cpu") for p in (plain, floored)]
    for atoms in _fixture_atoms()[:3]:
        energies = [c.get_potential_energy(atoms.copy()) for c in calcs]
        assert energies[0] == pytest.approx(energies[1], abs=1e-10)
    with pytest.raises(SystemExit, match="give --data"):
        export_main([str(plain), str(tmp_path / "x.pt"), "--inner-cutoffs", "auto"])


def test_export_sets_the_logit_cap_and_training_takes_it(tmp_path, one_step_run, capsys):
    plain = tmp_path / "plain.pt"
    assert export_main([str(one_step_run / "checkpoint.pt"), str(plain)]) == 0
    capped = tmp_path / "capped.pt"
    assert export_main([str(plain), str(capped), "--logit-cap", "0.01"]) == 0
    assert "attention logit cap: 0.01" in capsys.readouterr().out
    metadata = read_metadata(capped)
    assert metadata["config"]["attn_logit_cap"] == 0.01 and metadata["extra"]["attn_logit_cap"] == 0.01
    assert read_metadata(plain)["config"]["attn_logit_cap"] == 0.0
    calcs = [AttnMACECalculator(p, device="cpu") for p in (plain, capped)]
    atoms = _fixture_atoms()[0]
    energies = [c.get_potential_energy(atoms.copy()) for c in calcs]
    assert energies[0] != pytest.approx(energies[1], abs=1e-9)  # a cap this small acts
    with pytest.raises(SystemExit, match="logit_cap must be 0"):
        export_main([str(plain), str(tmp_path / "x.pt"), "--logit-cap", "-1"])
    trainer = build_trainer(resolve_options([*TINY, "--output-dir", str(tmp_path / "run"), "--attn-logit-cap", "2.5"]))
    assert trainer.model.config.attn_logit_cap == 2.5


def _fixture_atoms():
    frames = read_extxyz(FIXTURE, DataKeys())
    return [frames[i].to_atoms() for i in range(len(frames))]


def test_a_checkpoint_from_before_the_inner_cutoffs_resumes(tmp_path, one_step_run):
    """Checkpoints written before a configuration field existed lack it: resuming fills in its
    default instead of calling the configuration another one."""
    import shutil

    run = tmp_path / "old_run"
    shutil.copytree(one_step_run, run)
    state = torch.load(run / "checkpoint.pt", weights_only=False)
    for name in ("inner_cutoffs", "inner_width", "attn_logit_cap"):
        del state["model_config"][name]
    torch.save(state, run / "checkpoint.pt")
    argv = [*TINY, "--output-dir", str(run), "--max-epochs", "2", "--max-steps-per-epoch", "1", "--resume"]
    assert train_main(argv) == 0
    config = read_checkpoint(run / "checkpoint.pt")[0]
    assert config.inner_cutoffs == () and read_checkpoint(run / "checkpoint.pt")[2]["epoch"] == 2
    state["model_config"]["channels"] = 8  # a real difference is still refused, by name
    torch.save(state, run / "checkpoint.pt")
    trainer = build_trainer(resolve_options([*TINY, "--output-dir", str(tmp_path / "other")]))
    trainer.output_dir = run  # its model has 4 channels, the checkpoint says 8
    with pytest.raises(ValueError, match="another model configuration: .*'channels': 8"):
        trainer.resume()


def test_export_gives_pairs_absent_from_the_data_the_models_own_zbl_switch_off(tmp_path):
    from ase.data import covalent_radii
    from helpers import TINY as TINY_MODEL

    model = build_model(None, species=["Li", "C"], cutoffs=(2.2, 3.0), repulsion_factor=0.8, **TINY_MODEL)
    source = export_model(model, tmp_path / "li_c.pt")
    with pytest.warns(UserWarning, match=r"plain ZBL term reached past the inner cutoff of C-C \(1.22 Å > 1.13 Å\)"):
        assert export_main([str(source), str(tmp_path / "out.pt"), "--inner-cutoffs", "auto", "--data", FIXTURE]) == 0
    inner = read_metadata(tmp_path / "out.pt")["config"]["inner_cutoffs"]  # the carbon data has no Li
    assert inner[0][0] == pytest.approx(0.8 * 2 * covalent_radii[3] + 0.1)
    assert inner[0][1] == inner[1][0] == pytest.approx(0.8 * (covalent_radii[3] + covalent_radii[6]) + 0.1)


@pytest.mark.parametrize("dtype", ["float16", "bogus"])
def test_training_precision_is_float32_or_float64(tmp_path, dtype):
    with pytest.raises(SystemExit, match=f"--dtype must be float32 or float64, not '{dtype}'"):
        resolve_options([*TINY, "--output-dir", str(tmp_path / "r"), "--dtype", dtype])


def test_a_diverging_run_stops_with_its_last_checkpoint_intact(tmp_path, monkeypatch):
    """A non-finite loss stops training with an error that names the batch, before the weights
    take it; the checkpoint keeps the last finished epoch."""
    from attnmace.train import trainer as trainer_module

    run = tmp_path / "r"
    argv = [*TINY, "--output-dir", str(run), "--max-steps-per-epoch", "2"]
    assert train_main([*argv, "--max-epochs", "1"]) == 0
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    real = trainer_module.compute_loss

    def poisoned(out, batch, weights, norms=None):
        parts = real(out, batch, weights, norms) if norms is not None else real(out, batch, weights)
        if norms is not None:  # a training step, not the warm-up pass
            parts["total"] = parts["total"] * float("nan")
        return parts

    monkeypatch.setattr(trainer_module, "compute_loss", poisoned)
    with pytest.raises(
        SystemExit, match=r"training diverged in epoch 2: the loss is nan on the batch of training frames \[\d"
    ):
        train_main([*argv, "--max-epochs", "2", "--resume"])
    after = torch.load(run / "checkpoint.pt", weights_only=False)
    assert after["epoch"] == 1
    for name, value in saved["model"].items():
        assert torch.equal(after["model"][name], value), name


def test_the_ema_decay_warms_up_and_old_checkpoints_keep_the_full_decay(tmp_path, one_step_run):
    """With the update count the EMA follows training from the first steps (decay 0.1, 2/11, ...
    up to --ema-decay), where a fixed 0.99 would keep 70 % of the random initial weights after
    36 steps; a checkpoint without the count resumes with the full decay it was trained with."""
    trainer = build_trainer(resolve_options([*TINY, "--output-dir", str(tmp_path / "r"), "--ema-decay", "0.99"]))
    params = list(trainer.model.parameters())
    with torch.no_grad():
        for e, p in zip(trainer.ema.parameters(), params):
            e.zero_()
            p.fill_(1.0)
    expected = 0.0
    for n in range(3):
        decay = min(0.99, (1 + n) / (10 + n))
        assert trainer.ema_decay_now() == pytest.approx(decay)
        trainer._update_ema()
        expected = decay * expected + (1 - decay) * 1.0
        for e in trainer.ema.parameters():
            torch.testing.assert_close(e, torch.full_like(e, expected))
    trainer.ema_updates = 10_000
    assert trainer.ema_decay_now() == pytest.approx(0.99)
    state = torch.load(one_step_run / "checkpoint.pt", weights_only=False)
    assert state["ema_updates"] == 1  # one step
    del state["ema_updates"]
    trainer.load_state_dict(state)
    assert trainer.ema_decay_now() == pytest.approx(0.99)


def test_config_file_values_are_converted_like_flags(tmp_path):
    """YAML reads 1e-3 as text and a mapping as a dict: both work as they would as flags, and a
    value that cannot be converted is named with its file."""
    config = tmp_path / "train.yaml"
    config.write_text("lr: 1e-3\nmax_epochs: 3.0\nspecies: [C]\ne0s: {C: -1.5}\nlazy: true\n")
    opts = resolve_options([*TINY, "--config", str(config), "--output-dir", str(tmp_path / "r")])
    assert opts["lr"] == 1e-3 and opts["max_epochs"] == 3 and isinstance(opts["max_epochs"], int)
    assert opts["species"] == "C" and opts["e0s"] == {"C": -1.5} and opts["lazy"] is True
    assert build_trainer(opts).model.config.e0s == pytest.approx((-1.5,))
    for text, message in (
        ("batch_size: two", "batch_size in .* must be a number, not 'two'"),
        ("max_epochs: 2.5", "max_epochs in .* must be a whole number"),
        ("lr: [1, 2]", "lr in .* must be a number"),
        ("resume: maybe", "resume in .* must be true or false"),
        ("output_dir: {a: 1}", "output_dir in .* must be text"),
    ):
        config.write_text(text + "\n")
        with pytest.raises(SystemExit, match=message):
            resolve_options([*TINY, "--config", str(config)])


def test_e0s_option_names_its_forms(tmp_path, caplog):
    common = [*TINY, "--output-dir", str(tmp_path / "r")]
    for bad in ("avrage", "{C: -1}", "[1, 2]"):
        with pytest.raises(SystemExit, match="--e0s must be fit .*average.*isolated.*JSON object"):
            build_trainer(resolve_options([*common, "--e0s", bad]))
    with pytest.raises(SystemExit, match="--e0s values must be numbers"):
        build_trainer(resolve_options([*common, "--e0s", '{"C": "low"}']))
    fitted = build_trainer(resolve_options([*common, "--e0s", "fit"])).model.config.e0s
    assert build_trainer(resolve_options([*common, "--e0s", "average"])).model.config.e0s == fitted  # MACE's name
    with caplog.at_level("WARNING", logger="attnmace"):
        build_trainer(resolve_options([*common, "--e0s", '{"C": -1.0, "N": -3.0}']))
    assert "['N'] are not among the model's species ['C'] and are ignored" in caplog.text


def test_resume_says_which_architecture_options_it_does_not_use(tmp_path, one_step_run, caplog):
    out = tmp_path / "r"
    shutil.copytree(one_step_run, out)
    argv = [*TINY, "--output-dir", str(out), "--resume", "--max-epochs", "1"]
    with caplog.at_level("WARNING", logger="attnmace"):
        build_trainer(resolve_options(argv))  # the run's own options: nothing to say
    assert "options not used" not in caplog.text
    with caplog.at_level("WARNING", logger="attnmace"):
        build_trainer(resolve_options([*argv, "--channels", "16"]))
    assert "options not used, the architecture comes from the model of" in caplog.text
    assert "channels 16 (used: 4)" in caplog.text
    caplog.clear()
    # a resumable fine-tune's first start (no checkpoint yet): the cap it sets is used, not ignored
    fresh = [*TINY, "--output-dir", str(tmp_path / "f"), "--resume", "--init-from", str(one_step_run / "model.pt")]
    with caplog.at_level("WARNING", logger="attnmace"):
        trainer = build_trainer(resolve_options([*fresh, "--attn-logit-cap", "5"]))
    assert trainer.model.config.attn_logit_cap == 5.0 and "options not used" not in caplog.text


def test_an_interrupted_run_says_what_its_checkpoint_holds(tmp_path, monkeypatch, capsys):
    from attnmace.train import trainer as trainer_module

    run = tmp_path / "r"
    argv = [*TINY, "--output-dir", str(run), "--max-steps-per-epoch", "2"]
    assert train_main([*argv, "--max-epochs", "1"]) == 0

    def interrupted(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "fit", interrupted)
    with pytest.raises(SystemExit) as stop:
        train_main([*argv, "--max-epochs", "2", "--resume"])
    assert stop.value.code == 130
    assert f"interrupted; {run / 'checkpoint.pt'} holds epoch 1: continue with --resume" in capsys.readouterr().err
    meta = read_metadata(run / "model.pt")
    assert meta["extra"]["training"]["valid_file"] is None  # not the text "None"


def test_command_line_tools_give_one_line_errors_for_a_directory(tmp_path, capsys):
    from attnmace.train import cli

    with pytest.raises(SystemExit) as stop:
        cli._run(lambda: eval_main([str(tmp_path), FIXTURE]))
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err == f"error: {str(tmp_path)!r} is a directory, not a model file\n"


def test_validation_pairs_closer_than_the_inner_cutoffs_are_named(tmp_path, caplog):
    import ase.io

    frames = [a for a in ase.io.read(FIXTURE, ":") if len(a) > 2][:3]
    atoms = frames[0]
    direction = atoms.positions[1] - atoms.positions[0]
    atoms.positions[1] = atoms.positions[0] + 0.9 * direction / np.linalg.norm(direction)
    valid = tmp_path / "valid.extxyz"
    ase.io.write(valid, frames)
    argv = [*TINY, "--output-dir", str(tmp_path / "r"), "--valid-file", str(valid)]
    with caplog.at_level("WARNING", logger="attnmace"):
        build_trainer(resolve_options(argv))
    assert "validation frames have pairs closer than the inner cutoffs" in caplog.text
    assert "C-C 0.900 Å" in caplog.text


def test_training_and_evaluation_with_energy_only_frames(tmp_path, capsys, caplog):
    """Frames without forces train on their energies only; a set without any forces trains and
    evaluates on energies (--forces-key none), with no force metrics."""
    import ase.io

    frames = [a for a in ase.io.read(FIXTURE, ":") if len(a) > 1][:12]
    for atoms in frames[::2]:
        del atoms.arrays["REF_forces"]
    mixed = tmp_path / "mixed.extxyz"
    ase.io.write(mixed, frames)
    run = tmp_path / "r"
    argv = [*TINY, "--train-file", str(mixed), "--output-dir", str(run), "--max-steps-per-epoch", "2"]
    with caplog.at_level("INFO", logger="attnmace"):
        assert train_main([*argv, "--max-epochs", "1", "--valid-fraction", "0.25"]) == 0
    assert "6 of the training frames have no forces: energy only" in caplog.text
    assert "E0s (eV, fit): C " in caplog.text
    history = list(csv.DictReader(open(run / "metrics.csv")))
    assert np.isfinite(float(history[0]["train_forces_rmse_meV_per_A"]))

    energy_only = [*argv, "--forces-key", "none", "--output-dir", str(tmp_path / "e")]
    assert train_main([*energy_only, "--max-epochs", "1"]) == 0
    row = list(csv.DictReader(open(tmp_path / "e" / "metrics.csv")))[0]
    assert row["train_forces_rmse_meV_per_A"] == "nan" and row["valid_forces_rmse_meV_per_A"] == "nan"
    assert np.isfinite(float(row["valid_loss"])) and np.isfinite(float(row["valid_energy_rmse_meV_per_atom"]))

    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    plots = tmp_path / "plots"
    assert eval_main([str(run / "model.pt"), str(mixed), "--json", str(out_json), "--plots", str(plots)]) == 0
    overall = json.loads(out_json.read_text())["overall"]
    assert overall["n_frames"] == 12 and overall["n_frames_with_forces"] == 6 and "forces_rmse_meV_per_A" in overall
    calc = AttnMACECalculator(run / "model.pt")
    expected = np.concatenate([calc.get_forces(a) - a.arrays["REF_forces"] for a in frames[1::2]])
    assert overall["forces_rmse_meV_per_A"] == pytest.approx(1e3 * np.sqrt(np.mean(expected**2)), rel=1e-6)
    capsys.readouterr()
    assert eval_main([str(run / "model.pt"), str(mixed), "--forces-key", "none", "--plots", str(plots)]) == 0
    printed = capsys.readouterr().out
    assert "nan" in printed.splitlines()[2]  # the overall row: no force errors
