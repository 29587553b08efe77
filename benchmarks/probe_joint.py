"""Round 9: explaining away across reals, and heads that weigh 12 weak scores more robustly.

Same evaluation as ``probe_density.py`` (the default's 12 pixel scores of the best candidate at
32 px, each standardised within its split, the sign-constrained logistic regression with
``C=0.1``, the ``prior`` cut). Hypotheses, fixed before any run:

- **explaining away** (``+ EM attribution``): ``attribution`` gives each library image to its
  nearest real, one at a time. A used image's samples are also near its unused neighbours,
  which then get credit they do not deserve. A mixture over the split's reals, each library
  image drawn near one of them (weights ``pi``, responsibilities ``softmax(cos(g, r) / tau +
  log pi_r)``), fitted by EM, lets the real that explains a sample best take it from the others.
  Score: ``log(n pi_r + 0.01)`` (size-free: duplicating the library leaves ``pi`` unchanged).
  ``tau`` is the median over library images of the gap between their two best cosines to the
  reals (scale-free). ``+ soft attribution`` is the same after one EM step from uniform
  weights: it separates what the softness pays from what explaining away pays.
- **a monotone nonlinear head** (``monotone boosting``): the 12 scores combined by gradient
  boosting constrained to be non-decreasing in each score (the sign constraint of the default
  head, without its linearity): a score may matter only past a point (a near copy).
- **rank standardisation** (``rank-normal z``): the scores are maxima and differences of maxima,
  heavy-tailed; each split's scores are mapped through their ranks to normal quantiles before
  the default head, so one outlying real does not set a weight.
- **equal weights** (``equal weights``): with ~200 noisy labels, learned weights may be worse
  than none (improper linear models): the sum of the 12 standardised scores, no fit.

Added after the first development run (seeds 15-17), where ``equal weights`` passed the rule
(+0.016 [+0.002, +0.031] over all tasks) but fell to -0.024 [-0.057, +0.008] on the CT phantom
under the short DCGAN, where learned weights pay: ``C = 0.01`` (a stronger pull of the learned
weights to 0) and ``shrunk to equal weights`` (the default head's weights, scaled to mean 1,
averaged with equal weights: the label-free prior and the fit each count half).

**Confirmation, fixed after the second development run and before any run on seeds 18-20:**
``shrunk to equal weights`` passed on seeds 15-17 (+0.016 [+0.006, +0.026] over all tasks, no
task below 0, the smallest -0.006 [-0.027, +0.015] on CT short), as did ``equal weights``; it is
the one candidate. It becomes the default head's rule only if it passes the same rule against
the default on seeds 18-20 (``--seeds 18 19 20``); every other row of that run is reported and
decides nothing.

**Outcome** (``RESULTS_joint_seeds18-20.md``): it failed, -0.000 [-0.010, +0.009] over all
tasks and -0.025 [-0.049, -0.001] on the DDPM; not adopted. Nothing of round 9 changed the
default.

Development on seeds 15-17 (looked at before: they are the default's third unseen look); a
variant passing the usual rule there (the paired difference to the default above 0 over all
tasks, no task below 0) is adopted only if it passes the same rule again on seeds 18-20, drawn
for this probe and not looked at by anyone before it was written.

    .venv/bin/python benchmarks/probe_joint.py [--cache-dir DIR] [--seeds N [N ...]]

writes ``benchmarks/RESULTS_joint.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.special import logsumexp
from scipy.stats import norm, rankdata
from sklearn.ensemble import HistGradientBoostingClassifier

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from probe_detector import base_scores  # noqa: E402
from probe_head import unit_pixels  # noqa: E402
from probe_manifold import _positive_logreg, variants_main  # noqa: E402

from skfingerprint.linear_head import _positive_logistic_regression  # noqa: E402

SIZE = 32
EM_STEPS = 30


def em_attribution(real: np.ndarray, lib: np.ndarray, steps: int) -> np.ndarray:
    """``log(n pi + 0.01)`` after ``steps`` EM steps of the mixture over reals (see above)."""
    n = len(real)
    S = lib @ real.T  # (m, n)
    if n < 2:
        return np.zeros(n)
    top2 = -np.partition(-S, 1, axis=1)[:, :2]
    tau = max(float(np.median(top2[:, 0] - top2[:, 1])), 1e-6)
    logits = S / tau
    log_pi = np.full(n, -np.log(n))
    for _ in range(steps):
        resp = logits + log_pi
        resp = np.exp(resp - logsumexp(resp, axis=1, keepdims=True))
        log_pi = np.log(np.maximum(resp.mean(0), 1e-300))
    return np.log(n * np.exp(log_pi) + 0.01)


def split_scores(pairs) -> dict:
    real, lib = unit_pixels(pairs, SIZE)
    default = base_scores(real, lib)
    ranked = (rankdata(default, axis=0) - 0.5) / len(default)
    return {
        "default": default,
        "soft": em_attribution(real, lib, 1)[:, None],
        "em": em_attribution(real, lib, EM_STEPS)[:, None],
        "rank": norm.ppf(ranked),
    }


def _monotone_boosting(f_train, y_train, f_test):
    clf = HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.05, max_leaf_nodes=4, min_samples_leaf=20,
        l2_regularization=1.0, monotonic_cst=[1] * f_train.shape[1], random_state=0,
    )  # fmt: skip
    clf.fit(f_train, y_train)
    return clf.decision_function(f_train), clf.decision_function(f_test)


def _equal_weights(f_train, y_train, f_test):
    return f_train.sum(1), f_test.sum(1)


def _small_c(f_train, y_train, f_test):
    return _positive_logreg(f_train, y_train, f_test, C=0.01)


def _shrunk(f_train, y_train, f_test):
    """The default head's weights, scaled to mean 1, averaged with equal weights."""
    w = _positive_logistic_regression(f_train, y_train, C=0.1).coef_[0]
    w = 0.5 * (w * len(w) / w.sum() if w.sum() > 0 else np.ones_like(w)) + 0.5
    return f_train @ w, f_test @ w


VARIANTS = {
    "default (12 pixel scores, 32 px)": (["default"], _positive_logreg),
    "+ soft attribution": (["default", "soft"], _positive_logreg),
    "+ EM attribution": (["default", "em"], _positive_logreg),
    "monotone boosting": (["default"], _monotone_boosting),
    "rank-normal z": (["rank"], _positive_logreg),
    "equal weights": (["default"], _equal_weights),
    "C = 0.01": (["default"], _small_c),
    "shrunk to equal weights": (["default"], _shrunk),
}


if __name__ == "__main__":
    raise SystemExit(variants_main(__file__, __doc__, split_scores, VARIANTS))
