"""Does the linear head gain from PixelNN's own score? Hypotheses, with paired intervals.

On the suite's task folders (``bench_quality.py``'s cache), every variant is fitted like the
default ``LinearRelationClassifier`` (logistic regression, ``C=0.1``, cut at the training
scores' quantile that marks the training split's used fraction, the ``prior`` cut) and compared
with the default (its 10 pixel scores of the best candidate, 32 px, each standardised within
its own split). Why: on the six draws of ``RESULTS_realgen_unconstrained_6seeds.md`` (then
``RESULTS.md``) the default lost to "PixelNN, prior cut" on both CT tasks, by one collapsed
seed (-0.01 vs +0.25) and a weak one, while it won on Fashion. PixelNN differs in three ways:
64 px, one score, and that score *not* standardised within the split (its cut is a cosine
learned on train, so the test split may mark a different fraction). Hypotheses, fixed before
the run:

- ``+ raw top1``: the default plus its 32 px best cosine standardised with the *training*
  split's statistics (the same shift on test), so the head sees the absolute level as well.
- ``+ PixelNN score``: the default plus PixelNN's score (the 64 px best cosine), training
  statistics.
- ``scores at 64 px``: the default's 10 scores computed at 64 px instead of 32.
- ``top1 favoured``: the default with its top1 column multiplied by 3 (the L2 penalty on its
  weight 9 times smaller: shrink toward the single strongest score, not toward 0).
- ``mean with PixelNN``: the mean of the default's decision value and PixelNN's score, each
  standardised with its training statistics (an ensemble with no weight learned).
- ``PixelNN score alone``: the baseline "PixelNN, prior cut" inside the probe (reference for
  how much of a gain is PixelNN's).

Kept only if its paired difference to the default is above 0 on the pooled tasks' interval
and not below 0 on any task. The rule is applied on the six seeds first seen here (0-5 of
this machine's draws); a variant kept there is adopted only if it passes again on seeds 6-8,
which no one has looked at. (Run on seeds 0-2 only, for lack of time to train more; nothing
passed, so no confirmation was needed: the note in ``RESULTS_head.md``.)

    .venv/bin/python benchmarks/probe_head.py [--cache-dir DIR] [--seeds N [N ...]]

writes ``benchmarks/RESULTS_head.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _test_labels  # noqa: E402
from probe_detector import _z, base_scores, main  # noqa: E402

from skfingerprint import load_imageclef_gans  # noqa: E402
from skfingerprint.baselines import prior_threshold  # noqa: E402
from skfingerprint.images import pixel_vectors  # noqa: E402
from skfingerprint.pairs import _l2_normalize  # noqa: E402

PIXELNN_SIZE = 64  # PixelNearestNeighbor's default


def unit_pixels(pairs, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit real and library pixel vectors at ``size`` px, centred on the library's mean (as
    the library's pixel space is)."""
    real_px, lib_px = pixel_vectors(pairs.real, size), pixel_vectors(pairs.library, size)
    mean = lib_px.mean(0, keepdims=True)
    return _l2_normalize(real_px - mean), _l2_normalize(lib_px - mean)


def pixel_scores(pairs, size: int) -> np.ndarray:
    """The default's raw scores of the best candidate at ``size`` px: cos, owner,
    owner_margin, then the per-real scores (top1 is column 3); 10 before the hull scores joined
    the library, 12 since."""
    return base_scores(*unit_pixels(pairs, size))


def _train_z(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both standardised with the training split's statistics."""
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def _prior_cut(s_train, y_train, s_test):
    return s_test, (s_test > prior_threshold(s_train, y_train)).astype(int)


def _logreg(f_train, y_train, f_test):
    clf = LogisticRegression(C=0.1, max_iter=2000).fit(f_train, y_train)
    return clf.decision_function(f_train), clf.decision_function(f_test)


METHODS = [
    "default (10 pixel scores, 32 px)",
    "+ raw top1",
    "+ PixelNN score",
    "scores at 64 px",
    "top1 favoured",
    "mean with PixelNN",
    "PixelNN score alone",
]


def run(folder: Path) -> dict:
    train, test = load_imageclef_gans(folder / "train"), load_imageclef_gans(folder / "test")
    y_train = train.y
    tr32, te32 = pixel_scores(train.X_pairs, 32), pixel_scores(test.X_pairs, 32)
    tr64, te64 = (pixel_scores(p.X_pairs, PIXELNN_SIZE) for p in (train, test))
    z32 = _z(tr32), _z(te32)  # within each split, as the library does
    raw32 = _train_z(tr32[:, 3:4], te32[:, 3:4])
    pixelnn = _train_z(tr64[:, 3:4], te64[:, 3:4])
    favoured = [z.copy() for z in z32]
    for z in favoured:
        z[:, 3] *= 3.0
    out = {"y": _test_labels(folder, test.ids)}
    default = _logreg(z32[0], y_train, z32[1])
    out[METHODS[0]] = _prior_cut(default[0], y_train, default[1])
    for name, (f_train, f_test) in {
        METHODS[1]: (np.c_[z32[0], raw32[0]], np.c_[z32[1], raw32[1]]),
        METHODS[2]: (np.c_[z32[0], pixelnn[0]], np.c_[z32[1], pixelnn[1]]),
        METHODS[3]: (_z(tr64), _z(te64)),
        METHODS[4]: tuple(favoured),
    }.items():
        s_train, s_test = _logreg(f_train, y_train, f_test)
        out[name] = _prior_cut(s_train, y_train, s_test)
    d_train, d_test = _train_z(default[0][:, None], default[1][:, None])
    out[METHODS[5]] = _prior_cut(
        (d_train + pixelnn[0])[:, 0] / 2, y_train, (d_test + pixelnn[1])[:, 0] / 2
    )
    out[METHODS[6]] = _prior_cut(pixelnn[0][:, 0], y_train, pixelnn[1][:, 0])
    return out


LEGEND = (
    "Every row is cut with the ``prior`` rule (the training scores' quantile that marks the "
    "training split's used fraction)."
)

if __name__ == "__main__":
    raise SystemExit(
        main(
            run=run,
            methods=METHODS,
            doc=__doc__,
            script="probe_head.py",
            default_output=BENCH / "RESULTS_head.md",
            legend=LEGEND,
        )
    )
