"""How far is today's default from any head on its own scores? Round 29, a diagnostic.

``probe_ceiling.py`` asked this of the 12 pixel scores of seeds 15-20, before the whitened and
span scores joined the default (rounds 16 and 18): an in-sample linear head reached 0.182 kappa
on kanji against the baseline's 0.104. This asks it again of the scores the default computes
today (``make_fingerprint_pipeline(**TINY_VIT)``'s relation arrays: every score of both pixel
spaces), on seeds no head was chosen on. It is not a method: the rows given the test split's
labels are ceilings, set against the issue's target of the best baseline + 0.10.

- ``default`` (the reference): the library's pipeline fitted on the ~200 labelled training
  reals, as ``bench_quality.py`` fits it (tiny ViT, ``k=100``, ``random_state`` = the seed).
- ``PixelNN, prior cut``: the suite's best baseline as ``bench_quality.py`` runs it (32 px).
- ``400 labels, cross-fitted``: the default's head (``LinearRelationClassifier()``) fitted on
  one random half of the test reals' scores and cut at that half's used fraction, scored on
  the other half, both ways: twice the labels the default has, from the split judged.
- ``monotone boosting, 400 labels``: the same halves with ``probe_joint``'s monotone boosting,
  a nonlinear head given those labels.
- ``in-sample, the default's head``: ``LinearRelationClassifier()`` fitted on all 800 test
  labels and scored on them (optimistic: what the default's head could reach on this split).
- ``in-sample, any linear head``: an unconstrained logistic regression, ``C=10``, fitted and
  scored the same way (more optimistic: no sign constraint, little shrinkage).
- ``in-sample best single score``: the one score with the best test AUC, cut at the prior.

The halves are random over real images, not whole groups, so the cross-fitted rows may be
slightly optimistic too. Every row is cut at the used fraction of the labels it was given.

How optimistic are the in-sample rows? The file ends with what the two in-sample heads reach
on the same scores with the test labels shuffled (``SHUFFLES`` draws per seed, kappa against
the shuffled labels they were fitted on): pure fitting of noise, with no membership in it.

    .venv/bin/python benchmarks/probe_ceiling_today.py [--cache-dir DIR] [--seeds N [N ...]]

writes ``benchmarks/RESULTS_ceiling_today.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, roc_auc_score

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _test_labels  # noqa: E402
from probe_ceiling import _cross_fitted  # noqa: E402
from probe_detector import _z, main  # noqa: E402
from probe_head import _prior_cut  # noqa: E402
from probe_joint import _monotone_boosting  # noqa: E402

from skfingerprint import load_imageclef_gans  # noqa: E402
from skfingerprint.baselines import PixelNearestNeighbor  # noqa: E402
from skfingerprint.pipeline import TINY_VIT, make_fingerprint_pipeline  # noqa: E402

METHODS = [
    "default",
    "PixelNN, prior cut",
    "400 labels, cross-fitted",
    "monotone boosting, 400 labels",
    "in-sample, the default's head",
    "in-sample, any linear head",
    "in-sample best single score",
]
SHUFFLES = 5
#: per task, the in-sample kappas on shuffled labels of every seed (filled by ``run``)
NOISE_FIT: dict[str, list[tuple[float, float]]] = {}
LEGEND = (
    "Every row is cut at the used fraction of the labels it was fitted on (the ``prior`` rule)."
)


def head_on_scores(head):
    """``head`` (a relation classifier) as a function of ``(fit scores, y, other scores)``."""

    def fitted(f_fit, y_fit, f_other):
        model = clone(head).fit(f_fit, y_fit)
        return model.score_samples(f_fit), model.score_samples(f_other)

    return fitted


def _any_linear(f_fit, y_fit, f_other):
    model = LogisticRegression(C=10.0, max_iter=5000).fit(f_fit, y_fit)
    return model.decision_function(f_fit), model.decision_function(f_other)


def noise_fit(head, relations, scores, y, seed) -> list[tuple[float, float]]:
    """In-sample kappa of the default's head and of any linear head on shuffled labels."""
    rng = np.random.default_rng(seed)
    z = _z(scores)
    out = []
    for _ in range(SHUFFLES):
        y_shuffled = rng.permutation(y)
        s_own = head(relations, y_shuffled, relations)[0]
        s_any = _any_linear(z, y_shuffled, z)[0]
        out.append(
            tuple(
                cohen_kappa_score(y_shuffled, _prior_cut(s, y_shuffled, s)[1])
                for s in (s_own, s_any)
            )
        )
    return out


def run(folder: Path) -> dict:
    train, test = load_imageclef_gans(folder / "train"), load_imageclef_gans(folder / "test")
    y = _test_labels(folder, test.ids)
    seed = int(folder.name.split("-")[0].removeprefix("seed"))
    default = make_fingerprint_pipeline(**TINY_VIT, k=100, random_state=seed)
    default.fit(train.X_pairs, train.y)
    relations = default[:-1].transform(test.X_pairs)  # (n, k, F): what the head reads
    scores = relations[:, 0, :-1].astype(np.float64)  # per real: the head's own columns
    head = head_on_scores(default[-1])
    pixel = PixelNearestNeighbor(image_size=32, threshold="prior").fit(train.X_pairs, train.y)
    aucs = [roc_auc_score(y, c) if c.std() > 0 else 0.5 for c in scores.T]
    best = scores[:, int(np.argmax(aucs))]
    s_all = head(relations, y, relations)[0]
    z = _z(scores)
    s_any = _any_linear(z, y, z)[0]
    task = folder.parent.name
    NOISE_FIT.setdefault(task, []).extend(noise_fit(head, relations, scores, y, seed))
    return {
        "y": y,
        "default": (default.predict_proba(test.X_pairs)[:, 1], default.predict(test.X_pairs)),
        "PixelNN, prior cut": (pixel.score_samples(test.X_pairs), pixel.predict(test.X_pairs)),
        "400 labels, cross-fitted": _cross_fitted(head, relations, y, seed),
        "monotone boosting, 400 labels": _cross_fitted(_monotone_boosting, scores, y, seed),
        "in-sample, the default's head": _prior_cut(s_all, y, s_all),
        "in-sample, any linear head": _prior_cut(s_any, y, s_any),
        "in-sample best single score": _prior_cut(best, y, best),
    }


def noise_fit_section() -> str:
    lines = [
        "",
        f"In-sample kappa on shuffled test labels ({SHUFFLES} shuffles per seed, mean [min, max] "
        "over all draws): what the in-sample rows gain by fitting noise.",
        "",
        "| task | the default's head | any linear head |",
        "|:---|---:|---:|",
    ]
    for task, kappas in NOISE_FIT.items():
        k = np.asarray(kappas)
        cells = [f"{c.mean():+.3f} [{c.min():+.3f}, {c.max():+.3f}]" for c in k.T]
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(
        main(
            run=run,
            methods=METHODS,
            doc=__doc__,
            script="probe_ceiling_today.py",
            default_output=BENCH / "RESULTS_ceiling_today.md",
            legend=LEGEND,
            footer=noise_fit_section,
        )
    )
