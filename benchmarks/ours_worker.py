"""One benchmark case of an attnmace model, run by ``run.py`` in a fresh process.

    python benchmarks/ours_worker.py --preset baseline --variant eager --structure s.extxyz \
        --dtype float64 --out case.json

Phases (each timed as the median of ``--repeats`` calls after ``--warmup`` calls, with its peak
memory):

- ``nl``: ``attnmace.graph.atoms_to_graph`` (input checks, vesin neighbour list, tensors);
  ``nl_raw``: the vesin call alone (``attnmace.graph.neighbour_list``).
- ``forward``: the model on a prepared graph, energy only (``compute_forces=False``; no autograd
  graph is built because the calculator's parameters do not require gradients).
- ``forward_backward``: the same with ``compute_forces=True, compute_stress=True``; backward =
  forward_backward - forward (derived by ``run.py``).
- ``calculator``: ``AttnMACECalculator.calculate`` (energy, forces, stress: what every ASE step
  pays, neighbour list included).
- ``md``: VelocityVerlet, 0.5 fs, 300 K Maxwell-Boltzmann start; median time per step.
- ``train``: one training step of the eager model: ``model.train()``, forward with forces (the
  force graph kept for the second derivative), loss = (E/N)² + mean(F²) against zero labels,
  ``backward()``, Adam step. Eager variant only.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

# what ``import attnmace`` before torch does in a user's script (attnmace/__init__.py): huge pages
# for torch's CPU tensors, read by torch at import. torch comes first below, so set it here, as
# mace_worker.py does for mace-torch
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import ase.io  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import timing  # noqa: E402

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="baseline")
    parser.add_argument("--variant", default="eager", choices=["eager", "script", "lowmem"])
    parser.add_argument("--cutoffs", default="5.0,5.0,5.0")
    parser.add_argument("--seed", type=int, default=0)
    timing.common_arguments(parser)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import attnmace
    from attnmace import AttnMACECalculator, build_model, count_parameters, export_model, keys
    from attnmace.graph import atoms_to_graph, neighbour_list

    atoms = ase.io.read(args.structure)
    dtype = DTYPES[args.dtype]
    device = torch.device(args.device)
    cutoffs = tuple(float(c) for c in args.cutoffs.split(","))
    t0 = time.perf_counter()
    model = build_model(args.preset, species=["C"], cutoffs=cutoffs, seed=args.seed)
    build_s = time.perf_counter() - t0
    tmpdir = tempfile.TemporaryDirectory()
    export_s = None
    if args.variant == "script":
        t0 = time.perf_counter()
        path = export_model(model, os.path.join(tmpdir.name, "model.pt"))
        export_s = time.perf_counter() - t0
        calc = AttnMACECalculator(str(path), device=args.device, dtype=args.dtype, torchscript=True)
    else:  # lowmem: the eager model with each layer's edge work in checkpointed groups (low_memory=True)
        calc = AttnMACECalculator(model, device=args.device, dtype=args.dtype, low_memory=args.variant == "lowmem")
    module = calc.model  # eval mode, requested dtype/device, parameters without gradients
    numbers = calc.atomic_numbers
    r_max = calc.r_max
    data = atoms_to_graph(atoms, numbers, r_max, dtype, device)

    info = {
        "model": args.preset,
        "variant": args.variant,
        "dtype": args.dtype,
        "device": args.device,
        "structure": os.path.basename(args.structure),
        "kind": atoms.info.get("benchmark_kind"),
        "n_atoms": len(atoms),
        "n_edges": int(data[keys.EDGE_INDEX].shape[1]),
        "parameters": count_parameters(model),
        "cutoffs": list(cutoffs),
        "avg_num_neighbors": list(model.config.avg_num_neighbors),
        "pair_repulsion": bool(model.config.pair_repulsion),
        "build_s": build_s,
        "export_s": export_s,
        "torch_threads": torch.get_num_threads(),
        "versions": {"attnmace": attnmace.__version__, "torch": torch.__version__},
    }
    res = timing.Results(args.out, info)
    phases = args.phases.split(",")
    R, W = args.repeats, args.warmup

    def fresh() -> dict:
        # a new positions tensor per call: compute_forces sets requires_grad on it in place
        d = dict(data)
        d[keys.POSITIONS] = data[keys.POSITIONS].detach().clone()
        return d

    if "nl" in phases:
        res.phase(
            "nl",
            lambda: timing.time_call(lambda: atoms_to_graph(atoms, numbers, r_max, dtype, device), R, W, args.device),
        )
        pos, cell, pbc = atoms.get_positions(), np.asarray(atoms.get_cell()), atoms.get_pbc()
        res.phase("nl_raw", lambda: timing.time_call(lambda: neighbour_list(pos, cell, pbc, r_max), R, W, args.device))
    if "forward" in phases:
        res.phase(
            "forward",
            lambda: timing.time_call(
                lambda: module(fresh(), compute_forces=False, compute_stress=False), R, W, args.device
            ),
        )
    if "forward_backward" in phases:
        res.phase(
            "forward_backward",
            lambda: timing.time_call(
                lambda: module(fresh(), compute_forces=True, compute_stress=True), R, W, args.device
            ),
        )
    timing.calculator_phases(res, atoms, calc, phases, R, W, args.device, args.md_steps, args.timestep_fs)
    if "train" in phases and args.variant == "eager":

        def train():
            net = build_model(config=model.config)
            net.load_state_dict(model.state_dict())
            net = net.to(device=device, dtype=dtype).train()
            opt = torch.optim.Adam(net.parameters(), lr=1e-4)
            n = len(atoms)

            def step():
                opt.zero_grad(set_to_none=True)
                out = net(fresh(), compute_forces=True, compute_stress=False)
                loss = (out[keys.ENERGY] / n).pow(2).mean() + out[keys.FORCES].pow(2).mean()
                loss.backward()
                opt.step()

            return timing.time_call(step, R, W, args.device)

        res.phase("train", train)
    res.finish()


if __name__ == "__main__":
    main()
