"""Parameter counts of the presets next to Table 1 of Norwood et al.

python benchmarks/parameter_counts.py
"""

from attnmace import build_model, count_parameters

PAPER = {
    ("baseline", "C"): "616K",
    ("attention", "C"): "163K",
    ("baseline", "Li,C"): "710K",
    ("attention", "Li,C"): "176K",
}


def main():
    print("| preset | species | channels | heads | max L | layers | parameters | paper |")
    print("|---|---|---|---|---|---|---|---|")
    for species in (["C"], ["Li", "C"]):
        for preset in ("baseline", "attention"):
            model = build_model(preset, species=species)
            c = model.config
            print(
                f"| {preset} | {','.join(species)} | {c.channels} | {c.heads} | {c.max_l} | {c.num_layers} | "
                f"{count_parameters(model):,} | {PAPER[(preset, ','.join(species))]} |"
            )


if __name__ == "__main__":
    main()
