"""Hypothesis probe for the detector issue: do identity-free *relation* scores, combined by a
logistic regression fitted on train, beat the best single score (PixelNN) on the suite?

Pixel space only (32x32 grayscale, centred on the split's library mean, unit length), on the
task folders that ``bench_quality.py`` built (its cache). Per real image r of a split, with R
the split's reals (labels unused) and G its library:

- ``top1``: max cosine to G (what PixelNN thresholds); ``top5``: mean of the 5 best;
- ``real_nn``: cosine to r's nearest *other* real; ``calib = top1 - real_nn``;
- ``attribution``: how many library images have r as their nearest real, times |R| / |G|
  (1 on average, whatever the sizes);
- ``margin``: for r's nearest library image g, cos(g, r) minus cos(g, g's best other real);
- ``density``: 5th-best cosine to G minus 5th-best cosine to the other reals (a k-NN density
  ratio in the spirit of DOMIAS).

Each score is standardised within its split (calibration against the split's other reals and
independence from library size). ``LogReg relations`` fits a logistic regression on the train
split's standardised scores and a kappa-maximising threshold on its train probabilities;
``PixelNN (z)`` is ``top1`` alone through the same standardise-and-threshold path (is it the
combination or the standardisation that pays?).

Run after ``bench_quality.py`` has built the tasks::

    .venv/bin/python benchmarks/probe_relations.py [--cache-dir DIR]

It writes ``benchmarks/RESULTS_relations.md``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import (  # noqa: E402
    _fmt_interval,
    _test_labels,
    kappa_interval,
    machine,
    seed_metrics,
)
from realgen.task import DEFAULT_ROOT, SIZES, TASKS  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

from skfingerprint import load_imageclef_gans  # noqa: E402
from skfingerprint.baselines import learn_kappa_threshold  # noqa: E402
from skfingerprint.images import gray_vectors  # noqa: E402

FEATURES = ("top1", "top5", "real_nn", "calib", "attribution", "margin", "density")


def _unit(images, mean=None) -> tuple[np.ndarray, np.ndarray]:
    v = np.concatenate([gray_vectors(b, 32) for _, b in images.iter_batches(512)])
    mean = v.mean(0) if mean is None else mean
    v = v - mean
    return v / (np.linalg.norm(v, axis=1, keepdims=True) + 1e-8), mean


def relation_scores(pairs) -> np.ndarray:
    """``(n_real, len(FEATURES))`` raw relation scores of one split."""
    lib, mean = _unit(pairs.library)
    real, _ = _unit(pairs.real, mean)
    rg = real @ lib.T  # (n, m)
    rr = real @ real.T
    np.fill_diagonal(rr, -np.inf)
    top = -np.sort(-rg, axis=1)
    top1, top5 = top[:, 0], top[:, :5].mean(1)
    real_nn = rr.max(1)
    owner = rg.argmax(0)  # each library image's nearest real
    attribution = np.bincount(owner, minlength=len(real)) * len(real) / len(lib)
    nearest = rg.argmax(1)
    gr = rg[:, nearest].T  # (n, n): row i = cosines of r_i's nearest library image to all reals
    own = gr[np.arange(len(real)), np.arange(len(real))]
    gr[np.arange(len(real)), np.arange(len(real))] = -np.inf
    margin = own - gr.max(1)
    density = top[:, 4] - -np.sort(-rr, axis=1)[:, 4]
    return np.stack([top1, top5, real_nn, top1 - real_nn, attribution, margin, density], 1)


def _z(x: np.ndarray) -> np.ndarray:
    return (x - x.mean(0)) / (x.std(0) + 1e-12)


def run(folder: Path) -> dict:
    train = load_imageclef_gans(folder / "train")
    test = load_imageclef_gans(folder / "test")
    y = _test_labels(folder, test.ids)
    f_train, f_test = _z(relation_scores(train.X_pairs)), _z(relation_scores(test.X_pairs))
    out = {}

    def threshold_rule(s_train, s_test):
        t, _ = learn_kappa_threshold(s_train, train.y)
        return dict(score=s_test, pred=(s_test > t).astype(int), seconds=0.0)

    out["PixelNN (z)"] = threshold_rule(f_train[:, 0], f_test[:, 0])
    for j, name in enumerate(FEATURES[1:], 1):
        out[f"single: {name}"] = threshold_rule(f_train[:, j], f_test[:, j])
    clf = LogisticRegression(max_iter=1000).fit(f_train, train.y)
    out["LogReg relations"] = threshold_rule(
        clf.decision_function(f_train), clf.decision_function(f_test)
    )
    return {"y": y, "methods": out, "coef": clf.coef_[0]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS_relations.md")
    args = parser.parse_args(argv)
    sections = []
    for source, generator in TASKS:
        from realgen.task import build_task

        runs = []
        for seed in range(args.seeds):
            folder, _ = build_task(source, generator, seed, args.cache_dir, sizes=SIZES, log=None)
            runs.append(run(folder))
        y = np.concatenate([r["y"] for r in runs])
        sid = np.concatenate([np.full(len(r["y"]), i) for i, r in enumerate(runs)])
        names = list(runs[0]["methods"])
        pred = {m: np.concatenate([r["methods"][m]["pred"] for r in runs]) for m in names}
        lines = [
            f"## {source} / {generator}",
            "| method | kappa [95% CI] | minus PixelNN (z) [95% CI] | AUC | TPR@1%FPR |",
            "|:---|---:|---:|---:|---:|",
        ]
        for m in names:
            per = [seed_metrics(r["y"], r["methods"][m]) for r in runs]
            k = kappa_interval(y, pred[m], sid, 2000)
            d = (
                "reference"
                if m == "PixelNN (z)"
                else _fmt_interval(kappa_interval(y, pred[m], sid, 2000, pred["PixelNN (z)"]))
            )
            auc = np.mean([p["auc"] for p in per])
            tpr1 = np.mean([p["tpr1"] for p in per])
            lines.append(f"| {m} | {_fmt_interval(k)} | {d} | {auc:.3f} | {tpr1:.3f} |")
        coef = np.mean([r["coef"] for r in runs], 0)
        lines.append(
            "\nLogReg coefficients (standardised scores, mean over seeds): "
            + ", ".join(f"{f} {c:+.2f}" for f, c in zip(FEATURES, coef, strict=True))
        )
        sections.append("\n".join(lines))
        print(sections[-1], flush=True)
    text = "\n\n".join(
        [
            "# Relation scores probe (`benchmarks/probe_relations.py`)",
            "Rewritten by the probe; edits are lost. "
            + __doc__.split("\n\n")[0].replace("\n", " "),
            "Command: `.venv/bin/python benchmarks/probe_relations.py"
            + "".join(f" {a}" for a in (sys.argv[1:] if argv is None else argv))
            + f"`  \nMachine: {machine()}",
            *sections,
        ]
    )
    args.output.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
