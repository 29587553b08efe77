"""Embedder benchmark: throughput, bf16 agreement, grid-search cost and peak memory.

Everything is measured side by side in one run (the machine is shared and noisy), and the
results are rewritten into ``benchmarks/RESULTS_embed.md``.

    python benchmarks/bench_embed.py            # full run, ~20 minutes on 2 CPU cores
    python benchmarks/bench_embed.py --quick    # smaller counts, a smoke test

1. Throughput of ``ViTLayerFusionEmbedder`` (``dtype="auto"``) against a naive timm fp32
   ``model(x)`` loop on ``vit_base_patch16_224`` at batch 32, and the GFLOP/s both reach next to
   the fp32 and bf16 matrix-product peaks measured in the same run.
2. Cosine agreement of bf16 embeddings with fp32 ones, per image; the embedder's CPU forward
   (passes within glibc's mmap ceiling; bf16 attention) against a plain timm pass, arm by arm.
3. The embedder with torch's CPU buffers on transparent huge pages and without, in fresh
   processes side by side.
4. A GridSearchCV over 4 layer sets x 3 thresholds x 3 folds (ViT passes counted), and one over
   the CANet head's threshold (nets counted): each against one fit, in 3 rounds in turn, each
   ratio the median of the rounds' own.
5. Peak RSS while embedding 10,000 256x256 PNGs from disk, above the RSS with the model loaded.
   This uses a ViT as wide and deep as ViT-B (768 x 12 blocks, so the token cache per image is
   the same) but on 64 px input with 32 px patches, so 10,000 images take minutes, not hours.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

# before torch's first allocation, as a user's import would be: it asks torch for huge pages
import skfingerprint  # noqa: F401

HERE = Path(__file__).resolve().parent
VIT_B_DEPTH = 12


def vit_b_gflop(blocks: int = VIT_B_DEPTH) -> float:
    """Forward GFLOP per image of vit_base_patch16_224 through its first ``blocks`` blocks,
    a multiply-add counted as 2 FLOPs, as the matmul peaks count them: 35.1 for all 12 blocks.
    (The "17.6 GFLOPs" quoted for ViT-B/16 counts multiply-adds, fvcore's convention; dividing
    a FLOP/s peak by it halved the roofline's true image rate until 2026-12-01.)"""
    tokens, width, mlp = 197, 768, 3072
    patch_embed = 196 * (3 * 16 * 16) * width
    per_block = tokens * width * (3 * width + width + 2 * mlp)  # qkv, projection, MLP
    per_block += 2 * tokens * tokens * width  # q k^T and attention x v, over all heads
    return 2 * (patch_embed + blocks * per_block) / 1e9


# Matrix products whose speed bounds the ViT's: square ones, and the shape of ViT-B's MLP at
# batch 32 ((32 x 196 tokens) x 768 @ 768 x 3072), where most of its FLOPs are spent.
MATMUL_SHAPES = {"1024^3": (1024, 1024, 1024), "2048^3": (2048, 2048, 2048)}
MATMUL_SHAPES["ViT-B MLP 6272x768x3072"] = (6272, 768, 3072)

# ImageCLEFmed GANs 2025's training split: 200 labelled reals, 5,000 generated images
IMAGECLEF_TRAIN = (200, 5000)


def matmul_gflops(dtype: torch.dtype, shape: tuple[int, int, int], min_s: float = 1.0) -> float:
    """GFLOP/s of ``(m, k) @ (k, n)`` products, repeated for at least ``min_s`` after a warm-up."""
    m, k, n = shape
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    a @ b
    reps, start = 0, time.perf_counter()
    while reps == 0 or time.perf_counter() - start < min_s:
        a @ b
        reps += 1
    return 2 * m * k * n * reps / (time.perf_counter() - start) / 1e9


def cpu_flags() -> dict:
    try:
        flags = set(
            re.search(r"flags\s*:\s*(.*)", Path("/proc/cpuinfo").read_text()).group(1).split()
        )
    except (OSError, AttributeError):
        flags = set()
    return {f: f in flags for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")}


def torch_isa() -> str:
    """What torch may use of those flags in this process: its CPU capability, oneDNN's ISA cap
    where one is set, and whether bf16 products run natively (a flag alone does not say)."""
    from skfingerprint._runtime import cpu_bf16_verdict

    cap = os.environ.get("ONEDNN_MAX_CPU_ISA")
    return (
        f"torch CPU capability {torch.backends.cpu.get_cpu_capability()}"
        + (f", ONEDNN_MAX_CPU_ISA={cap}" if cap else "")
        + f"; bf16 in this process: {cpu_bf16_verdict() or 'native'}"
    )


def bench_peaks(quick: bool) -> dict:
    """Measured matmul peaks. bf16 is timed on every shape only where it is native: emulated
    (AVX2), one 1024^3 product takes seconds and the large ones minutes."""
    from skfingerprint._runtime import cpu_has_fast_bf16

    res = {"fp32": {}, "bf16": {}}
    for name, shape in MATMUL_SHAPES.items():
        res["fp32"][name] = matmul_gflops(torch.float32, shape, 0.5 if quick else 1.5)
    bf16_shapes = MATMUL_SHAPES if cpu_has_fast_bf16() else {"1024^3": MATMUL_SHAPES["1024^3"]}
    for name, shape in bf16_shapes.items():
        res["bf16"][name] = matmul_gflops(torch.bfloat16, shape, 0.5 if quick else 1.5)
    res["fp32_peak"] = max(res["fp32"].values())
    res["bf16_peak"] = max(res["bf16"].values())
    return res


def synthetic_images(n: int, size: int = 256, seed: int = 0) -> np.ndarray:
    from skfingerprint.datasets import make_synthetic_leak

    task = make_synthetic_leak(n // 2, n - n // 2, 2, image_size=size, random_state=seed)
    return task.real_images


@contextlib.contextmanager
def count_calls(owner, name: str, amount=lambda args: 1):
    """Count the calls of method ``name`` of class ``owner`` inside the block, each adding
    ``amount(args)`` (its positional arguments after ``self``) to ``counter["n"]``."""
    counter = {"n": 0}
    real = getattr(owner, name)

    def counting(self, *args, **kwargs):
        counter["n"] += amount(args)
        return real(self, *args, **kwargs)

    setattr(owner, name, counting)
    try:
        yield counter
    finally:
        setattr(owner, name, real)


def count_vit_images():
    """Count (``["n"]``) the images that go through ``Backbone.embed_batch`` inside the block."""
    from skfingerprint import _vit

    return count_calls(_vit.Backbone, "embed_batch", amount=lambda args: len(args[0]))


def bench_throughput(n_images: int, n_bf16: int, rounds: int, peaks: dict) -> dict:
    """Three timings of the same images at batch 32, construction excluded from all three,
    interleaved over ``rounds`` (the best round of each is kept): a naive timm fp32 loop
    (decode, resize, ``model(x)``, every block); the embedder's ViT forward alone on inputs
    prepared beforehand, in the precision dtype="auto" chose and to the deepest block of its
    default layers, as it runs; and the whole ``fit_transform``. The roofline counts the
    blocks each one runs."""
    import timm
    from sklearn.base import clone

    from skfingerprint import ViTLayerFusionEmbedder, clear_memory_cache
    from skfingerprint._runtime import cpu_has_fast_bf16
    from skfingerprint.images import as_image_set, to_model_input

    images = synthetic_images(n_images)
    imgs = as_image_set(images)
    torch.manual_seed(0)
    naive = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0).eval()

    def naive_loop():
        with torch.no_grad():
            for _, batch in imgs.iter_batches(32):
                naive(to_model_input(batch, 224, (0.5,) * 3, (0.5,) * 3))

    emb = ViTLayerFusionEmbedder(
        "vit_base_patch16_224", pretrained=False, fusion="mean", dtype="auto", random_state=0
    )
    start = time.perf_counter()
    # builds the ViT-B and runs the dtype probe (once per process) on 16 images: a probe of
    # one image measures no agreement and leaves the choice to the next fit
    emb.fit(images[:16])
    t_setup = time.perf_counter() - start
    device, dtype = emb._runtime()
    backbone = emb.backbone_
    blocks = max(emb.layers_) if emb.stop_early else VIT_B_DEPTH
    inputs = [emb._model_input(batch, backbone) for _, batch in imgs.iter_batches(emb.batch_size)]

    def forward_only():
        for x in inputs:
            backbone.embed_batch(x, device, dtype, blocks)

    def whole():
        clear_memory_cache()
        return emb.fit_transform(images)

    # Where bf16 is native but its tokens disagree with fp32's (an untrained ViT-B: its
    # images' tokens differ by little more than bf16's rounding), the embedder forced to bf16
    # is timed beside, for what dtype="auto" runs on weights whose tokens agree.
    timed = [("naive", naive_loop), ("forward", forward_only), ("embed", whole)]
    if cpu_has_fast_bf16() and dtype != torch.bfloat16:
        forced = clone(emb).set_params(dtype="bfloat16")

        def whole_bf16():
            clear_memory_cache()
            return forced.fit_transform(images)

        timed.append(("embed_bf16", whole_bf16))

    naive(inputs[0][:4])  # warm-up: oneDNN/MKL kernels
    forward_only()
    times = {name: [] for name, _ in timed}
    # The machine's speed drifts by tens of percent from minute to minute: the peaks are timed
    # again in every round, between the timings they bound, and the roofline takes the highest
    # of all, so a slow minute at the start cannot lift a figure past its roofline.
    square = MATMUL_SHAPES["1024^3"]
    peak_dtypes = {"fp32": torch.float32}
    if cpu_has_fast_bf16():  # emulated bf16 is ~100x slower: its peak is not worth re-timing
        peak_dtypes["bf16"] = torch.bfloat16
    in_rounds = {name: [] for name in peak_dtypes}
    for _ in range(rounds):
        for name, dt in peak_dtypes.items():
            in_rounds[name].append(matmul_gflops(dt, square, 0.5))
        for name, fn in timed:
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    for name, values in in_rounds.items():
        peaks[f"{name}_in_rounds"] = values
        peaks[f"{name}_peak"] = max(peaks[f"{name}_peak"], *values)
    t_naive, t_fwd, t_embed = (min(times[k]) for k in ("naive", "forward", "embed"))

    # agreement of bf16 embeddings with fp32 ones on the same images
    def embed_as(dt, data):
        clear_memory_cache()
        e = ViTLayerFusionEmbedder(
            "vit_base_patch16_224", pretrained=False, fusion="mean", dtype=dt, random_state=0
        )
        return e.fit_transform(data)

    e32, e16 = embed_as("float32", images[:n_bf16]), embed_as("bfloat16", images[:n_bf16])
    cos = (e32 * e16).sum(1) / np.linalg.norm(e32, axis=1) / np.linalg.norm(e16, axis=1)
    name = str(dtype).removeprefix("torch.")
    peak = peaks["bf16_peak"] if dtype == torch.bfloat16 else peaks["fp32_peak"]
    gflop_run = vit_b_gflop(blocks)
    res = {
        "n_images": n_images,
        "rounds": rounds,
        "setup_s": t_setup,
        "dtype_auto": name,
        "dtype_probe": emb.dtype_probe_,
        "naive_fp32_img_s": n_images / t_naive,
        "forward_img_s": n_images / t_fwd,
        "embedder_auto_img_s": n_images / t_embed,
        "blocks_run": blocks,
        "roofline_img_s": peak / gflop_run,
        "fp32_roofline_img_s": peaks["fp32_peak"] / vit_b_gflop(),
        "bf16_roofline_img_s": peaks["bf16_peak"] / vit_b_gflop(),
        "speedup_auto_vs_naive": t_naive / t_embed,
        "speedup_per_block_vs_naive": t_naive / t_embed * blocks / VIT_B_DEPTH,
        "overhead_fraction": t_embed / t_fwd - 1,
        "bf16_vs_fp32_cos_min": float(cos.min()),
        "bf16_vs_fp32_cos_mean": float(cos.mean()),
        "n_bf16": n_bf16,
        "times_s": times,
    }
    res["auto_fraction_of_roofline"] = res["embedder_auto_img_s"] / res["roofline_img_s"]
    res["forward_fraction_of_roofline"] = res["forward_img_s"] / res["roofline_img_s"]
    # the embeddings dtype="auto" gives against fp32's (the probe's cosine is of centred tokens)
    res["auto_vs_fp32_cos"] = 1.0 if dtype == torch.float32 else res["bf16_vs_fp32_cos_min"]
    if "embed_bf16" in times:
        bf16_img_s = n_images / min(times["embed_bf16"])
        res["forced_bf16"] = {
            "img_s": bf16_img_s,
            "fraction_of_roofline": bf16_img_s * gflop_run / peaks["bf16_peak"],
            "speedup_vs_naive": t_naive * bf16_img_s / n_images,
            "probe_cosine": emb.dtype_probe_["bfloat16"]["cosine"],
        }
    return res


def random_vit_b():
    """The untrained ViT-B/16 backbone (seed 0) the CPU-forward and compile sections time."""
    from skfingerprint import _vit

    return _vit.load_backbone(
        "vit_base_patch16_224",
        pretrained=False,
        checkpoint=None,
        model_kwargs=None,
        seed=0,
        position_code=False,
    )


def bench_compile(dtype_name: str, blocks: int, rounds: int = 5) -> dict:
    """``torch.compile`` (inductor) of the forward the embedder runs (the precision
    ``dtype="auto"`` picked, through ``blocks`` blocks, in its CPU passes and with its
    attention) against that eager forward, on a batch of 32 through ``Backbone.embed_batch``:
    compiled plainly and with inductor's ``freezing`` (weights folded in as constants and
    prepacked for oneDNN, its CPU inference path). Each is compiled by its first call (timed),
    then the three run in ``rounds`` interleaved rounds; the ratios are medians of each round's
    pair (this machine's speed drifts between minutes, not within a round)."""
    backbone = random_vit_b()
    cpu = torch.device("cpu")
    module = backbone.runtime(cpu)
    x = torch.randn(32, 3, 224, 224)
    dtype = getattr(torch, dtype_name)
    res = {"dtype": dtype_name, "blocks": blocks, "rounds": rounds}

    def embed(runtime) -> np.ndarray:  # the embedder's forward, with this module in it
        backbone._runtime[str(cpu)] = runtime
        try:
            return backbone.embed_batch(x, cpu, dtype, blocks)
        finally:
            backbone._runtime[str(cpu)] = module

    eager_out = embed(module)
    runs = {"eager": module}
    for name, options in (("compiled", None), ("frozen", {"freezing": True})):
        start = time.perf_counter()
        try:
            runs[name] = torch.compile(module, options=options)
            out = embed(runs[name])
        except Exception as exc:  # no C compiler, no inductor backend, ...
            return {**res, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
        res[f"{name}_compile_s"] = time.perf_counter() - start
        res[f"{name}_max_abs_diff"] = float(np.abs(out - eager_out).max())
    times = {name: [] for name in runs}
    for _ in range(rounds):
        for name, runtime in runs.items():
            start = time.perf_counter()
            embed(runtime)
            times[name].append(time.perf_counter() - start)
    for name, values in times.items():
        res[f"{name}_img_s"] = 32 / float(np.median(values))
        if name != "eager":
            paired = np.array(times["eager"]) / np.array(values)
            res[f"{name}_over_eager"] = float(np.median(paired))
            res[f"{name}_over_eager_range"] = (float(paired.min()), float(paired.max()))
    return res


def bench_grid(n_real: int, n_lib: int, stop_early: bool, rounds: int = 1) -> dict:
    """One fit of the pipeline and the grid over layer sets and thresholds, with the
    embedder's ``stop_early`` as given (the default True; False as the docs advise for a
    grid over layers); ``rounds`` times in turn, the ratio the median of the rounds' ratios
    (the machine drifts between two timings tens of seconds apart)."""
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
    from skfingerprint.embedding import parse_layers

    task = make_synthetic_leak(
        n_real // 2, n_real - n_real // 2, n_lib, image_size=128, random_state=0
    )

    def pipe():
        return Pipeline(
            [
                (
                    "embed",
                    ViTLayerFusionEmbedder(
                        "vit_base_patch16_224",
                        pretrained=False,
                        gate_epochs=50,
                        stop_early=stop_early,
                        random_state=0,
                    ),
                ),
                ("select", FaissCandidateSelector(k=10, min_similarity=None)),
                ("clf", MaxSimilarityClassifier()),
            ]
        )

    # build the ViT-B (same seed, so the same cached backbone) outside both timings
    pipe().steps[0][1].fit(task.real_images[:16])  # and the dtype probe, on 16 images
    t_fit, t_grid = [], []
    for _ in range(rounds):
        clear_memory_cache()
        with count_vit_images() as passes_fit:
            start = time.perf_counter()
            pipe().fit(task.X_pairs, task.y)
            t_fit.append(time.perf_counter() - start)
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
        with count_vit_images() as passes_grid:
            start = time.perf_counter()
            grid.fit(task.X_pairs, task.y)
            t_grid.append(time.perf_counter() - start)
    deepest_default = max(parse_layers(pipe().steps[0][1].layers, VIT_B_DEPTH))
    return {
        "blocks_one_fit": deepest_default if stop_early else VIT_B_DEPTH,
        "blocks_grid": VIT_B_DEPTH,
        "unique_images": n_real + n_lib,
        "vit_images_one_fit": passes_fit["n"],
        "vit_images_grid": passes_grid["n"],
        "n_candidates_fitted": 4 * 3 * 3 + 1,
        "rounds": rounds,
        "one_fit_s": statistics.median(t_fit),
        "grid_s": statistics.median(t_grid),
        **paired_ratio("grid_over_fit", t_grid, t_fit),
    }


def paired_ratio(name: str, numerators: list, denominators: list) -> dict:
    """``{name}_rounds``: each round's ratio of two timings taken side by side, and ``name``:
    their median (not the ratio of the medians, which would pair a fast minute's numerator
    with a slow minute's denominator)."""
    rounds = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return {f"{name}_rounds": rounds, name: statistics.median(rounds)}


def threshold_grid_task(n_real: int, n_lib: int, k: int = 10, max_epochs: int = 30):
    """The threshold grid's images and pipeline: the paper's CANet head on an untrained ViT-B
    (``make_fingerprint_pipeline("canet", features="paper")``)."""
    from skfingerprint.datasets import make_synthetic_leak
    from skfingerprint.pipeline import make_fingerprint_pipeline

    task = make_synthetic_leak(
        n_real // 2, n_real - n_real // 2, n_lib, image_size=128, random_state=0
    )
    pipe = make_fingerprint_pipeline(
        "canet",
        features="paper",
        pretrained=False,
        k=k,
        max_epochs=max_epochs,
        random_state=0,
    )
    return task, pipe


def bench_threshold_grid(
    n_real: int,
    n_lib: int,
    k: int = 10,
    max_epochs: int = 30,
    against_one: bool = True,
    rounds: int = 1,
) -> dict:
    """The issue's grid: ``clf__threshold`` alone, with the paper's CANet head. Counts the
    nets trained and times the grid over 3 thresholds against one fit of the pipeline and
    (``against_one``) against the same grid over 1 threshold; ``rounds`` times in turn, each
    ratio the median of the rounds' ratios."""
    from sklearn.base import clone
    from sklearn.model_selection import GridSearchCV

    from skfingerprint import clear_memory_cache, kappa_scorer
    from skfingerprint._canet_net import _CANetNet

    task, pipe = threshold_grid_task(n_real, n_lib, k, max_epochs)
    pipe.steps[0][1].fit(task.real_images[:16])  # the ViT-B and dtype probe, outside timings
    grids = ([0.5], [0.3, 0.5, 0.7]) if against_one else ([0.3, 0.5, 0.7],)
    times, nets_trained = {"one_fit": [], **{len(t): [] for t in grids}}, {}
    for _ in range(rounds):
        clear_memory_cache()
        start = time.perf_counter()
        clone(pipe).fit(task.X_pairs, task.y)
        times["one_fit"].append(time.perf_counter() - start)
        for thresholds in grids:
            clear_memory_cache()
            grid = GridSearchCV(pipe, {"clf__threshold": thresholds}, cv=3, scoring=kappa_scorer)
            # _CANetNet.fit runs only to train (a restored net is initialised, not fitted)
            with count_calls(_CANetNet, "fit") as nets:
                start = time.perf_counter()
                grid.fit(task.X_pairs, task.y)
                times[len(thresholds)].append(time.perf_counter() - start)
            nets_trained[len(thresholds)] = nets["n"]
    out = {"rounds": rounds, "one_fit_s": statistics.median(times["one_fit"])}
    for n, trained in nets_trained.items():
        out[n] = {"s": statistics.median(times[n]), "fits": 3 * n + 1, "nets_trained": trained}
    if against_one:
        out.update(paired_ratio("ratio", times[3], times[1]))
    out.update(paired_ratio("grid_over_fit", times[3], times["one_fit"]))
    return out


def bench_gate_denormals(n_real: int, n_lib: int, rounds: int = 3) -> dict:
    """The gate's supervised training on the threshold grid's tokens (the ViT-B's, for the
    task above), with the CPU's denormals flushed (what ``fit`` does,
    ``_runtime.flush_denormals``) and without, in interleaved rounds from the same seed, on one
    thread as ``fit`` runs it: the best time of each, and whether the two gates agree."""
    from skfingerprint import _runtime, clear_memory_cache, embedding
    from skfingerprint._fusion import GatedFusion

    task, pipe = threshold_grid_task(n_real, n_lib)
    embedder = pipe.steps[0][1]
    seen = []
    train = embedding.train_gate_supervised
    embedding.train_gate_supervised = lambda *a, **k: seen.append((a, k))  # inputs, no training
    try:
        clear_memory_cache()  # the threshold grid keeps this very gate: train it again
        embedder.fit(task.X_pairs, task.y)
    finally:
        embedding.train_gate_supervised = train
    (_, tokens, n, y), kwargs = seen[0]

    def trained(flush: bool) -> tuple[float, torch.Tensor]:
        with _runtime.seeded_torch(0):
            gate = GatedFusion(len(embedder.layers_), tokens.shape[-1])
        flushed = _runtime.flush_denormals() if flush else contextlib.nullcontext()
        with _runtime.one_thread(), flushed:
            start = time.perf_counter()
            train(gate, tokens, n, y, **kwargs)
            seconds = time.perf_counter() - start
        with torch.no_grad():
            return seconds, gate.weights(tokens)

    runs = {False: [], True: []}
    for _ in range(rounds):
        for flush in (False, True):
            runs[flush].append(trained(flush))
    out = {f"{'flushed' if f else 'kept'}_s": min(s for s, _ in runs[f]) for f in runs}
    out["kept_over_flushed"] = out["kept_s"] / out["flushed_s"]
    out["max_weight_difference"] = float((runs[False][0][1] - runs[True][0][1]).abs().max())
    out.update(n_tokens=tuple(tokens.shape), epochs=kwargs["epochs"], rounds=rounds)
    return out


HUGE_PAGES_CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from bench_embed import rss_mb, synthetic_images
from skfingerprint import ViTLayerFusionEmbedder, clear_memory_cache
images = synthetic_images(int(sys.argv[2]))
emb = ViTLayerFusionEmbedder("vit_base_patch16_224", pretrained=False, fusion="mean",
                             dtype="auto", random_state=0)
emb.fit(images[:16])  # builds the ViT-B, runs the dtype probe
clear_memory_cache()
emb.fit_transform(images[:32])  # warm-up
rounds = []
for _ in range(int(sys.argv[3])):
    clear_memory_cache()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    emb.fit_transform(images)
    seconds, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    rounds.append({"s": seconds, "minor_faults": after.ru_minflt - before.ru_minflt,
                   "sys_s": after.ru_stime - before.ru_stime})
print(json.dumps({"rounds": rounds, "dtype": emb.dtype_, "peak_rss_mb": rss_mb("VmHWM")}))
"""


@contextlib.contextmanager
def timm_attention(module):
    """Inside: timm's own attention forward (torch's fused kernel) in every block of the
    embedder's module, its CPU bf16 path (``_vit._cpu_bf16_attention``) taken off."""
    attns = [b.attn for b in module.vit.blocks if "forward" in vars(b.attn)]
    kept = [vars(a).pop("forward") for a in attns]
    try:
        yield
    finally:
        for attn, forward in zip(attns, kept, strict=True):
            attn.forward = forward


@contextlib.contextmanager
def one_pass():
    """Inside: the ViT runs a batch in one pass on the CPU, as before the passes of
    ``_vit.CPU_PASS_BYTES``."""
    from skfingerprint import _vit

    kept = _vit.CPU_PASS_BYTES
    _vit.CPU_PASS_BYTES = 1 << 50
    try:
        yield
    finally:
        _vit.CPU_PASS_BYTES = kept


#: The arms of ``bench_cpu_forward``: (name, one pass of the whole batch, timm's attention).
CPU_FORWARD_ARMS = (
    ("one pass, timm attention", True, True),
    ("passes, timm attention", False, True),
    ("passes, bf16 attention (the embedder's)", False, False),
)


def bench_cpu_forward(dtype_name: str, blocks: int, rounds: int = 15) -> dict:
    """What the embedder's CPU forward does beyond a plain timm pass, arm by arm, in the
    precision ``dtype="auto"`` picked: ViT-B through ``blocks`` blocks on a batch of 32, run
    in one pass with timm's attention (torch's fused kernel), in passes of at most
    ``_vit.CPU_PASS_BYTES`` per activation, and in passes with the bf16 attention path too
    (bf16 only: in float32 the path is not taken). The arms alternate over ``rounds`` rounds;
    each ratio is the median of the rounds' pairs (this machine's speed drifts between
    seconds), beside the minor page faults of the median round. Then the attention alone at
    ViT-B's shape, and each arm's CLS tokens' cosine to the fp32 pass."""
    import resource

    from skfingerprint import _vit

    backbone = random_vit_b()
    cpu = torch.device("cpu")
    module = backbone.runtime(cpu)
    x = torch.randn(32, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    dtype = getattr(torch, dtype_name)
    arms = {name: (whole, timm) for name, whole, timm in CPU_FORWARD_ARMS}
    if dtype != torch.bfloat16:
        arms = {name: a for name, a in arms.items() if a[1]}
    rows = _vit._even_rows(32, backbone.rows_per_pass(cpu))
    res = {"dtype": dtype_name, "blocks": blocks, "rounds": rounds, "rows_per_pass": rows}

    def arm(name: str) -> contextlib.ExitStack:
        whole, timm = arms[name]
        stack = contextlib.ExitStack()
        if whole:
            stack.enter_context(one_pass())
        if timm:
            stack.enter_context(timm_attention(module))
        return stack

    fp32 = backbone.embed_batch(x[:8], cpu, torch.float32, blocks).reshape(8, -1)
    times: dict[str, list[float]] = {name: [] for name in arms}
    faults: dict[str, list[int]] = {name: [] for name in arms}
    for name in arms:
        with arm(name):
            out = backbone.embed_batch(x[:8], cpu, dtype, blocks).reshape(8, -1)
        cos = (out * fp32).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(fp32, axis=1)
        res[f"{name}: cos_to_fp32"] = float(cos.min())
    for i in range(rounds):
        for name in arms if i % 2 == 0 else list(arms)[::-1]:
            with arm(name):
                before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
                start = time.perf_counter()
                backbone.embed_batch(x, cpu, dtype, blocks)
                times[name].append(time.perf_counter() - start)
                faults[name].append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    first = np.array(times[CPU_FORWARD_ARMS[0][0]])
    for name, values in times.items():
        paired = first / np.array(values)
        res[f"{name}: img_s"] = 32 / float(np.median(values))
        res[f"{name}: faults"] = int(np.median(faults[name]))
        res[f"{name}: ratio"] = float(np.median(paired))
        res[f"{name}: ratio_quartiles"] = (
            float(np.quantile(paired, 0.25)),
            float(np.quantile(paired, 0.75)),
        )
    if dtype != torch.bfloat16:
        return res

    # the attention alone: one block's (its qkv and output projections included)
    attn = module.vit.blocks[0].attn
    tokens = torch.randn(32, 197, 768, generator=torch.Generator().manual_seed(1))
    one: dict[str, list[float]] = {"timm": [], "bf16": []}
    with torch.inference_mode(), torch.autocast("cpu", dtype=dtype):
        for i in range(3 * rounds):
            for name in one if i % 2 == 0 else list(one)[::-1]:
                with timm_attention(module) if name == "timm" else contextlib.nullcontext():
                    start = time.perf_counter()
                    attn(tokens)
                    one[name].append(time.perf_counter() - start)
    res["attention_ms"] = {name: 1e3 * float(np.median(v)) for name, v in one.items()}
    res["attention_ratio"] = float(np.median(np.array(one["timm"]) / np.array(one["bf16"])))
    return res


def _cpu_forward_lines(a: dict | None) -> list[str]:
    if a is None:
        return []
    names = [n for n, _, _ in CPU_FORWARD_ARMS if f"{n}: img_s" in a]
    lines = [
        f"## The CPU forward: passes and attention ({a['dtype']}, {a['blocks']} blocks, batch 32)",
        "",
        "ViT-B/16 on 32 images as the embedder runs it (`Backbone.embed_batch`), arm by arm: "
        "in one pass with timm's attention (torch's fused kernel), as before; in passes of "
        f"{a['rows_per_pass']} images (every activation within `_vit.CPU_PASS_BYTES`: above "
        "glibc's 32 MiB mmap ceiling each buffer comes as fresh pages the kernel faults in and "
        "zeroes); and in passes with the bf16 attention path (bf16 only). The arms alternate "
        f"over {a['rounds']} rounds; each ratio is the median of the rounds' pairs against "
        "the first arm (quartiles of the pairs beside it).",
        "",
        "| arm | img/s (median round) | minor page faults (median round) | / one pass, timm "
        "attention | CLS cosine to fp32 (min over 8 images) |",
        "|---|---|---|---|---|",
    ]
    for n in names:
        q1, q3 = a[f"{n}: ratio_quartiles"]
        lines.append(
            f"| {n} | {a[f'{n}: img_s']:.2f} | {a[f'{n}: faults']} | "
            f"**{a[f'{n}: ratio']:.2f}x** ({q1:.2f}-{q3:.2f}) | {a[f'{n}: cos_to_fp32']:.6f} |"
        )
    if "attention_ms" in a:
        ms = a["attention_ms"]
        lines += [
            "",
            f"One block's attention alone (qkv and output projections included), median of "
            f"{3 * a['rounds']}: timm {ms['timm']:.1f} ms, bf16 path {ms['bf16']:.1f} ms, "
            f"**{a['attention_ratio']:.2f}x**.",
        ]
    return [*lines, ""]


def bench_huge_pages(n_images: int, pairs: int, rounds: int) -> dict:
    """The embedder's ``fit_transform`` in fresh processes with torch's CPU allocator asking
    for transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``: buffers of 2 MB and more aligned
    and ``madvise``d, one page fault per 2 MB instead of per 4 kB) and without (``=0``), the
    two alternating over ``pairs`` pairs of processes; the best round of each is kept. The
    kernel's setting is reported beside it (``madvise`` or ``always`` lets the request work)."""
    try:
        kernel = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        kernel = "unknown (no /sys/kernel/mm/transparent_hugepage)"
    out: dict = {"kernel_thp": kernel, "n_images": n_images, "off": [], "on": []}
    out["parent_setting"] = os.environ.get("THP_MEM_ALLOC_ENABLE", "unset")
    for _ in range(pairs):
        for arm, value in (("off", "0"), ("on", "1")):
            env = {**os.environ, "THP_MEM_ALLOC_ENABLE": value}
            res = subprocess.run(
                [sys.executable, "-c", HUGE_PAGES_CHILD, str(HERE), str(n_images), str(rounds)],
                capture_output=True, text=True, check=True, env=env,
            )  # fmt: skip
            out[arm].append(json.loads(res.stdout.strip().splitlines()[-1]))
    for arm in ("off", "on"):
        best = min((r for run in out[arm] for r in run["rounds"]), key=lambda r: r["s"])
        out[f"{arm}_img_s"] = n_images / best["s"]
        out[f"{arm}_minor_faults"] = best["minor_faults"]
        out[f"{arm}_sys_s"] = best["sys_s"]
        out[f"{arm}_peak_rss_mb"] = max(run["peak_rss_mb"] for run in out[arm])
    out["on_over_off"] = out["on_img_s"] / out["off_img_s"]
    return out


def rss_mb(field: str = "VmRSS") -> float:
    """This process's ``field`` of ``/proc/self/status`` in MB (the child scripts import it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


RSS_CHILD = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from bench_embed import rss_mb
from skfingerprint import ViTLayerFusionEmbedder
kw = dict(img_size=64, patch_size=32, embed_dim=768, depth=12, num_heads=12)
emb = ViTLayerFusionEmbedder("vit_base_patch16_224", pretrained=False, model_kwargs=kw,
                             fusion="mean", dtype="float32", random_state=0, batch_size=32)
first = sorted(Path(sys.argv[1]).glob("*.png"))[:1]
emb.fit(first)  # loads the model and warms every code path: the baseline
base = rss_mb()
out = emb.fit_transform(sys.argv[1])
# VmHWM, not ru_maxrss: Python starts this process by vfork + exec, and Linux hands the
# parent's peak RSS (the whole benchmark's) on to the child's ru_maxrss at exec
peak = rss_mb("VmHWM")
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
            [sys.executable, "-c", RSS_CHILD, tmp, str(HERE)],
            capture_output=True,
            text=True,
            check=True,
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
    t, g, r, p = results["throughput"], results["grid"], results["rss"], results["peaks"]
    c, tg = results.get("compile"), results["threshold_grid"]
    flags = ", ".join(f"{k}={'yes' if v else 'no'}" for k, v in results["flags"].items())
    probe = "; ".join(_probe_text(k, v) for k, v in t["dtype_probe"].items() if isinstance(v, dict))
    peak_rows = [
        f"| {dt} matmul, {shape} | {v:.1f} GFLOP/s |"
        for dt in ("fp32", "bf16")
        for shape, v in p[dt].items()
    ]
    peak_rows += [
        f"| {dt} matmul, 1024^3, re-timed in each round of the timings below | "
        + ", ".join(f"{v:.1f}" for v in p[f"{dt}_in_rounds"])
        + " GFLOP/s |"
        for dt in ("fp32", "bf16")
        if f"{dt}_in_rounds" in p
    ]
    lines = [
        "# Embedder benchmark",
        "",
        f"Written by `python benchmarks/bench_embed.py{' --quick' if results['quick'] else ''}`"
        f" on {results['machine']}, {time.strftime('%Y-%m-%d')}. CPU flags: {flags} "
        f"({results['isa']}). "
        f"Load average at the start: {results['load']}. All rows of a section come from one "
        "run.",
        "",
        *_load_note(results["load"]),
        "## Throughput, vit_base_patch16_224, batch 32",
        "",
        f"{t['n_images']} images (256x256, decoded from memory and resized to 224), the best of "
        f"{t['rounds']} interleaved rounds of each timing; building the ViT-B is outside every "
        f"timing ({t['setup_s']:.1f} s, with the dtype probe). The roofline is the measured "
        f"matmul peak / {vit_b_gflop():.1f} GFLOP per image for all {VIT_B_DEPTH} blocks (the "
        "largest of the rows below, the re-timed ones included, since the forward's products "
        "are large (its MLP is the third shape) and a small product would understate what the "
        "machine can do). The "
        f"embedder stops after block {t['blocks_run']}, the deepest of its default layers "
        "(``stop_early``): its roofline counts the FLOPs of the blocks it runs.",
        "",
        "| what | value |",
        "|---|---|",
        *peak_rows,
        f"| ViT-B/16 roofline, fp32 / bf16 | {t['fp32_roofline_img_s']:.2f} / "
        f"{t['bf16_roofline_img_s']:.3f} img/s |",
        f"| naive timm fp32 `model(x)` loop, {VIT_B_DEPTH} blocks | "
        f"{t['naive_fp32_img_s']:.2f} img/s = "
        f"{t['naive_fp32_img_s'] / t['fp32_roofline_img_s']:.0%} of the fp32 roofline |",
        f"| dtype=auto chose | {t['dtype_auto']} ({probe}) |",
        f"| embedder ViT forward alone ({t['dtype_auto']}, {t['blocks_run']} blocks) | "
        f"{t['forward_img_s']:.2f} img/s = {t['forward_fraction_of_roofline']:.0%} of the "
        f"{t['dtype_auto']} roofline of {t['blocks_run']} blocks |",
        f"| **embedder, dtype=auto, whole fit_transform** | **{t['embedder_auto_img_s']:.2f} "
        "img/s** |",
        f"| **% of the roofline of the precision it picked**, {t['blocks_run']} blocks "
        f"(target >= 70%) | **{t['auto_fraction_of_roofline']:.0%}** |",
        f"| **ratio to naive fp32** (target >= 1.0 on AVX2-only CPUs, >= 2.5 with native "
        "bf16) | "
        f"**{t['speedup_auto_vs_naive']:.2f}x** |",
        f"| the same per block run ({t['blocks_run']} vs {VIT_B_DEPTH}): what is not owed to "
        f"stopping early | {t['speedup_per_block_vs_naive']:.2f}x |",
        f"| **overhead: whole embed / forward alone - 1** (target <= 10%) | "
        f"**{t['overhead_fraction']:.1%}** |",
        f"| embeddings' cosine to fp32 (dtype=auto) | {t['auto_vs_fp32_cos']:.5f} |",
        f"| bf16 vs fp32 embedding cosine, min / mean over {t['n_bf16']} images | "
        f"{t['bf16_vs_fp32_cos_min']:.5f} / {t['bf16_vs_fp32_cos_mean']:.5f} |",
        *_forced_bf16_lines(t),
        "",
        *_cpu_forward_lines(results.get("cpu_forward")),
        *_compile_lines(c),
        *_huge_pages_lines(results.get("huge_pages")),
        "## GridSearchCV: 4 layer sets x 3 thresholds x 3 folds (37 fits with the refit)",
        "",
        "Layer sets (3, 6, 9), (6, 9, 12), (2, 4, 6, 8), (12,), in that order; each column "
        "against one fit of the same pipeline. With ``stop_early=True`` (the default) the "
        "first candidate runs 9 blocks and keeps each image's ViT state, from which the "
        "second, deeper, runs blocks 10-12 alone; "
        "``stop_early=False`` (what the docs advise for a grid over layers) runs every block "
        f"in the first fit. {_rounds_text(g[True]['rounds'])}",
        "",
        "| what | stop_early=True | stop_early=False |",
        "|---|---|---|",
        f"| unique images (reals + library) | {g[True]['unique_images']} | "
        f"{g[False]['unique_images']} |",
        "| images through the ViT: one fit / whole grid | "
        + " | ".join(f"{x['vit_images_one_fit']} / {x['vit_images_grid']}" for x in g.values())
        + " |",
        "| time: one fit / whole grid | "
        + " | ".join(f"{x['one_fit_s']:.1f} s / {x['grid_s']:.1f} s" for x in g.values())
        + " |",
        "| **grid / one fit** (target <= 1.5) | "
        + " | ".join(_ratio_cell(x) for x in g.values())
        + " |",
        "| blocks run per image: one fit / whole grid | "
        + " | ".join(f"{x['blocks_one_fit']} / {x['blocks_grid']}" for x in g.values())
        + " |",
        f"| whole grid, stop_early=True / False (the same work: a ratio near 1 means the "
        f"default's grid redoes nothing) | {g[True]['grid_s'] / g[False]['grid_s']:.2f} | |",
        "",
        "## GridSearchCV over `clf__threshold` alone, CANet head (paper features)",
        "",
        'The issue\'s grid: `make_fingerprint_pipeline("canet", features="paper")` (ViT-B '
        "untrained, k = 10, 30 epochs), 3 folds, the same images as above; against the same "
        "grid over one threshold, and against one fit of the pipeline (no cross-validation): "
        "the grid trains a net per fold and the refit, 4 in all, whatever the number of "
        f"thresholds, if the fitted net is reused. {_rounds_text(tg['rounds'])}",
        "",
        "| what | 1 threshold | 3 thresholds |",
        "|---|---|---|",
        f"| fits (with the refit) | {tg[1]['fits']} | {tg[3]['fits']} |",
        f"| CANet nets trained | {tg[1]['nets_trained']} | {tg[3]['nets_trained']} |",
        f"| time | {tg[1]['s']:.1f} s | {tg[3]['s']:.1f} s |",
        f"| **grid over 3 thresholds / grid over 1** | | **{tg['ratio']:.2f}** |",
        f"| **grid over 3 thresholds / one fit of the pipeline** ({tg['one_fit_s']:.1f} s; "
        f"target <= 1.5) | | {_ratio_cell(tg)} |",
        "",
        *_gate_denormals_lines(results.get("gate_denormals")),
        *_imageclef_grid_lines(results.get("imageclef_grids")),
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
        "image) on 64 px input with 32 px patches, so 10,000 images fit in minutes. The peak "
        "is the child process's VmHWM: its ru_maxrss would include the parent's peak, handed "
        "on through vfork + exec.",
        "",
        *results.get("notes", []),
    ]
    path.write_text("\n".join(lines))


def _rounds_text(rounds: int) -> str:
    if rounds == 1:
        return "One round: one fit, then the grid."
    return (
        f"{rounds} rounds in turn, each one fit then the grids (the machine drifts between "
        "two timings tens of seconds apart): the times are the rounds' medians, each ratio "
        "the median of the rounds' ratios, every round's ratio to one fit in brackets."
    )


def _ratio_cell(x: dict) -> str:
    rounds = x.get("grid_over_fit_rounds", [])
    each = f" ({', '.join(f'{r:.2f}' for r in rounds)})" if len(rounds) > 1 else ""
    return f"**{x['grid_over_fit']:.2f}**{each}"


def _gate_denormals_lines(d: dict | None) -> list[str]:
    if d is None:
        return []
    return [
        "## The gate's training with the CPU's denormals flushed",
        "",
        f"The supervised gate training of one fit above ({d['epochs']} steps on the tokens of "
        f"{' x '.join(map(str, d['n_tokens']))} images x blocks x width, one thread, the same "
        "seed), with float32 denormals flushed to zero "
        "(`_runtime.flush_denormals`, what `fit` does) and without; best of "
        f"{d['rounds']} interleaved rounds each.",
        "",
        "| what | value |",
        "|---|---|",
        f"| denormals kept / flushed | {d['kept_s']:.2f} s / {d['flushed_s']:.2f} s = "
        f"**{d['kept_over_flushed']:.2f}x** |",
        f"| largest difference of the two gates' fusion weights | "
        f"{d['max_weight_difference']:.1e} |",
        "",
    ]


def _imageclef_grid_lines(ig: dict | None) -> list[str]:
    if ig is None:
        return []
    tg, g = ig["threshold"], {stop: ig[stop] for stop in (True, False)}
    n_real, n_lib = IMAGECLEF_TRAIN
    return [
        f"## Both grids at ImageCLEF 2025's training size ({n_real} reals + {n_lib:,} generated)",
        "",
        "The same two grids on a synthetic task of the challenge's training size, where the "
        "ViT's pass over the library is most of a fit: the threshold grid with the pipeline's "
        "defaults (k = 100, 50 epochs, the gate's 200 steps), the layer grid as above (k = 10, "
        "50 gate steps).",
        "",
        "| what | time: one fit / whole grid | **grid / one fit** (target <= 1.5) |",
        "|---|---|---|",
        f"| CANet threshold grid, 3 thresholds, {tg[3]['nets_trained']} nets trained | "
        f"{tg['one_fit_s']:.0f} s / {tg[3]['s']:.0f} s | **{tg['grid_over_fit']:.2f}** |",
        *(
            f"| layer x threshold grid, stop_early={stop} | {x['one_fit_s']:.0f} s / "
            f"{x['grid_s']:.0f} s | **{x['grid_over_fit']:.2f}** |"
            for stop, x in g.items()
        ),
        "",
    ]


def _huge_pages_lines(h: dict | None) -> list[str]:
    if h is None:
        return []
    return [
        "## Transparent huge pages for torch's CPU buffers",
        "",
        f"The embedder's whole `fit_transform` of {h['n_images']} images (dtype=auto, as "
        "above) in fresh processes, `THP_MEM_ALLOC_ENABLE=1` (what the `skfingerprint` "
        "command sets) against `=0`, the two alternating; the best round of each. Kernel "
        f"setting: `{h['kernel_thp']}`. The throughput section above ran with "
        f"`THP_MEM_ALLOC_ENABLE={h['parent_setting']}`.",
        "",
        "| what | off | on |",
        "|---|---|---|",
        f"| embedder img/s | {h['off_img_s']:.2f} | {h['on_img_s']:.2f} |",
        f"| minor page faults in that round | {h['off_minor_faults']} | {h['on_minor_faults']} |",
        f"| kernel (sys) seconds in that round | {h['off_sys_s']:.2f} | {h['on_sys_s']:.2f} |",
        f"| peak RSS of the process | {h['off_peak_rss_mb']:.0f} MB | "
        f"{h['on_peak_rss_mb']:.0f} MB |",
        f"| **on / off** | | **{h['on_over_off']:.2f}x** |",
        "",
    ]


def _load_note(load: str) -> list[str]:
    if float(load.split(",")[0]) <= (os.cpu_count() or 1):
        return []
    return [
        "**The machine was loaded at the start** (load average above its core count: other "
        "jobs, such as a low-priority mutation-testing run, were running): absolute numbers "
        "may be lower and noisier than on an idle machine, peaks included; the ratios compare "
        "timings taken side by side, and each timing is the best of its rounds.",
        "",
    ]


def _forced_bf16_lines(t: dict) -> list[str]:
    f = t.get("forced_bf16")
    if f is None:
        return []
    return [
        f"| embedder, dtype='bfloat16' given (not chosen: its tokens' cosine to fp32 "
        f"{f['probe_cosine']:.4f} < 0.99), whole fit_transform | {f['img_s']:.2f} img/s = "
        f"{f['fraction_of_roofline']:.0%} of the bf16 roofline of {t['blocks_run']} blocks, "
        f"{f['speedup_vs_naive']:.2f}x naive fp32 |",
    ]


def _probe_text(name: str, row: dict) -> str:
    if "skipped" in row:
        return f"{name} skipped: {row['skipped']}"
    if row["img_s"] is None:
        return f"{name}: {row['note']}, not timed"
    return f"{name}: {row['img_s']:.2f} img/s, cosine {row['cosine']:.4f}"


def _compile_lines(c: dict | None) -> list[str]:
    if c is None:
        return []
    head = [
        f"## torch.compile (inductor), {c.get('dtype', 'float32')} forward of "
        f"{c.get('blocks', VIT_B_DEPTH)} blocks (the embedder's), batch 32",
        "",
    ]
    if "error" in c:
        return [*head, f"Failed here: `{c['error']}`. The embedder stays eager.", ""]
    lines = [
        *head,
        f"Compiled by the first call, then {c['rounds']} interleaved rounds; ratios are medians "
        "of each round's pair (range in brackets). The embedder runs eager: compiling costs the "
        "time below once per process and again for each new batch shape (a last, partial "
        "batch), and on one machine the gain has ranged from none to ~1.2x between runs.",
        "",
        "| what | plain | freezing |",
        "|---|---|---|",
        f"| compile + first call | {c['compiled_compile_s']:.0f} s | "
        f"{c['frozen_compile_s']:.0f} s |",
        f"| img/s (median round; eager {c['eager_img_s']:.2f}) | {c['compiled_img_s']:.2f} | "
        f"{c['frozen_img_s']:.2f} |",
    ]
    ratios = [
        f"**{c[f'{n}_over_eager']:.2f}x** [{c[f'{n}_over_eager_range'][0]:.2f}, "
        f"{c[f'{n}_over_eager_range'][1]:.2f}]"
        for n in ("compiled", "frozen")
    ]
    return [
        *lines,
        f"| compiled / eager | {ratios[0]} | {ratios[1]} |",
        f"| largest difference from eager | {c['compiled_max_abs_diff']:.1e} | "
        f"{c['frozen_max_abs_diff']:.1e} |",
        "",
    ]


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
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile trial")
    parser.add_argument("--only-throughput", action="store_true", help="skip grid and memory")
    parser.add_argument(
        "--imageclef-grids",
        action="store_true",
        help="also time both grids at ImageCLEF 2025's training size, 200 reals + 5,000 "
        "generated (~35 min on 2 cores)",
    )
    parser.add_argument(
        "--no-huge-pages", action="store_true", help="skip the transparent huge pages trial"
    )
    args = parser.parse_args()
    q = args.quick
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    results = {
        "machine": machine(),
        "flags": cpu_flags(),
        "isa": torch_isa(),
        "quick": q,
        "load": load,
    }
    print(
        f"machine: {results['machine']}; {results['flags']}; {results['isa']}; load {load}",
        flush=True,
    )
    results["peaks"] = bench_peaks(q)
    print(json.dumps(results["peaks"], indent=1), flush=True)
    results["throughput"] = bench_throughput(
        32 if q else 64, 2 if q else 8, 1 if q else 3, results["peaks"]
    )
    print(json.dumps(results["throughput"], indent=1), flush=True)
    t = results["throughput"]
    results["cpu_forward"] = bench_cpu_forward(t["dtype_auto"], t["blocks_run"], 3 if q else 15)
    print(json.dumps(results["cpu_forward"], indent=1), flush=True)
    if not args.no_huge_pages:
        results["huge_pages"] = bench_huge_pages(32 if q else 64, 1 if q else 3, 1 if q else 2)
        print(json.dumps(results["huge_pages"], indent=1), flush=True)
    if not args.no_compile:
        t = results["throughput"]
        results["compile"] = bench_compile(t["dtype_auto"], t["blocks_run"])
        print(json.dumps(results["compile"], indent=1), flush=True)
    if args.only_throughput:
        return
    rounds = 1 if q else 3
    results["grid"] = {
        stop: bench_grid(8 if q else 48, 8 if q else 48, stop, rounds) for stop in (True, False)
    }
    print(json.dumps(results["grid"], indent=1), flush=True)
    results["threshold_grid"] = bench_threshold_grid(8 if q else 48, 8 if q else 48, rounds=rounds)
    print(json.dumps(results["threshold_grid"], indent=1), flush=True)
    results["gate_denormals"] = bench_gate_denormals(8 if q else 48, 8 if q else 48)
    print(json.dumps(results["gate_denormals"], indent=1), flush=True)
    if args.imageclef_grids:
        n_real, n_lib = IMAGECLEF_TRAIN
        results["imageclef_grids"] = {
            "threshold": bench_threshold_grid(
                n_real, n_lib, k=100, max_epochs=50, against_one=False
            ),
            **{stop: bench_grid(n_real, n_lib, stop) for stop in (True, False)},
        }
        print(json.dumps(results["imageclef_grids"], indent=1), flush=True)
    results["rss"] = bench_rss(200 if q else 10_000)
    print(json.dumps(results["rss"], indent=1), flush=True)
    if not args.no_write:
        write_results(results, HERE / "RESULTS_embed.md")
        print(f"wrote {HERE / 'RESULTS_embed.md'}")


if __name__ == "__main__":
    main()
