"""Attention pattern of one defected-graphite environment (the paper's Figure 2, left).

    python examples/gap20/attention_pattern.py [--model gap20.pt] [--output attention_pattern.png]

Builds AB graphite (a 6×6 in-plane supercell, 2 layers) with one vacancy in the top sheet,
relaxes nothing, and takes a carbon atom next to the vacancy: an under-coordinated atom of a
defected graphite sheet, the kind of environment of the paper's figure. For each layer and
head it plots the weight the head gives each neighbour against the neighbour's distance, with
the uniform weight ``1 / n_neighbours`` of plain MACE as a reference line, and prints, per head,
the share of weight on the first shell (< 1.7 Å) and on the second (1.7–2.7 Å).
"""

import argparse

import numpy as np
from ase.build import graphene

from attnmace import AttnMACECalculator


def defected_graphite(n: int = 6, a: float = 2.46, c: float = 6.70):
    """AB graphite ``n × n`` supercell with one vacancy in the top layer; index of a vacancy neighbour."""
    layer = graphene(a=a, vacuum=None)
    layer.cell[2, 2] = c
    bottom = layer.repeat((n, n, 1))
    top = bottom.copy()
    top.translate(layer.cell[0] / 3.0 + layer.cell[1] / 3.0 + np.array([0, 0, c / 2]))  # AB shift
    top.wrap()
    atoms = bottom + top
    top_idx = np.arange(len(bottom), len(atoms))
    centre = atoms.cell.sum(axis=0) / 2
    vacancy = top_idx[np.argmin(np.linalg.norm(atoms.positions[top_idx] - centre, axis=1))]
    d = atoms.get_distances(vacancy, top_idx, mic=True)
    neighbour = top_idx[np.argsort(d)[1]]
    del atoms[vacancy]
    return atoms, int(neighbour - (neighbour > vacancy))


def shells(distance: np.ndarray, weights: np.ndarray):
    """Share of each head's weight on the first (< 1.7 Å) and second (1.7–2.7 Å) neighbour shells."""
    first = weights[distance < 1.7].sum(axis=0)
    second = weights[(distance >= 1.7) & (distance < 2.7)].sum(axis=0)
    return first, second


def pattern(calc, atoms, centre: int):
    """Per layer: distances and weights ``(n_neighbours, heads)`` of the edges of ``centre``."""
    out = []
    for layer in calc.get_attention(atoms):
        sel = layer["i"] == centre
        order = np.argsort(layer["distance"][sel])
        out.append((layer["distance"][sel][order], layer["weights"][sel][order]))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="gap20.pt")
    parser.add_argument("--output", default="attention_pattern.png")
    args = parser.parse_args(argv)
    calc = AttnMACECalculator(args.model)
    atoms, centre = defected_graphite()
    layers = pattern(calc, atoms, centre)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(layers), figsize=(5 * len(layers), 3.8), squeeze=False)
    for s, (ax, (dist, w)) in enumerate(zip(axes[0], layers)):
        first, second = shells(dist, w)
        print(f"layer {s + 1} (cutoff {calc.metadata['cutoffs'][s]} Å, {len(dist)} neighbours of atom {centre}):")
        for mu in range(w.shape[1]):
            ax.plot(dist, w[:, mu], "o", ms=4, label=f"head {mu + 1}")
            print(
                f"  head {mu + 1}: first shell {first[mu]:.2f}, second shell {second[mu]:.2f}, "
                f"rest {1 - first[mu] - second[mu]:.2f} of the weight"
            )
        ax.axhline(1.0 / len(dist), color="k", lw=0.8, ls="--", label="uniform (plain sum)")
        ax.set_xlabel("neighbour distance (Å)")
        ax.set_ylabel("attention weight")
        ax.set_title(f"layer {s + 1}: atom next to a vacancy in graphite")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(args.output, dpi=130)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
