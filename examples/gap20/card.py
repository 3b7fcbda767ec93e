"""Write the model card of ``models/gap20.pt`` from the comparison and the physics examples.

    python examples/gap20/compare.py attention=examples/gap20/training/attention --last \\
        --output runs/gap20/ship
    attnmace-export examples/gap20/training/attention/checkpoint.pt runs/gap20/ship/model.pt
    python examples/gap20/graphite.py --model runs/gap20/ship/model.pt --json runs/gap20/ship/graphite.json
    python examples/gap20/diamond_graphite.py --model runs/gap20/ship/model.pt \\
        --json runs/gap20/ship/diamond_graphite.json
    python examples/gap20/nve_amorphous.py --model runs/gap20/ship/model.pt --json runs/gap20/ship/nve.json
    python examples/gap20/card.py --results runs/gap20/ship --output runs/gap20/ship/card.json \\
        --limits "what the checks above showed" [--status "preliminary: why"] \\
        [--weights "where they come from, e.g. the commit of the checkpoint"]
    python examples/ship_model.py runs/gap20/ship/model.pt models/gap20.pt --card runs/gap20/ship/card.json \\
        --fixture tests/fixtures/gap20_small.extxyz --frames 0,1,2

Every number in the card is read from those files (``metrics.json`` of ``compare.py``, the
examples' ``--json`` output, ``split.json`` and the run's config); ``ship_model.py --card`` stores
it in the exported model's metadata, and ``models/README.md`` shows it. ``--limits`` is the one
text written by hand: what the checks say the model cannot do (and ``--weights``, where the weights
come from, when ``compare.py`` found them in a file of the git-ignored ``runs/``).
"""

import argparse
import json
from pathlib import Path
from typing import Optional

METRICS = ("energy_rmse_meV_per_atom", "energy_mean_error_meV_per_atom", "forces_rmse_meV_per_A")
HERE = Path(__file__).parent


def _metrics(block: dict, grouping: str) -> dict:
    """Overall and grouped errors of one split, rounded for the card."""
    overall = block["overall"]
    out = {k: round(overall[k], 1) for k in METRICS if k in overall}
    out.update(frames=overall["n_frames"], atoms=overall["n_atoms"])
    out[grouping] = {
        name: {k: round(v[k], 1) for k in METRICS if k in v} | {"frames": v["n_frames"]}
        for name, v in sorted(block.get(grouping, {}).items())
    }
    return out


def _read(path: Path) -> Optional[dict]:
    """An example's ``--json`` output, or None where it was not run."""
    return json.loads(path.read_text()) if path.is_file() else None


def build_card(
    results: Path,
    limits: str,
    name: str = "attention",
    split: Path = HERE / "split.json",
    status: str = "release",
    weights: Optional[str] = None,
) -> dict:
    """The card's dict from a folder with ``metrics.json`` (``compare.py``) and, where they were
    run, ``graphite.json``, ``diamond_graphite.json`` and ``nve.json`` (the examples' ``--json``).
    ``status`` says whether the weights meet the accuracy bar ("release") or not ("preliminary: ...").
    ``weights`` says where the weights come from, for a reader without this machine's ``runs/``
    (e.g. the commit of the checkpoint); by default, how ``compare.py`` found them."""
    comparison = json.loads((results / "metrics.json").read_text())
    if name not in comparison:
        raise SystemExit(f"{results / 'metrics.json'} has no model named {name!r} (it has {sorted(comparison)})")
    run = comparison[name]
    config, budget = run["config"], run["budget"]
    parts = json.loads(split.read_text())
    checks = {key: _read(results / f"{key}.json") for key in ("graphite", "diamond_graphite", "nve")}
    correlation = config["correlation"]
    correlation = max(correlation) if isinstance(correlation, list) else correlation
    logit_cap = float(config.get("attn_logit_cap") or 0.0)
    capped = (
        f"; attention logits soft-capped at {logit_cap:g} (c·tanh(l/c), set after training, chosen on the "
        "validation split by examples/gap20/logit_cap.py)"
        if logit_cap > 0
        else ""
    )
    return {
        "name": "gap20.pt",
        "status": status,
        "description": f"AttnMACE, attention preset: {config['channels']} channels, {config['heads']} heads, "
        f"L = {config['max_l']}, correlation {correlation}; {len(config['cutoffs'])} layers with "
        f"layer-dependent cutoffs {', '.join(f'{c:g}' for c in config['cutoffs'])} Å; "
        f"{run['parameters']:,} parameters{capped}. Carbon in all its forms: crystalline, amorphous, liquid, "
        "surfaces, defects, fullerenes and nanotubes.",
        "data": {
            "source": "GAP-20 carbon database, public subset (about half of GAP-20: no Amorphous_Bulk "
            "training structures), ../shared/data/gap20",
            "reference": "Rowe, Deringer, Gasparotto, Csányi, Michaelides, J. Chem. Phys. 153, 034702 (2020)",
            "method": "VASP, optB88-vdW",
            "licence": "CC BY 4.0",
            "frames": {"train": len(parts["train"]), "valid": len(parts["valid"]), "dropped": len(parts["dropped"])},
            "split": f"{parts['valid_fraction']:.0%} validation stratified by config_type, seed {parts['seed']}; "
            "dropped: cells narrower than 6 Å (Γ-point energies), three faulty nanotube labels, the dimers "
            "(examples/gap20/README.md, section 1)",
            "test": "gap20_amorphous_test.extxyz: 250 Amorphous_Bulk frames, a type absent from training",
        },
        "training": {
            "config": "examples/gap20/attention.yaml",
            "epochs": budget["epochs"],
            "steps": budget["steps"],
            "batch_size": budget.get("batch_size"),
            "weights": weights or run.get("weights"),
            "wall_time_h": round(budget["hours"], 2),
            "dtype": budget.get("dtype"),
        },
        "cutoffs": config["cutoffs"],
        "metrics": {
            "valid": _metrics(run["valid"], "per_config_type"),
            "test": _metrics(run["test"], "per_cell_size"),
        },
        "checks": {key: value for key, value in checks.items() if value is not None},
        "units": {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å^3 (ASE sign)"},
        "intended_use": "MD and relaxations of carbon at the optB88-vdW level: amorphous and liquid carbon, "
        "graphite and diamond, surfaces and defects, in cells of tens to thousands of atoms.",
        "limits": limits,
        "citation": "Norwood, Schaaf, Batatia, Csányi, Bhowmik, Enhancing the local expressivity of geometric "
        "graph neural networks (the model); Rowe et al., J. Chem. Phys. 153, 034702 (2020) (the data).",
        "licence": "weights: CC BY 4.0, as the GAP-20 data they were fitted to; code: MIT",
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, required=True, help="folder with compare.py's metrics.json")
    parser.add_argument("--name", default="attention", help="the model's name in metrics.json")
    parser.add_argument("--limits", required=True, help="what the checks say the model cannot do")
    parser.add_argument(
        "--status", default="release", help='"release", or why the weights are preliminary (e.g. a missed accuracy bar)'
    )
    parser.add_argument(
        "--weights",
        help='where the weights come from, in words a reader can follow (e.g. "EMA weights of epoch 132, '
        'the checkpoint of commit 2542520"); default: how compare.py found them, which can be a path in '
        "the git-ignored runs/",
    )
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    card = build_card(args.results, args.limits, args.name, status=args.status, weights=args.weights)
    args.output.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: card[k] for k in ("status", "training", "checks")}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
