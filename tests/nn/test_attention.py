"""Geometric attention (Eqs. 5-6): normalisation, reduction to the plain sum, invariance."""

import math

import pytest
import torch
from e3nn import o3

from attnmace.nn import AttentionAggregation, SumAggregation, smooth_attention
from attnmace.nn.interaction import edge_irreps


def _neighbourhoods():
    receivers = torch.tensor([0, 0, 0, 1, 1, 2, 3, 3, 3, 3])
    envelope = torch.tensor([1.0, 0.6, 0.0, 0.9, 0.2, 0.5, 0.3, 0.8, 1.0, 0.05], dtype=torch.float64)
    return receivers, envelope


def test_equal_logits_give_plain_sum():
    receivers, envelope = _neighbourhoods()
    for value in (0.0, 3.7, -12.0):
        logits = torch.full((10, 3), value, dtype=torch.float64)
        multiplier, alpha = smooth_attention(logits, envelope, receivers, 5)
        assert torch.allclose(multiplier, torch.ones_like(multiplier), atol=1e-14)


def test_weights_are_envelope_softmax():
    receivers, envelope = _neighbourhoods()
    logits = torch.randn(10, 2, dtype=torch.float64) * 3
    _, alpha = smooth_attention(logits, envelope, receivers, 5)
    sums = torch.zeros(5, 2, dtype=torch.float64).index_add(0, receivers, alpha)
    assert torch.allclose(sums[:4], torch.ones(4, 2, dtype=torch.float64))
    assert torch.all(sums[4] == 0)  # atom 4 has no neighbours
    assert torch.all(alpha[2] == 0)  # a neighbour at the cutoff has no weight
    for i in range(4):
        m = receivers == i
        w = envelope[m, None] * torch.exp(logits[m])
        assert torch.allclose(alpha[m], w / w.sum(0))


def test_large_logits_are_stable():
    receivers, envelope = _neighbourhoods()
    logits = torch.randn(10, 2, dtype=torch.float32) * 200
    multiplier, alpha = smooth_attention(logits, envelope.float(), receivers, 5)
    assert torch.isfinite(multiplier).all() and torch.isfinite(alpha).all()


def _aggregation(heads=3):
    node = o3.Irreps("4x0e+4x1o")
    sh = o3.Irreps("0e+1o+2e")
    irreps_edge, _ = edge_irreps(node, sh, o3.Irreps("4x0e+4x1o+4x2e"))
    return node, irreps_edge, AttentionAggregation(irreps_edge, node, heads, attn_channels=3, attn_max_l=1).double()


def test_zero_query_reduces_to_sum_for_every_head():
    torch.manual_seed(0)
    node, irreps_edge, attn = _aggregation()
    receivers, envelope = _neighbourhoods()
    phi = torch.randn(10, irreps_edge.dim, dtype=torch.float64)
    h = torch.randn(5, node.dim, dtype=torch.float64)
    with torch.no_grad():
        attn.query.weight.zero_()
    out, alpha = attn(phi, h, receivers, envelope, 5)
    plain, _ = SumAggregation(irreps_edge)(phi, h, receivers, envelope, 5)
    assert out.shape == (5, 3 * irreps_edge.dim) and alpha.shape == (10, 3)
    # every head's channel block equals the plain sum
    start = 0
    for mul, ir in irreps_edge:
        block = out[:, 3 * start : 3 * (start + mul * ir.dim)].reshape(5, 3, mul * ir.dim)
        expected = plain[:, start : start + mul * ir.dim]
        for mu in range(3):
            assert torch.allclose(block[:, mu], expected, atol=1e-12)
        start += mul * ir.dim


def test_attention_weights_invariant_and_output_equivariant():
    torch.manual_seed(1)
    node, irreps_edge, attn = _aggregation()
    receivers, envelope = _neighbourhoods()
    phi = torch.randn(10, irreps_edge.dim, dtype=torch.float64)
    h = torch.randn(5, node.dim, dtype=torch.float64)
    out, alpha = attn(phi, h, receivers, envelope, 5)
    for rot in (o3.rand_matrix().double(), -torch.eye(3, dtype=torch.float64)):
        d_edge = irreps_edge.D_from_matrix(rot)
        d_node = node.D_from_matrix(rot)
        d_out = attn.irreps_out.D_from_matrix(rot)
        out_r, alpha_r = attn(phi @ d_edge.T, h @ d_node.T, receivers, envelope, 5)
        assert torch.allclose(alpha_r, alpha, atol=1e-12)
        assert torch.allclose(out_r, out @ d_out.T, atol=1e-12)
    assert not torch.allclose(alpha[:, 0], alpha[:, 1])  # heads differ


def test_neighbour_products_match_bmm_to_second_order():
    """The custom backward of the padded-table products gives autograd's derivatives."""
    from attnmace.nn.attention import neighbour_dot, neighbour_sum

    gen = torch.Generator().manual_seed(3)
    table = torch.randn(3, 5, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    query = torch.randn(3, 2, 7, dtype=torch.float64, generator=gen, requires_grad=True)
    weights = torch.randn(3, 5, 2, dtype=torch.float64, generator=gen, requires_grad=True)
    torch.testing.assert_close(neighbour_dot(table, query), torch.bmm(table, query.transpose(1, 2)))
    torch.testing.assert_close(neighbour_sum(weights, table), torch.bmm(weights.transpose(1, 2), table))
    assert torch.autograd.gradcheck(neighbour_dot, (table, query))
    assert torch.autograd.gradgradcheck(neighbour_dot, (table, query))
    assert torch.autograd.gradcheck(neighbour_sum, (weights, table))
    assert torch.autograd.gradgradcheck(neighbour_sum, (weights, table))
    scripted = torch.jit.script(neighbour_dot)
    torch.testing.assert_close(scripted(table, query), neighbour_dot(table, query))


def test_bucketed_tables_match_one_table_to_second_order():
    """Grouping atoms by neighbour count changes only the padding, not the function or its derivatives."""
    torch.manual_seed(4)
    node, irreps_edge, attn = _aggregation()
    counts = torch.tensor([7, 0, 1, 3, 12, 2, 5, 5, 0, 9, 4])  # includes atoms without neighbours
    receivers = torch.repeat_interleave(torch.arange(len(counts)), counts)
    n_edges, n_atoms = int(counts.sum()), len(counts)
    envelope = torch.rand(n_edges, dtype=torch.float64)
    phi0 = torch.randn(n_edges, irreps_edge.dim, dtype=torch.float64)
    h0 = torch.randn(n_atoms, node.dim, dtype=torch.float64)

    def run(buckets):
        attn.buckets = buckets
        phi, h = phi0.clone().requires_grad_(True), h0.clone().requires_grad_(True)
        out, alpha = attn(phi, h, receivers, envelope, n_atoms)
        energy = (torch.tanh(out) * torch.linspace(-1, 1, out.shape[1], dtype=out.dtype)).sum()
        grads = torch.autograd.grad(energy, (phi, h), create_graph=True)
        second = torch.autograd.grad(sum((g**2).sum() for g in grads), [phi, h] + list(attn.parameters()))
        return [out, alpha, *grads, *second]

    one = run(1)
    for buckets in (2, 4, 11, 20):
        for a, b in zip(run(buckets), one):
            torch.testing.assert_close(a, b)


def _largest_spread(alpha, receivers, envelope, atoms=4):
    """Per head, the largest ratio of two neighbours' ``exp(logit)`` around any atom."""
    inside = envelope > 0
    ratio, centre = alpha[inside] / envelope[inside, None], receivers[inside]
    return max((ratio[centre == i].max(0).values / ratio[centre == i].min(0).values).max().item() for i in range(atoms))


def test_logit_cap_bounds_the_multipliers_and_keeps_the_reduction_to_mace():
    torch.manual_seed(2)
    node, irreps_edge, plain_attn = _aggregation()
    capped = AttentionAggregation(irreps_edge, node, 3, attn_channels=3, attn_max_l=1, logit_cap=1.0).double()
    capped.load_state_dict(plain_attn.state_dict())
    with torch.no_grad():  # large queries: logits far beyond the cap
        for attn in (plain_attn, capped):
            attn.query.weight.mul_(30.0)
    receivers, envelope = _neighbourhoods()
    phi = torch.randn(10, irreps_edge.dim, dtype=torch.float64)
    h = torch.randn(5, node.dim, dtype=torch.float64)
    _, alpha_plain = plain_attn(phi, h, receivers, envelope, 5)
    out, alpha = capped(phi, h, receivers, envelope, 5)
    assert _largest_spread(alpha_plain, receivers, envelope) > 1e3  # uncapped: one neighbour takes it all
    assert _largest_spread(alpha, receivers, envelope) <= math.exp(2.0) * (1 + 1e-12)  # exp(2c), c = 1
    # still normalised, invariant and equivariant
    sums = torch.zeros(5, 3, dtype=torch.float64).index_add(0, receivers, alpha)
    assert torch.allclose(sums[:4], torch.ones(4, 3, dtype=torch.float64))
    rot = o3.rand_matrix().double()
    out_r, alpha_r = capped(
        phi @ irreps_edge.D_from_matrix(rot).T, h @ node.D_from_matrix(rot).T, receivers, envelope, 5
    )
    assert torch.allclose(alpha_r, alpha, atol=1e-12)
    assert torch.allclose(out_r, out @ capped.irreps_out.D_from_matrix(rot).T, atol=1e-10)
    # equal logits stay equal: with zero queries every head's sum is the plain sum
    with torch.no_grad():
        capped.query.weight.zero_()
    out, _ = capped(phi, h, receivers, envelope, 5)
    plain, _ = SumAggregation(irreps_edge)(phi, h, receivers, envelope, 5)
    heads = out.view(5, -1)
    start = 0
    for mul, ir in irreps_edge:
        block = heads[:, 3 * start : 3 * (start + mul * ir.dim)].reshape(5, 3, mul * ir.dim)
        assert torch.allclose(block, plain[:, None, start : start + mul * ir.dim].expand(5, 3, -1), atol=1e-12)
        start += mul * ir.dim


def test_logit_cap_zero_changes_nothing_and_bad_caps_are_refused():
    torch.manual_seed(3)
    node, irreps_edge, attn = _aggregation()
    off = AttentionAggregation(irreps_edge, node, 3, attn_channels=3, attn_max_l=1, logit_cap=0.0).double()
    off.load_state_dict(attn.state_dict())
    receivers, envelope = _neighbourhoods()
    phi = torch.randn(10, irreps_edge.dim, dtype=torch.float64)
    h = torch.randn(5, node.dim, dtype=torch.float64)
    assert torch.equal(attn(phi, h, receivers, envelope, 5)[0], off(phi, h, receivers, envelope, 5)[0])
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="logit_cap must be 0 \\(no cap\\) or a positive number"):
            AttentionAggregation(irreps_edge, node, 3, logit_cap=bad)
