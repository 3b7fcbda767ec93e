"""ASE calculator for AttnMACE models."""

from __future__ import annotations

import os
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.data import chemical_symbols
from ase.stress import full_3x3_to_voigt_6_stress

from . import keys
from ._version import __version__
from .config import ModelConfig
from .export import eager_from_scripted, load_model_with_metadata, metadata_of
from .graph import NeighbourListCache, atoms_to_graph, lattice_offsets
from .model import AttnMACE, build_model, copy_weights
from .nn.cutoff import polynomial_envelope, soft_floor
from .runtime import resolve_device, retain_freed_memory

_DTYPES = {"float64": torch.float64, "float32": torch.float32}
#: parameters fixed when a calculator is made (``AttnMACECalculator.set`` refuses to change them)
_FIXED = ("model", "dtype", "species", "cutoffs")


def shipped_models() -> List[str]:
    """File names of the models shipped with attnmace (usable as ``AttnMACECalculator(name)``)."""
    try:
        folder = resources.files("attnmace.models")
    except ModuleNotFoundError:
        return []
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".pt"))


def resolve_model_path(model: Union[str, os.PathLike]) -> Path:
    """A path to a model file: an existing file (which wins over a shipped model of the same
    name), or else the name of a shipped model, with or without ``.pt`` (``"gap20.pt"``, ``"gap20"``)."""
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"the model must be a file's path or a shipped model's name, got {model!r}")
    path = Path(model).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise IsADirectoryError(f"{str(model)!r} is a directory, not a model file")
    name = path.name if path.suffix == ".pt" else path.name + ".pt"
    if name in shipped_models() and len(path.parts) == 1:
        return Path(str(resources.files("attnmace.models").joinpath(name)))
    available = ", ".join(shipped_models()) or "none yet"
    raise FileNotFoundError(f"no model file {str(model)!r}; shipped models: {available}")


def compile_layers(model: AttnMACE, backend: str = "inductor") -> AttnMACE:
    """Wrap each interaction layer of an eager model in ``torch.compile`` (inference only).

    Layers, not the whole model, are compiled: the forward's neighbour masks have data-dependent
    sizes, and forces come from ``torch.autograd.grad`` over the compiled layers' backward.
    Compiled backward passes do not support double backward, so this is not for training.
    """
    if not isinstance(model, AttnMACE):
        raise TypeError(f"compile_layers needs an eager AttnMACE model, got {type(model).__name__}")
    for i, layer in enumerate(model.layers):
        model.layers[i] = torch.compile(layer, dynamic=True, backend=backend)
    return model


#: Edges per checkpointed group of ``low_memory=True`` (4,096-atom diamond: 11 groups per 5 Å layer).
LOW_MEMORY_EDGES = 32768


def checkpoint_edges(model: AttnMACE, edges_per_chunk: int = LOW_MEMORY_EDGES) -> AttnMACE:
    """Run each layer's edge work in checkpointed chunks of atoms (eager inference only).

    The edge embedding, tensor product and aggregation of each layer run over consecutive groups
    of centre atoms with about ``edges_per_chunk`` edges each, under ``torch.utils.checkpoint``:
    the forward keeps only each group's inputs, and the backward recomputes one group at a time.
    The per-edge intermediates held at once no longer grow with the system, for one more forward
    pass of the edge work (``benchmarks/README.md`` has the measured cost). Results are identical.
    ``edges_per_chunk = 0`` switches it off.
    """
    if not isinstance(model, AttnMACE):
        raise TypeError(f"checkpoint_edges needs an eager AttnMACE model, got {type(model).__name__}")
    if edges_per_chunk < 0:
        raise ValueError(f"edges_per_chunk must be >= 0, got {edges_per_chunk}")
    for layer in model.layers:
        layer.edge_chunk = int(edges_per_chunk)
    return model


def _eager_or_scripted(scripted: torch.nn.Module, metadata: Dict[str, Any], path) -> torch.nn.Module:
    """The eager model with the weights of ``scripted``, or ``scripted`` itself if it cannot be rebuilt."""
    try:
        model = eager_from_scripted(scripted, metadata)
    except Exception as exc:  # noqa: BLE001 (any mismatch: the file's own code still runs)
        warnings.warn(
            f"{path}: this attnmace ({__version__}) cannot rebuild the model ({type(exc).__name__}: {exc}); "
            "running its TorchScript module instead",
            stacklevel=3,
        )
        return scripted
    return model


#: keyword arguments passed on to ASE's ``Calculator``
_ASE_ARGUMENTS = {"label", "atoms", "directory"}


class AttnMACECalculator(Calculator):
    """ASE calculator for an AttnMACE model.

    Args:
        model: a path to an exported model, the name of a shipped model (``"gap20.pt"``), or an
            :class:`~attnmace.model.AttnMACE` / TorchScript module.
        device: ``"cpu"``, ``"cuda"``, ...; defaults to CUDA when available.
        dtype: ``"float64"`` or ``"float32"`` (or ``torch.float64`` / ``torch.float32``; the total
            energy is summed in float64 either way).
        skin: the neighbour list is built at ``max(cutoffs) + skin`` Å and reused until an atom
            has moved more than ``skin / 2`` or the cell changes (0 rebuilds it every call);
            results are identical to rebuilding.
        compile: run the interaction layers through ``torch.compile`` (TorchInductor, dynamic
            shapes) instead of TorchScript. The eager model is rebuilt from the file's weights and
            metadata. The first call compiles (minutes on a CPU), later calls are faster: worth it
            for long MD runs (``benchmarks/README.md`` has the measured speed-up). A string
            selects another ``torch.compile`` backend (e.g. ``"aot_eager"``).
        torchscript: run the file's TorchScript module itself. By default the calculator
            rebuilds the eager model from the file's configuration and weights, which is faster
            on CPU (``benchmarks/README.md``) and computes the same numbers; if this version of
            attnmace cannot rebuild it (a file from another version), it warns and runs the
            TorchScript module.
        low_memory: run each layer's edge work in checkpointed chunks of about 32,768 edges
            (:func:`checkpoint_edges`): the per-edge intermediates are recomputed in the backward
            instead of kept, so memory no longer grows with them, for one more forward pass of
            the edge work; for systems that would not fit in memory otherwise. Needs the eager
            model (not with ``torchscript`` or ``compile``).

    Properties: ``energy``, ``free_energy`` (equal to ``energy``), per-atom ``energies``,
    ``forces``, and ``stress`` (3-D periodic cells only). ``results["layer_energies"]`` holds the
    per-layer energy terms ``(n_layers,)`` and ``results["atomic_layer_energies"]`` the per-atom
    ones ``(n_atoms, n_layers)``.

    ``todict()`` (ASE's parameters, stored in trajectories and databases) records ``model`` (as
    given), ``dtype``, ``species`` and ``cutoffs``; :meth:`set` cannot change them.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]

    def __init__(
        self,
        model: Union[str, os.PathLike, torch.nn.Module],
        *,
        device: Optional[Union[str, torch.device]] = None,
        dtype: Union[str, torch.dtype] = "float64",
        skin: float = 0.5,
        compile: Union[bool, str] = False,
        torchscript: bool = False,
        low_memory: bool = False,
        **kwargs: Any,
    ):
        unknown = sorted(set(kwargs) - _ASE_ARGUMENTS)
        if unknown:  # ASE would record a misspelt option as a parameter and ignore it
            raise TypeError(
                f"AttnMACECalculator got unknown keyword argument(s) {unknown}; it takes device, dtype, skin, "
                f"compile, torchscript, low_memory and ASE's {sorted(_ASE_ARGUMENTS)}"
            )
        super().__init__(**kwargs)
        retain_freed_memory()  # reuse the pages of one step in the next (see attnmace.runtime)
        if isinstance(dtype, torch.dtype):  # torch.float64 / torch.float32 as well as their names
            dtype = str(dtype).replace("torch.", "")
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
        self.device = resolve_device(device)
        self.dtype = _DTYPES[dtype]
        if compile and torchscript:
            raise ValueError("compile needs the eager model: use either compile or torchscript=True")
        if low_memory and (compile or torchscript):
            raise ValueError("low_memory needs the eager model: it cannot be combined with compile or torchscript=True")
        if isinstance(model, AttnMACE):
            self.metadata: Dict[str, Any] = metadata_of(model)
            # a copy: the caller's model is untouched
            module: torch.nn.Module = copy_weights(model, build_model(config=model.config))
        elif isinstance(model, torch.nn.Module):
            raise TypeError("pass an AttnMACE model or the path of an exported model file")
        else:
            path = resolve_model_path(model)
            module, self.metadata = load_model_with_metadata(path, "cpu")
            if compile or low_memory:  # need the eager model: no fallback
                module = eager_from_scripted(module, self.metadata)
            elif not torchscript:
                module = _eager_or_scripted(module, self.metadata, path)
        self.model = module.to(device=self.device, dtype=self.dtype).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        if compile:
            compile_layers(self.model, "inductor" if compile is True else str(compile))
        if low_memory:
            checkpoint_edges(self.model)
        self.atomic_numbers = [int(z) for z in self.metadata["atomic_numbers"]]
        # what produced the results, for ASE trajectories and databases (``calc.todict()``)
        self.parameters.update(
            model=str(model) if isinstance(model, (str, os.PathLike)) else "AttnMACE model object",
            dtype=dtype,
            species=[chemical_symbols[z] for z in self.atomic_numbers],
            cutoffs=[float(c) for c in self.metadata["config"]["cutoffs"]],
        )
        self.r_max = float(self.metadata["r_max"])
        self.neighbours = NeighbourListCache(self.r_max, skin)

    def set(self, **kwargs) -> dict:
        """ASE's ``Calculator.set``. ``skin`` may be changed (the neighbour list is rebuilt at the
        next call). The model, its dtype, the recorded species and cutoffs and the device are fixed
        when the calculator is made: changing them raises ``ValueError`` (make a new calculator);
        setting them to their current values is allowed. Other names raise ``TypeError``, as the
        constructor's do, instead of being recorded and ignored."""
        unknown = sorted(set(kwargs) - set(_FIXED) - {"skin", "device"})
        if unknown:
            raise TypeError(
                f"AttnMACECalculator.set got unknown parameter(s) {unknown}; "
                f"it takes skin (and the fixed {list(_FIXED)} and device)"
            )
        fixed = {key: value for key, value in kwargs.items() if key in _FIXED and self.parameters.get(key) != value}
        if "device" in kwargs and resolve_device(kwargs["device"]) != self.device:
            fixed["device"] = kwargs["device"]
        if fixed:
            raise ValueError(
                f"AttnMACECalculator: {', '.join(sorted(fixed))} cannot be changed with set(); "
                "make a new calculator instead"
            )
        kwargs.pop("device", None)
        if "skin" in kwargs:
            skin = kwargs.pop("skin")
            self.neighbours = NeighbourListCache(self.r_max, skin)  # checks the value
        return super().set(**kwargs)

    def _run(
        self, atoms: Atoms, forces: bool, stress: bool, attention: bool = False, descriptors: bool = False
    ) -> Tuple[Dict[str, torch.Tensor], Dict[str, torch.Tensor]]:
        """The model inputs for ``atoms`` and the model's outputs."""
        data = atoms_to_graph(atoms, self.atomic_numbers, self.r_max, self.dtype, self.device, self.neighbours)
        flags = dict(compute_forces=forces, compute_stress=stress, compute_attention=attention)
        if descriptors:  # only when asked: TorchScript modules exported before it lack the argument
            flags["compute_descriptors"] = True
        return data, self.model(data, **flags)

    def get_descriptors(
        self, atoms: Optional[Atoms] = None, invariants_only: bool = True, num_layers: int = -1
    ) -> np.ndarray:
        """Per-atom descriptors: the node features after each interaction layer, as MACE's.

        Args:
            atoms: the structure (default: the calculator's atoms).
            invariants_only: keep only the invariant (scalar, ``0e``) features of each layer,
                ``channels`` per layer, which do not change when the structure is rotated; with
                ``False`` each layer's whole features (e3nn layout ``channels x 0e + channels x 1o +
                ...``; the last layer's are scalars only).
            num_layers: the first ``num_layers`` layers (``-1``: all).

        Returns:
            ``(n_atoms, n_features)``, the layers' features side by side, in float64.
        """
        atoms = self.atoms if atoms is None else atoms
        if atoms is None:
            raise ValueError("get_descriptors needs atoms")
        total = int(self.metadata["num_layers"])
        if num_layers == -1:
            num_layers = total
        if not 1 <= num_layers <= total:
            raise ValueError(f"num_layers must be -1 or between 1 and {total} (the model's layers), got {num_layers}")
        if not isinstance(self.model, AttnMACE) and "compute_descriptors" not in str(self.model.forward.schema):
            raise ValueError(  # a TorchScript module exported before descriptors existed
                "this model's TorchScript module has no descriptors (it was exported by an older attnmace); "
                "make the calculator without torchscript=True, or export the file again"
            )
        _, out = self._run(atoms, forces=False, stress=False, descriptors=True)
        channels = int(self.metadata["config"]["channels"])
        features = [out["node_features_" + str(s)] for s in range(num_layers)]
        if invariants_only:
            features = [f[:, :channels] for f in features]
        return torch.cat(features, dim=1).cpu().double().numpy()

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        periodic_3d = bool(self.atoms.pbc.all())
        if "stress" in properties and not periodic_3d:
            raise PropertyNotImplementedError(
                f"stress is defined for 3-D periodic cells only (pbc={self.atoms.pbc.tolist()}); for a slab, "
                f"make it periodic in every direction with more than {self.r_max:g} Å of vacuum (the largest "
                "cutoff), which gives the same energies and forces, and mask the cell's out-of-plane strain"
            )
        _, out = self._run(self.atoms, forces=True, stress=periodic_3d)
        energy = float(out[keys.ENERGY].sum().detach().cpu())
        layer = out[keys.LAYER_ENERGY].detach().cpu().double().numpy()
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "energies": out[keys.NODE_ENERGY].detach().cpu().double().numpy(),
            "forces": out[keys.FORCES].detach().cpu().double().numpy(),
            "layer_energies": layer.sum(axis=0),
            "atomic_layer_energies": layer,
        }
        if periodic_3d:
            stress = out[keys.STRESS][0].detach().cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)

    def get_attention(self, atoms: Optional[Atoms] = None) -> List[Dict[str, np.ndarray]]:
        """Attention weights of every layer (the paper's Figure 2).

        Returns:
            One dictionary per layer with ``"i"`` (centre) and ``"j"`` (neighbour) atom indices
            ``(n_edges,)``, ``"shift"`` ``(n_edges, 3)``, ``"distance"`` ``(n_edges,)`` and
            ``"weights"`` ``(n_edges, heads)``: for each centre and head the weights sum to one
            over its neighbours within that layer's cutoff; and ``"multipliers"`` ``(n_edges,
            heads)``, the factor each edge's embedding is multiplied by,
            ``α_ij · Σ_p u(r_ip) / u(r_ij)`` (1 for every edge when the logits of an atom are
            equal; README, "The model").

        Raises:
            ValueError: the model has no attention heads.
        """
        if int(self.metadata.get("heads", 0)) == 0:
            raise ValueError("this model has no attention heads (heads=0): nothing to return")
        atoms = self.atoms if atoms is None else atoms
        if atoms is None:
            raise ValueError("get_attention needs atoms")
        data, out = self._run(atoms, forces=False, stress=False, attention=True)
        # the model's positions are wrapped into the cell; the shifts returned are for atoms.positions
        offsets = lattice_offsets(atoms.get_positions(), np.asarray(atoms.get_cell()), atoms.get_pbc())
        cell = data[keys.CELL][0]
        pos = data[keys.POSITIONS]
        config = self.metadata["config"]
        inner = torch.tensor(config["inner_cutoffs"], device=pos.device) if config.get("inner_cutoffs") else None
        species = data[keys.SPECIES]
        layers = []
        for s in range(int(self.metadata["num_layers"])):
            sel = out["edges_" + str(s)]
            i, j = data[keys.EDGE_INDEX][:, sel]
            shift = data[keys.SHIFTS][sel]
            dist = torch.linalg.norm(pos[j] - pos[i] + shift @ cell, dim=1)
            weights = out["attention_" + str(s)].detach()
            net_dist = dist.detach()  # the distance the network sees: below an inner cutoff, its floor
            if inner is not None:
                floor = inner[species.index_select(0, i), species.index_select(0, j)]
                net_dist = soft_floor(
                    net_dist, floor.to(net_dist), float(config.get("inner_width", ModelConfig.inner_width))
                )
            u = polynomial_envelope(
                net_dist / float(config["cutoffs"][s]), int(config.get("envelope_p", ModelConfig.envelope_p))
            )
            count = torch.zeros(len(atoms), dtype=u.dtype, device=u.device).index_add(0, i, u)
            multipliers = torch.where(
                u[:, None] > 0, weights * count.index_select(0, i)[:, None] / u.clamp_min(1e-300)[:, None], 0.0
            )
            layers.append(
                {
                    "i": i.cpu().numpy(),
                    "j": j.cpu().numpy(),
                    "shift": shift.cpu().numpy().astype(np.int64) - offsets[j.cpu().numpy()] + offsets[i.cpu().numpy()],
                    "distance": dist.detach().cpu().double().numpy(),
                    "weights": weights.cpu().double().numpy(),
                    "multipliers": multipliers.cpu().double().numpy(),
                }
            )
        return layers
