"""Average the weights of several checkpoints of one run (stochastic weight averaging after the fact).

    git show a5c4780:examples/gap20/training/attention/checkpoint.pt > runs/gap20/e157.pt   # etc.
    python examples/gap20/average_weights.py runs/gap20/average runs/gap20/e157.pt \\
        runs/gap20/e165.pt runs/gap20/e169.pt
    python examples/gap20/compare.py average=runs/gap20/average --last --output ...

Each input is a ``checkpoint.pt`` of ``attnmace-train`` (or a snapshot of ``--snapshot-every``);
the weights averaged are the ones an evaluation uses (the EMA ones when saved). All must hold the
same model configuration. The output folder gets a ``checkpoint.pt`` in the snapshot format,
holding the mean, with the metadata (epoch, history, settings) of the last input, and that
input's ``metrics.csv`` rows and settings (``config.yaml``), so that ``compare.py NAME=FOLDER
--last`` evaluates it like a run.
"""

import argparse
import csv
import json
from pathlib import Path

import torch
import yaml

from attnmace.train.checkpoint import read_checkpoint


def average(paths):
    """The mean weights of the checkpoints ``paths``, and the whole state of each.

    Raises:
        SystemExit: fewer than two checkpoints, or checkpoints of different models.
    """
    if len(paths) < 2:
        raise SystemExit(f"average_weights: give at least two checkpoints, got {len(paths)}")
    loaded = [read_checkpoint(p) for p in paths]
    config = loaded[0][0]
    for path, (other, weights, _) in zip(paths, loaded):
        if other != config or set(weights) != set(loaded[0][1]):
            raise SystemExit(f"average_weights: {path} holds another model than {paths[0]}")
    mean = {}
    for key, value in loaded[0][1].items():
        values = [weights[key] for _, weights, _ in loaded]
        if value.is_floating_point():
            mean[key] = torch.stack([v.double() for v in values]).mean(0).to(value.dtype)
        elif all(torch.equal(v, value) for v in values):
            mean[key] = value
        else:
            raise SystemExit(f"average_weights: {key} differs between the checkpoints and cannot be averaged")
    return mean, [state for _, _, state in loaded]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("output", type=Path, help="folder for checkpoint.pt and metrics.csv")
    parser.add_argument("checkpoints", nargs="+", type=Path, help="checkpoint.pt files of one model, oldest first")
    args = parser.parse_args(argv)
    mean, states = average(args.checkpoints)
    args.output.mkdir(parents=True, exist_ok=True)
    epochs, last = [s.get("epoch") for s in states], states[-1]
    state = {
        "model": mean,
        "ema": None,
        "weights": f"average of {len(epochs)} checkpoints, epochs {epochs}",
        "epoch": last.get("epoch"),
        "history": last.get("history") or [],
        "settings": last.get("settings") or {},
        "model_config": last["model_config"],
    }
    torch.save(state, args.output / "checkpoint.pt")
    if state["history"]:
        with open(args.output / "metrics.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(state["history"][0]))
            writer.writeheader()
            writer.writerows(state["history"])
    with open(args.output / "config.yaml", "w") as fh:  # the training settings, for compare.py's budget
        yaml.safe_dump(json.loads(json.dumps(state["settings"], default=str)), fh, sort_keys=False)
    print(f"averaged the weights of epochs {epochs} into {args.output / 'checkpoint.pt'}")


if __name__ == "__main__":
    main()
