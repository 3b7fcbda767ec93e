"""Deepening a trained model by one layer (attnmace.train.grow): same predictions, then trainable."""

import numpy as np
import pytest
import torch
from helpers import diamond, tiny_model, triclinic

from attnmace import keys
from attnmace.graph import atoms_to_graph
from attnmace.train.grow import add_layer


def evaluate(model, atoms):
    data = atoms_to_graph(atoms, model.config.atomic_numbers, model.r_max)
    out = model(data, compute_forces=True, compute_stress=True)
    return {k: out[k].detach().numpy() for k in (keys.ENERGY, keys.FORCES, keys.STRESS)}


def lithiated(atoms):
    atoms = atoms.copy()
    atoms.numbers[::3] = 3
    return atoms


@pytest.mark.parametrize("heads", [0, 2])
@pytest.mark.parametrize("species", [("C",), ("Li", "C")])
def test_the_deeper_model_predicts_what_the_given_one_does(heads, species):
    model = tiny_model(heads, species=species)
    deeper = add_layer(model, 2.6, avg_num_neighbors=7.5, seed=3)
    assert deeper.num_layers == model.num_layers + 1
    assert deeper.config.cutoffs == (*model.config.cutoffs, 2.6)
    assert deeper.config.correlation == (*model.config.correlation, model.config.correlation[-1])
    assert deeper.config.avg_num_neighbors == (*model.config.avg_num_neighbors, 7.5)
    for atoms in (diamond(), triclinic()):
        if "Li" in species:
            atoms = lithiated(atoms)
        given, grown = evaluate(model, atoms), evaluate(deeper, atoms)
        assert abs(given[keys.ENERGY]).max() > 1e-3  # a non-trivial energy surface
        for key in given:
            np.testing.assert_allclose(grown[key], given[key], rtol=1e-10, atol=1e-12, err_msg=key)
    # the given model is left as it was
    assert model.num_layers == 2


def test_the_new_layer_takes_part_in_training():
    """The new layer starts as an identity with a zero message part; the gradient must reach it,
    first through linear_out and then, once that is not zero, the layer's other weights."""
    deeper = add_layer(tiny_model(2), 2.6).train()  # forces with a graph, as in training
    new = deeper.layers[-1]
    data = atoms_to_graph(triclinic(), deeper.config.atomic_numbers, deeper.r_max)

    def grads():
        deeper.zero_grad()
        out = deeper(data, compute_forces=True)
        (out[keys.ENERGY].sum() + (out[keys.FORCES] ** 2).sum()).backward()
        return {name: p.grad for name, p in new.named_parameters()}

    first = grads()
    assert first["linear_out.weight"].abs().max() > 0
    assert deeper.readouts[-2].linear.weight.abs().max() == 0  # the old last layer's readout starts at 0
    with torch.no_grad():
        new.linear_out.weight.normal_(0.0, 0.1)
    second = grads()
    for name in ("product.weight", "linear.weight", "radial_mlp.layer0.weight", "linear_up.weight"):
        assert second[name] is not None and second[name].abs().max() > 0, name


def test_add_layer_refuses_what_it_cannot_deepen():
    with pytest.raises(TypeError, match="eager AttnMACE"):
        add_layer(torch.nn.Linear(2, 2), 3.0)
    for cutoff in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive number"):
            add_layer(tiny_model(2), cutoff)
