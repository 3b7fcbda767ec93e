"""One benchmark case of mace-torch, run by ``run.py`` INSIDE ``benchmarks/.venv-mace``.

    benchmarks/.venv-mace/bin/python benchmarks/mace_worker.py --structure s.extxyz \
        --dtype float64 --avg-num-neighbors 52.36 --out case.json

The model is ``mace.modules.ScaleShiftMACE`` (what ``mace_run_train --model MACE`` builds), untrained
(seed 0), with the hyperparameters of attnmace's ``baseline`` preset: hidden irreps
64x0e+64x1o+64x2e+64x3o, 3 interactions (RealAgnosticResidualInteractionBlock, MACE's default for
the first layer too), correlation 3, max_ell 3, 8 Bessel functions, polynomial envelope p = 5,
cutoff 5 Å, radial MLP [64, 64, 64], readout MLP 16x0e, SiLU gate, scale 1 / shift 0, E0 = 0, and
the same ``avg_num_neighbors`` as our model (passed by the driver). No ZBL term (mace's default;
ours has one, a negligible pair term).

Phases mirror ``ours_worker.py``:

- ``nl``: ``MACECalculator._atoms_to_batch`` (config_from_atoms, matscipy neighbour list,
  AtomicData, Batch): what the calculator does before the model; ``nl_raw``: the matscipy
  ``get_neighborhood`` call alone.
- ``forward``: energy only (``compute_force=False``) under ``torch.no_grad()`` (mace always marks
  positions as requiring gradients, so without it an autograd graph would be recorded).
- ``forward_backward``: ``compute_force=True, compute_stress=True``.
- ``calculator``: ``MACECalculator.calculate`` (energy, forces, stress; mace's calculator always
  computes stress, as ours does for periodic cells).
- ``md``: VelocityVerlet with the MACECalculator.
- ``train``: ``training=True`` forward with forces, the same loss, backward, Adam step.

``--variant script`` uses ``torch.jit.script(model)`` (how mace exports for LAMMPS) inside the
same calculator; training is eager only.
"""

from __future__ import annotations

import argparse
import copy
import importlib.metadata as md
import logging
import os
import sys
import time

# the same process-level memory settings as ours (attnmace/runtime.py, loaded by path: attnmace is
# not installed in mace-torch's environment): huge pages for torch's CPU tensors, set before torch
# is imported, and freed memory kept in the heap
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
_RUNTIME = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "attnmace", "runtime.py")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402


def _retain_freed_memory() -> bool:
    import importlib.util

    spec = importlib.util.spec_from_file_location("attnmace_runtime", _RUNTIME)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.retain_freed_memory()


DTYPES = {"float64": torch.float64, "float32": torch.float32}


def build_mace(dtype: torch.dtype, r_max: float, avg_num_neighbors: float, seed: int):
    from e3nn import o3
    from mace import modules

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    torch.manual_seed(seed)
    try:
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        model = modules.ScaleShiftMACE(
            r_max=r_max,
            num_bessel=8,
            num_polynomial_cutoff=5,
            max_ell=3,
            interaction_cls=block,
            interaction_cls_first=block,
            num_interactions=3,
            num_elements=1,
            hidden_irreps=o3.Irreps("64x0e+64x1o+64x2e+64x3o"),
            MLP_irreps=o3.Irreps("16x0e"),
            atomic_energies=np.zeros(1),
            avg_num_neighbors=avg_num_neighbors,
            atomic_numbers=[6],
            correlation=3,
            gate=torch.nn.functional.silu,
            radial_MLP=[64, 64, 64],
            radial_type="bessel",
            atomic_inter_scale=1.0,
            atomic_inter_shift=0.0,
        )
    finally:
        torch.set_default_dtype(previous)
    return model.to(dtype)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="eager", choices=["eager", "script"])
    parser.add_argument("--r-max", type=float, default=5.0)
    parser.add_argument("--avg-num-neighbors", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    timing.common_arguments(parser)
    args = parser.parse_args()
    _retain_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)

    from mace.calculators import MACECalculator
    from mace.data.neighborhood import get_neighborhood

    atoms = ase.io.read(args.structure)
    dtype = DTYPES[args.dtype]
    device = torch.device(args.device)
    t0 = time.perf_counter()
    model = build_mace(dtype, args.r_max, args.avg_num_neighbors, args.seed)
    build_s = time.perf_counter() - t0
    train_model = copy.deepcopy(model)  # the calculator freezes the parameters of the model it gets
    export_s = None
    calc_model = model
    if args.variant == "script":
        t0 = time.perf_counter()
        calc_model = torch.jit.script(model)
        export_s = time.perf_counter() - t0
    calc = MACECalculator(models=calc_model, device=args.device, default_dtype=args.dtype)
    module = calc.models[0].eval()
    batch = calc._atoms_to_batch(atoms)
    base = {
        k: (v.to(dtype) if torch.is_floating_point(v) else v) for k, v in batch.to_dict().items() if torch.is_tensor(v)
    }

    info = {
        "model": "mace",
        "variant": args.variant,
        "dtype": args.dtype,
        "device": args.device,
        "structure": os.path.basename(args.structure),
        "kind": atoms.info.get("benchmark_kind"),
        "n_atoms": len(atoms),
        "n_edges": int(base["edge_index"].shape[1]),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "r_max": args.r_max,
        "avg_num_neighbors": args.avg_num_neighbors,
        "build_s": build_s,
        "export_s": export_s,
        "torch_threads": torch.get_num_threads(),
        "versions": {
            "mace-torch": md.version("mace-torch"),
            "torch": torch.__version__,
            "e3nn": md.version("e3nn"),
            "matscipy": md.version("matscipy"),
        },
    }
    res = timing.Results(args.out, info)
    phases = args.phases.split(",")
    R, W = args.repeats, args.warmup

    def fresh() -> dict:
        d = dict(base)
        d["positions"] = base["positions"].detach().clone()
        return d

    def forward():
        with torch.no_grad():
            return module(fresh(), training=False, compute_force=False, compute_stress=False)

    if "nl" in phases:
        res.phase("nl", lambda: timing.time_call(lambda: calc._atoms_to_batch(atoms), R, W, args.device))
        pos, cell, pbc = atoms.get_positions(), np.asarray(atoms.get_cell()), tuple(bool(p) for p in atoms.pbc)
        res.phase(
            "nl_raw",
            lambda: timing.time_call(lambda: get_neighborhood(pos, args.r_max, pbc, cell.copy()), R, W, args.device),
        )
    if "forward" in phases:
        res.phase("forward", lambda: timing.time_call(forward, R, W, args.device))
    if "forward_backward" in phases:
        res.phase(
            "forward_backward",
            lambda: timing.time_call(
                lambda: module(fresh(), training=False, compute_force=True, compute_stress=True), R, W, args.device
            ),
        )
    timing.calculator_phases(res, atoms, calc, phases, R, W, args.device, args.md_steps, args.timestep_fs)
    if "train" in phases and args.variant == "eager":

        def train():
            net = train_model.to(device=device, dtype=dtype).train()
            for p in net.parameters():
                p.requires_grad_(True)
            opt = torch.optim.Adam(net.parameters(), lr=1e-4)
            n = len(atoms)

            def step():
                opt.zero_grad(set_to_none=True)
                out = net(fresh(), training=True, compute_force=True, compute_stress=False)
                loss = (out["energy"] / n).pow(2).mean() + out["forces"].pow(2).mean()
                loss.backward()
                opt.step()

            return timing.time_call(step, R, W, args.device)

        res.phase("train", train)
    res.finish()


if __name__ == "__main__":
    main()
