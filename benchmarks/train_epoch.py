"""Training throughput on a real dataset, and the epoch time it implies.

Times full training steps (forward, forces with ``create_graph``, energy+force loss, backward,
Adam step) on randomly drawn batches of a training file, exactly as ``attnmace-train`` builds
them from a config, and extrapolates to one pass over the whole training set::

    python examples/gap20/prepare.py                       # writes runs/gap20/data/
    python benchmarks/train_epoch.py --config examples/gap20/attention.yaml --threads 2

Each batch is stepped ``--repeats`` times and its fastest step counts (the noise of a shared
machine only ever adds time). The estimate is ``total atoms x (time of the timed steps / their
atoms)``; batches are drawn with a fixed seed, so two runs (e.g. before and after a change) time
the same batches.

Memory: with ``--largest`` every batch is the ``batch_size`` largest frames of the file, and
``peak_rss_gb`` in the result (the process's peak resident memory) is what the largest training
step needs; ``--max-atoms-per-pass N`` steps in parts of at most N atoms, as ``attnmace-train``
does with that option::

    python benchmarks/train_epoch.py --config examples/gap20/baseline.yaml --largest --batches 1 \
        --repeats 1 --max-atoms-per-pass 256
"""

import argparse
import json
import platform
import resource
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="examples/gap20/attention.yaml")
    parser.add_argument("--preset", help="override the config's preset (e.g. baseline)")
    parser.add_argument("--batches", type=int, default=24, help="timed batches (after one warm-up)")
    parser.add_argument("--repeats", type=int, default=3, help="steps per batch; the fastest counts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", help="write the result as JSON here")
    parser.add_argument(
        "--max-atoms-per-pass", type=int, default=0, help="steps in parts of at most this many atoms, as attnmace-train"
    )
    parser.add_argument(
        "--largest", action="store_true", help="every batch is the batch_size largest frames: the peak memory of a step"
    )
    parser.add_argument("--no-retain", action="store_true", help="keep glibc's default of unmapping freed large blocks")
    parser.add_argument("--before", help="path of another attnmace checkout to import instead")
    args = parser.parse_args(argv)
    if args.before:
        from checkout import use_checkout

        use_checkout(args.before)

    import attnmace  # noqa: F401, I001  (first: huge pages for torch's allocations, as attnmace-train has)
    import numpy as np
    import torch

    from attnmace.train.cli import build_trainer, resolve_options
    from attnmace.train.graphs import collate_graphs
    from attnmace.train.loss import LossWeights, compute_loss

    torch.set_num_threads(args.threads)
    try:
        from attnmace.runtime import retain_freed_memory
    except ImportError:  # a checkout from before attnmace.runtime, for before/after comparisons
        retained = False
    else:
        retained = False if args.no_retain else retain_freed_memory()  # as attnmace-train does
    cli = ["--config", args.config, "--output-dir", "/tmp/attnmace-train-epoch", "--lazy"]
    if args.preset:
        cli += ["--preset", args.preset]
    options = resolve_options(cli)
    trainer = build_trainer(options)
    model, dataset = trainer.model, trainer.train_set
    model.train()
    weights = LossWeights(energy=options["energy_weight"], forces=options["forces_weight"])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    rng = np.random.default_rng(args.seed)
    size = options["batch_size"]
    if args.largest:
        by_size = sorted(range(len(dataset)), key=lambda i: -len(dataset.frames[i].numbers))
        drawn = [by_size[:size]] * (args.batches + 1)
    else:
        drawn = [rng.choice(len(dataset), size, replace=False) for _ in range(args.batches + 1)]
    batches = []  # (atoms, the batch's parts, its loss norms or None)
    for indices in drawn:
        items = [dataset[int(i)] for i in indices]
        atoms_in = sum(int(item["positions"].shape[0]) for item in items)
        if args.max_atoms_per_pass > 0:  # (not in checkouts from before the option)
            from attnmace.train.graphs import split_by_atoms
            from attnmace.train.loss import loss_norms

            parts = [collate_graphs(group) for group in split_by_atoms(items, args.max_atoms_per_pass)]
            batches.append((atoms_in, parts, loss_norms(*parts)))
        else:
            batches.append((atoms_in, [collate_graphs(items)], None))

    def step(batch):
        _, parts, norms = batch
        optimizer.zero_grad(set_to_none=True)
        for part in parts:
            out = model(part, compute_forces=True)
            loss = (
                compute_loss(out, part, weights, norms)["total"]
                if norms is not None
                else compute_loss(out, part, weights)["total"]
            )
            loss.backward()
            del out, loss
        optimizer.step()

    step(batches[0])  # warm-up
    seconds, atoms = [], []
    for batch in batches[1:]:
        best = float("inf")
        for _ in range(args.repeats):  # the fastest of a few: a shared VM's noise only adds time
            start = time.perf_counter()
            step(batch)
            best = min(best, time.perf_counter() - start)
        seconds.append(best)
        atoms.append(batch[0])
    ms_per_atom = sum(seconds) / sum(atoms) * 1e3  # time-weighted, as an epoch sums them
    total_atoms = sum(len(dataset.frames[i].numbers) for i in range(len(dataset)))
    epoch_min = total_atoms * ms_per_atom / 1e3 / 60
    result = {
        "config": args.config,
        "preset": options["preset"],
        "dtype": options["dtype"],
        "batch_size": size,
        "threads": args.threads,
        "timed_batches": args.batches,
        "repeats": args.repeats,
        "retain_freed_memory": retained,
        "max_atoms_per_pass": args.max_atoms_per_pass,
        "largest": args.largest,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,  # Linux: kB
        "ms_per_atom": ms_per_atom,
        "batch_seconds": seconds,
        "batch_atoms": atoms,
        "train_frames": len(dataset),
        "train_atoms": total_atoms,
        "epoch_minutes_estimate": epoch_min,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(
        f"{options['preset']} ({options['dtype']}, batch {size}, {args.threads} threads): "
        f"{ms_per_atom:.2f} ms/atom per training step ({sum(atoms)} atoms in {args.batches} batches); "
        f"{len(dataset)} frames, {total_atoms} atoms -> epoch ~ {epoch_min:.1f} min; "
        f"peak resident memory {result['peak_rss_gb']:.1f} GB"
    )
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
