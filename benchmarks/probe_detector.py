"""Which new relation scores pay? Hypotheses for the detector issue, with paired intervals.

On the suite's task folders (``bench_quality.py``'s cache), each variant adds scores to the
default pipeline's pixel relation scores (the best candidate's ``cos, owner, owner_margin`` and
the five per-real scores of :mod:`skfingerprint.relations`, 32 px, each standardised within its
split), fitted like ``LinearRelationClassifier`` (logistic regression, ``C=0.1``, one
kappa-maximising threshold on the train scores). Hypotheses, fixed before the run:

- **reverse k-NN counts** (``rknn``): attribution counts, for each real image, the library
  images whose nearest real it is, a noisy count of about 1. Counting the library images that
  have it among their ``k`` nearest reals (k = 3, 10; times ``n / (m k)``, so 1 on average
  whatever the sizes) estimates the same thing with less noise.
- **shift-tolerant similarity** (``shift``): a generator reproduces a training image's layout
  but rarely pixel-aligned; the best cosine over the real image shifted by up to 1 pixel (9
  shifts), and that minus the same for its nearest other real (as ``calib``).
- **density at several scales** (``density``): the ``q |G|``-th best library cosine minus the
  ``q |R|``-th best real cosine for q = 1/100 and 1/50, beside the default's 1/200.
- **all three** (``all``).
- **the threshold** (added after seeing two seeds of fashion / ddpm, where the kappa-maximising
  threshold learned on the 200 training scores marked 77% of the balanced test split "used"):
  on weak signals the kappa-maximising cut of 200 scores is a noisy estimate that drifts to the
  extremes. ``prior`` cuts instead at the training scores' quantile that marks the training
  split's used fraction (scores are standardised within each split, so the same fraction is
  marked on a split whose scores look alike). It assumes the test split's used fraction is
  near the training split's, so it is also measured on test splits thinned to 25% used (4
  draws per seed); the PixelNN rows show how much of a gain is the threshold's alone.

A variant is kept only if its paired difference to the default is above 0 on the pooled
tasks' interval and not below 0 on any task (a difference inside its interval is no result).

**Confirmation on fresh seeds** (fixed after the first run on seeds 0-2, before any run on
other seeds): of the eleven variants, only ``+ density, prior`` passed the rule, and it was
chosen among eleven after a look, so its interval is optimistic. It is adopted only if it
passes the same rule again on seeds that no one has looked at (``--seeds 3 4 5``: new real
images, splits and generators); the other rows of that run are reported but decide nothing.

    .venv/bin/python benchmarks/probe_detector.py [--cache-dir DIR] [--seeds N [N ...]]

The confirmation: ``--seeds 3 4 5 --output benchmarks/RESULTS_detector_seeds345.md`` (it
passed: +0.063 [+0.046, +0.078] over all tasks).

writes ``benchmarks/RESULTS_detector.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, roc_auc_score

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _test_labels, kappa_interval, machine, resolve_tasks  # noqa: E402
from realgen.task import DEFAULT_ROOT, TASKS, build_task  # noqa: E402

from skfingerprint import load_imageclef_gans  # noqa: E402
from skfingerprint import relations as R  # noqa: E402
from skfingerprint.baselines import learn_kappa_threshold, prior_threshold  # noqa: E402
from skfingerprint.images import pixel_vectors  # noqa: E402
from skfingerprint.pairs import _l2_normalize  # noqa: E402

SIZE = 32
N_RESAMPLES = 2000


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / np.where(x.std(0) > 1e-12, x.std(0), 1.0)


def base_scores(real: np.ndarray, lib: np.ndarray) -> np.ndarray:
    """The default's 8 scores of the best candidate (unit, library-centred vectors)."""
    _, ids = R.top_k(real, lib, 1)
    per_real, per_cand = R._space_raw(real, lib, ids)
    return np.c_[per_cand[:, 0, :], per_real]


def rknn_scores(real: np.ndarray, lib: np.ndarray, ks=(3, 10)) -> np.ndarray:
    n, m = len(real), len(lib)
    out = []
    for k in ks:
        _, nearest_reals = R.top_k(lib, real, k)  # each library image's k nearest reals
        out.append(np.bincount(nearest_reals.ravel(), minlength=n) * n / (m * k))
    return np.stack(out, 1)


def _shifted(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``(n, s, s)`` images moved by ``dy`` rows and ``dx`` columns, the edges repeated."""
    s = images.shape[1]
    m = max(abs(dy), abs(dx))
    padded = np.pad(images, ((0, 0), (m, m), (m, m)), mode="edge")
    return padded[:, m - dy : m - dy + s, m - dx : m - dx + s]


def shift_scores(
    real_px: np.ndarray, lib_px: np.ndarray, size: int = SIZE, reach: int = 1
) -> np.ndarray:
    """``(n, 2)``: the best cosine to the library and that minus the best to another real,
    each over every shift of the real image within ``reach`` pixels (centred on the
    library's mean, unit length)."""
    mean = lib_px.mean(0, keepdims=True)
    lib = _l2_normalize(lib_px - mean)
    real_unit = _l2_normalize(real_px - mean)
    real3 = real_px.reshape(-1, size, size)
    best = np.full(len(real_px), -np.inf)
    best_real = np.full(len(real_px), -np.inf)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            v = _l2_normalize(_shifted(real3, dy, dx).reshape(len(real3), -1) - mean)
            best = np.maximum(best, (v @ lib.T).max(1))
            rr = v @ real_unit.T
            np.fill_diagonal(rr, -np.inf)
            best_real = np.maximum(best_real, rr.max(1))
    return np.stack([best, best - best_real], 1)


def density_scores(real: np.ndarray, lib: np.ndarray, qs=(1 / 100, 1 / 50)) -> np.ndarray:
    n, m = len(real), len(lib)
    s_lib = real @ lib.T
    s_real = real @ real.T
    np.fill_diagonal(s_real, -np.inf)
    out = []
    for q in qs:
        k_lib, k_real = max(1, round(q * m)), max(1, round(q * (n - 1)))
        out.append(np.sort(s_lib, 1)[:, -k_lib] - np.sort(s_real, 1)[:, -k_real])
    return np.stack(out, 1)


def split_features(pairs) -> dict:
    real_px = pixel_vectors(pairs.real, SIZE)
    lib_px = pixel_vectors(pairs.library, SIZE)
    mean = lib_px.mean(0, keepdims=True)
    real, lib = _l2_normalize(real_px - mean), _l2_normalize(lib_px - mean)
    return {
        "base": base_scores(real, lib),
        "rknn": rknn_scores(real, lib),
        "shift": shift_scores(real_px, lib_px),
        "density": density_scores(real, lib),
    }


VARIANTS = {
    "default (8 pixel scores)": ["base"],
    "+ rknn": ["base", "rknn"],
    "+ shift": ["base", "shift"],
    "+ density": ["base", "density"],
    "+ all three": ["base", "rknn", "shift", "density"],
    "top1 alone (PixelNN-like)": ["top1"],
}
RULES = ("kappa", "prior")
THIN_USED, THIN_DRAWS = 0.25, 4


def fit_score(f_train, y_train, f_test, rule: str) -> tuple[np.ndarray, np.ndarray]:
    clf = LogisticRegression(C=0.1, max_iter=2000).fit(_z(f_train), y_train)
    s_train, s_test = clf.decision_function(_z(f_train)), clf.decision_function(_z(f_test))
    if rule == "kappa":
        t, _ = learn_kappa_threshold(s_train, y_train)
    else:  # the training scores' quantile that marks the training split's used fraction
        t = prior_threshold(s_train, y_train)
    return s_test, (s_test > t).astype(int)


def thinned_kappa(y: np.ndarray, pred: np.ndarray, seed: int) -> float:
    """Mean kappa over draws of the test split thinned to THIN_USED used images."""
    rng = np.random.default_rng(seed)
    used, not_used = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n_used = round(THIN_USED / (1 - THIN_USED) * len(not_used))
    kappas = []
    for _ in range(THIN_DRAWS):
        keep = np.r_[rng.choice(used, n_used, replace=False), not_used]
        kappas.append(cohen_kappa_score(y[keep], pred[keep]))
    return float(np.mean(kappas))


def run(folder: Path) -> dict:
    train, test = load_imageclef_gans(folder / "train"), load_imageclef_gans(folder / "test")
    y = _test_labels(folder, test.ids)
    f_train, f_test = split_features(train.X_pairs), split_features(test.X_pairs)
    for f in (f_train, f_test):
        f["top1"] = f["base"][:, 3:4]
    out = {"y": y}
    for name, parts in VARIANTS.items():
        for rule in RULES:
            out[f"{name}, {rule}"] = fit_score(
                np.concatenate([f_train[p] for p in parts], 1),
                train.y,
                np.concatenate([f_test[p] for p in parts], 1),
                rule,
            )
    return out


def main(argv=None, *, run=run, methods=None, doc=__doc__, script="probe_detector.py",
         default_output=BENCH / "RESULTS_detector.md", legend=None,
         tasks=TASKS, footer=None) -> int:  # fmt: skip
    """Run ``run`` on every task's seeds and write the comparison of ``methods`` (the first is
    the reference). Other probes call it with their own ``run``, ``methods``, ``doc`` and
    ``legend`` (the text that explains the table's rows), ``tasks`` (default the suite's), and
    ``footer``, a function called after the runs whose text ends the file."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--output", type=Path, default=default_output)
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None,
        help="task seeds to use, trained first if not cached (default: every cached seed)",
    )  # fmt: skip
    parser.add_argument(
        "--reference", default=None,
        help="the row every other is paired with (default: the probe's first)",
    )  # fmt: skip
    parser.add_argument(
        "--tasks", nargs="+", default=None,
        help="source/generator names to run instead of the probe's own tasks",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.tasks is not None:
        try:
            tasks = resolve_tasks(args.tasks)
        except ValueError as e:
            parser.error(str(e))
    start = time.perf_counter()
    methods = methods or [f"{name}, {rule}" for name in VARIANTS for rule in RULES]
    if args.reference is not None:
        if args.reference not in methods:
            raise SystemExit(f"--reference {args.reference!r} is not one of {methods}")
        methods = [args.reference] + [m for m in methods if m != args.reference]
    reference = methods[0]
    rows = {name: [] for name in methods}
    thin = {name: [] for name in methods}
    pooled = {name: ([], [], [], []) for name in methods}  # y, pred, reference pred, seed id
    names = []
    for t, (source, generator) in enumerate(tasks):
        folder = args.cache_dir / "tasks" / f"{source}-{generator}"
        if args.seeds is not None:  # the suite's sizes and generators, as bench_quality.py
            seeds = [build_task(source, generator, s, args.cache_dir)[0] for s in args.seeds]
        else:
            seeds = sorted(folder.iterdir()) if folder.is_dir() else []
        if not seeds:
            raise SystemExit(f"no task folders under {folder}: run bench_quality.py first")
        runs = [run(seed) for seed in seeds]
        names.append(f"{source} / {generator}")
        y = np.concatenate([r["y"] for r in runs])
        sid = np.concatenate([np.full(len(r["y"]), t * 100 + i) for i, r in enumerate(runs)])
        ref = np.concatenate([r[reference][1] for r in runs])
        for name in methods:
            thin[name].append(
                np.mean([thinned_kappa(r["y"], r[name][1], i) for i, r in enumerate(runs)])
            )
            pred = np.concatenate([r[name][1] for r in runs])
            kappa = kappa_interval(y, pred, sid, N_RESAMPLES)
            diff = kappa_interval(y, pred, sid, N_RESAMPLES, reference=ref)
            auc = np.mean([roc_auc_score(r["y"], r[name][0]) for r in runs])
            rows[name].append((kappa, diff, auc))
            for store, value in zip(pooled[name], (y, pred, ref, sid), strict=True):
                store.append(value)
        print(f"{names[-1]}: done ({len(seeds)} seeds)", flush=True)
    fmt = "{:+.3f} [{:+.3f}, {:+.3f}]".format
    extra_args = "" if args.seeds is None else " --seeds " + " ".join(map(str, args.seeds))
    if args.tasks is not None:
        extra_args += " --tasks " + " ".join(args.tasks)
    if args.reference is not None:
        extra_args += f" --reference '{args.reference}'"
    if args.output != default_output:
        extra_args += f" --output {args.output}"
    verdicts = []
    lines = [
        f"# Detector hypotheses (`benchmarks/{script}`)",
        "",
        "Rewritten by the probe; edits are lost. " + doc.split("\n\n")[1].replace("\n", " "),
        "",
        f"Command: `.venv/bin/python benchmarks/{script} --cache-dir "
        f"{args.cache_dir}{extra_args}`  ",
        f"Machine: {machine()}; {time.perf_counter() - start:.0f} s",
        "",
        "Test kappa [paired bootstrap 95% CI over the test images of all seeds] / AUC, mean over "
        "seeds; second line of each variant: minus the reference (the first row), and the pooled "
        "column: the mean over tasks of that difference, its interval resampling every task's "
        "images. "
        + (
            legend
            or "Each variant's features are fitted twice: ``kappa`` (the kappa-maximising "
            "threshold on the training scores, as today) and ``prior`` (the quantile of the "
            "training scores that marks the training split's used fraction)."
        )
        + f" Last table: mean test kappa on test splits thinned to {THIN_USED:.0%} used "
        f"({THIN_DRAWS} draws per seed), where ``prior`` assumes wrong:",
        "",
        "| variant | " + " | ".join(names) + " | all tasks |",
        "|:---|" + "---:|" * (len(names) + 1),
    ]
    for name in methods:
        y, pred, ref, sid = (np.concatenate(v) for v in pooled[name])
        all_diff = kappa_interval(y, pred, sid, N_RESAMPLES, reference=ref)
        all_kappa = kappa_interval(y, pred, sid, N_RESAMPLES)
        cells = [f"{fmt(*k)} / {a:.3f}" for k, _, a in rows[name]]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {fmt(*all_kappa)} |")
        if name != reference:
            cells = [fmt(*d) for _, d, _ in rows[name]]
            kept = all_diff[1] > 0 and all(d[2] >= 0 for _, d, _ in rows[name])
            verdicts.append(
                f"- {name}: {'KEPT' if kept else 'dropped'} (all tasks {fmt(*all_diff)})"
            )
            cells = " | ".join(cells)
            lines.append(f"| &nbsp; minus reference | {cells} | {fmt(*all_diff)} |")
    lines += [
        "",
        "Verdict by the rule fixed before the run (kept: the all-tasks interval of the "
        "difference above 0 and no task's interval below 0). With this many variants one "
        "all-tasks interval clear of 0 is no proof by itself:",
        "",
        *verdicts,
        "",
        "| variant | " + " | ".join(names) + " |",
        "|:---|" + "---:|" * len(names),
    ]
    for name in methods:
        lines.append(f"| {name} | " + " | ".join(f"{k:+.3f}" for k in thin[name]) + " |")
    args.output.write_text("\n".join(lines) + "\n" + (footer() if footer else ""))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
