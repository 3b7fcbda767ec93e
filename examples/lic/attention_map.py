"""Attention map of a Li site in LiC12 (the paper's Figure 2, left, for Li–C).

Takes stage-II LiC12 (Li between every second pair of graphene layers) at the experimental
lattice, picks a Li atom and plots, for each layer and head of the model, the weight the head
gives each neighbour against the neighbour's distance, carbon and lithium marked apart, with the
uniform weight ``1 / n_neighbours`` of plain MACE as a reference line. It prints, per head, the
share of weight on the 12 carbon atoms of the two hexagons around the Li (the first shell), on
the other carbon atoms and on lithium. A head whose share of the first shell is far above
12 / n_neighbours has learned to look at the Li site's own hexagons.

    python examples/lic/attention_map.py               # models/lic.pt
    python examples/lic/attention_map.py --model my.pt --plot attention.png
"""

from __future__ import annotations

from typing import Optional, Sequence

import common
import numpy as np

QUICK: dict = {}
FULL: dict = {}


def li_site(calc, atoms=None):
    """Attention of one Li atom: per layer, distances, neighbour symbols and weights per head."""
    atoms = common.lic12() if atoms is None else atoms
    symbols = np.array(atoms.get_chemical_symbols())
    centre = int(np.flatnonzero(symbols == "Li")[0])
    layers = []
    for layer in calc.get_attention(atoms):
        sel = layer["i"] == centre
        order = np.argsort(layer["distance"][sel])
        neighbours = layer["j"][sel][order]
        distance, weights = layer["distance"][sel][order], layer["weights"][sel][order]
        layers.append(dict(distance=distance, symbol=symbols[neighbours], weights=weights))
    return dict(centre=centre, formula=atoms.get_chemical_formula(), layers=layers)


def shares(layer: dict, first_shell: int = 12) -> dict:
    """Share of each head's weight on the nearest ``first_shell`` carbons, other carbons and Li."""
    carbon = layer["symbol"] == "C"
    first = np.zeros(len(carbon), dtype=bool)
    first[np.flatnonzero(carbon)[:first_shell]] = True  # sorted by distance
    w = layer["weights"]
    return dict(
        first_shell=w[first].sum(axis=0),
        other_carbon=w[carbon & ~first].sum(axis=0),
        lithium=w[~carbon].sum(axis=0),
        uniform_first_shell=first.sum() / max(len(carbon), 1),
    )


def report(res: dict) -> None:
    print(f"Li atom {res['centre']} of {res['formula']}:")
    for s, layer in enumerate(res["layers"]):
        share = shares(layer)
        n = len(layer["distance"])
        first = layer["distance"][layer["symbol"] == "C"][:12]
        shell = f"{len(first)} C at {first.min():.2f}-{first.max():.2f} Å" if len(first) else "no C"
        print(
            f"layer {s + 1}: {n} neighbours ({(layer['symbol'] == 'Li').sum()} Li); first shell: {shell}, "
            f"uniform share {share['uniform_first_shell']:.2f}"
        )
        for mu in range(layer["weights"].shape[1]):
            print(
                f"  head {mu + 1}: first shell {share['first_shell'][mu]:.2f}, other C "
                f"{share['other_carbon'][mu]:.2f}, Li {share['lithium'][mu]:.2f} of the weight"
            )


def plot(res: dict, path) -> None:
    layers = res["layers"]
    fig, axes = common.new_figure(len(layers), width=5.0)
    for s, (ax, layer) in enumerate(zip(axes[0], layers)):
        li = layer["symbol"] == "Li"
        d, w = layer["distance"], layer["weights"]
        for mu in range(w.shape[1]):
            ax.plot(d[~li], w[~li, mu], "o", ms=4, color=f"C{mu}", label=f"head {mu + 1}")
            ax.plot(d[li], w[li, mu], "s", ms=6, mfc="none", color=f"C{mu}")
        ax.axhline(1.0 / len(li), color="k", lw=0.8, ls="--", label="uniform (plain sum)")
        ax.set(xlabel="neighbour distance (Å)", ylabel="attention weight", title=f"layer {s + 1}: Li in LiC12")
        ax.legend(fontsize=7, title="circles C, squares Li", title_fontsize=7)
    common.save_figure(fig, path)


def main(argv: Optional[Sequence[str]] = None, calc=None) -> dict:
    """Command line; ``calc`` (a calculator or model object) replaces ``--model`` (used by the tests)."""
    parser = common.base_parser(__doc__, "lic_attention_map.png")
    return common.run_main(parser, argv, calc, QUICK, FULL, lambda calc, args: li_site(calc), report, plot)


if __name__ == "__main__":
    main()
