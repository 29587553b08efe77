"""Contrastive fine-tuning of the ViT (paper sections 3.2 and 3.4).

Two augmented views of each real and library image should map to the same point (NT-Xent,
temperature 0.07), so that a generator's warped, re-noised copy of a training image lands next to
it. AdamW (weight decay 1e-4) with the learning rate annealed (cosine) to 5e-6.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _vit
from ._progress import Progress
from ._runtime import seeded_torch
from .augment import augment_batch
from .images import ImageSet, to_model_input

__all__ = ["finetune_backbone", "nt_xent"]


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Normalised-temperature cross entropy between two batches of paired views."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = z @ z.T / temperature
    n = len(z1)
    sim.fill_diagonal_(float("-inf"))
    targets = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, targets)


def _trainable(module: _vit.FingerprintViT, mode: str, deepest: int) -> list[nn.Parameter]:
    """Parameters to train: all, or the last quarter of the blocks up to the deepest fused one
    (blocks past it do not reach the embedding)."""
    module.requires_grad_(mode == "all")
    if mode == "last":
        blocks = module.vit.blocks
        for block in blocks[max(0, deepest - max(1, len(blocks) // 4)) : deepest]:
            block.requires_grad_(True)
    if module.position_code is not None:
        module.position_code.requires_grad_(True)
    return [p for p in module.parameters() if p.requires_grad]


def finetune_backbone(estimator, backbone: _vit.Backbone, sets: list[ImageSet], seed: int):
    """Return a new :class:`~skfingerprint._vit.Backbone` fine-tuned on the images of ``sets``.

    Repeats exactly for a seed: the batches' order and the views come from ``seed``, and the
    projection head's initial weights, drawn from torch's global RNG, are drawn under it too.
    """
    device, dtype = estimator._runtime()
    with seeded_torch(seed, str(device)):
        return _train(estimator, backbone, sets, seed, device, dtype)


def _train(estimator, backbone, sets, seed, device, dtype) -> _vit.Backbone:
    module = copy.deepcopy(backbone.module).to(device).train()
    deepest = max(estimator.layers_)
    params = _trainable(module, estimator.finetune, deepest)
    items = [(s, i) for s in sets for i in range(len(s))]
    bs = max(2, min(estimator.batch_size, len(items)))
    steps = estimator.finetune_epochs * math.ceil(len(items) / bs)
    opt = torch.optim.AdamW(params, lr=estimator.finetune_lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=5e-6)
    layers = [v - 1 for v in estimator.layers_]
    head = nn.Sequential(
        nn.Linear(backbone.embed_dim, backbone.embed_dim),
        nn.GELU(),
        nn.Linear(backbone.embed_dim, 128),
    ).to(device)
    opt.add_param_group({"params": head.parameters()})
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
    std = torch.tensor(backbone.std).view(1, 3, 1, 1)
    epochs = estimator.finetune_epochs
    desc = f"fine-tuning the ViT ({epochs} epoch{'s' if epochs != 1 else ''})"
    with Progress(steps, estimator.verbose, desc, noun="batches", unit="batch") as progress:
        for _ in range(estimator.finetune_epochs):
            order = rng.permutation(len(items))
            for start in range(0, len(order), bs):
                chunk = order[start : start + bs]
                if len(chunk) < 2:  # a batch of one has no negatives for NT-Xent
                    progress.update(1)
                    continue
                x = to_model_input(
                    [items[k][0].read(items[k][1]) for k in chunk], backbone.img_size
                )
                views = [
                    (
                        (
                            augment_batch(
                                x, gen, p=estimator.augment_p, patch_size=backbone.patch_size
                            )
                            - mean
                        )
                        / std
                    ).to(device)
                    for _ in range(2)
                ]
                with torch.autocast(
                    device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16
                ):
                    # the blocks past the deepest fused one cannot reach the loss: not run
                    z = [head(module(v, deepest)[:, layers].mean(dim=1)) for v in views]
                loss = nt_xent(z[0].float(), z[1].float())
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                progress.update(1)
    module.requires_grad_(False)
    return _vit.with_new_weights(backbone, module)
