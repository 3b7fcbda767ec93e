"""Reading the ``checkpoint.pt`` that ``attnmace-train`` writes (for fine-tuning, evaluation and
``attnmace-export``)."""

import warnings
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from ..config import ModelConfig
from ..model import AttnMACE, build_model


def snapshot_path(output_dir, epoch: int) -> Path:
    """Where ``attnmace-train --snapshot-every`` keeps the weights of ``epoch`` of a run."""
    return Path(output_dir) / "snapshots" / f"epoch_{epoch:04d}.pt"


def write_snapshot(output_dir, epoch: int, weights, ema: bool, history, settings, model_config) -> Path:
    """Keep ``weights`` (the EMA ones when ``ema``) of ``epoch`` as ``snapshot_path(output_dir,
    epoch)``: the checkpoint format without optimizer state, read by :func:`read_checkpoint`,
    ``attnmace-eval``, ``attnmace-export`` and ``--init-from``."""
    from .trainer import atomic_save  # trainer imports this module

    path = snapshot_path(output_dir, epoch)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "model": weights,
        "ema": None,
        "weights": "ema" if ema else "raw",
        "epoch": epoch,
        "history": history,
        "settings": settings,
        "model_config": model_config,
    }
    atomic_save(state, path)
    return path


def snapshot_from_checkpoint(output_dir) -> Path:
    """The snapshot of the epoch that ``output_dir/checkpoint.pt`` holds, for a run that stopped at
    an epoch ``--snapshot-every`` does not keep (a same-epochs comparison before the run goes on)."""
    _, weights, state = read_checkpoint(Path(output_dir) / "checkpoint.pt")
    keep = {key: state[key] for key in ("epoch", "history", "settings", "model_config")}
    return write_snapshot(output_dir, weights=weights, ema=weights_kind(state) == "ema", **keep)


def weights_kind(state: Dict[str, Any]) -> str:
    """``"ema"`` or ``"raw"``: which weights :func:`read_checkpoint` returns for ``state`` (a
    snapshot says which; a ``checkpoint.pt`` holds the EMA ones when it has them)."""
    return state.get("weights") or ("ema" if state.get("ema") else "raw")


def read_checkpoint(path) -> Tuple[ModelConfig, Dict[str, torch.Tensor], Dict[str, Any]]:
    """The model configuration, the weights (the EMA ones when saved) and the whole state of a
    training checkpoint (``checkpoint.pt``, or a snapshot of ``--snapshot-every``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a training checkpoint (a TorchScript export, a truncated file,
            something else); the message says which.
    """
    try:
        with warnings.catch_warnings():  # a TorchScript file: torch.load warns and loads it as such
            warnings.filterwarnings("ignore", message=".*TorchScript archive")
            state = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file") from None
    except Exception as error:
        raise ValueError(
            f"{path} is not a training checkpoint (checkpoint.pt of attnmace-train): {type(error).__name__}: {error}"
        ) from None
    if not isinstance(state, dict) or "model_config" not in state or "model" not in state:
        raise ValueError(f"{path} is not a training checkpoint (a checkpoint.pt)")
    return ModelConfig.from_dict(state["model_config"]), state.get("ema") or state["model"], state


def model_from_checkpoint(path) -> Tuple[AttnMACE, Dict[str, Any]]:
    """An eager float64 model with the weights of a training checkpoint (the EMA ones when saved),
    and the metadata an export of it records under ``extra``: the epoch of those weights, that
    epoch's validation metrics and the training settings' ``extra``.

    Raises:
        FileNotFoundError, ValueError: as :func:`read_checkpoint`.
    """
    config, weights, state = read_checkpoint(path)
    model = build_model(config=config, dtype=torch.float64)
    model.load_state_dict(weights)
    history = state.get("history") or [{}]
    extra = {
        "epoch": state.get("epoch"),
        "weights": weights_kind(state),
        "valid_metrics": {k[len("valid_") :]: v for k, v in history[-1].items() if k.startswith("valid_")},
        "training": (state.get("settings") or {}).get("extra", {}),
    }
    return model.eval(), extra


def eager_model(path) -> Tuple[AttnMACE, Dict[str, Any]]:
    """An eager model and the ``extra`` metadata of an exported model file, or of a training
    checkpoint (its EMA weights when saved; :func:`model_from_checkpoint`)."""
    from ..export import read_metadata, rebuild_eager

    try:
        metadata = read_metadata(path)
    except ValueError as not_exported:  # not an exported model: a training checkpoint?
        try:
            return model_from_checkpoint(path)
        except ValueError as not_checkpoint:
            raise ValueError(neither_message(path, not_exported, not_checkpoint)) from None
    return rebuild_eager(path), dict(metadata.get("extra") or {})


def neither_message(path, not_exported: Exception, not_checkpoint: Exception) -> str:
    """What is wrong with a file that should be an exported model or a training checkpoint."""
    return (
        f"{path} is neither an exported attnmace model nor a training checkpoint (as a model file: "
        f"{not_exported}; as a checkpoint: {not_checkpoint})"
    )
