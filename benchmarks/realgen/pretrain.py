"""Self-supervised weights for the benchmark's tiny ViT: a stand-in for pretrained weights.

No weights can be downloaded on the benchmark machine, so the method runs on a *random* ViT.
To measure what a *trained* feature would change, this trains ``TINY_VIT`` from scratch with
the library's own contrastive objective (``ViTLayerFusionEmbedder(finetune="all")``: two
augmented views of a slice map to the same point) on CT-like slices of **other** patients
(``make_synthetic_leak`` with a random state no task uses), never on a task's images, and saves
the weights as a checkpoint that ``checkpoint=`` loads. It plays the part of domain-pretrained
weights (in the paper, ImageNet weights fine-tuned on medical images).

The checkpoint is cached under ``<root>/`` with its ``config.json``; reruns reuse it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from skfingerprint import TINY_VIT, ViTLayerFusionEmbedder
from skfingerprint._io import atomic_path
from skfingerprint.datasets import make_synthetic_leak

__all__ = ["DEFAULTS", "pretrain_checkpoint"]

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / ".cache" / "realgen" / "pretrain"

#: 2,000 slices of 64x64, random state far from the tasks' ``1000 + seed``.
DEFAULTS = dict(n_images=2000, epochs=20, lr=1e-3, random_state=424_242)


def pretrain_checkpoint(
    root: str | Path = DEFAULT_ROOT,
    *,
    n_images: int = DEFAULTS["n_images"],
    epochs: int = DEFAULTS["epochs"],
    lr: float = DEFAULTS["lr"],
    random_state: int = DEFAULTS["random_state"],
    log=print,
) -> tuple[Path, dict]:
    """Train (or reuse) the self-supervised ``TINY_VIT`` weights.

    Returns the checkpoint's path and ``{"train_s", "cached"}``.
    """
    config = dict(
        n_images=n_images, epochs=epochs, lr=lr, random_state=random_state,
        model_kwargs=TINY_VIT["model_kwargs"], version=1,
    )  # fmt: skip
    root = Path(root)
    path, stamp = root / "tiny_vit_ssl.pth", root / "config.json"
    if path.is_file() and stamp.is_file() and json.loads(stamp.read_text()) == config:
        return path, {"train_s": 0.0, "cached": True}
    root.mkdir(parents=True, exist_ok=True)
    images = make_synthetic_leak(
        n_images // 2, n_images - n_images // 2, 1, image_size=64, random_state=random_state
    ).real_images
    t = time.perf_counter()
    if log is not None:
        log(f"self-supervised pretraining of the tiny ViT: {len(images)} slices, {epochs} epochs")
    embedder = ViTLayerFusionEmbedder(
        **TINY_VIT, finetune="all", finetune_epochs=epochs, finetune_lr=lr, fusion="mean",
        random_state=random_state,
    ).fit(images)  # fmt: skip
    with atomic_path(path) as tmp:
        torch.save(embedder.backbone_.module.vit.state_dict(), tmp)
    stamp.write_text(json.dumps(config, indent=1))
    return path, {"train_s": time.perf_counter() - t, "cached": False}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    parser.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    args = parser.parse_args(argv)
    path, info = pretrain_checkpoint(args.root, epochs=args.epochs, lr=args.lr)
    print(f"{path} {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
