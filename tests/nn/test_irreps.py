"""Layout helpers of ``attnmace.nn._irreps``."""

import torch

from attnmace.nn._irreps import concat, from_channel_major, to_channel_major


def _second_order(join, parts):
    """Value, gradient and the gradient of a gradient norm (the double backward of force training)."""
    leaves = [p.clone().requires_grad_(True) for p in parts]
    out = join(leaves)
    weights = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).view_as(out)
    energy = (torch.sin(out) * weights).sum()
    grads = torch.autograd.grad(energy, leaves, create_graph=True)
    second = torch.autograd.grad(sum((g**2).sum() for g in grads), leaves)
    return out.detach(), [g.detach() for g in grads], second


def test_concat_matches_torch_cat_to_second_order():
    gen = torch.Generator().manual_seed(0)
    parts = [torch.randn(5, 3, w, generator=gen, dtype=torch.float64) for w in (1, 4, 2)]
    ours = _second_order(lambda xs: concat(xs, 2), parts)
    ref = _second_order(lambda xs: torch.cat(xs, 2), parts)
    torch.testing.assert_close(ours[0], ref[0])
    for a, b in zip(ours[1] + list(ours[2]), ref[1] + list(ref[2])):
        torch.testing.assert_close(a, b)


def test_concat_is_scriptable():
    scripted = torch.jit.script(concat)
    parts = [torch.ones(2, 1), torch.zeros(2, 3)]
    torch.testing.assert_close(scripted(parts, 1), torch.cat(parts, 1))


def test_channel_major_round_trip():
    dims = [1, 3, 5]
    x = torch.arange(2 * 4 * 9, dtype=torch.float64).view(2, 36)
    cm = to_channel_major(x, 4, dims)
    assert cm.shape == (2, 4, 9)
    # channel 1 of the l = 1 block holds e3nn columns 4 + 3 .. 4 + 5
    torch.testing.assert_close(cm[0, 1, 1:4], x[0, 7:10])
    torch.testing.assert_close(from_channel_major(cm, dims), x)
