"""Real images of 12 bits stored in 16-bit files, generated images of 8 bits: what the default
pipeline answers, and whether the embedder warns.

Both kinds of file are scaled to 0-1 by their type's range (uint16 / 65535, uint8 / 255), so a
CT slice exported at 12 bits into a 16-bit PNG reads 16x darker than the same slice at 8 bits,
while a generator trained on 8-bit images writes 8-bit images. Hypothesis: the pixel relation
scores then compare brightness more than content, and the answer degrades without a word.

The demo's task (``make_synthetic_leak(100, 100, 400, image_size=64, distortion=0.75)``, train
and test drawn apart), the default pipeline and the paper's configuration (CANet on the gated
ViT tokens, no pixels) on ``TINY_VIT`` and ``TINY_CANET`` (the demo's), three seeds; in one
arm both sets are the 8-bit images, in the other the real images (train and test) are the same
pixels as 12-bit values in uint16. Test kappa and AUC, and the embedder's intensity warnings::

    .venv/bin/python benchmarks/probe_bitdepth.py [--cache-dir DIR]

writes ``benchmarks/RESULTS_bitdepth.md``. With ``--cache-dir`` (``bench_quality.py``'s), it
also lists, for every task folder there, the two sets' typical brightest pixels (the numbers the
warning compares) and their ratio: how far from the warning's 4x margin trained generators'
samples sit.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.metrics import cohen_kappa_score, roc_auc_score

from skfingerprint import load_imageclef_gans
from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.images import intensity_peak, pixel_vectors
from skfingerprint.pairs import make_pairs
from skfingerprint.pipeline import TINY_CANET, TINY_VIT, make_fingerprint_pipeline

HERE = Path(__file__).resolve().parent
TASK = dict(n_used=100, n_not_used=100, n_generated=400, image_size=64, distortion=0.75)


def as_12_bit_in_16(images: np.ndarray) -> np.ndarray:
    """8-bit images as the same intensities in 12 bits, stored in uint16."""
    assert images.dtype == np.uint8
    return np.round(images / 255.0 * 4095).astype(np.uint16)


ARMS = {"8-bit reals": lambda images: images, "12-bit reals in uint16": as_12_bit_in_16}
PIPELINES = {
    "default": lambda: make_fingerprint_pipeline(**TINY_VIT, random_state=0),
    "paper": lambda: make_fingerprint_pipeline(
        "canet", **TINY_VIT, **TINY_CANET, features="paper", random_state=0
    ),
}


def run_arm(seed: int, convert, pipeline: str) -> dict:
    train = make_synthetic_leak(**TASK, random_state=2 * seed)
    test = make_synthetic_leak(**TASK, random_state=2 * seed + 1)
    pipe = PIPELINES[pipeline]()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.fit(make_pairs(convert(train.real_images), train.generated_images), train.y)
        X_test = make_pairs(convert(test.real_images), test.generated_images)
        pred, score = pipe.predict(X_test), pipe.predict_proba(X_test)[:, 1]
    darker = [str(w.message) for w in caught if "darker" in str(w.message)]
    return dict(
        kappa=cohen_kappa_score(test.y, pred),
        auc=roc_auc_score(test.y, score),
        warnings=len(darker),
        first=darker[0] if darker else "",
    )


def cached_task_peaks(cache_dir: Path) -> list[str]:
    """Table rows: each cached task split's real and generated peaks (32 px) and their ratio."""
    rows = []
    for split in sorted(p for p in (cache_dir / "tasks").rglob("*") if (p / "generated").is_dir()):
        X = load_imageclef_gans(split).X_pairs
        real, lib = (intensity_peak(pixel_vectors(s, 32)) for s in (X.real, X.library))
        name = split.relative_to(cache_dir / "tasks")
        rows.append(f"| {name} | {real:.3f} | {lib:.3f} | {max(real, lib) / min(real, lib):.2f} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    start = time.time()
    rows = {
        (pipeline, name): [run_arm(seed, convert, pipeline) for seed in range(3)]
        for pipeline in PIPELINES
        for name, convert in ARMS.items()
    }
    lines = [
        "# Real images at 12 bits in 16-bit files against 8-bit generated images",
        "",
        "Written by `benchmarks/probe_bitdepth.py` (its docstring says what and why); "
        f"{time.time() - start:.0f} s. Test split of the demo's task, default pipeline on the "
        "demo's tiny ViT; the warnings are the embedder's intensity warnings over one fit, "
        "predict and predict_proba.",
        "",
        "| pipeline | arm | seed | test kappa | AUC | intensity warnings |",
        "|:---|:---|---:|---:|---:|---:|",
    ]
    for (pipeline, name), results in rows.items():
        for seed, r in enumerate(results):
            lines.append(
                f"| {pipeline} | {name} | {seed} | {r['kappa']:.3f} | {r['auc']:.3f} | "
                f"{r['warnings']} |"
            )
    for (pipeline, name), results in rows.items():
        k = [r["kappa"] for r in results]
        a = [r["auc"] for r in results]
        lines.append(
            f"| **{pipeline}** | **{name}, mean** | | **{np.mean(k):.3f}** | "
            f"**{np.mean(a):.3f}** | |"
        )
    lines.append("")
    for pipeline in PIPELINES:
        dark = rows[(pipeline, "12-bit reals in uint16")]
        first = next((r["first"] for r in dark if r["first"]), "")
        lines.append(
            f"The {pipeline} pipeline's warning, as printed: {first}"
            if first
            else f"The {pipeline} pipeline printed no warning."
        )
        lines.append("")
    if args.cache_dir is not None:
        lines += [
            f"## The membership suite's trained generators (`--cache-dir {args.cache_dir}`)",
            "",
            "Each task folder's typical brightest pixel (the median over its images of each "
            "one's maximum, at 32 px) for its real and its generated images, and the ratio the "
            "warning compares with 4:",
            "",
            "| task folder | real | generated | ratio |",
            "|:---|---:|---:|---:|",
            *cached_task_peaks(args.cache_dir),
            "",
        ]
    text = "\n".join(lines)
    out = HERE / "RESULTS_bitdepth.md"
    out.write_text(text)
    print(text)
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
