"""CANet's training cost at the paper's size against the machine's fp32 matmul peak.

The paper's CANet (D = 768, so 1537 features per candidate; k = 100 candidates; the default
widths 1536 -> 1024 -> 512, 8 heads) on 200 labelled real images, as in one ImageCLEF fold:
the FLOPs of one epoch (forward and backward of the training images, forward of the
validation ones) are counted by ``torch.utils.flop_counter.FlopCounterMode``, an epoch is
timed from skorch's history (its ``dur``, the best of a few epochs), and the achieved GFLOP/s
is set beside the matmul peak, measured in the same run, of the precision the fit chose
(``dtype="auto"``: bf16 where the CPU multiplies it natively). Then, side by side and
interleaved, at the paper's size and at ``bench_embed.py``'s threshold grid's (48 reals,
k = 10, 30 epochs): whole fits trained in fp32 against bf16 (where the CPU has native bf16),
with the first layer mapping each row's real vector once against once per candidate copy, and
with the fused AdamW CANet trains with against torch's per-parameter AdamW loop. Prints a
markdown table; writes nothing.

    .venv/bin/python benchmarks/bench_canet.py [--epochs 4]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_embed import cpu_flags, machine, matmul_gflops

D, K, N_REAL = 768, 100, 200


def paper_task(seed: int = 0, n_real: int = N_REAL, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """Candidate arrays of the paper's shape: ``[real, candidate, cosine]`` per candidate."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_real, k, 2 * D + 1)).astype(np.float32)
    X[:, :, :D] = X[:, :1, :D]  # one real image per row, its vector in every candidate
    X[..., -1] = -np.sort(-rng.uniform(0.3, 0.9, size=(n_real, k)), axis=1)
    y = np.tile([0, 1], n_real // 2)
    return X, y


def epoch_flops(X: np.ndarray, y: np.ndarray) -> float:
    """FLOPs of one training epoch (counted on the first, with the same split and batches)."""
    from torch.utils.flop_counter import FlopCounterMode

    from skfingerprint import CANetClassifier

    counter = FlopCounterMode(display=False)
    with counter:
        CANetClassifier(max_epochs=1, early_stopping=False, random_state=0).fit(X, y)
    return float(counter.get_total_flops())


def epoch_seconds(X: np.ndarray, y: np.ndarray, epochs: int) -> tuple[list[float], str]:
    """Each epoch's seconds (skorch's ``dur``) and the precision ``dtype="auto"`` trained in."""
    from skfingerprint import CANetClassifier, clear_memory_cache

    clear_memory_cache()  # no kept net: this fit trains
    clf = CANetClassifier(max_epochs=epochs, early_stopping=False, random_state=0).fit(X, y)
    return [float(d) for d in clf.net_.history[:, "dur"]], clf.dtype_


def precision_seconds(X: np.ndarray, y: np.ndarray, epochs: int, rounds: int = 3) -> dict:
    """Seconds of whole fits trained in fp32 and in bf16, in interleaved rounds, and the
    largest difference of their predicted probabilities (same seed, same data)."""
    import time

    from skfingerprint import CANetClassifier, clear_memory_cache

    out: dict = {"float32": [], "bfloat16": [], "max_diff": 0.0}
    for r in range(rounds):
        proba = {}
        for dtype in ("float32", "bfloat16"):
            clear_memory_cache()
            start = time.perf_counter()
            clf = CANetClassifier(
                max_epochs=epochs, early_stopping=False, random_state=r, dtype=dtype
            ).fit(X, y)
            out[dtype].append(time.perf_counter() - start)
            proba[dtype] = clf.predict_proba(X)[:, 1]
        out["max_diff"] = max(
            out["max_diff"], float(np.abs(proba["float32"] - proba["bfloat16"]).max())
        )
    return out


def shared_real_seconds(
    X: np.ndarray, y: np.ndarray, epochs: int, dtype: str, rounds: int = 3
) -> dict:
    """Seconds of whole fits whose first layer maps each row's real vector once (the default)
    and once per candidate copy, in interleaved rounds, and the largest difference of their
    predicted probabilities (the same up to rounding, grown over the epochs)."""
    import time

    from skfingerprint import CANetClassifier, clear_memory_cache
    from skfingerprint._canet_net import CANetModule

    once = CANetModule._first_layer
    out: dict = {"once": [], "per copy": [], "max_diff": 0.0}
    try:
        for r in range(rounds):
            proba = {}
            for name in ("once", "per copy"):
                CANetModule._first_layer = (
                    once if name == "once" else lambda self, feats, _: once(self, feats, False)
                )
                clear_memory_cache()
                start = time.perf_counter()
                clf = CANetClassifier(
                    max_epochs=epochs, early_stopping=False, random_state=r, dtype=dtype
                ).fit(X, y)
                out[name].append(time.perf_counter() - start)
                proba[name] = clf.predict_proba(X)[:, 1]
            diff = float(np.abs(proba["once"] - proba["per copy"]).max())
            out["max_diff"] = max(out["max_diff"], diff)
    finally:
        CANetModule._first_layer = once
    return out


def optimiser_seconds(X: np.ndarray, y: np.ndarray, epochs: int, rounds: int = 3) -> dict:
    """Seconds of whole fits with the fused AdamW (the default) and with torch's per-parameter
    loop, in interleaved rounds (each fit a new seed, so none is a kept net)."""
    import time

    import skfingerprint.canet as canet
    from skfingerprint import CANetClassifier, clear_memory_cache

    fused = canet.adamw
    times: dict = {"fused": [], "loop": []}
    try:
        for r in range(rounds):
            for name, optimiser in (("fused", fused), ("loop", torch.optim.AdamW)):
                canet.adamw = optimiser
                clear_memory_cache()
                start = time.perf_counter()
                CANetClassifier(max_epochs=epochs, early_stopping=False, random_state=r).fit(X, y)
                times[name].append(time.perf_counter() - start)
    finally:
        canet.adamw = fused
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs timed (default 4)")
    args = parser.parse_args(argv)
    from skfingerprint._runtime import cpu_has_fast_bf16

    X, y = paper_task()
    shapes = [(1024,) * 3, (6400, 1537, 1536)]
    peaks = {"float32": max(matmul_gflops(torch.float32, s) for s in shapes)}
    if cpu_has_fast_bf16():
        peaks["bfloat16"] = max(matmul_gflops(torch.bfloat16, s) for s in shapes)
    flops = epoch_flops(X, y)
    durations, dtype = epoch_seconds(X, y, args.epochs)
    best = min(durations)
    rate = flops / best / 1e9
    peak = peaks[dtype]
    print(f"Machine: {machine()}; {cpu_flags()}; torch threads {torch.get_num_threads()}; "
          f"load {', '.join(f'{v:.2f}' for v in os.getloadavg())}")  # fmt: skip
    print()
    print("| what | value |")
    print("|---|---|")
    print(f"| data | {N_REAL} reals x k={K} candidates x {2 * D + 1} features |")
    for name, value in peaks.items():
        print(f"| {name} matmul peak (best of 1024^3 and the first layer's shape) | "
              f"{value:.0f} GFLOP/s |")  # fmt: skip
    print(f'| precision of the training steps (`dtype="auto"`) | {dtype} |')
    print(f"| FLOPs of one epoch (FlopCounterMode) | {flops / 1e9:.0f} GFLOP |")
    print(f"| epoch time, best of {len(durations)} (all: "
          f"{', '.join(f'{d:.2f}' for d in durations)} s) | {best:.2f} s |")  # fmt: skip
    print(f"| **achieved** | **{rate:.0f} GFLOP/s = {rate / peak:.0%} of the {dtype} peak** |")
    for n_real, k, epochs in ((N_REAL, K, 2), (48, 10, 30)):
        if "bfloat16" not in peaks:
            print(f"| fit, {n_real} reals x k={k}: fp32 / bf16 | not timed: no native bf16 |")
            continue
        t = precision_seconds(*paper_task(1, n_real, k), epochs)
        fp32, bf16 = min(t["float32"]), min(t["bfloat16"])
        print(f"| fit, {n_real} reals x k={k}, {epochs} epochs: fp32 / bf16 (best of "
              f"{len(t['float32'])}; predictions differ by at most {t['max_diff']:.3f}) | "
              f"{fp32:.2f} / {bf16:.2f} s = **{fp32 / bf16:.2f}x** |")  # fmt: skip
    for (n_real, k, epochs), precision in itertools.product(((N_REAL, K, 2), (48, 10, 30)), peaks):
        t = shared_real_seconds(*paper_task(1, n_real, k), epochs, precision)
        copies, once = min(t["per copy"]), min(t["once"])
        print(f"| fit, {n_real} reals x k={k}, {epochs} epochs, {precision}: real vector mapped "
              f"per candidate copy / once per row (best of {len(t['once'])}; predictions differ by "
              f"at most {t['max_diff']:.3f}) | {copies:.2f} / {once:.2f} s = "
              f"**{copies / once:.2f}x** |")  # fmt: skip
    for n_real, k, epochs in ((N_REAL, K, 2), (48, 10, 30)):
        t = optimiser_seconds(*paper_task(1, n_real, k), epochs)
        loop, fused = min(t["loop"]), min(t["fused"])
        print(f"| fit, {n_real} reals x k={k}, {epochs} epochs: AdamW's per-parameter loop / "
              f"fused (best of {len(t['loop'])}) | {loop:.2f} / {fused:.2f} s = "
              f"**{loop / fused:.2f}x** |")  # fmt: skip


if __name__ == "__main__":
    main()
