"""HNSW vs exact candidate search: recall@100 and speed, side by side in one run.

What the library is (not Gaussian noise):

1. ``make_synthetic_leak(500, 500, 2000, image_size=64, distortion=0.5)`` draws 1,000 real CT-like
   slices (the **queries**) and 2,000 generated ones (the **base library**).
2. All 3,000 images are embedded with a tiny random ViT (``vit_tiny_patch16_224`` with
   ``img_size=64, patch_size=16, depth=4, embed_dim=64``, ``pretrained=False``,
   ``fusion="mean"``, ``gate_epochs=0``): D = 64 unless ``--embed-dim`` says otherwise.
3. The 100,000 library vectors are the 2,000 base embeddings plus 49 variants of each, standing
   in for a large generator's near-duplicate output: a variant of base ``b_i`` is
   ``(1 - lam) b_i + lam b_j + 0.1 * sigma * noise`` with ``b_j`` one of the 10 nearest other base
   embeddings, ``lam ~ U(0, 0.5)``, ``sigma`` the per-coordinate standard deviation of the base
   embeddings and ``noise ~ N(0, 1)``.

Both sides go through :meth:`FaissCandidateSelector.kneighbors` (k=100) on the same 1,000 queries;
the index is built in ``fit`` and its build time reported apart; search times are the best of
``--repeats`` runs. HNSW is swept over ``hnsw_m`` x ``ef_construction`` x ``ef_search``.
Recall@100 is ``|HNSW top-100 & exact top-100| / 100``, averaged over queries.

Run (about 2 minutes on 2 cores)::

    .venv/bin/python benchmarks/bench_select.py

It prints a table and rewrites the ``bench_select`` section of ``benchmarks/RESULTS_select.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import time
from pathlib import Path

import faiss
import numpy as np

from skfingerprint import ViTLayerFusionEmbedder
from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.pairs import PairEmbeddings
from skfingerprint.selection import FaissCandidateSelector, _l2_normalize

RESULTS = Path(__file__).with_name("RESULTS_select.md")
START, END = "<!-- bench_select:start -->", "<!-- bench_select:end -->"
TARGET_RECALL, TARGET_SPEEDUP = 0.95, 5.0


def embed_images(embed_dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of 1,000 real (queries) and 2,000 generated (base) synthetic 64px slices."""
    task = make_synthetic_leak(
        500, 500, 2000, image_size=64, leak_fraction=0.3, distortion=0.5, random_state=seed
    )
    tiny = dict(
        img_size=64, patch_size=16, embed_dim=embed_dim, depth=4, num_heads=max(1, embed_dim // 32)
    )
    emb = ViTLayerFusionEmbedder(
        "vit_tiny_patch16_224",
        pretrained=False,
        model_kwargs=tiny,
        fusion="mean",
        gate_epochs=0,
        batch_size=250,
        random_state=seed,
    )
    E = emb.fit_transform(task.X_pairs)
    return E.real, E.library


def grow_library(base: np.ndarray, size: int, seed: int) -> np.ndarray:
    """``base`` plus variants (mixes with a near neighbour + small noise) up to ``size`` rows."""
    rng = np.random.default_rng(seed)
    unit = _l2_normalize(base)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    near = np.argsort(-sims, axis=1)[:, :10]
    n_var = size - len(base)
    i = np.arange(n_var) % len(base)
    j = near[i, rng.integers(0, near.shape[1], n_var)]
    lam = rng.uniform(0.0, 0.5, (n_var, 1)).astype(np.float32)
    sigma = base.std(axis=0)
    noise = rng.standard_normal((n_var, base.shape[1]), dtype=np.float32)
    variants = (1 - lam) * base[i] + lam * base[j] + 0.1 * sigma * noise
    return np.vstack([base, variants]).astype(np.float32)


def timed_search(sel: FaissCandidateSelector, E: PairEmbeddings, k: int, repeats: int):
    sel.kneighbors(E[:10], k=k)  # warm up (threads, caches)
    best, out = np.inf, None
    for _ in range(repeats):
        t = time.perf_counter()
        out = sel.kneighbors(E, k=k)
        best = min(best, time.perf_counter() - t)
    return best, out


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    k = exact.shape[1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(approx, exact, strict=True)]))


def write_results(text: str) -> None:
    section = f"{START}\n{text}\n{END}"
    if RESULTS.exists():
        old = RESULTS.read_text()
        if START in old and END in old:
            new = re.sub(
                re.escape(START) + ".*?" + re.escape(END),
                lambda _: section,
                old,
                count=1,
                flags=re.S,
            )
        else:
            new = old.rstrip() + "\n\n" + section + "\n"
    else:
        new = (
            "# Candidate selection benchmarks\n\n"
            "Rewritten by the scripts named in each section; edit outside the markers only.\n\n"
            f"{section}\n"
        )
    RESULTS.write_text(new)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library-size", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--hnsw-m", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[40, 100])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[100, 128, 192, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="do not rewrite RESULTS_select.md")
    args = parser.parse_args()

    t0 = time.perf_counter()
    queries, base = embed_images(args.embed_dim, args.seed)
    library = grow_library(base, args.library_size, args.seed)
    E = PairEmbeddings(queries, library, library_key=f"bench-{args.seed}-{args.library_size}")
    t_data = time.perf_counter() - t0
    print(
        f"data: {len(queries)} queries, library {library.shape} (embeddings of synthetic images "
        f"+ variants), made in {t_data:.0f}s"
    )

    flat = FaissCandidateSelector(k=args.k, index="flat")
    t = time.perf_counter()
    flat.fit(E)
    flat_build = time.perf_counter() - t
    t_exact, (exact_sims, exact_idx) = timed_search(flat, E, args.k, args.repeats)
    print(
        f"exact: build {flat_build:.2f}s, search {t_exact:.3f}s; mean cosine of neighbour 1 "
        f"{exact_sims[:, 0].mean():.3f}, of neighbour {args.k} {exact_sims[:, -1].mean():.3f}"
    )

    defaults = FaissCandidateSelector().get_params()
    default_key = (defaults["hnsw_m"], defaults["ef_construction"], defaults["ef_search"])
    rows = []  # (M, efConstruction, efSearch, build s, search s, recall)
    for m in args.hnsw_m:
        for efc in args.ef_construction:
            sel = FaissCandidateSelector(k=args.k, index="hnsw", hnsw_m=m, ef_construction=efc)
            t = time.perf_counter()
            sel.fit(E)
            build = time.perf_counter() - t
            for ef in args.ef_search:
                sel.set_params(ef_search=ef)
                t_hnsw, (_, idx) = timed_search(sel, E, args.k, args.repeats)
                rows.append((m, efc, max(ef, args.k), build, t_hnsw, recall(idx, exact_idx)))
            print(f"  hnsw_m={m} ef_construction={efc}: built in {build:.1f}s", flush=True)

    ok = [r for r in rows if r[5] >= TARGET_RECALL]
    best = min(ok, key=lambda r: r[4]) if ok else max(rows, key=lambda r: r[5])
    hit = bool(ok) and t_exact / best[4] >= TARGET_SPEEDUP

    head = (
        f"| M | efConstruction | efSearch | build (s) | search (s) | recall@{args.k} "
        "| speed-up vs exact |"
    )
    lines = [head, "|---:|---:|---:|---:|---:|---:|---:|"]
    lines.append(f"| exact (flat) | - | - | {flat_build:.2f} | {t_exact:.3f} | 1.000 | 1.0x |")
    for m, efc, ef, build, t_hnsw, rec in rows:
        mark = " **best**" if (m, efc, ef) == best[:3] else ""
        mark += " (defaults)" if (m, efc, ef) == default_key else ""
        lines.append(
            f"| {m} | {efc} | {ef} | {build:.1f} | {t_hnsw:.3f} | {rec:.3f} | "
            f"{t_exact / t_hnsw:.1f}x{mark} |"
        )
    setting = f"hnsw_m={best[0]}, ef_construction={best[1]}, ef_search={best[2]}"
    verdict = (
        f"Fastest setting with recall@{args.k} >= {TARGET_RECALL}: {setting}: recall "
        f"{best[5]:.3f}, {t_exact / best[4]:.1f}x faster than exact search -> target (recall >= "
        f"{TARGET_RECALL} while >= {TARGET_SPEEDUP:g}x faster) " + ("MET." if hit else "NOT MET.")
        if ok
        else f"No setting reached recall {TARGET_RECALL}; best recall {best[5]:.3f} ({setting}) "
        "-> target NOT MET."
    )
    load = os.getloadavg()
    context = (
        f"Library: {library.shape[0]:,} x {library.shape[1]} float32 ({len(base):,} tiny-ViT "
        f"embeddings of synthetic 64px CT-like slices + {library.shape[0] - len(base):,} "
        f"near-neighbour mixes with noise); {len(queries):,} queries (embeddings of real "
        f"synthetic slices); k={args.k}. Search time = best of {args.repeats}, through "
        "`FaissCandidateSelector.kneighbors`; build time is `fit` (index construction).\n\n"
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, FAISS {faiss.__version__} with "
        f"{faiss.omp_get_max_threads()} threads; load average at the end "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} (other work on the machine slows both "
        f"sides). Run: `.venv/bin/python benchmarks/bench_select.py` "
        f"({time.perf_counter() - t0:.0f}s)."
    )
    table = "\n".join(lines)
    print()
    print(table)
    print()
    print(verdict)
    print(context)
    if not args.no_write:
        write_results(
            f"## HNSW vs exact search (`benchmarks/bench_select.py`)\n\n{context}\n\n{table}\n\n"
            f"{verdict}"
        )
        print(f"\nrewrote the bench_select section of {RESULTS}")


if __name__ == "__main__":
    main()
