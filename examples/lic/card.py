"""Write the model card of ``models/lic.pt`` from the training run and its evaluations.

    attnmace-eval runs/lic/model/model.pt runs/lic/data/test.extxyz --energy-key REF_energy \\
        --forces-key REF_forces --stress-key REF_stress --json runs/lic/eval_test.json
    attnmace-eval ... runs/lic/data/valid.extxyz ... --json runs/lic/eval_valid.json
    python examples/lic/card.py --run runs/lic/model --test runs/lic/eval_test.json \\
        --valid runs/lic/eval_valid.json --split runs/lic/data/split.json --output runs/lic/card.json

Every number in the card is read from those files; ``examples/ship_model.py --card`` stores the
card in the exported model's metadata and ``models/README.md`` shows it.
"""

import argparse
import csv
import json
from pathlib import Path
from typing import Optional

METRICS = ("energy_rmse_meV_per_atom", "energy_mae_meV_per_atom", "forces_rmse_meV_per_A", "stress_rmse_meV_per_A3")


def _metrics(path: Path) -> dict:
    ev = json.loads(path.read_text())
    overall = ev["overall"]
    out = {k: round(overall[k], 2) for k in METRICS if k in overall}
    out.update(frames=overall["n_frames"], atoms=overall["n_atoms"])
    out["per_config_type"] = {
        name: {k: round(v[k], 2) for k in METRICS if k in v} | {"frames": v["n_frames"]}
        for name, v in sorted(ev.get("per_config_type", {}).items())
    }
    return out


#: Where the shipped release was trained (``--hardware`` for another run).
HARDWARE = "1 CPU core of a 2-core VM (the other core ran GAP-20 training and benchmarks), float32"


def _training(run: Path, config: str, hardware: str) -> dict:
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    best = min(rows, key=lambda r: float(r["valid_loss"]))
    return {
        "config": config,
        "epochs": len(rows),
        "best_epoch": int(best["epoch"]),
        "wall_time_h": round(sum(float(r["seconds"]) for r in rows) / 3600, 2),
        "hardware": hardware,
    }


def build_card(
    run: Path,
    test: Path,
    valid: Path,
    split: Path,
    hardware: str = HARDWARE,
    config: str = "examples/lic/lic.yaml",
    base_run: Optional[Path] = None,
    base_config: str = "examples/lic/lic.yaml",
    base_hardware: str = HARDWARE,
) -> dict:
    """The card's dict. ``base_run``: the run that ``run`` was fine-tuned from (``--init-from``)."""
    parts = json.loads(split.read_text())
    training = _training(run, config, hardware)
    if base_run is not None:
        training["fine_tuned_from"] = _training(base_run, base_config, base_hardware)
        training["total_wall_time_h"] = round(training["wall_time_h"] + training["fine_tuned_from"]["wall_time_h"], 2)
    return {
        "name": "lic.pt",
        "description": "AttnMACE (attention preset: 16 channels, 4 heads, L = 3; 2 layers with cutoffs "
        "4 and 5 Å) for lithium-intercalated carbon: graphite, graphene, bilayers, bcc Li, LiC6, "
        "LiC12, dilute LixC.",
        "data": {
            "source": "examples/lic/data/lic_dft.extxyz (this project's own DFT data)",
            "method": "CP2K 2023.1, PBE-D3(BJ), DZVP-MOLOPT-SR-GTH, GTH-PBE, 500 Ry, Fermi-Dirac 1000 K",
            "frames": {name: len(parts[name]) for name in ("train", "valid", "test")},
            "split": "hash of structure_id (examples/lic/prepare.py): about 80/10/10",
        },
        "training": training,
        "metrics": {"test": _metrics(test), "valid": _metrics(valid)},
        "units": {"energy": "eV", "forces": "eV/Å", "stress": "eV/Å^3 (ASE sign)"},
        "intended_use": "Li intercalation in graphite at the PBE-D3(BJ) level: formation energies, "
        "interlayer spacings, Li migration and MD of LixC6 up to about 1400 K.",
        "limits": "Trained on small cells (<= 28 atoms) near the ideal structures, on short-MD "
        "snapshots (300 and 900 K) and on Li hop paths (NEB images of the previous release); no "
        "surfaces with dangling bonds, no electrolyte, no Li clusters or plating. "
        "It reproduces its PBE-D3(BJ) reference, which puts E_f(LiC6) at about +0.03 eV/Li at the "
        "experimental lattice (vdW-DFT literature: -0.2 to -0.3 eV/Li), mostly because D3(BJ) binds "
        "bcc Li by 0.17 eV/atom: without D3 on the metal and with a larger basis, voltages would lie "
        "about 0.2 V higher (examples/lic/README.md).",
        "citation": "Norwood, Schaaf, Batatia, Csányi, Bhowmik, Enhancing the local expressivity of "
        "geometric graph neural networks (the model); attnmace (the data and the training).",
        "licence": "MIT (model weights and data, as the attnmace package)",
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("runs/lic/model"))
    parser.add_argument("--test", type=Path, default=Path("runs/lic/eval_test.json"))
    parser.add_argument("--valid", type=Path, default=Path("runs/lic/eval_valid.json"))
    parser.add_argument("--split", type=Path, default=Path("runs/lic/data/split.json"))
    parser.add_argument("--output", type=Path, default=Path("runs/lic/card.json"))
    parser.add_argument("--hardware", default=HARDWARE, help="what the model was trained on")
    parser.add_argument("--config", default="examples/lic/lic.yaml", help="the run's training config")
    parser.add_argument("--base-run", type=Path, default=None, help="the run that --run fine-tuned (--init-from)")
    parser.add_argument("--base-config", default="examples/lic/lic.yaml", help="the base run's training config")
    parser.add_argument("--base-hardware", default=HARDWARE, help="what the base run was trained on")
    args = parser.parse_args(argv)
    card = build_card(
        args.run,
        args.test,
        args.valid,
        args.split,
        args.hardware,
        args.config,
        args.base_run,
        args.base_config,
        args.base_hardware,
    )
    args.output.write_text(json.dumps(card, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({k: card[k] for k in ("data", "training", "metrics")}, indent=1, ensure_ascii=False)[:3000])


if __name__ == "__main__":
    main()
