"""Candidate search at scale: HNSW vs exact (100k vectors), a saved IVF index (1M vectors).

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

**A million vectors, IVF, built once and memory-mapped** (second section). The same recipe grows
the library to ``--million`` (1,000,000) vectors of D = 64.
``FaissCandidateSelector(index=--ivf-index, index_path=...)`` builds the IVF index in ``fit`` and
saves it (build + save time, file size); the default ``"IVF1024,Flat"`` has 1,024 lists (the
``"ivf"`` shorthand would train about 4 sqrt(m) = 4,000 centroids, a longer k-means). Fresh
Python processes then read the file with ``faiss.read_index`` memory-mapped
(``IO_FLAG_MMAP_IFC``) and fully (flags 0): load time and resident memory after loading, after
10 queries and after 1,000 more. A second selector with the same ``index_path`` loads the saved
index in ``fit`` instead of building it, and is searched at several ``nprobe`` (queries/s, best
of ``--repeats``; the index as built, in memory, beside it), with recall@100 against exact
(flat) search of a random sample of ``--recall-sample`` of the queries.

Run (about 4-5 minutes on 2 busy cores; ``--million 0`` skips the second section,
``--skip-hnsw`` the first)::

    .venv/bin/python benchmarks/bench_select.py

It prints tables and rewrites the ``bench_select`` and ``bench_select_ivf`` sections of
``benchmarks/RESULTS_select.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

from skfingerprint import ViTLayerFusionEmbedder
from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.pairs import PairEmbeddings
from skfingerprint.selection import FaissCandidateSelector, _l2_normalize

RESULTS = Path(__file__).with_name("RESULTS_select.md")
SECTION = "bench_select"
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


def write_results(text: str, name: str = SECTION) -> None:
    START, END = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
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


# Runs in a fresh interpreter so that its resident memory is the index's alone.
_LOAD_PROBE = """
import json, sys, time
import faiss, numpy as np, psutil
path, queries, flags_name, nprobe, k = sys.argv[1:6]
proc = psutil.Process()
faiss.omp_set_num_threads(1)
q = np.load(queries)
before = proc.memory_info().rss
t = time.perf_counter()
idx = faiss.read_index(path, getattr(faiss, flags_name) if flags_name != "0" else 0)
load = time.perf_counter() - t
after_load = proc.memory_info().rss
faiss.extract_index_ivf(idx).nprobe = int(nprobe)
idx.search(q[:10], int(k))
after_10 = proc.memory_info().rss
idx.search(q, int(k))
print(json.dumps({"load_s": load, "rss_load": after_load - before,
                  "rss_10": after_10 - before, "rss_search": proc.memory_info().rss - before}))
"""


def probe_load(path: Path, queries: Path, flags: str, nprobe: int, k: int) -> dict:
    """Load time and RSS growth (after load, after searching ``queries``) in a new process."""
    import json

    out = subprocess.run(
        [sys.executable, "-c", _LOAD_PROBE, str(path), str(queries), flags, str(nprobe), str(k)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_million(queries: np.ndarray, base: np.ndarray, args) -> None:
    """IVF over a million vectors: build + save once, load memory-mapped, search, recall."""
    t0 = time.perf_counter()
    library = grow_library(base, args.million, args.seed)
    key = f"bench-million-{args.seed}-{args.million}"
    E = PairEmbeddings(queries, library, library_key=key)
    print(f"\nmillion: library {library.shape} made in {time.perf_counter() - t0:.0f}s", flush=True)

    with tempfile.TemporaryDirectory(prefix="bench_select_") as tmp:
        path = Path(tmp) / "library.ivf.faiss"
        q_path = Path(tmp) / "queries.npy"
        np.save(q_path, _l2_normalize(queries))
        params = dict(k=args.k, index=args.ivf_index, index_path=path, random_state=args.seed)

        t = time.perf_counter()
        built = FaissCandidateSelector(**params).fit(E)
        build = time.perf_counter() - t
        size_mb = path.stat().st_size / 2**20
        print(f"  built and saved {args.ivf_index} in {build:.1f}s ({size_mb:.0f} MiB)", flush=True)

        probe_nprobe = args.nprobe[len(args.nprobe) // 2]
        loads = {
            "memory-mapped (`IO_FLAG_MMAP_IFC`)": probe_load(
                path, q_path, "IO_FLAG_MMAP_IFC", probe_nprobe, args.k
            ),
            "read into memory (flags 0)": probe_load(path, q_path, "0", probe_nprobe, args.k),
        }

        sel = FaissCandidateSelector(**params)
        t = time.perf_counter()
        sel.fit(E)  # finds the saved index: loads (memory-mapped) instead of building
        reuse = time.perf_counter() - t

        sample = np.sort(
            np.random.default_rng(args.seed).choice(len(queries), args.recall_sample, replace=False)
        )
        exact = FaissCandidateSelector(k=args.k, index="flat")
        t = time.perf_counter()
        exact.fit(E)
        exact_build = time.perf_counter() - t
        t_exact, (_, exact_idx) = timed_search(exact, E[sample], args.k, 1)
        t_exact *= len(queries) / len(sample)  # per 1,000 queries, like the IVF rows
        del exact
        rows = []  # (nprobe, search s, recall)
        for nprobe in args.nprobe:
            sel.set_params(nprobe=nprobe)
            t_ivf, (_, idx) = timed_search(sel, E, args.k, args.repeats)
            built.set_params(nprobe=nprobe)
            t_mem, _ = timed_search(built, E, args.k, args.repeats)
            rows.append((nprobe, t_ivf, recall(idx[sample], exact_idx), t_mem))
            print(f"  nprobe={nprobe}: {t_ivf:.3f}s, recall {rows[-1][2]:.3f}", flush=True)
        nlist = faiss.extract_index_ivf(sel.index_).nlist

    n = len(queries)
    lines = [
        f"| search | nprobe | time for {n:,} queries (s) | queries/s | recall@{args.k} "
        "| queries/s, the index as built (in memory) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| exact (flat, {exact_build:.1f}s to build; timed on the {len(sample)} sampled "
        f"queries, scaled) | - | {t_exact:.2f} | {n / t_exact:,.0f} | 1.000 | - |",
    ]
    for nprobe, t_ivf, rec, t_mem in rows:
        lines.append(
            f"| IVF, loaded memory-mapped | {nprobe} | {t_ivf:.3f} | {n / t_ivf:,.0f} | {rec:.3f} "
            f"| {n / t_mem:,.0f} |"
        )
    load_lines = [
        f"| how `faiss.read_index` loads it | load (s) | RSS after load (MiB) "
        f"| after 10 queries (MiB) | after {n:,} more (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for how, r in loads.items():
        load_lines.append(
            f"| {how} | {r['load_s']:.3f} | {r['rss_load'] / 2**20:.0f} "
            f"| {r['rss_10'] / 2**20:.0f} | {r['rss_search'] / 2**20:.0f} |"
        )
    mmap_load = loads["memory-mapped (`IO_FLAG_MMAP_IFC`)"]
    full_load = loads["read into memory (flags 0)"]
    good = [r for r in rows if r[2] >= TARGET_RECALL]
    pick = min(good, key=lambda r: r[1]) if good else max(rows, key=lambda r: r[2])
    verdict = (
        f"Built once in {build:.0f}s ({args.ivf_index}, {nlist} lists, {size_mb:.0f} MiB on disk). "
        f"Memory-mapped, the file loads in {mmap_load['load_s'] * 1000:.0f} ms instead of "
        f"{full_load['load_s']:.2f}s "
        f"({full_load['load_s'] / max(mmap_load['load_s'], 1e-6):.0f}x faster); only the "
        f"inverted lists that searches visit are paged in: {mmap_load['rss_10'] / 2**20:.0f} MiB "
        f"resident after 10 queries instead of {full_load['rss_10'] / 2**20:.0f} MiB, and "
        f"{mmap_load['rss_search'] / 2**20:.0f} MiB (vs {full_load['rss_search'] / 2**20:.0f}) "
        f"once {n:,} queries at nprobe={probe_nprobe} have visited most lists. A second "
        f"`fit` with the same `index_path` took {reuse:.1f}s (load + input checks), "
        f"{build / reuse:.0f}x less than building. "
        + (
            f"Fastest nprobe with recall@{args.k} >= {TARGET_RECALL}: {pick[0]} "
            f"(recall {pick[2]:.3f}, {n / pick[1]:,.0f} queries/s, "
            f"{t_exact / pick[1]:.0f}x exact search)."
            if good
            else f"No nprobe tried reached recall {TARGET_RECALL}; best {pick[2]:.3f} at "
            f"nprobe={pick[0]}."
        )
    )
    context = (
        f"Library: {library.shape[0]:,} x {library.shape[1]} float32 (the 2,000 base "
        f"embeddings above + {library.shape[0] - len(base):,} near-neighbour mixes with noise, "
        f"same recipe); {n:,} queries; k={args.k}. Index: `FaissCandidateSelector(index="
        f"{args.ivf_index!r}, index_path=...)`; recall@{args.k} against exact (`index='flat'`) "
        f"top-{args.k} on a random sample of {len(sample)} of the queries; IVF search time on "
        f"all {n:,}. Load and RSS are measured in a fresh Python process per row "
        f"(RSS growth over the process before loading; the memory-mapped file's pages count "
        f"once touched). Search time = best of {args.repeats}, FAISS with "
        f"{faiss.omp_get_max_threads()} threads; load average at the end "
        f"{os.getloadavg()[0]:.1f} (2 CPUs shared with other work). Section time "
        f"{time.perf_counter() - t0:.0f}s; `--skip-hnsw` runs this section alone."
    )
    text = "\n".join(lines)
    load_text = "\n".join(load_lines)
    print()
    print(load_text)
    print()
    print(text)
    print()
    print(verdict)
    if not args.no_write:
        write_results(
            "## IVF over a million vectors, built once, memory-mapped "
            f"(`benchmarks/bench_select.py`)\n\n{context}\n\n{load_text}\n\n{text}\n\n"
            f"{verdict}",
            name="bench_select_ivf",
        )
        print(f"\nrewrote the bench_select_ivf section of {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library-size", type=int, default=100_000)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--embed-dim", type=int, default=64)
    parser.add_argument("--hnsw-m", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[40, 100])
    parser.add_argument("--ef-search", type=int, nargs="+", default=[100, 128, 192, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--million", type=int, default=1_000_000, help="IVF library size (0: skip that section)"
    )
    parser.add_argument("--ivf-index", default="IVF1024,Flat", help="index of the IVF section")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--recall-sample", type=int, default=200, help="queries searched exactly")
    parser.add_argument("--skip-hnsw", action="store_true", help="only the million-vector part")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="do not rewrite RESULTS_select.md")
    args = parser.parse_args()

    t0 = time.perf_counter()
    queries, base = embed_images(args.embed_dim, args.seed)
    if not args.skip_hnsw:
        bench_hnsw(queries, base, args, t0)
    if args.million:
        bench_million(queries, base, args)
    print(f"\nbench_select.py took {time.perf_counter() - t0:.0f}s")


def bench_hnsw(queries: np.ndarray, base: np.ndarray, args, t0: float) -> None:
    """HNSW (parameter sweep) vs exact search on a library of ``--library-size`` vectors."""
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
