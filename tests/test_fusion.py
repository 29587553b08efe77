"""The fusion module on planted tokens: what each mode outputs and what the view gate learns.

The estimator's tests (test_embedding.py) run these through a tiny ViT; here the tokens are
made by hand, so that a wrong normalisation or objective shows as a wrong number.
"""

import copy

import torch
import torch.nn.functional as F

from skfingerprint._fusion import GatedFusion, train_gate_views


def test_concat_normalises_each_block_on_its_own():
    # Catches: the LayerNorm of "concat" taken over all blocks at once (one mean and spread for
    # the whole row), which lets the block of largest scale dominate the concatenation.
    torch.manual_seed(0)
    scale = torch.tensor([1.0, 10.0, 0.5]).view(1, 3, 1)
    shift = torch.tensor([0.0, 5.0, -1.0]).view(1, 3, 1)
    tokens = torch.randn(6, 3, 16) * scale + shift
    out = GatedFusion(3, 16, mode="concat")(tokens).view(6, 3, 16)
    torch.testing.assert_close(out.mean(dim=-1), torch.zeros(6, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(dim=-1, unbiased=False), torch.ones(6, 3), atol=1e-2, rtol=0)


def _views_with_one_stable_block(n, dim, seed):
    """Tokens ``(2n, 2, dim)`` of n images, then of their views: block 0 is the same in an image
    and its view (up to small noise), block 1 is drawn anew for each view and is louder."""
    g = torch.Generator().manual_seed(seed)
    stable = torch.randn(n, dim, generator=g)

    def one_view():
        noisy = stable + 0.1 * torch.randn(n, dim, generator=g)
        return torch.stack([noisy, 2.0 * torch.randn(n, dim, generator=g)], dim=1)

    return torch.cat([one_view(), one_view()])


def _view_match_rate(fusion, views):
    """How often an image's fused embedding is nearest its own view's among all views."""
    with torch.no_grad():
        z = F.normalize(fusion(views), dim=-1)
    n = len(views) // 2
    return (z[:n] @ z[n:].T).argmax(dim=1).eq(torch.arange(n)).float().mean().item()


def test_the_view_gate_learns_to_weigh_the_block_that_agrees_across_views():
    # What the self-supervised gate is for. Catches an objective that does not reward matching
    # views, such as the InfoNCE loss's two directions subtracted (the gate stays near the
    # mean). Another temperature or normalisation still learns this easy case: the test below
    # pins the objective itself.
    torch.manual_seed(0)
    views = _views_with_one_stable_block(48, 16, seed=1)
    fusion = GatedFusion(2, 16)
    before = _view_match_rate(fusion, views)  # starts as the mean of the two blocks
    train_gate_views(fusion, views, epochs=60, lr=1e-2)
    assert fusion.weights(views)[:, 0].mean() > 0.95
    after = _view_match_rate(fusion, views)
    assert before < 0.2 and after == 1.0, (before, after)
    # new images of the same kind: the gate learned which block to trust, not these images
    new = _views_with_one_stable_block(48, 16, seed=2)
    assert fusion.weights(new)[:, 0].mean() > 0.9
    assert _view_match_rate(fusion, new) > 0.75 > 0.2 > _view_match_rate(GatedFusion(2, 16), new)


def test_gated_and_mean_fusion_are_the_papers_formula():
    # LayerNorm(sum_i a_i GELU(cls_i)) (paper section 3.2), with a_i >= 0 summing to 1 over the
    # blocks of each image, and a_i = 1/L in "mean" mode (fusion_weights_ reports them).
    # Catches the GELU dropped, the softmax over images instead of blocks, or mean weights of L.
    torch.manual_seed(0)
    tokens = torch.randn(5, 3, 8) * 2.0
    gated = GatedFusion(3, 8)
    torch.nn.init.normal_(gated.gate[2].weight)  # away from its all-equal start
    weights = {}
    for fusion in (gated, GatedFusion(3, 8, mode="mean")):
        with torch.no_grad():
            a = weights[fusion.mode] = fusion.weights(tokens)
            expected = F.layer_norm((a[..., None] * F.gelu(tokens)).sum(dim=1), (8,))
            torch.testing.assert_close(fusion(tokens), expected)
    torch.testing.assert_close(weights["mean"], torch.full((5, 3), 1 / 3))
    torch.testing.assert_close(weights["gated"].sum(dim=1), torch.ones(5))
    assert (weights["gated"] > 0).all() and weights["gated"].std(dim=0).min() > 0.01


def test_the_view_gate_takes_adams_steps_on_symmetric_infonce_at_temperature_0_07():
    # The objective itself, pinned against a plain restatement over three steps (Adam's first
    # step is lr * sign(gradient) whatever the loss's scale, so one step could not tell a
    # temperature apart). Catches embeddings normalised across images or over the whole batch,
    # and another temperature; the planted test above learns the right block under each.
    torch.manual_seed(0)
    views = _views_with_one_stable_block(16, 8, seed=3)
    fusion = GatedFusion(2, 8)
    torch.nn.init.normal_(fusion.gate[2].weight)
    reference = copy.deepcopy(fusion)
    train_gate_views(fusion, views, epochs=3, lr=1e-2)
    opt = torch.optim.Adam(reference.parameters(), lr=1e-2)
    labels = torch.arange(16)
    for _ in range(3):
        z = F.normalize(reference(views), dim=-1)
        logits = z[:16] @ z[16:].T / 0.07
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
    # compared through what they compute: the gate's last bias shifts every block's score
    # alike, so its gradient is rounding noise, which Adam turns into lr-sized steps
    with torch.no_grad():
        torch.testing.assert_close(fusion.weights(views), reference.weights(views))
        assert (fusion.weights(views) - GatedFusion(2, 8).weights(views)).abs().max() > 1e-2
