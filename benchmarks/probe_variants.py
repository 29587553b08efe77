"""Which variants of the pixel relation scores pay? Hypotheses tested for the detector issue.

On the suite's task folders (``bench_quality.py``'s cache), per real image the five per-real
relation scores of :mod:`skfingerprint.relations` (``top1, calib, attribution, margin,
density``), standardised within the split, combined by a logistic regression fitted on train
with a kappa-maximising threshold on its train scores (as ``LinearRelationClassifier``):

- **scale**: pixels at 32 px (the suite's native size), 16 px, 32 + 16 px, 32 + 16 + 8 px;
- **regularisation**: ``C = 1`` (scikit-learn's default) or ``C = 0.1``;
- **union library**: each split's reals scored against the train *and* test libraries (both
  from the same generator here; not the ImageCLEF protocol, which gives each split its own);
- **DOMIAS-style density ratio**: log KDE density of the library minus that of the other
  reals, in a PCA of the library (10 or 30 components), alone and added to the scores;
- **a larger pool of reals**: each split's scores computed against its reals *and* the other
  split's (the test reals at fit time: transductive, not possible through ``fit``/``predict``
  today; an upper bound for a ``reference reals`` option), or only the test split's scores
  against the train reals too (what ``predict`` could do with a reference kept from ``fit``);
- **the untrained ViT's scores**: the library's own pipeline (``make_fingerprint_pipeline(
  "linear", **TINY_VIT)``) with ``relation_spaces=("pixels",)`` (its default offline) or
  ``("pixels", "vit")`` (the 8 scores of the random tiny ViT's space added).

Test kappa and AUC are means over the 3 seeds; the point is which variant moves the numbers by
more than the seed-to-seed spread (about +-0.04 kappa), not the third decimal.

    .venv/bin/python benchmarks/probe_variants.py [--cache-dir DIR]

writes ``benchmarks/RESULTS_variants.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, roc_auc_score

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _test_labels, machine  # noqa: E402
from realgen.task import DEFAULT_ROOT, TASKS  # noqa: E402

from skfingerprint import load_imageclef_gans  # noqa: E402
from skfingerprint import relations as R  # noqa: E402
from skfingerprint.baselines import learn_kappa_threshold  # noqa: E402
from skfingerprint.images import pixel_vectors  # noqa: E402
from skfingerprint.pairs import _l2_normalize  # noqa: E402
from skfingerprint.pipeline import TINY_VIT, make_fingerprint_pipeline  # noqa: E402


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / (x.std(0) + 1e-12)


def per_real(real: np.ndarray, lib: np.ndarray, extra: np.ndarray | None = None) -> np.ndarray:
    """The standardised per-real relation scores of one split in one pixel space; ``extra``
    reals join the pool the scores compare with (their own rows are dropped)."""
    mean = lib.mean(0, keepdims=True)
    pool = real if extra is None else np.concatenate([real, extra])
    ids = np.zeros((len(pool), 1), int)
    raw, _ = R._space_raw(_l2_normalize(pool - mean), _l2_normalize(lib - mean), ids)
    return _z(raw[: len(real)])


def domias(real: np.ndarray, lib: np.ndarray, dim: int) -> np.ndarray:
    """log p_library(r) - log p_other reals(r), Gaussian KDE in a PCA of the library."""
    mean = lib.mean(0, keepdims=True)
    pca = PCA(dim, random_state=0).fit(lib - mean)
    g, r = pca.transform(lib - mean), pca.transform(real - mean)
    scale = g.std(0).mean()
    g, r = g / scale, r / scale
    h = len(g) ** (-1 / (dim + 4)) * np.sqrt(dim) / 2  # Scott's rule, halved

    def log_density(x, ref, exclude_self=False):
        d2 = ((x[:, None, :] - ref[None]) ** 2).sum(-1)
        if exclude_self:
            np.fill_diagonal(d2, np.inf)
        return logsumexp(-d2 / (2 * h * h), axis=1) - np.log(len(ref) - exclude_self)

    return _z((log_density(r, g) - log_density(r, r, True))[:, None])


def evaluate(f_train, y_train, f_test, y_test, C=0.1) -> tuple[float, float]:
    if f_train.shape[1] == 1:
        s_train, s_test = f_train[:, 0], f_test[:, 0]
    else:
        clf = LogisticRegression(C=C, max_iter=2000).fit(f_train, y_train)
        s_train, s_test = clf.decision_function(f_train), clf.decision_function(f_test)
    t, _ = learn_kappa_threshold(s_train, y_train)
    return cohen_kappa_score(y_test, s_test > t), roc_auc_score(y_test, s_test)


def run(folder: Path) -> dict:
    train, test = load_imageclef_gans(folder / "train"), load_imageclef_gans(folder / "test")
    y = _test_labels(folder, test.ids)

    def vectors(pairs, size):
        return pixel_vectors(pairs.real, size), pixel_vectors(pairs.library, size)

    px = {s: vectors(train.X_pairs, s) for s in (32, 16, 8)}
    pxt = {s: vectors(test.X_pairs, s) for s in px}
    scores = {s: (per_real(*px[s]), per_real(*pxt[s])) for s in px}
    out = {"top1 (PixelNN, z)": evaluate(scores[32][0][:, :1], train.y, scores[32][1][:, :1], y)}
    for name, sizes in {"32": [32], "16": [16], "32+16": [32, 16], "32+16+8": [32, 16, 8]}.items():
        f_train = np.concatenate([scores[s][0] for s in sizes], 1)
        f_test = np.concatenate([scores[s][1] for s in sizes], 1)
        for C in (1.0, 0.1):
            out[f"scores {name} px, C={C:g}"] = evaluate(f_train, train.y, f_test, y, C)
    union = np.concatenate([px[32][1], pxt[32][1]])
    u_train, u_test = per_real(px[32][0], union), per_real(pxt[32][0], union)
    out["union library: top1"] = evaluate(u_train[:, :1], train.y, u_test[:, :1], y)
    out["union library: scores 32 px, C=0.1"] = evaluate(u_train, train.y, u_test, y)
    (r_train, g_train), (r_test, g_test) = px[32], pxt[32]
    both = per_real(r_train, g_train, r_test), per_real(r_test, g_test, r_train)
    out["pool: both splits' reals, C=0.1"] = evaluate(both[0], train.y, both[1], y)
    out["pool: test adds the train reals, C=0.1"] = evaluate(scores[32][0], train.y, both[1], y)
    for dim in (10, 30):
        d_train, d_test = domias(*px[32], dim), domias(*pxt[32], dim)
        out[f"DOMIAS KDE, PCA {dim}"] = evaluate(d_train, train.y, d_test, y)
        out[f"scores 32 px + DOMIAS {dim}, C=0.1"] = evaluate(
            np.c_[scores[32][0], d_train], train.y, np.c_[scores[32][1], d_test], y
        )
    for spaces in [("pixels",), ("pixels", "vit")]:
        pipe = make_fingerprint_pipeline(
            "linear", **TINY_VIT, relation_spaces=spaces, random_state=0
        ).fit(train.X_pairs, train.y)
        s_test = pipe.decision_function(test.X_pairs)
        out[f"pipeline linear head, spaces {'+'.join(spaces)}"] = (
            cohen_kappa_score(y, pipe.predict(test.X_pairs)),
            roc_auc_score(y, s_test),
        )
    return out


def probe_main(
    run, doc: str, title: str, script: str, output: Path, argv=None, with_sd: bool = False
) -> int:
    """The command line of a probe: ``run(task_folder) -> {variant: (kappa, auc)}`` on every
    seed of every suite task, the means (and, ``with_sd``, the seed-to-seed sd of kappa) as
    one markdown table in ``output`` (``--output``). ``doc`` is the probe's docstring,
    ``script`` its file name (for the command line written beside the table)."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--output", type=Path, default=output)
    args = parser.parse_args(argv)
    tasks = {}
    for source, generator in TASKS:
        folder = args.cache_dir / "tasks" / f"{source}-{generator}"
        seeds = sorted(folder.iterdir()) if folder.is_dir() else []
        if not seeds:
            raise SystemExit(f"no task folders under {folder}: run bench_quality.py first")
        runs = [run(seed) for seed in seeds]
        tasks[f"{source} / {generator}"] = {
            k: (np.mean([r[k] for r in runs], 0), np.std([r[k][0] for r in runs])) for k in runs[0]
        }
        print(f"{source} / {generator}: done ({len(seeds)} seeds)", flush=True)
    names = list(next(iter(tasks.values())))
    lines = [
        f"# {title} (`benchmarks/{script}`)",
        "",
        "Rewritten by the probe; edits are lost. " + doc.split("\n\n")[1].replace("\n", " "),
        "",
        f"Command: `.venv/bin/python benchmarks/{script} --cache-dir {args.cache_dir}`  ",
        f"Machine: {machine()}",
        "",
        f"Test kappa{' (seed-to-seed sd)' if with_sd else ''} / AUC, mean over 3 seeds:",
        "",
        "| variant | " + " | ".join(tasks) + " |",
        "|:---|" + "---:|" * len(tasks),
    ]
    for name in names:
        cells = []
        for t in tasks:
            (kappa, auc), sd = tasks[t][name]
            cells.append(f"{kappa:+.3f}{f' ({sd:.3f})' if with_sd else ''} / {auc:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    args.output.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.output}")
    return 0


def main(argv=None) -> int:
    return probe_main(
        run,
        __doc__,
        "Relation-score variants",
        "probe_variants.py",
        BENCH / "RESULTS_variants.md",
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
