"""The fusion of several ViT blocks' CLS tokens: which blocks, the gated sum, standardisation.

The paper (section 3.2) fuses the CLS tokens of blocks 6/12/18 with
``LayerNorm(sum_i a_i * GELU(cls_i))``, the weights ``a`` from a small gate net
(:class:`GatedFusion`); :func:`parse_layers` reads and checks the blocks. The gate's two
trainings are here (:func:`train_gate_supervised`, :func:`train_gate_views`); the estimator that
runs them on its cached tokens is :class:`~skfingerprint.ViTLayerFusionEmbedder`.
"""

from __future__ import annotations

import re

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ._contracts import LAYER_STRING
from ._runtime import adam

__all__ = ["GatedFusion", "parse_layers", "train_gate_supervised", "train_gate_views"]


def parse_layers(layers, depth: int) -> tuple[int, ...]:
    """Validate 1-based block numbers against the model's depth.

    Accepts a sequence of ints or the paper's notation ``"L6+12+18"``; ``None`` gives the paper's
    best relative depths ``depth/4, depth/2, 3*depth/4``.
    """
    if layers is None:
        return tuple(sorted({max(1, round(depth * f)) for f in (0.25, 0.5, 0.75)}))
    if isinstance(layers, str):
        if not LAYER_STRING.fullmatch(layers):
            raise ValueError(
                f"layers={layers!r} is not of the form 'L6+12+18' or a sequence of block numbers"
            )
        layers = [int(v) for v in re.findall(r"\d+", layers)]
    try:
        values = [int(v) for v in layers]
    except (TypeError, ValueError):
        raise ValueError(f"layers must be block numbers (ints); got {layers!r}") from None
    if any(isinstance(v, (bool, np.bool_)) or int(v) != v for v in layers):
        raise ValueError(f"layers must be whole block numbers; got {layers!r}")
    if not values:
        raise ValueError("layers is empty; give at least one block number")
    bad = [v for v in values if not 1 <= v <= depth]
    if bad:
        raise ValueError(
            f"layers {bad} out of range: this model has {depth} blocks, numbered 1..{depth} "
            f"(the paper's 6/12/18 assume a deeper ViT; for depth {depth} try "
            f"{parse_layers(None, depth)})"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"layers {values} repeat a block")
    return tuple(values)


class GatedFusion(nn.Module):
    """``LayerNorm(sum_i a_i GELU(cls_i))`` with ``a = softmax_i(gate(cls_i) + b_i)``.

    The gate maps each CLS token through ``D -> 256 -> GELU -> 1``; ``b`` is a learned per-block
    preference. ``mode="mean"`` fixes ``a_i = 1/L``; ``mode="concat"`` concatenates the
    per-block ``LayerNorm(GELU(cls_i))`` instead.
    """

    def __init__(self, n_layers: int, dim: int, mode: str = "gated", hidden: int = 256) -> None:
        super().__init__()
        self.mode = mode
        self.gate = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, 1))
        self.layer_bias = nn.Parameter(torch.zeros(n_layers))
        nn.init.zeros_(self.gate[2].weight)  # start as the mean; training moves it
        nn.init.zeros_(self.gate[2].bias)

    def weights(self, tokens: torch.Tensor) -> torch.Tensor:
        """Fusion weights ``(n, L)`` for tokens ``(n, L, D)``."""
        n, n_layers, _ = tokens.shape
        if self.mode != "gated":
            return tokens.new_full((n, n_layers), 1.0 / n_layers)
        scores = self.gate(tokens).squeeze(-1) + self.layer_bias
        return scores.softmax(dim=-1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        act = F.gelu(tokens)
        if self.mode == "concat":
            return F.layer_norm(act, act.shape[-1:]).flatten(1)
        fused = (self.weights(tokens).unsqueeze(-1) * act).sum(dim=1)
        return F.layer_norm(fused, fused.shape[-1:])


def _standardise(tokens: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    return (tokens - mu) / sigma


def train_gate_supervised(
    fusion: GatedFusion,
    both: torch.Tensor,
    n_real: int,
    y: np.ndarray,
    *,
    epochs: int,
    lr: float,
    temperature: float,
) -> None:
    """Make used reals closer to their nearest library image than unused ones (BCE on a
    soft nearest-neighbour similarity with a learned scale and offset). ``both``: the
    standardised tokens ``(n, L, D)`` of the ``n_real`` reals, then of the library, fused in one
    pass per step (the steps are small, so each op's call costs count)."""
    target = torch.from_numpy(y.astype(np.float32))
    scale = nn.Parameter(torch.tensor(10.0))
    offset = nn.Parameter(torch.tensor(0.0))
    opt = adam([*fusion.parameters(), scale, offset], lr=lr)
    for _ in range(epochs):
        z = F.normalize(fusion(both), dim=-1)
        r, g = z[:n_real], z[n_real:]
        nearest = temperature * torch.logsumexp((r @ g.T) / temperature, dim=1)
        centred = nearest - nearest.mean().detach()
        loss = F.binary_cross_entropy_with_logits(scale * centred + offset, target)
        opt.zero_grad()
        loss.backward()
        opt.step()


def train_gate_views(fusion: GatedFusion, views: torch.Tensor, *, epochs: int, lr: float) -> None:
    """InfoNCE: an image's fused embedding should match that of its augmented view. ``views``:
    the standardised tokens of ``n`` images, then of their augmented views, in the same order."""
    n = len(views) // 2
    opt = adam(fusion.parameters(), lr=lr)
    labels = torch.arange(n)
    for _ in range(epochs):
        z = F.normalize(fusion(views), dim=-1)
        za, zb = z[:n], z[n:]
        logits = za @ zb.T / 0.07
        loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
        opt.zero_grad()
        loss.backward()
        opt.step()
