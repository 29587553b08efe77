"""The membership benchmark suite: several trained generators, several image sources, intervals.

Each task of ``realgen.task.TASKS`` is a real image source and a generator really trained on CPU
on the *used* images only (``benchmarks/realgen``), written as ImageCLEF folders: 100 + 100
labelled train reals and a train library of 1,200 samples; 400 + 400 unlabelled test reals and
a test library of 800 other samples; whole groups (patients, products, characters) on one
side. Every method is fitted on the train folder only and scored once on the test folder:

- ``PixelNN``: one kappa-maximising threshold on the best pixel cosine (GAN-Leaks' full
  black-box attack).
- ``PixelNN, prior cut``: the same score cut where it marks the training split's used fraction
  (the default pipeline's rule): how much of a gain is the threshold's alone.
- ``MaxSim+ViT``: one kappa-maximising threshold on the best cosine of the embedder (the paper
  pipeline's fitted embedder and selector).
- ``Paper: CANet+ViT``: the paper's configuration on the offline tiny ViT (its layers 6/12/18
  of 24 mapped to depth 4, k=100, min_similarity 0.6, P(used) >= 0.6). This row and
  ``MaxSim+ViT`` read the ViT's embeddings, so their embedder runs in float32: with
  ``dtype="auto"`` the precision was picked once per worker process and weights (the tiny ViT
  of a seed has the same weights on every task), and the rows moved with the order in which
  tasks reached a worker (rerunning seeds 51-53 moved them by up to 0.018 kappa on kanji and
  the DDPM, every other row identical). Pinned after look 14 (seeds 54-56); those looks on CPUs
  with native bf16 ran them in whichever precision their worker picked. The other rows never
  read the tiny ViT's embeddings (their relation scores are the pixels').
- ``CANet on relations``: ``make_fingerprint_pipeline("canet")``: CANet over each real image's
  candidates, on the relation scores (``features="relations"``) of the same tiny ViT.
- ``Default pipeline``: ``make_fingerprint_pipeline()``'s defaults on the same tiny ViT: the
  linear head on relation scores in pixel space, plain and within-mode whitened, with the span
  scores in the plain space (the untrained ViT's own scores are left out), cut at the training
  split's used fraction.
- ``PixelNN, prior cut, pooled`` and ``Default, pooled splits``: the same two with both
  splits loaded ``pool_with`` the other (one generator made both libraries, as in
  ImageCLEFmed GANs 2025): each judged against both libraries, the default among both splits'
  reals too (``X_pairs.reference``). An option of the data, not the default: the verdict
  compares it with the pooled baseline, beside the default's own verdict.
- ``Control: real-only LogReg``: a classifier of the real image alone that never sees a
  generated image; its interval must contain 0, or the task leaks labels. It needs no
  generator, so besides the task's seeds it also runs on the deals (real images and split) of
  12 seeds per source, for the same cost as a few seconds: ``Control, 12 deals``, whose
  interval is the one the verdict judges (three deals cannot tell a leaking split from chance:
  its spread over deals is larger than the test images' bootstrap sees).

Metrics on the test split, each seed retraining the generator: kappa at the train-chosen
threshold (the task's metric), ROC AUC, TPR at 1% and 10% FPR (Carlini et al. 2022), means over
seeds. Intervals: a paired bootstrap over test images of all seeds together
(``scipy.stats.bootstrap``, percentile, 95%) of each method's mean kappa and of its kappa minus
the best baseline's (the best of the two PixelNN rows, MaxSim+ViT and Paper on that task).

Run::

    make bench-quality                                   # = the line below
    nice -n 19 .venv/bin/python benchmarks/bench_quality.py
    .venv/bin/python benchmarks/bench_quality.py --quick --output /tmp/q.md   # smoke run

Generators and task folders are cached under ``benchmarks/.cache/realgen`` (a fresh clone
trains them; reruns reuse them). Generators train two at a time (one thread each); methods run
two (task, seed) pairs at a time.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
# joblib's worker processes import realgen too
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(BENCH), os.environ.get("PYTHONPATH")]))

from joblib import Parallel, delayed  # noqa: E402
from PIL import Image  # noqa: E402
from realgen.sources import load_source  # noqa: E402
from realgen.task import (  # noqa: E402
    DEFAULT_ROOT,
    GENERATORS,
    LARGE_TASKS,
    QUICK_GENERATORS,
    QUICK_SIZES,
    SIZES,
    TASKS,
    UNSEEN_TASKS,
    _deal,
    build_task,
)
from scipy.stats import bootstrap  # noqa: E402
from sklearn.metrics import cohen_kappa_score, roc_auc_score, roc_curve  # noqa: E402

from skfingerprint.metrics import tpr_at_fpr  # noqa: E402

RESULTS = BENCH / "RESULTS.md"
FIGURES = BENCH / "figures"
#: The paper's layers 6/12/18 of a 24-block ViT, mapped to TINY_VIT's 4 blocks.
PAPER_LAYERS = (1, 2, 3)
# "PixelNN, prior cut": the default pipeline's cut on PixelNN's score, to show how much of
# a gain is the threshold's alone.
BASELINES = ("PixelNN", "PixelNN, prior cut", "MaxSim+ViT", "Paper: CANet+ViT")
CONTROL = "Control: real-only LogReg"
CANET = "CANet on relations"
POOLED_BASELINE, POOLED = "PixelNN, prior cut, pooled", "Default, pooled splits"
METHODS = (*BASELINES, CANET, "Default pipeline", POOLED_BASELINE, POOLED, CONTROL)
FULL = dict(seeds=3, k=100, canet={}, embed={}, n_resamples=2000, control_deals=12)
QUICK = dict(
    seeds=1, k=20, canet=dict(max_epochs=5), embed=dict(gate_epochs=30), n_resamples=200,
    control_deals=2,
)  # fmt: skip
CONTROL_CELLS = ("n_train_used", "n_train_not_used", "n_test_used", "n_test_not_used")
#: One line per task on what its first seed's sample grid (``figures/samples_<task>.png``) shows,
#: written by a person who looked at it; the run prints it beside the grid's path.
GRID_NOTES = {
    "ct-phantom / dcgan-long": "Looked at: CT-like ovals with both lungs, spine and table, "
    "grainier than the reals and the table line fainter; each close in layout to its nearest "
    "used slice, none a copy.",
    "ct-phantom / dcgan-short": "Looked at: the same anatomy, blurrier and noisier than after "
    "400 epochs, some samples speckled; none a copy of its nearest used slice.",
    "fashion / dcgan-long": "Looked at: recognisable garments and shoes (coats, boots, shirts), "
    "blotchy and torn in places; the nearest used image has the same kind and outline, never "
    "the same item.",
    "kanji / dcgan-long": "Looked at: kanji-like glyphs with plausible radicals and strokes on "
    "a speckled background; none is its nearest used character or any real character.",
    "fashion / ddpm": "Looked at: clothing, bags and boots, grainy and over-bright in places, "
    "some shapeless; the nearest used image shares the silhouette, not the item.",
    "fashion / dcgan-short": "Looked at: garments, trousers, shoes and boots after 100 epochs, "
    "over-bright, torn and smeared, some no more than a blot; the nearest used image has the "
    "kind and rough outline, never the item.",
    "kanji / dcgan-short": "Looked at: glyph-like blends of strokes and radicals, broken and "
    "speckled; the nearest used character often shares a radical or the layout, none is a copy.",
    "ct-phantom / ddpm": "Looked at: CT-like ovals with both lungs, spine and table, most smooth, "
    "a few buried in speckle (25 sampling steps); the smooth ones close in layout and "
    "brightness to their nearest used slice.",
    "kanji / ddpm": "Looked at: sharp kanji-like glyphs with plausible radicals, some broken or "
    "speckled; the nearest used character shares a radical or the layout, none is a copy.",
}


#: Relative training cost of each generator (for the order in which workers take them).
_COST = {"ddpm": 3, "dcgan-long": 2, "dcgan-short": 1}


def _task_name(source: str, generator: str) -> str:
    return f"{source} / {generator}"


def _test_labels(folder: Path, ids: list[str]) -> np.ndarray:
    with open(folder / "test_labels.csv", newline="") as f:
        labels = {row[0]: int(row[1]) for row in csv.reader(f)}
    return np.array([labels[i] for i in ids])


def resolve_tasks(names: list[str] | None) -> list[tuple[str, str]]:
    """The ``(source, generator)`` pairs named ``source/generator`` (None: the suite's
    :data:`TASKS`); the larger :data:`LARGE_TASKS` and the :data:`UNSEEN_TASKS` run only when
    named."""
    if names is None:
        return list(TASKS)
    known = {"/".join(t): t for t in TASKS + LARGE_TASKS + UNSEEN_TASKS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; known: {', '.join(known)}")
    return [known[name] for name in names]


def _prepare(source, generator, seed, root, quick) -> tuple[Path, dict]:
    """Train (or reuse) one task's generator and write its folders (a worker process)."""
    return build_task(
        source,
        generator,
        seed,
        root,
        sizes=QUICK_SIZES if quick else SIZES,
        generator_params=(QUICK_GENERATORS if quick else GENERATORS)[generator],
        log=None,
    )


def run_methods(folder: Path, seed: int, cfg: dict) -> dict:
    """Fit every method on ``folder``'s train split; test scores, labels and seconds of each.

    Runs in a worker process with one torch thread, so results do not depend on how many
    workers run."""
    import torch

    from skfingerprint import load_imageclef_gans
    from skfingerprint.baselines import MaxSimilarityClassifier, PixelNearestNeighbor
    from skfingerprint.images import pixel_vectors
    from skfingerprint.pipeline import TINY_CANET, TINY_VIT, make_fingerprint_pipeline

    torch.set_num_threads(1)
    train = load_imageclef_gans(folder / "train")
    test = load_imageclef_gans(folder / "test")
    y_test = _test_labels(folder, test.ids)
    canet = {**TINY_CANET, **cfg["canet"]}
    embed = cfg["embed"] or None
    out = {}

    def record(name, start, score, pred):
        out[name] = dict(
            score=np.asarray(score, dtype=np.float64),
            pred=np.asarray(pred, dtype=int),
            seconds=time.perf_counter() - start,
        )

    t = time.perf_counter()
    pixel = PixelNearestNeighbor(image_size=32).fit(train.X_pairs, train.y)
    record("PixelNN", t, pixel.score_samples(test.X_pairs), pixel.predict(test.X_pairs))

    t = time.perf_counter()
    pixel = PixelNearestNeighbor(image_size=32, threshold="prior").fit(train.X_pairs, train.y)
    record("PixelNN, prior cut", t, pixel.score_samples(test.X_pairs), pixel.predict(test.X_pairs))

    t = time.perf_counter()
    paper = make_fingerprint_pipeline(
        "canet", **TINY_VIT, features="paper", layers=PAPER_LAYERS, k=cfg["k"], min_similarity=0.6,
        threshold=0.6, random_state=seed, embedder_params={**(embed or {}), "dtype": "float32"},
        **canet,
    ).fit(train.X_pairs, train.y)  # fmt: skip
    record(
        "Paper: CANet+ViT", t, paper.predict_proba(test.X_pairs)[:, 1], paper.predict(test.X_pairs)
    )

    t = time.perf_counter()
    test_candidates = paper[:-1].transform(test.X_pairs)
    maxsim = MaxSimilarityClassifier().fit(paper[:-1].transform(train.X_pairs), train.y)
    record("MaxSim+ViT", t, maxsim.score_samples(test_candidates), maxsim.predict(test_candidates))

    t = time.perf_counter()
    relations = make_fingerprint_pipeline(
        "canet", **TINY_VIT, k=cfg["k"], random_state=seed, embedder_params=embed, **canet
    ).fit(train.X_pairs, train.y)
    record(CANET, t, relations.predict_proba(test.X_pairs)[:, 1], relations.predict(test.X_pairs))

    t = time.perf_counter()
    default = make_fingerprint_pipeline(
        **TINY_VIT, k=cfg["k"], random_state=seed, embedder_params=embed
    ).fit(train.X_pairs, train.y)
    record(
        "Default pipeline",
        t,
        default.predict_proba(test.X_pairs)[:, 1],
        default.predict(test.X_pairs),
    )

    # both splits judged against both libraries and among both splits' reals
    pooled_train = load_imageclef_gans(folder / "train", pool_with=folder / "test")
    pooled_test = load_imageclef_gans(folder / "test", pool_with=folder / "train")
    t = time.perf_counter()
    pixel = PixelNearestNeighbor(image_size=32, threshold="prior")
    pixel.fit(pooled_train.X_pairs, pooled_train.y)
    record(
        POOLED_BASELINE,
        t,
        pixel.score_samples(pooled_test.X_pairs),
        pixel.predict(pooled_test.X_pairs),
    )
    t = time.perf_counter()
    pooled = make_fingerprint_pipeline(
        **TINY_VIT, k=cfg["k"], random_state=seed, embedder_params=embed
    ).fit(pooled_train.X_pairs, pooled_train.y)
    record(
        POOLED,
        t,
        pooled.predict_proba(pooled_test.X_pairs)[:, 1],
        pooled.predict(pooled_test.X_pairs),
    )

    t = time.perf_counter()
    score, pred = real_only_control(
        pixel_vectors(train.X_pairs.real, 32), train.y, pixel_vectors(test.X_pairs.real, 32), seed
    )
    record(CONTROL, t, score, pred)
    return {"y": y_test, "methods": out}


def real_only_control(train_pixels, y_train, test_pixels, seed) -> tuple[np.ndarray, np.ndarray]:
    """The control: a logistic regression on pixel PCA of the real image alone; test
    P(used) and labels. The PCA is fitted on the train reals only: fitted on the library too,
    it saw the generator's distribution (a first run gave the control kappa +0.045 [+0.004,
    +0.085] on fashion / ddpm that way)."""
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression

    pca = PCA(min(64, len(train_pixels) - 1), random_state=seed).fit(train_pixels)
    control = LogisticRegression(max_iter=2000).fit(pca.transform(train_pixels), y_train)
    x_test = pca.transform(test_pixels)
    return control.predict_proba(x_test)[:, 1], control.predict(x_test)


def control_on_deal(source: str, seed: int, sizes: dict) -> dict:
    """The control on ``source``'s deal of ``seed`` (the real images and split a task of that
    seed uses), without a generator: test labels, P(used) and predictions."""
    from skfingerprint.images import gray_vectors

    real = load_source(source, sum(sizes[c] for c in CONTROL_CELLS), seed=seed)
    cells = _deal(real.group, [sizes[c] for c in CONTROL_CELLS], np.random.default_rng(seed))
    x = gray_vectors(list(real.images[..., None].astype(np.float32) / 255), 32)
    train, test = np.r_[cells[0], cells[1]], np.r_[cells[2], cells[3]]
    y_train = np.r_[np.ones(len(cells[0])), np.zeros(len(cells[1]))]
    y_test = np.r_[np.ones(len(cells[2])), np.zeros(len(cells[3]))].astype(int)
    score, pred = real_only_control(x[train], y_train, x[test], seed)
    return dict(y=y_test, score=score, pred=pred)


def control_deals_interval(deals: list[dict], n_resamples: int) -> tuple[float, float, float]:
    """Mean kappa of the control over deals and its bootstrap 95% interval over their images."""
    y = np.concatenate([d["y"] for d in deals])
    pred = np.concatenate([d["pred"] for d in deals])
    seed_id = np.concatenate([np.full(len(d["y"]), i) for i, d in enumerate(deals)])
    return kappa_interval(y, pred, seed_id, n_resamples)


def seed_metrics(y: np.ndarray, m: dict) -> dict:
    return dict(
        kappa=cohen_kappa_score(y, m["pred"]),
        auc=roc_auc_score(y, m["score"]),
        tpr1=tpr_at_fpr(y, m["score"], 0.01),
        tpr10=tpr_at_fpr(y, m["score"], 0.10),
        seconds=m["seconds"],
    )


def mean_kappa(y, pred, seed_id) -> np.ndarray:
    """Cohen's kappa of 0/1 predictions within each seed, averaged over seeds; vectorised over
    leading axes (bootstrap resamples). Equal to ``cohen_kappa_score`` per seed (tested)."""
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    kappas = []
    for s in np.unique(seed_id):
        mask = np.asarray(seed_id == s, dtype=np.float64)
        n = mask.sum(-1)
        p_y, p_pred = (y * mask).sum(-1) / n, (pred * mask).sum(-1) / n
        observed = ((y == pred) * mask).sum(-1) / n
        chance = p_y * p_pred + (1 - p_y) * (1 - p_pred)
        kappas.append((observed - chance) / np.where(chance < 1, 1 - chance, np.inf))
    return np.mean(kappas, axis=0)


def kappa_interval(y, pred, seed_id, n_resamples, reference=None) -> tuple[float, float, float]:
    """Mean over seeds of test kappa (minus ``reference``'s, if given) and its paired
    bootstrap 95% interval over the test images of all seeds (percentile method)."""

    def statistic(y, pred, ref, sid, axis=-1):
        value = mean_kappa(y, pred, sid)
        return value - mean_kappa(y, ref, sid) if reference is not None else value

    data = (y, pred, pred if reference is None else reference, seed_id)
    res = bootstrap(
        data, statistic, paired=True, vectorized=True, n_resamples=n_resamples,
        confidence_level=0.95, method="percentile", random_state=0,
    )  # fmt: skip
    ci = res.confidence_interval
    return float(statistic(*data)), float(ci.low), float(ci.high)


def machine() -> str:
    cpu, flags = "unknown CPU", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu == "unknown CPU":
                    cpu = line.split(":", 1)[1].strip()
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    import torch

    simd = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return (
        f"{platform.machine()}, {cpu} ({' '.join(simd) or 'no AVX2'}), {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def _fmt_interval(v: tuple[float, float, float]) -> str:
    return f"{v[0]:+.3f} [{v[1]:+.3f}, {v[2]:+.3f}]"


def summarise_task(name: str, runs: list[dict], n_resamples: int, control_deals=None) -> dict:
    """Per-method means over seeds, kappa intervals, differences to the best baseline;
    ``control_deals``: the control's interval over more deals (:func:`control_deals_interval`)."""
    y = np.concatenate([r["y"] for r in runs])
    seed_id = np.concatenate([np.full(len(r["y"]), i) for i, r in enumerate(runs)])
    per_seed = {m: [seed_metrics(r["y"], r["methods"][m]) for r in runs] for m in METHODS}
    mean = {m: {k: float(np.mean([s[k] for s in v])) for k in v[0]} for m, v in per_seed.items()}
    pred = {m: np.concatenate([r["methods"][m]["pred"] for r in runs]) for m in METHODS}
    kappa = {m: kappa_interval(y, pred[m], seed_id, n_resamples) for m in METHODS}
    best = max(BASELINES, key=lambda m: kappa[m][0])
    diff = {
        m: kappa_interval(y, pred[m], seed_id, n_resamples, reference=pred[best])
        for m in METHODS
        if m != best
    }
    pooled = kappa_interval(y, pred[POOLED], seed_id, n_resamples, reference=pred[POOLED_BASELINE])
    return dict(
        name=name, mean=mean, per_seed=per_seed, kappa=kappa, best=best, diff=diff, runs=runs,
        control_deals=control_deals, pooled_diff=pooled,
    )  # fmt: skip


def task_table(t: dict) -> str:
    lines = [
        f"| method | kappa [95% CI] | minus {t['best']} [95% CI] | AUC | TPR@1%FPR | TPR@10%FPR "
        "| kappa per seed | fit+predict (s) |",
        "|:---|---:|---:|---:|---:|---:|:---|---:|",
    ]
    for m in METHODS:
        mean = t["mean"][m]
        diff = "reference" if m == t["best"] else _fmt_interval(t["diff"][m])
        per = " / ".join(f"{s['kappa']:+.2f}" for s in t["per_seed"][m])
        lines.append(
            f"| {m} | {_fmt_interval(t['kappa'][m])} | {diff} | {mean['auc']:.3f} | "
            f"{mean['tpr1']:.3f} | {mean['tpr10']:.3f} | {per} | {mean['seconds']:.0f} |"
        )
    return "\n".join(lines)


def verdict(t: dict) -> str:
    """One line from the numbers: who wins, by how much, and whether the task is sound."""
    best, kappa = t["best"], t["kappa"]
    control = kappa[CONTROL]
    parts = [f"best baseline {best} (kappa {_fmt_interval(kappa[best])})"]
    default = t["diff"]["Default pipeline"] if best != "Default pipeline" else None
    if default is not None:
        if default[1] > 0:
            word = "BEATS it"
        elif default[2] < 0:
            word = "LOSES to it"
        else:
            word = "ties with it (interval contains 0)"
        parts.append(f"the default pipeline {word} by {_fmt_interval(default)}")
    parts.append(
        f"pooled splits: {POOLED} minus {POOLED_BASELINE} {_fmt_interval(t['pooled_diff'])}"
    )
    signal = [m for m in METHODS if m != CONTROL and kappa[m][1] > 0]
    parts.append(
        "methods with kappa above 0 (interval): "
        + (", ".join(signal) if signal else "none")
        + ("" if signal else " — the task gives no method a signal")
    )
    deals = t.get("control_deals")
    judged = control if deals is None else deals[1]
    ok = judged[1] <= 0 <= judged[2]
    label = "control" if deals is None else f"control over {deals[0]} deals"
    parts.append(
        f"{label} {_fmt_interval(judged)}: "
        + ("contains 0 (no label leak)" if ok else "EXCLUDES 0: the task leaks labels")
        + ("" if deals is None else f" (on this task's seeds {_fmt_interval(control)})")
    )
    widest = max((d[2] - d[1]) / 2 for d in t["diff"].values())
    parts.append(
        f"widest half-width of a difference {widest:.3f} "
        + ("(<= 0.06)" if widest <= 0.06 else "(> 0.06: the test split is too small)")
    )
    return "; ".join(parts) + "."


def roc_figure(t: dict, path: Path) -> None:
    """Mean ROC over seeds (TPR interpolated on a common FPR grid) of each method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = np.linspace(0, 1, 201)
    fig, ax = plt.subplots(figsize=(4.2, 4.2), dpi=110)
    for m in METHODS:
        tprs = []
        for r in t["runs"]:
            fpr, tpr, _ = roc_curve(r["y"], r["methods"][m]["score"])
            tprs.append(np.interp(grid, fpr, tpr))
        style = ":" if m == CONTROL else "-"
        ax.plot(grid, np.mean(tprs, 0), style, lw=1.4, label=f"{m} ({t['mean'][m]['auc']:.2f})")
    ax.plot([0, 1], [0, 1], color="0.7", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=t["name"])
    ax.legend(fontsize=6.5, loc="lower right", title="method (AUC)", title_fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _summary_rows(tasks: list[dict]) -> list[tuple[str, list[str]]]:
    rows = [(m, [_fmt_interval(t["kappa"][m]) for t in tasks]) for m in METHODS]
    deals = [t.get("control_deals") for t in tasks]
    if all(d is not None for d in deals):
        rows.append((f"Control, {deals[0][0]} deals", [_fmt_interval(d[1]) for d in deals]))
    return rows


def summary_table(tasks: list[dict]) -> str:
    head = "| method | " + " | ".join(t["name"] for t in tasks) + " |"
    lines = [head, "|:---|" + "---:|" * len(tasks)]
    for name, cells in _summary_rows(tasks):
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary_rst(tasks: list[dict], figures: Path, header: list[str]) -> str:
    """The summary table, the verdicts and the ROC figures as reStructuredText, for the docs'
    results page (``.. include::``d there, so the page follows the last run)."""
    rel = "../../benchmarks/" + figures.name  # from docs/user_guide/
    lines = [
        ".. list-table:: Test kappa, mean over seeds [paired bootstrap 95% CI]",
        "   :header-rows: 1",
        "",
        "   * - method",
        *[f"     - {t['name']}" for t in tasks],
    ]
    for name, cells in _summary_rows(tasks):
        lines.append(f"   * - {name}")
        lines += [f"     - {cell}" for cell in cells]
    lines.append("")
    lines += [f"- **{t['name']}**: {verdict(t)}" for t in tasks]
    lines.append("")
    for t in tasks:
        stem = t["name"].replace(" / ", "_")
        lines += [f".. image:: {rel}/roc_{stem}.png", f"   :alt: ROC curves, {t['name']}", ""]
    lines += ["| " + h.replace("`", "``").replace("````", "``") for h in header]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny tasks and generators, 1 seed")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per task (default 3)")
    parser.add_argument(
        "--first-seed", type=int, default=0, help="first seed (default 0): fresh draws, e.g. "
        "seeds no one has tuned on"
    )  # fmt: skip
    parser.add_argument("--tasks", nargs="+", default=None, help="source/generator names")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--n-jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--output", type=Path, default=None, help="markdown to write (default RESULTS.md; none "
        "for --quick)"
    )  # fmt: skip
    parser.add_argument(
        "--figures", type=Path, default=None, help=f"figure folder (default {FIGURES})"
    )
    args = parser.parse_args(argv)
    cfg = QUICK if args.quick else FULL
    seeds = list(range(args.first_seed, args.first_seed + (args.seeds or cfg["seeds"])))
    try:
        tasks = resolve_tasks(args.tasks)
    except ValueError as e:
        parser.error(str(e))
    output = args.output or (None if args.quick else RESULTS)
    figures = args.figures or (FIGURES if output == RESULTS else None)
    start, cpu_start = time.perf_counter(), time.process_time()
    load_start = os.getloadavg()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f}s] {msg}", file=sys.stderr, flush=True)

    jobs = [(src, gen, s) for src, gen in tasks for s in seeds]
    log(
        f"{len(jobs)} generators ({len(tasks)} tasks x {len(seeds)} seeds), {args.n_jobs} at a time"
    )
    t = time.perf_counter()
    # longest training first, so that the two workers finish together
    order = sorted(range(len(jobs)), key=lambda i: -_COST.get(jobs[i][1], 0))
    done = Parallel(n_jobs=args.n_jobs)(
        delayed(_prepare)(*jobs[i], args.cache_dir, args.quick) for i in order
    )
    built = [result for _, result in sorted(zip(order, done, strict=True))]
    prepare_s = time.perf_counter() - t
    train_s = sum(info["train_s"] for _, info in built)
    log(f"generators and folders ready in {prepare_s:.0f}s (training {train_s:.0f}s CPU-thread)")
    t = time.perf_counter()
    runs = Parallel(n_jobs=args.n_jobs)(
        delayed(run_methods)(folder, job[2], cfg)
        for (folder, _), job in zip(built, jobs, strict=True)
    )
    methods_s = time.perf_counter() - t
    log(f"methods done in {methods_s:.0f}s")
    t = time.perf_counter()
    sources = sorted({src for src, _ in tasks})
    n_deals = cfg["control_deals"]
    sizes = QUICK_SIZES if args.quick else SIZES
    deal_runs = Parallel(n_jobs=args.n_jobs)(
        delayed(control_on_deal)(src, s, sizes) for src in sources for s in range(n_deals)
    )
    control = {
        src: (n_deals, control_deals_interval(deal_runs[i * n_deals : (i + 1) * n_deals], 2000))
        for i, src in enumerate(sources)
    }
    control_s = time.perf_counter() - t
    log(f"control over {n_deals} deals of {len(sources)} sources in {control_s:.0f}s")
    t = time.perf_counter()
    summaries = []
    for i, (src, gen) in enumerate(tasks):
        task_runs = runs[i * len(seeds) : (i + 1) * len(seeds)]
        summaries.append(
            summarise_task(_task_name(src, gen), task_runs, cfg["n_resamples"], control[src])
        )
        log(f"{summaries[-1]['name']}: {verdict(summaries[-1])}")
    bootstrap_s = time.perf_counter() - t

    grids = {}
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        for i, (src, gen) in enumerate(tasks):
            stem = f"{src}_{gen}"
            roc_figure(summaries[i], figures / f"roc_{stem}.png")
            folder = built[i * len(seeds)][0]
            grid = Image.open(folder / "samples.png")  # 32 px images: enlarge to be seen
            grid.resize((3 * grid.width, 3 * grid.height), Image.NEAREST).save(
                figures / f"samples_{stem}.png"
            )
            grids[summaries[i]["name"]] = figures / f"samples_{stem}.png"
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    load_end = os.getloadavg()
    niceness = os.nice(0)
    arguments = argv if argv is not None else sys.argv[1:]
    command = (
        (f"nice -n {niceness} " if niceness else "")
        + ".venv/bin/python benchmarks/bench_quality.py"
        + (" " + " ".join(arguments)).rstrip()
    )
    gens = QUICK_GENERATORS if args.quick else GENERATORS
    header = [
        f"Command: `{command}`" + ("" if arguments else " (`make bench-quality`)"),
        f"Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
        f"Machine: {machine()}",
        f"Wall time: {wall:.0f}s (parent process CPU {cpu:.0f}s): generators and folders "
        f"{prepare_s:.0f}s (training summed over generators {train_s:.0f}s; "
        f"{sum(info['cached'] for _, info in built)} of {len(built)} reused from the cache), "
        f"methods {methods_s:.0f}s, control deals {control_s:.0f}s, bootstrap "
        f"{bootstrap_s:.0f}s; {args.n_jobs} worker processes; "
        f"load average at start {' / '.join(f'{v:.1f}' for v in load_start)}, at end "
        f"{' / '.join(f'{v:.1f}' for v in load_end)}.",
        f"Seeds {seeds} (a seed picks the real images and the split, and retrains the "
        f"generator); sizes {sizes}; generators {gens}; k={cfg['k']}.",
    ]
    sections = []
    for i, t in enumerate(summaries):
        counts = [
            info["counts"] for info in (b[1] for b in built[i * len(seeds) : (i + 1) * len(seeds)])
        ]
        lines = [
            f"## {t['name']}",
            "Real images per seed (train used + not used / test used + not used): "
            + ", ".join(f"{c[0]} + {c[1]} / {c[2]} + {c[3]}" for c in counts)
            + ".",
            task_table(t),
            f"Verdict: {verdict(t)}",
        ]
        if t["name"] in grids:
            stem = grids[t["name"]].stem.removeprefix("samples_")
            note = GRID_NOTES.get(t["name"], "(not yet looked at)")
            lines.append(
                f"![ROC]({figures.name}/roc_{stem}.png)\n\nSamples of seed {seeds[0]} (the "
                "first), each row followed "
                f"by their nearest used real images: [{grids[t['name']].name}]"
                f"({figures.name}/{grids[t['name']].name}). {note}"
            )
        sections.append("\n\n".join(lines))
    title = "# Membership benchmark suite (`benchmarks/bench_quality.py`)"
    if args.quick:
        title += " — QUICK SMOKE RUN, not results"
    text = "\n\n".join(
        [
            title,
            "Rewritten by `make bench-quality`; edits are lost. "
            + __doc__.split("\n\n")[1].replace("\n", " "),
            "\n".join(f"{h}  " for h in header).rstrip(),
            "## Summary: test kappa, mean over seeds [paired bootstrap 95% CI]",
            summary_table(summaries),
            "\n".join(f"- **{t['name']}**: {verdict(t)}" for t in summaries),
            *sections,
            "## Methods\n\n"
            + "\n".join(ln.strip() for ln in __doc__.split("\n\n")[2].splitlines())
            + "\n\n"
            + __doc__.split("\n\n")[3].replace("\n", " "),
        ]
    ).replace("``", "`")  # the docstring's reStructuredText literals, in markdown
    print(text)
    if figures is not None:
        (figures / "summary.rst").write_text(summary_rst(summaries, figures, header))
    if output is not None:
        output.write_text(text + "\n")
        log(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
