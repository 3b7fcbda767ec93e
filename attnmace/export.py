"""TorchScript export and loading, with the model's metadata stored inside the file."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import e3nn
import torch
from e3nn.util.jit import script

from ._version import __version__
from .config import ModelConfig
from .model import AttnMACE, build_model, copy_weights, count_parameters

#: Version of the file layout (metadata keys and model forward interface). Files with a newer
#: format than this are refused with a message; older formats are read.
FORMAT_VERSION = 1
METADATA_FILE = "attnmace.json"
UNITS = {"energy": "eV", "length": "Å", "forces": "eV/Å", "stress": "eV/Å^3"}


@contextlib.contextmanager
def _quiet_torchscript():
    """Silence TorchScript's deprecation warnings (it works in torch 2.13 and our files rely on it)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit\..*deprecated", category=Warning)
        yield


def _script(model: torch.nn.Module) -> torch.jit.ScriptModule:
    """TorchScript of a copy of ``model``: e3nn's ``script`` replaces submodules by their compiled
    versions in place, after which a deep copy of the model would hold plain tensors, not
    parameters, and its layers would run as TorchScript."""
    with _quiet_torchscript():
        return script(copy.deepcopy(model).eval())


def metadata_of(model: AttnMACE) -> Dict[str, Any]:
    """The metadata stored with an exported model."""
    config: ModelConfig = model.config
    dtype = next(model.parameters()).dtype
    return {
        "format_version": FORMAT_VERSION,
        "attnmace_version": __version__,
        "torch_version": torch.__version__,
        "e3nn_version": e3nn.__version__,
        "species": list(config.species),
        "atomic_numbers": list(config.atomic_numbers),
        "cutoffs": list(config.cutoffs),
        "r_max": config.r_max,
        "heads": config.heads,
        "num_layers": config.num_layers,
        "num_parameters": count_parameters(model),
        "dtype": str(dtype).replace("torch.", ""),
        "units": UNITS,
        "config": config.to_dict(),
    }


def export_model(model: AttnMACE, path: Union[str, os.PathLike], extra: Dict[str, Any] | None = None) -> Path:
    """Save ``model`` as a TorchScript file with its metadata.

    The file loads with :func:`load_model` (or ``torch.jit.load``) without attnmace's model code.

    Args:
        model: an eager :class:`~attnmace.model.AttnMACE`.
        path: output file, conventionally ``*.pt``.
        extra: additional JSON-serialisable metadata (training data, metrics, ...).

    Returns:
        The path written.
    """
    if not isinstance(model, AttnMACE):
        raise TypeError(f"export_model needs an eager AttnMACE model, got {type(model).__name__}")
    metadata = metadata_of(model)
    if extra:
        metadata["extra"] = extra
    scripted = _script(model)  # of a copy in eval mode: the caller's model is left as it was
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with _quiet_torchscript():
        torch.jit.save(scripted, str(tmp), _extra_files={METADATA_FILE: json.dumps(metadata, indent=1)})
    os.replace(tmp, path)
    return path


def read_metadata(path: Union[str, os.PathLike]) -> Dict[str, Any]:
    """The metadata of an exported model file, validated.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an attnmace model, or was written by a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not an attnmace model: not a TorchScript archive (corrupt or wrong file)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if n.endswith("extra/" + METADATA_FILE)]
            if not names:
                raise ValueError(f"{path} is a TorchScript/zip file but not an attnmace model (no {METADATA_FILE})")
            metadata = json.loads(zf.read(names[0]).decode())
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not a readable attnmace model: {err}") from err
    version = metadata.get("format_version")
    if not isinstance(version, int):
        raise ValueError(f"{path}: attnmace metadata has no valid format_version ({version!r})")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by attnmace {metadata.get('attnmace_version')} in file format {version}; "
            f"this attnmace {__version__} reads formats up to {FORMAT_VERSION}: upgrade attnmace"
        )
    for key in ("species", "atomic_numbers", "cutoffs", "r_max"):
        if key not in metadata:
            raise ValueError(f"{path}: attnmace metadata lacks {key!r}")
    return metadata


def load_model_with_metadata(
    path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu"
) -> Tuple[torch.jit.ScriptModule, Dict[str, Any]]:
    """Load an exported model and its metadata (see :func:`load_model`)."""
    metadata = read_metadata(path)
    try:
        with _quiet_torchscript():
            module = torch.jit.load(str(path), map_location=device)
    except RuntimeError as err:
        raise ValueError(f"{path} has attnmace metadata but its TorchScript could not be loaded: {err}") from err
    module.eval()
    return module, metadata


def load_model(path: Union[str, os.PathLike], device: Union[str, torch.device] = "cpu") -> torch.jit.ScriptModule:
    """Load an exported model (TorchScript); its metadata is available from :func:`read_metadata`.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is corrupt, not an attnmace model, or from a newer format.
    """
    return load_model_with_metadata(path, device)[0]


def eager_from_scripted(module: torch.nn.Module, metadata: Dict[str, Any]) -> AttnMACE:
    """An eager :class:`AttnMACE` with the configuration in ``metadata`` and the weights of ``module``."""
    model = build_model(config=ModelConfig.from_dict(metadata["config"]), dtype=getattr(torch, metadata["dtype"]))
    return copy_weights(module, model)  # the file's product bases too: its weights are learned against them


def rebuild_eager(path: Union[str, os.PathLike]) -> AttnMACE:
    """An eager :class:`AttnMACE` with the weights of an exported file (e.g. to fine-tune it)."""
    return eager_from_scripted(*load_model_with_metadata(path))
