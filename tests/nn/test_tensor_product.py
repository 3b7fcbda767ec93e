"""The channel-wise edge tensor product equals e3nn's ``uvu`` TensorProduct, and is equivariant."""

import pytest
import torch
from e3nn import o3

from attnmace.nn._irreps import natural_irreps
from attnmace.nn.tensor_product import ChannelwiseTensorProduct, edge_irreps


@pytest.mark.parametrize("node", ["4x0e", "4x0e+4x1o+4x2e+4x3o", "3x0e+3x1o"])
@pytest.mark.parametrize("target_l", [1, 3])
def test_matches_e3nn(node, target_l):
    torch.manual_seed(0)
    node = o3.Irreps(node)
    sh, target = natural_irreps(3), natural_irreps(target_l)
    mid, instructions = edge_irreps(node, sh, target)
    ref = o3.TensorProduct(node, sh, mid, instructions, shared_weights=False, internal_weights=False).double()
    tp = ChannelwiseTensorProduct(node, sh, target).double()
    assert tp.irreps_out == mid and tp.weight_numel == ref.weight_numel
    x = torch.randn(50, node.dim, dtype=torch.float64)
    y = o3.spherical_harmonics(sh, torch.randn(50, 3, dtype=torch.float64), True, normalization="component")
    w = torch.randn(50, ref.weight_numel, dtype=torch.float64)
    ours = tp(x, y, w).index_select(1, tp.to_e3nn)
    torch.testing.assert_close(ours, ref(x, y, w), rtol=1e-12, atol=1e-12)


def test_equivariant_in_channel_major_layout():
    torch.manual_seed(1)
    node, sh = natural_irreps(2, 3), natural_irreps(3)
    tp = ChannelwiseTensorProduct(node, sh, natural_irreps(3)).double()
    x = torch.randn(20, node.dim, dtype=torch.float64)
    vec = torch.randn(20, 3, dtype=torch.float64)
    w = torch.randn(20, tp.weight_numel, dtype=torch.float64)
    rot = o3.rand_matrix(dtype=torch.float64)

    def run(x_, v_):
        y = o3.spherical_harmonics(sh, v_, True, normalization="component")
        return tp(x_, y, w).index_select(1, tp.to_e3nn)

    rotated = run(x @ node.D_from_matrix(rot).T, vec @ rot.T)
    torch.testing.assert_close(rotated, run(x, vec) @ tp.irreps_out.D_from_matrix(rot).T, rtol=1e-10, atol=1e-10)


def _saved_numels(fn):
    sizes = []

    def pack(t):
        sizes.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sizes


def test_eval_mode_recomputes_products_with_the_same_derivatives():
    """In eval() mode the backward recomputes the per-edge products instead of keeping them;
    values, first and second derivatives are those of train() mode."""
    torch.manual_seed(2)
    node, sh = natural_irreps(3, 4), natural_irreps(3)
    tp = ChannelwiseTensorProduct(node, sh, natural_irreps(3)).double()
    x = torch.randn(30, node.dim, dtype=torch.float64, requires_grad=True)
    y = o3.spherical_harmonics(sh, torch.randn(30, 3, dtype=torch.float64), True, normalization="component")
    y.requires_grad_(True)
    w = torch.randn(30, tp.weight_numel, dtype=torch.float64, requires_grad=True)
    results = {}
    for mode in ("train", "eval"):
        getattr(tp, mode)()
        out, saved = _saved_numels(lambda: tp(x, y, w))
        grads = torch.autograd.grad((out**2).sum(), (x, y, w), create_graph=True)
        second = torch.autograd.grad(sum((g**2).sum() for g in grads), (x, y, w))
        results[mode] = (out, grads, second, saved)
    for a, b in zip(results["train"][:3], results["eval"][:3]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # eval keeps only inputs-sized tensors; train also each path's weighted input and Y·C
    assert max(results["eval"][3]) <= max(x.numel(), w.numel())
    assert sum(results["eval"][3]) < sum(results["train"][3])


def test_rejects_mixed_multiplicities():
    with pytest.raises(ValueError, match="multiplicity"):
        ChannelwiseTensorProduct(o3.Irreps("4x0e+2x1o"), natural_irreps(2), natural_irreps(2))


def test_derived_buffers_stay_out_of_checkpoints_and_stale_copies_load():
    from helpers import tiny_model

    from attnmace import build_model

    model = tiny_model(2)
    state = model.state_dict()
    derived = ("tp.coupling", "tp.weight_index", "to_e3nn", "from_e3nn", "perm", "product.basis", "mono_index")
    assert not [k for k in state if k.endswith(derived)]
    # a checkpoint from when they were persistent (other layout): the stale copies are ignored
    stale = dict(state)
    stale["layers.0.tp.coupling"] = torch.zeros(3)
    stale["layers.1.aggregation.perm"] = torch.zeros(5, dtype=torch.long)
    fresh = build_model(config=model.config)
    fresh.load_state_dict(stale)  # strict
    torch.testing.assert_close(fresh.layers[0].tp.coupling, model.layers[0].tp.coupling)


def test_eval_mode_handles_zero_edges():
    node, sh = natural_irreps(3, 4), natural_irreps(3)
    tp = ChannelwiseTensorProduct(node, sh, natural_irreps(3)).double().eval()
    x = torch.zeros(0, node.dim, dtype=torch.float64, requires_grad=True)
    y = torch.zeros(0, sh.dim, dtype=torch.float64, requires_grad=True)
    w = torch.zeros(0, tp.weight_numel, dtype=torch.float64, requires_grad=True)
    out = tp(x, y, w)
    assert out.shape == (0, tp.dim)
    grads = torch.autograd.grad(out.sum(), (x, y, w))
    assert [g.shape for g in grads] == [x.shape, y.shape, w.shape]
