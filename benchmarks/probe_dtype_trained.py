"""Does ``dtype="auto"`` follow the weights? Its probe on an untrained ViT-B and on a trained one.

On an untrained ViT-B the images' CLS tokens differ by little more than bf16 rounds them, and
the probe keeps float32 (bf16's tokens at cosine 0.94-0.98 to float32's, below the 0.99 bar;
``RESULTS_embed.md``). Pretrained weights cannot be downloaded here, so the trained model is the
same ViT-B fine-tuned by the library itself (``finetune="all"``: contrastive, on augmented views
of ``--train`` synthetic images, ``--epochs`` epochs). Both are probed as ``dtype="auto"``
probes (``_runtime._probe``: a timed pass per precision, the lowest cosine over the images of
the tokens centred on their mean) on the same ``--probe`` other images. Prints the two rows;
writes nothing. On a CPU without native bf16 there is nothing to choose and it says so.

    .venv/bin/python benchmarks/probe_dtype_trained.py [--train 32] [--probe 16] [--epochs 2]
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_embed import machine, synthetic_images

from skfingerprint import ViTLayerFusionEmbedder, _runtime
from skfingerprint.images import as_image_set


def probe_row(name: str, embedder, x: torch.Tensor) -> str:
    choice, probe = _runtime._probe(embedder.backbone_, torch.device("cpu"), lambda: x)
    cells = [
        f"{k} {v['img_s']:.2f} img/s, cosine {v['cosine']:.4f}"
        for k, v in probe.items()
        if isinstance(v, dict) and v.get("img_s")
    ]
    return f"| {name} | {_runtime.dtype_name(choice)} | {'; '.join(cells)} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=32, help="images fine-tuned on")
    parser.add_argument("--probe", type=int, default=16, help="other images probed")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs")
    args = parser.parse_args()
    if not _runtime.cpu_has_fast_bf16():
        print("no native bf16 on this CPU: dtype='auto' has float32 alone to choose")
        return
    images = synthetic_images(args.train + args.probe)
    train, held_out = images[: args.train], images[args.train :]
    common = dict(pretrained=False, fusion="mean", dtype="float32", random_state=0)
    untrained = ViTLayerFusionEmbedder("vit_base_patch16_224", **common).fit(train)
    start = time.perf_counter()
    trained = ViTLayerFusionEmbedder(
        "vit_base_patch16_224", finetune="all", finetune_epochs=args.epochs, **common
    ).fit(train)
    seconds = time.perf_counter() - start
    batch = next(as_image_set(held_out).iter_batches(args.probe))[1]
    x = untrained._model_input(batch, untrained.backbone_)
    flags = sorted(
        set(re.findall(r"avx2|avx512f|avx512_bf16|amx_bf16", Path("/proc/cpuinfo").read_text()))
    )
    print(f"{machine()}; CPU flags: {' '.join(flags)}")
    print(
        f"\nViT-B/16, probed on {args.probe} synthetic images that neither model trained on; "
        f"fine-tuning: finetune='all', {args.epochs} epochs on {args.train} others "
        f"({seconds:.0f} s).\n"
    )
    print("| ViT-B/16 | dtype='auto' keeps | probe |")
    print("|---|---|---|")
    print(probe_row("untrained (pretrained=False)", untrained, x))
    print(probe_row("fine-tuned by finetune='all'", trained, x))


if __name__ == "__main__":
    main()
