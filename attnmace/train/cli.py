"""Command-line tools: ``attnmace-train``, ``attnmace-eval``, ``attnmace-export`` and
``attnmace-preprocess``.

Every ``attnmace-train`` flag can also be set in a YAML file given with ``--config`` (keys are the
flag names with ``_`` or ``-``); a flag given on the command line wins over the file.
"""

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import yaml

from ..config import PRESETS, ModelConfig, make_config
from ..export import export_model
from ..model import build_model, capped_config, with_inner_cutoffs, with_logit_cap
from ..runtime import resolve_device, retain_freed_memory
from .checkpoint import eager_model, read_checkpoint
from .data import (
    DataKeys,
    check_species,
    config_types_of,
    load_frames,
    num_atoms_of,
    species_in,
    split_by_config_type,
    write_hdf5,
)
from .evaluate import compute_metrics, evaluate_file, parity_plots
from .graphs import GraphDataset
from .stats import average_neighbours, e0s_from_isolated_atoms, fit_e0s, inner_cutoffs_from_data, scale_and_shift
from .trainer import Trainer, TrainSettings, _rank

log = logging.getLogger("attnmace.train")

_MODEL_FIELDS = {f.name for f in dataclasses.fields(ModelConfig)} - {
    "species",
    "avg_num_neighbors",
    "e0s",
    "scale",
    "shift",
    "inner_cutoffs",  # measured on the data, like the normalisation
}


def _floats(text: str) -> List[float]:
    return [float(x) for x in str(text).replace(" ", "").strip("()[]").split(",") if x]


def _ints(text: str) -> List[int]:
    return [int(x) for x in _floats(text)]


# flag name -> (type, default, help)
TRAIN_OPTIONS: Dict[str, tuple] = {
    "train_file": (str, None, "training data (.extxyz/.xyz or attnmace .h5) (required: flag or config file)"),
    "valid_file": (str, None, "validation data; otherwise --valid-fraction of the training data"),
    "valid_fraction": (
        float,
        0.1,
        "this fraction of the training file's frames is held out for validation, shared among the "
        "config types by their sizes; single-atom frames stay in training",
    ),
    "energy_key": (str, "REF_energy", "info key of the total energy (eV)"),
    "forces_key": (
        str,
        "REF_forces",
        "arrays key of the forces (eV/Å); frames without it are energy-only (no force term), and "
        "'none' reads every frame as energy-only",
    ),
    "stress_key": (str, None, "info key of the stress (eV/Å^3, ASE sign)"),
    "virial_key": (str, None, "info key of the virial (eV, = -stress * volume)"),
    "weight_key": (str, "config_weight", "info key of per-configuration loss weights"),
    "config_type_key": (str, "config_type", "info key of the configuration type"),
    "config_type_weights": (
        str,
        None,
        "loss weight per configuration type of the training frames, as in MACE: a YAML mapping or "
        "JSON such as '{\"LD_iter1\": 4}'; it multiplies each frame's own weight, unlisted types "
        "keep 1, validation frames are not weighted",
    ),
    "species": (str, None, "comma-separated elements of the model (default: those in the data)"),
    "preset": (str, "attention", f"model preset: {', '.join(PRESETS)}"),
    "cutoffs": (_floats, "5,5,5", "one cutoff per layer in Å, e.g. 3,5,5"),
    "channels": (int, None, "feature channels"),
    "heads": (int, None, "attention heads (0 = plain MACE)"),
    "max_l": (int, None, "max l of the hidden features"),
    "sh_max_l": (int, None, "max l of the spherical harmonics"),
    "correlation": (_ints, None, "body order per layer (one value or comma-separated)"),
    "attn_channels": (int, None, "channels per l of the attention query/key space"),
    "attn_max_l": (int, None, "max l of the attention query/key space"),
    "attn_logit_cap": (float, None, "soft cap c of the attention logits, c*tanh(l/c) (0: none)"),
    "num_radial": (int, None, "Bessel functions"),
    "radial_mlp": (_ints, None, "hidden sizes of the radial MLP, e.g. 64,64,64"),
    "readout_mlp": (int, None, "hidden size of the last readout"),
    "e0s": (
        str,
        "fit",
        "'fit' (least squares; 'average' is MACE's name for it), 'isolated' (the single-atom frames, "
        "which stay in training and out of the loss) or JSON {symbol: eV} (in a --config file also a mapping)",
    ),
    "inner_cutoffs": (
        str,
        "auto",
        "below each species pair's inner cutoff the network's radial input is frozen and the ZBL "
        "term alone repels (no energy hole below the data): 'auto' (each pair's shortest distance "
        "in the training data), 'off', or JSON such as '{\"C-C\": 0.95}' (other pairs: auto)",
    ),
    "max_epochs": (int, 200, "maximum number of epochs"),
    "batch_size": (int, 8, "training batch size (structures)"),
    "valid_batch_size": (int, 16, "validation batch size"),
    "lr": (float, 5e-3, "initial learning rate"),
    "weight_decay": (float, 5e-7, "AdamW weight decay"),
    "clip_grad": (float, 10.0, "gradient-norm clipping (0: off)"),
    "scheduler": (str, "plateau", "plateau | cosine | none"),
    "plateau_factor": (float, 0.8, "LR factor of the plateau scheduler"),
    "plateau_patience": (int, 5, "patience (epochs) of the plateau scheduler"),
    "ema_decay": (float, 0.99, "EMA decay of the weights used for validation and export (0: off)"),
    "patience": (int, 30, "early stopping after this many epochs without improvement"),
    "energy_weight": (float, 1.0, "loss weight of energy per atom"),
    "forces_weight": (float, 10.0, "loss weight of forces"),
    "stress_weight": (float, 1.0, "loss weight of stress"),
    "huber_delta": (float, 0.0, "Huber loss delta (0: squared error)"),
    "max_steps_per_epoch": (int, 0, "cap on steps per epoch (0: all)"),
    "max_hours": (
        float,
        0.0,
        "wall-time budget of this invocation: no epoch is started that would end after it, judged "
        "by its longest epoch so far (0: none); continue later with --resume",
    ),
    "snapshot_every": (
        int,
        0,
        "keep the EMA weights of every n-th epoch as output_dir/snapshots/epoch_NNNN.pt, readable "
        "like a checkpoint.pt (0: none)",
    ),
    "max_atoms_per_pass": (
        int,
        0,
        "pass each training and validation batch through the model in parts of at most this many "
        "atoms, accumulating the gradients: the same loss and gradients with the memory of one part "
        "(0: whole batches)",
    ),
    "device": (str, None, "cpu or cuda (default: cuda if available)"),
    "dtype": (str, "float32", "float32 | float64: the precision of training"),
    "seed": (int, 0, "seed of initial weights, split and batch order"),
    "output_dir": (str, "runs/attnmace", "output directory"),
    "resume": (bool, False, "continue from output_dir/checkpoint.pt"),
    "init_from": (
        str,
        None,
        "fine-tune: start from the weights of this training checkpoint.pt (its EMA ones when saved), "
        "exported model file or shipped model name (gap20.pt); architecture, E0s and normalisation come "
        "from it (except --attn-logit-cap, which changes no weight), the optimizer and the epochs start afresh",
    ),
    "add_layer": (
        float,
        None,
        "with --init-from: append a layer of this cutoff (Å) to that model, started so that the "
        "deeper model predicts exactly what the given one does (attnmace.train.grow), then train it",
    ),
    "lazy": (bool, False, "do not cache neighbour lists in memory (large HDF5 datasets)"),
}


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="attnmace-train", description="Train an AttnMACE model.")
    parser.add_argument("--config", help="YAML file with any of the options below")
    for name, (typ, default, text) in TRAIN_OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if typ is bool:
            parser.add_argument(flag, action="store_true", default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(
                flag,
                type=typ if typ not in (_floats, _ints) else str,
                default=argparse.SUPPRESS,
                help=text if "(default" in text or "(required" in text else f"{text} (default: {default})",
            )
    return parser


def resolve_options(argv: Optional[List[str]] = None) -> Dict[str, Any]:
    """Defaults, then the YAML file, then command-line flags."""
    args = vars(train_parser().parse_args(argv))
    options = {name: default for name, (_, default, _) in TRAIN_OPTIONS.items()}
    config_path = args.pop("config", None)
    record = None
    from_file: Dict[str, Any] = {}
    if config_path:
        with open(config_path) as fh:
            from_file = yaml.safe_load(fh) or {}
        if not isinstance(from_file, dict):
            raise SystemExit(f"attnmace-train: {config_path} must hold a mapping of options")
        # A run's own config.yaml also records its model config under `model`: the architecture
        # options beside it rebuild that model, so the record is not an option; build_trainer
        # checks that the model it builds matches it.
        record = from_file.pop("model") if isinstance(from_file.get("model"), dict) else None
        unknown = [k for k in from_file if k.replace("-", "_") not in TRAIN_OPTIONS]
        if unknown:
            raise SystemExit(f"attnmace-train: unknown option(s) {unknown} in {config_path}")
        options.update(
            {k.replace("-", "_"): _from_yaml(k.replace("-", "_"), v, config_path) for k, v in from_file.items()}
        )
    options.update(args)
    options["_given"] = {k.replace("-", "_") for k in from_file} | set(args)
    if record is not None:
        options["_model_record"] = {"source": config_path, "fields": record}
    for name in ("cutoffs", "radial_mlp", "correlation"):
        if options[name] is not None and not isinstance(options[name], list):
            options[name] = (_ints if name != "cutoffs" else _floats)(options[name])
    if options["max_atoms_per_pass"] < 0:
        raise SystemExit(
            "attnmace-train: --max-atoms-per-pass must be 0 (whole batches) or more, "
            f"not {options['max_atoms_per_pass']}"
        )
    if options["add_layer"] is not None and not options["init_from"]:
        raise SystemExit("attnmace-train: --add-layer deepens the model of --init-from; give --init-from too")
    if options["train_file"] is None:
        raise SystemExit("attnmace-train: --train-file is required (flag or config file)")
    if options["dtype"] not in ("float32", "float64"):  # float16/bfloat16 lose the forces' gradients
        raise SystemExit(f"attnmace-train: --dtype must be float32 or float64, not {options['dtype']!r}")
    options["device"] = _device_option(options["device"], "attnmace-train")
    return options


#: options that also take a YAML mapping (each parses JSON text the same way)
_MAPPING_OPTIONS = ("e0s", "config_type_weights", "inner_cutoffs")


def _from_yaml(name: str, value: Any, source: str) -> Any:
    """A value of a ``--config`` file converted as its flag would be (YAML reads ``1e-3`` as a
    string and ``5`` as an int), or a SystemExit naming the option, its value and the file."""
    typ = TRAIN_OPTIONS[name][0]
    if value is None:
        return None

    def refuse(expected: str):
        raise SystemExit(f"attnmace-train: {name} in {source} must be {expected}, not {value!r}")

    if typ is bool:
        return value if isinstance(value, bool) else refuse("true or false")
    if typ in (_floats, _ints):
        return value  # lists or comma-separated text: converted with the command line's values
    if typ is str:
        if isinstance(value, dict):
            return value if name in _MAPPING_OPTIONS else refuse("text")
        if isinstance(value, list):
            return ",".join(str(v) for v in value) if name == "species" else refuse("text")
        return str(value)
    if isinstance(value, (bool, dict, list)):
        refuse("a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        refuse("a number")
    if typ is int:
        return int(number) if number.is_integer() else refuse("a whole number")
    return number


def _device_option(device: Optional[str], command: str) -> str:
    """``--device`` checked by :func:`~attnmace.runtime.resolve_device` (``None``: CUDA when
    available); a device this machine lacks stops ``command`` with the reason."""
    try:
        return str(resolve_device(device))
    except ValueError as error:
        raise SystemExit(f"{command}: --device: {error}") from None


def _e0s(option: str, frames, atomic_numbers: List[int]) -> List[float]:
    from ase.data import chemical_symbols

    if option in ("fit", "average"):  # "average": MACE's name for the same least-squares fit
        return fit_e0s(frames, atomic_numbers)
    if option == "isolated":
        return e0s_from_isolated_atoms(frames, atomic_numbers)
    given = option
    if isinstance(option, str):
        try:
            given = json.loads(option)
        except json.JSONDecodeError:
            given = None
    if not isinstance(given, dict):
        raise SystemExit(
            "attnmace-train: --e0s must be fit (least squares; MACE's 'average'), isolated (the single-atom "
            f'frames) or a JSON object of energies in eV such as \'{{"C": -157.5, "H": -16.7}}\', not {option!r}'
        )
    symbols = [chemical_symbols[z] for z in atomic_numbers]
    missing = [s for s in symbols if s not in given]
    if missing:
        raise SystemExit(f"attnmace-train: --e0s lacks {missing}")
    extra = sorted(str(k) for k in given if k not in symbols)
    if extra:
        log.warning("--e0s: %s are not among the model's species %s and are ignored", extra, symbols)
    try:
        return [float(given[s]) for s in symbols]
    except (TypeError, ValueError):
        raise SystemExit(f"attnmace-train: --e0s values must be numbers (eV), got {given!r}") from None


def _warn_short_validation_pairs(inner, frames, atomic_numbers, species, reach: float) -> None:
    """Warn when validation frames hold pairs closer than the inner cutoffs set from the training
    frames: below them the network's radial input is frozen, so those pairs are predicted by the
    ZBL term and the network's response at the cutoff, not by anything trained."""
    from .stats import shortest_distances

    if not len(frames):
        return
    shortest = shortest_distances(frames, atomic_numbers, reach)
    n = len(species)
    below = [
        f"{species[a]}-{species[b]} {shortest[a][b]:.3f} Å (inner cutoff {inner[a][b]:.2f})"
        for a in range(n)
        for b in range(a, n)
        if np.isfinite(shortest[a][b]) and shortest[a][b] < inner[a][b]
    ]
    if below:
        log.warning(
            "validation frames have pairs closer than the inner cutoffs from the training frames: %s; "
            "set them with --inner-cutoffs (JSON) or move those frames to training",
            ", ".join(below),
        )


def _pair_table(inner, species) -> str:
    n = len(species)
    return ", ".join(f"{species[a]}-{species[b]} {inner[a][b]:.2f}" for a in range(n) for b in range(a, n))


def _inner_cutoffs(option, frames, atomic_numbers: List[int], cutoffs, width: float, repulsion_factor: float):
    """``ModelConfig.inner_cutoffs`` from the ``--inner-cutoffs`` option: ``()`` for 'off'. (A
    model without the ZBL term refuses them itself, in ``ModelConfig``.)"""
    from ase.data import chemical_symbols

    if option in (None, "off", "none"):
        return ()
    given = {}
    if option != "auto":
        try:
            given = json.loads(option) if isinstance(option, str) else dict(option)
        except (ValueError, TypeError):
            raise SystemExit(f"attnmace-train: --inner-cutoffs must be auto, off or JSON, not {option!r}") from None
    reach = min(cutoffs) - 1e-6
    inner = [list(row) for row in inner_cutoffs_from_data(frames, atomic_numbers, width, repulsion_factor, reach)]
    symbols = [chemical_symbols[z] for z in atomic_numbers]
    for pair, value in given.items():
        parts = str(pair).split("-")
        if len(parts) != 2 or any(p not in symbols for p in parts):
            raise SystemExit(f"attnmace-train: --inner-cutoffs pair {pair!r} is not two of {symbols} joined by '-'")
        a, b = symbols.index(parts[0]), symbols.index(parts[1])
        inner[a][b] = inner[b][a] = float(value)
    return tuple(tuple(row) for row in inner)


def build_trainer(options: Dict[str, Any]) -> Trainer:
    """Read data, compute statistics, build the model and the trainer from resolved options."""
    from ase.data import atomic_numbers as numbers_of
    from ase.data import chemical_symbols

    keys = _keys_from_arguments(argparse.Namespace(**options))
    frames = load_frames(options["train_file"], keys)
    if options["valid_file"]:
        train_frames, valid_frames = frames, load_frames(options["valid_file"], keys)
        train_idx, valid_idx = list(range(len(train_frames))), list(range(len(valid_frames)))
    else:
        split = split_by_config_type(frames, options["valid_fraction"], options["seed"])
        train_frames = valid_frames = frames
        train_idx, valid_idx = split["train"], split["valid"]
    for name, data in (("training", frames), ("validation", valid_frames if options["valid_file"] else [])):
        if isinstance(data, list):  # HDF5 files are not read whole for this
            energy_only = sum(not f.has_forces for f in data)
            if energy_only:
                log.info("%d of the %s frames have no forces: energy only, no force term", energy_only, name)
    train_view = _Subset(train_frames, train_idx, _config_type_weights(options, train_frames, train_idx))
    valid_view = _Subset(valid_frames, valid_idx)

    if options["species"]:
        species = [s.strip() for s in options["species"].split(",")]
        unknown = [s for s in species if s not in numbers_of]
        if unknown:
            raise SystemExit(f"attnmace-train: unknown element(s) {unknown} in --species")
        atomic = [numbers_of[s] for s in species]
    else:
        atomic = species_in(train_view)
        species = [chemical_symbols[z] for z in atomic]
    check_species(train_frames, atomic, options["train_file"])
    if options["valid_file"]:
        check_species(valid_frames, atomic, options["valid_file"])
    e0_view = train_view
    if options["e0s"] == "isolated":
        # As in MACE, the single-atom frames define E0 and are not fitted: the model puts an atom
        # without neighbours at E0 + shift + the readout of its embedding, so a loss on them only
        # fights the shift (GAP-20: an 8 eV error on one frame, a spike in every epoch drawing it).
        train_view, valid_view = _without_single_atoms(train_view), _without_single_atoms(valid_view)
        dropped = len(e0_view) - len(train_view)
        log.info("e0s isolated: %d single-atom frame(s) set E0 and are left out of the loss", dropped)

    output_dir = Path(options["output_dir"])
    checkpoint = output_dir / "checkpoint.pt"
    initial_weights = None
    if options["resume"] and checkpoint.is_file():
        config = read_checkpoint(checkpoint)[0]
        _warn_unused_architecture(options, config, f"the model of {checkpoint} (--resume)")
    elif options["init_from"]:
        config, initial_weights = _initial_state(options["init_from"])
        if options["add_layer"] is not None:
            config, initial_weights = _deepened(config, initial_weights, options["add_layer"], train_view)
        missing = [chemical_symbols[z] for z in atomic if chemical_symbols[z] not in config.species]
        if missing:
            raise SystemExit(
                f"attnmace-train: the model of {options['init_from']} knows {list(config.species)}, "
                f"not {missing} of the data"
            )
        atomic = [numbers_of[s] for s in config.species]
        log.info("fine-tuning the model of %s (its architecture options override the given ones)", options["init_from"])
        if options.get("attn_logit_cap") is not None:  # changes no weight, so a fine-tune may set it
            cap_before = config.attn_logit_cap
            try:
                config = capped_config(config, options["attn_logit_cap"])
            except ValueError as err:
                raise SystemExit(f"attnmace-train: --attn-logit-cap: {err}") from None
            log.info("attention logit cap: %g (the model of --init-from had %g)", config.attn_logit_cap, cap_before)
        _warn_unused_architecture(options, config, f"the model of {options['init_from']} (--init-from)")
    else:
        overrides = {k: options[k] for k in _MODEL_FIELDS if options.get(k) is not None}
        overrides["cutoffs"] = tuple(options["cutoffs"])
        e0s = _e0s(options["e0s"], e0_view, atomic)
        how = options["e0s"] if options["e0s"] in ("fit", "average", "isolated") else "given"
        log.info("E0s (eV, %s): %s", how, ", ".join(f"{s} {e:.6g}" for s, e in zip(species, e0s)))
        stats = scale_and_shift(train_view, atomic, e0s)
        inner = _inner_cutoffs(
            options["inner_cutoffs"],
            train_view,
            atomic,
            overrides["cutoffs"],
            ModelConfig.inner_width,  # neither is a training option: the defaults
            ModelConfig.repulsion_factor,
        )
        if inner:
            log.info("inner cutoffs (Å): %s", _pair_table(inner, species))
            _warn_short_validation_pairs(inner, valid_view, atomic, species, min(overrides["cutoffs"]))
        config = make_config(
            options["preset"],
            species=species,
            e0s=tuple(e0s),
            avg_num_neighbors=tuple(average_neighbours(train_view, overrides["cutoffs"])),
            scale=stats["scale"],
            shift=stats["shift"],
            inner_cutoffs=inner,
            **{k: v for k, v in overrides.items() if k != "cutoffs"},
            cutoffs=overrides["cutoffs"],
        )
    if options.get("_model_record"):
        _check_model_record(options["_model_record"], config)
    model = build_model(config=config, seed=options["seed"])
    if initial_weights is not None:
        model.load_state_dict(initial_weights)
    dtype = getattr(torch, options["dtype"])
    train_set = GraphDataset(
        train_view, atomic, config.r_max, dtype, cache=not options["lazy"], source=options["train_file"]
    )
    valid_set = GraphDataset(
        valid_view,
        atomic,
        config.r_max,
        dtype,
        cache=not options["lazy"],
        source=options["valid_file"] or options["train_file"],
    )
    names = {f.name for f in dataclasses.fields(TrainSettings)}
    settings = TrainSettings(**{k: v for k, v in options.items() if k in names})
    settings.extra = {
        "train_file": str(options["train_file"]),
        "valid_file": str(options["valid_file"]) if options["valid_file"] else None,
        "n_train": len(train_view),
        "n_valid": len(valid_view),
    }
    trainer = Trainer(
        model,
        train_set,
        valid_set,
        settings,
        output_dir,
        valid_config_types=valid_view.config_types(),
    )
    if options["resume"] and not trainer.resume():
        log.info("no checkpoint in %s: starting from scratch", output_dir)
    return trainer


def _warn_unused_architecture(options: Dict[str, Any], config: ModelConfig, source: str) -> None:
    """Warn about architecture options given (flag or ``--config`` file) that differ from the model
    ``source`` brings (with what was applied to it, e.g. ``--attn-logit-cap`` with ``--init-from``)
    and so are not used."""
    values = config.to_dict()
    differ = []
    for name in sorted(_MODEL_FIELDS & options.get("_given", set())):
        given, used = options.get(name), values.get(name)
        if given is None:
            continue
        if isinstance(used, (list, tuple)):
            given = list(given) if isinstance(given, (list, tuple)) else [given]
            if len(given) == 1 and name == "correlation":  # one value for every layer
                given = given * len(used)
            used = list(used)
        if given != used:
            differ.append(f"{name} {given!r} (used: {used!r})")
    if differ:
        log.warning("options not used, the architecture comes from %s: %s", source, "; ".join(differ))


def _check_model_record(record: Dict[str, Any], config: ModelConfig) -> None:
    """Refuse a ``model`` record of a ``--config`` file that the model to be trained does not match.

    The record is what a run's ``config.yaml`` says its model was; the architecture options (or,
    with ``--resume`` and ``--init-from``, the checkpoint) decide the model, so a record that
    disagrees with them, edited by hand or left from another run, would otherwise be ignored
    silently. Data-derived fields (``avg_num_neighbors``, ``e0s``, ``scale``, ``shift``) are
    recomputed from the data and not compared.
    """
    fields, source = record["fields"], record["source"]
    built = config.to_dict()
    unknown = sorted(k for k in fields if k not in built)
    if unknown:
        raise SystemExit(f"attnmace-train: unknown field(s) {unknown} in the `model` record of {source}")

    def plain(value):
        return [plain(v) for v in value] if isinstance(value, (list, tuple)) else value

    compared = sorted(k for k in fields if k in _MODEL_FIELDS or k == "species")
    differ = [
        f"{k}: {fields[k]!r} there, {plain(built[k])!r} here" for k in compared if plain(fields[k]) != plain(built[k])
    ]
    if differ:
        raise SystemExit(
            f"attnmace-train: the `model` record of {source} does not match the model these options "
            f"build ({'; '.join(differ)}); remove the record or make the architecture options agree"
        )


def _deepened(config: ModelConfig, weights, cutoff: float, frames):
    """``config`` and ``weights`` with one more layer of ``cutoff`` (:func:`~attnmace.train.grow.add_layer`),
    whose neighbour normalisation is measured on ``frames``."""
    from .grow import add_layer

    model = build_model(config=config, dtype=torch.float64)
    model.load_state_dict(weights)
    try:
        deeper = add_layer(model, cutoff, average_neighbours(frames, [cutoff])[0])
    except ValueError as error:
        raise SystemExit(f"attnmace-train: --add-layer: {error}") from None
    log.info(
        "--add-layer %g: %d -> %d layers, cutoffs %s", cutoff, config.num_layers, deeper.num_layers, deeper.cutoffs
    )
    return deeper.config, deeper.state_dict()


def _initial_state(path: str):
    """The model configuration and weights of a training checkpoint (the EMA ones when saved), of
    an exported model file, or of a shipped model named like the calculator's (``gap20.pt``)."""
    from ..calculator import resolve_model_path

    try:
        model, _ = eager_model(resolve_model_path(path))
    except FileNotFoundError as error:
        raise SystemExit(f"attnmace-train: --init-from {path}: no such file ({error})") from None
    except ValueError as error:
        raise SystemExit(f"attnmace-train: --init-from {error}") from None
    return model.config, model.state_dict()


def _config_type_weights(options: Dict[str, Any], frames, indices) -> Dict[str, float]:
    """The ``config_type_weights`` option as a checked {config_type: weight} mapping."""
    given = options.get("config_type_weights")
    if not given:
        return {}
    if isinstance(given, str):
        try:
            given = json.loads(given)
        except json.JSONDecodeError as err:
            raise SystemExit(f"attnmace-train: --config-type-weights is not JSON ({err}): {given!r}") from None
    if not isinstance(given, dict):
        raise SystemExit(f"attnmace-train: config_type_weights must map config types to weights, got {given!r}")
    weights = {}
    for name, value in given.items():
        try:
            weights[str(name)] = float(value)
        except (TypeError, ValueError):
            raise SystemExit(f"attnmace-train: config_type_weights[{name!r}] is not a number: {value!r}") from None
        if not np.isfinite(weights[str(name)]) or weights[str(name)] < 0:
            raise SystemExit(f"attnmace-train: config_type_weights[{name!r}] must be finite and >= 0, got {value!r}")
    present = set(_Subset(frames, indices).config_types())
    absent = sorted(set(weights) - present)
    if absent:  # most likely a typo: say so instead of training without the intended weight
        raise SystemExit(
            f"attnmace-train: config_type_weights names {absent}, not among the training frames' "
            f"config types {sorted(present)}"
        )
    log.info("config_type_weights on the training frames: %s", weights)
    return weights


class _Subset:
    """Frames ``frames[i] for i in indices`` (lazy for HDF5), each frame's loss weight multiplied
    by ``weights[config_type]`` where its type is listed."""

    def __init__(self, frames, indices, weights: Optional[Dict[str, float]] = None):
        self.frames, self.indices, self.weights = frames, list(indices), dict(weights or {})

    def natoms(self, i: int) -> int:
        return num_atoms_of(self.frames, self.indices[i])

    def __len__(self):
        return len(self.indices)

    def config_types(self) -> List[str]:
        types = config_types_of(self.frames)
        return [types[i] for i in self.indices]

    def __getitem__(self, i):
        frame = self.frames[self.indices[i]]
        factor = self.weights.get(frame.config_type)
        return frame if factor is None else dataclasses.replace(frame, weight=frame.weight * factor)


def _architecture_options(config: ModelConfig) -> Dict[str, Any]:
    """The architecture options that rebuild ``config``, for the run's ``config.yaml``.

    A run resumed from its checkpoint or started with ``--init-from`` takes its architecture from
    that checkpoint, not from the options it was given (those may be the command line's defaults),
    so the file records the model's own values; the same file then rebuilds the same architecture.
    """
    values = config.to_dict()
    options = {k: values[k] for k in sorted(_MODEL_FIELDS) if k in TRAIN_OPTIONS}
    matches = [name for name, preset in PRESETS.items() if all(values[k] == v for k, v in preset.items())]
    options["preset"] = matches[0] if matches else None
    return options


def _without_single_atoms(view: "_Subset") -> "_Subset":
    return _Subset(view.frames, [view.indices[i] for i in range(len(view)) if view.natoms(i) > 1], view.weights)


def _setup_distributed(options: Dict[str, Any]) -> None:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return
    import torch.distributed as dist

    use_cuda = options["device"].startswith("cuda")
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        options["device"] = f"cuda:{local}"
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")


def train_main(argv: Optional[List[str]] = None) -> int:
    options = resolve_options(argv)
    retain_freed_memory()  # reuse the pages of one step in the next (see attnmace.runtime)
    _setup_distributed(options)
    logging.basicConfig(
        level=logging.INFO if _rank() == 0 else logging.WARNING, format="%(asctime)s %(message)s", stream=sys.stdout
    )
    torch.manual_seed(options["seed"])
    np.random.seed(options["seed"])
    try:
        trainer = build_trainer(options)
        if _rank() == 0:
            trainer.output_dir.mkdir(parents=True, exist_ok=True)
            resolved = {
                **{k: v for k, v in options.items() if not k.startswith("_")},
                **_architecture_options(trainer.model.config),
                "model": trainer.model.config.to_dict(),
            }
            with open(trainer.output_dir / "config.yaml", "w") as fh:
                yaml.safe_dump(json.loads(json.dumps(resolved, default=str)), fh, sort_keys=False)
        try:
            metrics = trainer.fit()
        except FloatingPointError as error:
            raise SystemExit(f"attnmace-train: {error}") from None
        except KeyboardInterrupt:
            saved = f"{trainer.checkpoint_path} holds epoch {trainer.epoch}" if trainer.epoch else "no epoch was saved"
            print(f"attnmace-train: interrupted; {saved}: continue with --resume", file=sys.stderr)
            raise SystemExit(130) from None
        if _rank() == 0 and metrics:
            log.info("best validation: %s", json.dumps(metrics["overall"]))
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def _add_key_arguments(parser: argparse.ArgumentParser) -> None:
    """The data-key flags shared by ``attnmace-eval`` and ``attnmace-preprocess``."""
    for name in ("energy_key", "forces_key", "stress_key", "virial_key", "weight_key", "config_type_key"):
        _, default, text = TRAIN_OPTIONS[name]
        parser.add_argument("--" + name.replace("_", "-"), default=default, help=text)


def _keys_from_arguments(args) -> DataKeys:
    forces = args.forces_key
    return DataKeys(
        energy=args.energy_key,
        forces=None if forces is None or str(forces).lower() == "none" else forces,
        stress=args.stress_key,
        virial=args.virial_key,
        weight=args.weight_key,
        config_type=args.config_type_key,
    )


def eval_main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="attnmace-eval",
        description="Evaluate a model file on a dataset.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "model", help="exported model file, shipped model name, or a training checkpoint.pt (its EMA weights)"
    )
    parser.add_argument("data", help="extxyz or attnmace .h5 file")
    _add_key_arguments(parser)
    parser.add_argument("--batch-size", type=int, default=8, help="frames per model call")
    parser.add_argument(
        "--max-atoms-per-pass",
        type=int,
        default=0,
        help="split batches into parts of at most this many atoms (memory); 0: whole batches",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"], help="precision of the model")
    parser.add_argument("--json", help="write the metrics (and per-frame predictions) here")
    parser.add_argument("--plots", help="folder for parity and force-outlier plots")
    args = parser.parse_args(argv)
    from ..calculator import resolve_model_path

    args.device = _device_option(args.device, "attnmace-eval")
    preds, config_types, _ = evaluate_file(
        resolve_model_path(args.model),
        args.data,
        _keys_from_arguments(args),
        getattr(torch, args.dtype),
        args.batch_size,
        args.device,
        args.max_atoms_per_pass,
    )
    metrics = compute_metrics(preds, config_types)
    _print_metrics(metrics)
    if args.json:
        payload = dict(
            metrics,
            model=str(args.model),
            data=str(args.data),
            predictions=[
                {"energy": p["energy"], "ref_energy": p["ref_energy"], "num_atoms": p["num_atoms"]} for p in preds
            ],
        )
        Path(args.json).write_text(json.dumps(payload, indent=1))
    if args.plots:
        for path in parity_plots(preds, args.plots, title=f"{Path(args.model).name} on {Path(args.data).name}"):
            print(f"wrote {path}")
    return 0


def export_main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="attnmace-export",
        description="Export the weights of a training checkpoint.pt (the EMA ones when saved) as a model "
        "file that AttnMACECalculator loads: e.g. the last epoch's, where model.pt holds the best validation "
        "epoch's. The source may also be an exported model file, to change its inner cutoffs or logit cap.",
    )
    parser.add_argument("checkpoint", help="checkpoint.pt written by attnmace-train, or an exported model file")
    parser.add_argument("output", help="model file to write, e.g. last.pt")
    parser.add_argument(
        "--inner-cutoffs",
        help="set the inner cutoffs below which the ZBL term alone repels: 'auto' (each pair's shortest "
        "distance in --data), 'off', or JSON such as '{\"C-C\": 0.95}' (other pairs: auto). "
        "Default: keep the source's",
    )
    parser.add_argument("--data", nargs="+", default=[], help="training data (extxyz or .h5) for --inner-cutoffs")
    parser.add_argument(
        "--logit-cap",
        type=float,
        help="soft cap c of the attention logits, c*tanh(l/c), 0 for none (examples/gap20/logit_cap.py "
        "chooses it on validation data). Default: keep the source's",
    )
    args = parser.parse_args(argv)
    model, extra = eager_model(args.checkpoint)
    if args.inner_cutoffs is not None:
        config = model.config
        frames: List[Any] = []
        for path in args.data:
            frames.extend(_frames_for_distances(path))
        if args.inner_cutoffs == "auto" and not frames:
            raise SystemExit("attnmace-export: --inner-cutoffs auto measures the training data: give --data")
        inner = _inner_cutoffs(
            args.inner_cutoffs,
            frames,
            list(config.atomic_numbers),
            config.cutoffs,
            config.inner_width,
            config.repulsion_factor,
        )
        model = with_inner_cutoffs(model, config, inner)
        extra["inner_cutoffs"] = {"option": args.inner_cutoffs, "data": [str(p) for p in args.data]}
        print(f"inner cutoffs (Å): {_pair_table(inner, config.species) if inner else 'off'}")
    if args.logit_cap is not None:
        try:
            model = with_logit_cap(model, model.config, args.logit_cap)
        except ValueError as err:
            raise SystemExit(f"attnmace-export: --logit-cap: {err}") from None
        extra["attn_logit_cap"] = args.logit_cap
        print(f"attention logit cap: {args.logit_cap:g}" if args.logit_cap > 0 else "attention logit cap: off")
    path = export_model(model, args.output, extra=extra)
    if "weights" in extra and "epoch" in extra:  # a checkpoint's, or recorded by the export it came from
        print(f"wrote {path}: {str(extra['weights']).upper()} weights of epoch {extra['epoch']} of {args.checkpoint}")
    else:
        print(f"wrote {path}: the weights of {args.checkpoint}")
    return 0


def _frames_for_distances(path: str):
    """Structures of ``path`` (extxyz or .h5), labels not needed."""
    if Path(path).suffix.lower() in (".h5", ".hdf5"):
        return load_frames(path)
    from ase.io import read

    return read(path, ":")


def _print_metrics(metrics: Dict[str, Any]) -> None:
    rows = [("overall", metrics["overall"])] + sorted(metrics.get("per_config_type", {}).items())
    print(f"{'config_type':<28}{'frames':>7}{'E RMSE':>10}{'E MAE':>10}{'E mean':>10}{'F RMSE':>10}{'F MAE':>10}")
    print(f"{'':<28}{'':>7}{'meV/atom':>10}{'meV/atom':>10}{'meV/atom':>10}{'meV/Å':>10}{'meV/Å':>10}")
    for name, m in rows:
        print(
            f"{name:<28}{m['n_frames']:>7}{m['energy_rmse_meV_per_atom']:>10.2f}{m['energy_mae_meV_per_atom']:>10.2f}"
            f"{m['energy_mean_error_meV_per_atom']:>+10.2f}"
            f"{m.get('forces_rmse_meV_per_A', np.nan):>10.1f}{m.get('forces_mae_meV_per_A', np.nan):>10.1f}"
        )
    print("(E mean: mean signed error per atom, predicted - reference)")
    if "stress_rmse_meV_per_A3" in metrics["overall"]:
        print(f"stress RMSE {metrics['overall']['stress_rmse_meV_per_A3']:.3f} meV/Å^3")
    out = metrics["force_outliers"]
    print(
        "fraction of atoms with |ΔF|/|F| above: "
        + ", ".join(f"{t:g}: {f:.2e}" for t, f in zip(out["thresholds"], out["fraction"]))
    )


def preprocess_main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="attnmace-preprocess",
        description="Convert extxyz to attnmace HDF5.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("input", help="extxyz file with the labels named by the key options")
    parser.add_argument("output", help="HDF5 file to write (.h5), for --train-file/--valid-file or attnmace-eval")
    _add_key_arguments(parser)
    args = parser.parse_args(argv)
    keys = _keys_from_arguments(args)
    frames = load_frames(args.input, keys)
    write_hdf5(frames, args.output, source=args.input, keys=keys)
    print(f"wrote {len(frames)} frames ({sum(len(f.numbers) for f in frames)} atoms) to {args.output}")
    return 0


def _run(main) -> None:
    try:
        sys.exit(main())
    except (ValueError, OSError) as err:  # clear one-line errors for users (a missing file, a directory, ...)
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)


def train() -> None:
    _run(train_main)


def evaluate() -> None:
    _run(eval_main)


def export() -> None:
    _run(export_main)


def preprocess() -> None:
    _run(preprocess_main)
