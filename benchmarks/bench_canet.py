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
with the fused AdamW CANet trains with against torch's per-parameter AdamW loop, with the
attention over the candidates in plain matmuls against torch's flash kernel, and with dropout
drawn as a threshold on uniform draws against torch's Bernoulli draw. Prints a markdown table;
writes nothing.

    .venv/bin/python benchmarks/bench_canet.py [--epochs 4]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import sys
from pathlib import Path
from unittest import mock

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


def side_by_side(X: np.ndarray, y: np.ndarray, epochs: int, arms: dict, rounds: int = 3) -> dict:
    """Seconds of whole fits of each arm, in interleaved rounds (each round a new seed, so no
    fit is a kept net), and ``"max_diff"``, the largest difference of P(used) between the arms.
    ``arms`` maps a name to ``(CANetClassifier parameters, a context manager around the fit)``.
    """
    import time

    from skfingerprint import CANetClassifier, clear_memory_cache

    out: dict = {name: [] for name in arms}
    out["max_diff"] = 0.0
    for r in range(rounds):
        proba = []
        for name, (params, around) in arms.items():
            clear_memory_cache()
            with around():
                start = time.perf_counter()
                clf = CANetClassifier(
                    max_epochs=epochs, early_stopping=False, random_state=r, **params
                ).fit(X, y)
                out[name].append(time.perf_counter() - start)
            proba.append(clf.predict_proba(X)[:, 1])
        out["max_diff"] = max(out["max_diff"], float(np.ptp(proba, axis=0).max()))
    return out


def real_mapped_per_copy():
    """CANet's first layer mapping each candidate's copy of the real vector on its own."""
    from skfingerprint._canet_net import CANetModule

    once = CANetModule._first_layer
    return mock.patch.object(
        CANetModule, "_first_layer", lambda self, feats, _: once(self, feats, False)
    )


def bernoulli_dropout():
    """CANet's dropout drawn as torch's own (``F.dropout``: a Bernoulli draw per element)."""
    from skfingerprint._canet_net import UniformDropout

    def forward(self, x):
        return torch.nn.functional.dropout(x, self.p, self.training)

    return mock.patch.object(UniformDropout, "forward", forward)


def attention_kernel_torch_picks():
    """CANet's attention over the candidates in the kernel torch picks (flash on CPU)."""
    import skfingerprint._canet_net as net

    return mock.patch.object(
        net, "_short_sequence_attention", lambda device: contextlib.nullcontext()
    )


def adamw_loop():
    """CANet trained with torch's per-parameter AdamW loop instead of the fused update."""
    import skfingerprint.canet as canet

    return mock.patch.object(canet, "adamw", torch.optim.AdamW)


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
    sizes = ((N_REAL, K, 2), (48, 10, 30))
    plain = contextlib.nullcontext
    for n_real, k, epochs in sizes:
        if "bfloat16" not in peaks:
            print(f"| fit, {n_real} reals x k={k}: fp32 / bf16 | not timed: no native bf16 |")
            continue
        arms = {"fp32": ({"dtype": "float32"}, plain), "bf16": ({"dtype": "bfloat16"}, plain)}
        t = side_by_side(*paper_task(1, n_real, k), epochs, arms)
        _row(f"fit, {n_real} reals x k={k}, {epochs} epochs: fp32 / bf16", t, "fp32", "bf16")
    for (n_real, k, epochs), precision in itertools.product(sizes, peaks):
        arms = {"per copy": ({"dtype": precision}, real_mapped_per_copy),
                "once": ({"dtype": precision}, plain)}  # fmt: skip
        t = side_by_side(*paper_task(1, n_real, k), epochs, arms)
        what = f"fit, {n_real} reals x k={k}, {epochs} epochs, {precision}: real vector mapped"
        _row(f"{what} per candidate copy / once per row", t, "per copy", "once")
    for n_real, k, epochs in sizes:
        arms = {"flash": ({}, attention_kernel_torch_picks), "math": ({}, plain)}
        t = side_by_side(*paper_task(1, n_real, k), epochs, arms)
        _row(f"fit, {n_real} reals x k={k}, {epochs} epochs: attention over the candidates in "
             "torch's flash kernel / in plain matmuls", t, "flash", "math")  # fmt: skip
    for n_real, k, epochs in sizes:
        arms = {"bernoulli": ({}, bernoulli_dropout), "uniform": ({}, plain)}
        t = side_by_side(*paper_task(1, n_real, k), epochs, arms)
        what = f"fit, {n_real} reals x k={k}, {epochs} epochs: dropout drawn by torch"
        _row(f"{what} (Bernoulli) / as a threshold on uniform draws", t, "bernoulli", "uniform")
    for n_real, k, epochs in sizes:
        t = side_by_side(
            *paper_task(1, n_real, k), epochs, {"loop": ({}, adamw_loop), "fused": ({}, plain)}
        )
        _row(f"fit, {n_real} reals x k={k}, {epochs} epochs: AdamW's per-parameter loop / fused",
             t, "loop", "fused")  # fmt: skip


def _row(what: str, t: dict, slow: str, fast: str) -> None:
    """A table row: the best of each arm's seconds, their ratio, and how far P(used) moved."""
    a, b = min(t[slow]), min(t[fast])
    print(f"| {what} (best of {len(t[slow])}; P(used) differs by at most {t['max_diff']:.3f}) | "
          f"{a:.2f} / {b:.2f} s = **{a / b:.2f}x** |")  # fmt: skip


if __name__ == "__main__":
    main()
