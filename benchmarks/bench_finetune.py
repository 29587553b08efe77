"""Fine-tuning a ViT-B/16 with the blocks past the deepest fused one skipped, against every
block run (what `_finetune` did before): the same weights, and the time of each.

The contrastive loss reads the CLS tokens of the fused blocks only, so the deeper blocks get
no gradient; their forward was wasted. Each round fits ``ViTLayerFusionEmbedder(finetune=...)``
on the same synthetic images twice, the arms interleaved (this machine's speed drifts between
minutes); the "every block" arm runs the ViT's forward with ``blocks`` ignored. Prints the
ratio of the median round times and whether the fine-tuned weights' digests are equal.

    .venv/bin/python benchmarks/bench_finetune.py [--images 16] [--rounds 3] [--mode last]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_embed import cpu_flags, machine, synthetic_images

from skfingerprint import ViTLayerFusionEmbedder, _vit, clear_memory_cache


def fit(images, mode: str, every_block: bool) -> tuple[float, str]:
    """One fit (embedding and fine-tuning), its seconds and the fine-tuned weights' digest."""
    forward = _vit.FingerprintViT.forward

    def all_blocks(self, x, blocks=None, keep_state=False):  # training only, as before
        if not self.training or blocks is None:
            return forward(self, x, blocks, keep_state)
        return forward(self, x)[:, :blocks]

    clear_memory_cache()
    emb = ViTLayerFusionEmbedder(
        pretrained=False,
        fusion="mean",
        finetune=mode,
        finetune_epochs=1,
        batch_size=8,
        dtype="float32",
        random_state=0,
    )
    if every_block:
        _vit.FingerprintViT.forward = all_blocks
    try:
        start = time.perf_counter()
        emb.fit(images)
        seconds = time.perf_counter() - start
    finally:
        _vit.FingerprintViT.forward = forward
    return seconds, emb.backbone_.digest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--mode", choices=["last", "all"], default="last")
    args = parser.parse_args(argv)
    images = synthetic_images(args.images, 224)
    fit(images[:2], args.mode, False)  # build the ViT-B outside the timings
    times = {False: [], True: []}
    digests = {}
    for _ in range(args.rounds):
        for every_block in (True, False):
            seconds, digests[every_block] = fit(images, args.mode, every_block)
            times[every_block].append(seconds)
    skip, every = statistics.median(times[False]), statistics.median(times[True])
    flags = " ".join(flag for flag, present in cpu_flags().items() if present) or "?"
    print(f"Machine: {machine()}; CPU flags: {flags}")
    print(f"ViT-B/16, untrained, float32, finetune={args.mode!r}, {args.images} images of 224,")
    print("1 epoch, batch 8, default layers (deepest fused block 9 of 12); whole fit() timed")
    print(f"every block run:           {every:.1f} s (rounds {times[True]})")
    print(f"stop after block 9:        {skip:.1f} s (rounds {times[False]})")
    print(f"every block / stop early:  {every / skip:.2f}x")
    print(f"fine-tuned weights equal:  {digests[True] == digests[False]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
