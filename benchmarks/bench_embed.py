"""Embedder benchmark: throughput, bf16 agreement, grid-search cost and peak memory.

Everything is measured side by side in one run (the machine is shared and noisy), and the
results are rewritten into ``benchmarks/RESULTS_embed.md``.

    python benchmarks/bench_embed.py            # full run, ~10 minutes on 2 CPU cores
    python benchmarks/bench_embed.py --quick    # smaller counts, a smoke test

1. Throughput of ``ViTLayerFusionEmbedder`` (``dtype="auto"``) against a naive timm fp32
   ``model(x)`` loop on ``vit_base_patch16_224`` at batch 32, and the GFLOP/s both reach next to
   the fp32 and bf16 matrix-product peaks measured in the same run.
2. Cosine agreement of bf16 embeddings with fp32 ones, per image.
3. A GridSearchCV over 4 layer sets x 3 thresholds x 3 folds: ViT passes counted, and its time
   against one fit.
4. Peak RSS while embedding 10,000 256x256 PNGs from disk, above the RSS with the model loaded.
   This uses a ViT as wide and deep as ViT-B (768 x 12 blocks, so the token cache per image is
   the same) but on 64 px input with 32 px patches, so 10,000 images take minutes, not hours.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
VIT_B_GFLOP = 17.6  # forward FLOPs of vit_base_patch16_224 per image (multiply-adds x 2)


def matmul_gflops(dtype: torch.dtype, n: int = 1024, reps: int = 3) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e9


def synthetic_images(n: int, size: int = 256, seed: int = 0) -> np.ndarray:
    from skfingerprint.datasets import make_synthetic_leak

    task = make_synthetic_leak(n // 2, n - n // 2, 2, image_size=size, random_state=seed)
    return task.real_images


def bench_throughput(n_images: int, n_bf16: int) -> dict:
    import timm

    from skfingerprint import ViTLayerFusionEmbedder, clear_memory_cache
    from skfingerprint.images import as_image_set, to_model_input

    images = synthetic_images(n_images)
    torch.manual_seed(0)
    naive = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()
    imgs = as_image_set(images)

    def naive_loop():
        outs = []
        for _, batch in imgs.iter_batches(32):
            x = to_model_input(batch, 224, (0.5,) * 3, (0.5,) * 3)
            with torch.no_grad():
                outs.append(naive(x))
        return torch.cat(outs)

    def embedder(dtype, data):
        clear_memory_cache()
        emb = ViTLayerFusionEmbedder(
            "vit_base_patch16_224", pretrained=False, fusion="mean", dtype=dtype, random_state=0
        )
        start = time.perf_counter()
        out = emb.fit_transform(data)
        return time.perf_counter() - start, out, emb

    fp32_peak, bf16_peak = matmul_gflops(torch.float32), matmul_gflops(torch.bfloat16)
    naive_loop()  # warm-up: oneDNN/MKL kernels, page cache
    start = time.perf_counter()
    naive_loop()
    t_naive = time.perf_counter() - start
    t_auto, _, emb_auto = embedder("auto", images)
    auto_dtype = str(emb_auto._runtime()[1]).removeprefix("torch.")
    # agreement: bf16 vs fp32 on the same images
    _, e32, _ = embedder("float32", images[:n_bf16])
    t_bf16, e16, _ = embedder("bfloat16", images[:n_bf16])
    cos = (e32 * e16).sum(1) / np.linalg.norm(e32, axis=1) / np.linalg.norm(e16, axis=1)
    res = {
        "n_images": n_images,
        "naive_fp32_img_s": n_images / t_naive,
        "embedder_auto_img_s": n_images / t_auto,
        "embedder_auto_dtype": auto_dtype,
        "speedup_auto_vs_naive": t_naive / t_auto,
        "embedder_bf16_img_s": n_bf16 / t_bf16,
        "fp32_matmul_gflops": fp32_peak,
        "bf16_matmul_gflops": bf16_peak,
        "embedder_auto_gflops": VIT_B_GFLOP * n_images / t_auto,
        "bf16_vs_fp32_cos_min": float(cos.min()),
        "bf16_vs_fp32_cos_mean": float(cos.mean()),
        "n_bf16": n_bf16,
    }
    res["auto_fraction_of_bf16_peak"] = res["embedder_auto_gflops"] / bf16_peak
    res["auto_fraction_of_fp32_peak"] = res["embedder_auto_gflops"] / fp32_peak
    return res


def bench_grid(n_real: int, n_lib: int) -> dict:
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    from skfingerprint import (
        FaissCandidateSelector,
        MaxSimilarityClassifier,
        ViTLayerFusionEmbedder,
        clear_memory_cache,
        kappa_scorer,
    )
    from skfingerprint.datasets import make_synthetic_leak
    from skfingerprint.embedding import VIT_STATS

    task = make_synthetic_leak(
        n_real // 2, n_real - n_real // 2, n_lib, image_size=128, random_state=0
    )

    def pipe():
        return Pipeline(
            [
                (
                    "embed",
                    ViTLayerFusionEmbedder(
                        "vit_base_patch16_224", pretrained=False, gate_epochs=50, random_state=0
                    ),
                ),
                ("select", FaissCandidateSelector(k=10, min_similarity=None)),
                ("clf", MaxSimilarityClassifier()),
            ]
        )

    clear_memory_cache()
    before = VIT_STATS["images"]
    start = time.perf_counter()
    pipe().fit(task.X_pairs, task.y)
    t_fit = time.perf_counter() - start
    passes_fit = VIT_STATS["images"] - before
    clear_memory_cache()
    grid = GridSearchCV(
        pipe(),
        {
            "embed__layers": [(3, 6, 9), (6, 9, 12), (2, 4, 6, 8), (12,)],
            "clf__threshold": [0.3, 0.5, 0.7],
        },
        cv=3,
        scoring=kappa_scorer,
    )
    before = VIT_STATS["images"]
    start = time.perf_counter()
    grid.fit(task.X_pairs, task.y)
    t_grid = time.perf_counter() - start
    return {
        "unique_images": n_real + n_lib,
        "vit_images_one_fit": passes_fit,
        "vit_images_grid": VIT_STATS["images"] - before,
        "n_candidates_fitted": 4 * 3 * 3 + 1,
        "one_fit_s": t_fit,
        "grid_s": t_grid,
        "grid_over_fit": t_grid / t_fit,
    }


RSS_CHILD = r"""
import json, resource, sys
from pathlib import Path
from skfingerprint import ViTLayerFusionEmbedder
def rss_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
kw = dict(img_size=64, patch_size=32, embed_dim=768, depth=12, num_heads=12)
emb = ViTLayerFusionEmbedder("vit_base_patch16_224", pretrained=False, model_kwargs=kw,
                             fusion="mean", dtype="float32", random_state=0, batch_size=32)
first = sorted(Path(sys.argv[1]).glob("*.png"))[:1]
emb.fit(first)  # loads the model and warms every code path: the baseline
base = rss_mb()
out = emb.fit_transform(sys.argv[1])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"n": len(out), "rss_model_mb": base, "rss_peak_mb": peak}))
"""


def bench_rss(n_files: int) -> dict:
    from PIL import Image

    base = synthetic_images(200, seed=1)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for i in range(n_files):  # distinct content per file: every one is embedded
            img = base[i % len(base)].copy()
            img.flat[rng.integers(img.size, size=8)] = rng.integers(0, 256, size=8)
            Image.fromarray(img).save(Path(tmp) / f"img_{i:05d}.png")
        t_write = time.perf_counter() - start
        start = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-c", RSS_CHILD, tmp], capture_output=True, text=True, check=True
        )
        t_embed = time.perf_counter() - start
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out.update(
        write_s=t_write,
        embed_s=t_embed,
        rss_above_model_mb=out["rss_peak_mb"] - out["rss_model_mb"],
    )
    return out


def write_results(results: dict, path: Path) -> None:
    t, g, r = results["throughput"], results["grid"], results["rss"]
    lines = [
        "# Embedder benchmark",
        "",
        f"Written by `python benchmarks/bench_embed.py` on {results['machine']}, "
        f"{time.strftime('%Y-%m-%d')}. All rows of a section come from one run.",
        "",
        "## Throughput, vit_base_patch16_224, batch 32",
        "",
        "| what | value |",
        "|---|---|",
        f"| naive timm fp32 `model(x)` loop | {t['naive_fp32_img_s']:.2f} img/s |",
        f"| embedder, dtype=auto ({t['embedder_auto_dtype']}) | {t['embedder_auto_img_s']:.2f} "
        f"img/s |",
        f"| **speed-up vs naive** (target >= 4x) | **{t['speedup_auto_vs_naive']:.2f}x** |",
        f"| embedder, dtype=bfloat16 | {t['embedder_bf16_img_s']:.2f} img/s |",
        f"| fp32 / bf16 matmul peak measured | {t['fp32_matmul_gflops']:.0f} / "
        f"{t['bf16_matmul_gflops']:.1f} GFLOP/s |",
        f"| embedder (auto) achieved | {t['embedder_auto_gflops']:.0f} GFLOP/s = "
        f"{t['auto_fraction_of_fp32_peak']:.0%} of fp32 peak, "
        f"{t['auto_fraction_of_bf16_peak']:.0%} of bf16 peak |",
        f"| bf16 vs fp32 embedding cosine, min / mean over {t['n_bf16']} images (target >= 0.99) "
        f"| {t['bf16_vs_fp32_cos_min']:.5f} / {t['bf16_vs_fp32_cos_mean']:.5f} |",
        "",
        "## GridSearchCV: 4 layer sets x 3 thresholds x 3 folds (37 fits with the refit)",
        "",
        "| what | value |",
        "|---|---|",
        f"| unique images (reals + library) | {g['unique_images']} |",
        f"| images through the ViT: one fit / whole grid | {g['vit_images_one_fit']} / "
        f"{g['vit_images_grid']} |",
        f"| time: one fit / whole grid | {g['one_fit_s']:.1f} s / {g['grid_s']:.1f} s |",
        f"| **grid / one fit** (target <= 1.5) | **{g['grid_over_fit']:.2f}** |",
        "",
        "## Peak memory embedding PNGs from disk",
        "",
        "| what | value |",
        "|---|---|",
        f"| images (256x256 PNG, streamed) | {r['n']} |",
        f"| RSS with the model loaded | {r['rss_model_mb']:.0f} MB |",
        f"| peak RSS | {r['rss_peak_mb']:.0f} MB |",
        f"| **peak above the model** (target < 1 GB) | **{r['rss_above_model_mb']:.0f} MB** |",
        f"| embedding time | {r['embed_s']:.0f} s |",
        "",
        "The memory run uses a ViT of ViT-B's width and depth (768 x 12, so the same cache per "
        "image) on 64 px input with 32 px patches, so 10,000 images fit in minutes.",
        "",
    ]
    path.write_text("\n".join(lines))


def machine() -> str:
    try:
        name = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1)
    except (OSError, AttributeError):
        name = "unknown CPU"
    return f"{name}, {os.cpu_count()} cores, torch {torch.__version__}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke test)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite RESULTS_embed.md")
    args = parser.parse_args()
    q = args.quick
    results = {"machine": machine()}
    print(f"machine: {results['machine']}", flush=True)
    results["throughput"] = bench_throughput(8 if q else 64, 2 if q else 8)
    print(json.dumps(results["throughput"], indent=1), flush=True)
    results["grid"] = bench_grid(8 if q else 48, 8 if q else 48)
    print(json.dumps(results["grid"], indent=1), flush=True)
    results["rss"] = bench_rss(200 if q else 10_000)
    print(json.dumps(results["rss"], indent=1), flush=True)
    if not args.no_write:
        write_results(results, HERE / "RESULTS_embed.md")
        print(f"wrote {HERE / 'RESULTS_embed.md'}")


if __name__ == "__main__":
    main()
