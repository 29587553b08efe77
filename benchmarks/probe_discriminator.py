"""Round 21: the density ratio learned by a classifier, library against the other reals.

Same evaluation as ``probe_moments.py``; reference = the default since round 18 (the 14 plain
pixel scores and the 12 whitened ones). Why: every score of the default is a geometric
statistic chosen by hand (k-th best cosines at three scales, a subspace, whitened distances),
and twenty rounds of such statistics have moved kanji by at most +-0.013 since round 18. DOMIAS
(van Breugel et al. 2023) scores ``p_gen(x) / p_real(x)``; the default estimates it by k-NN
densities. The same ratio can be *learned*: the odds of a classifier trained to tell the
library from the reals (Bayes: its logit is ``log p_gen / p_real`` plus a constant for balanced
classes), a new source of evidence, in the sense that it weighs the pixels by what separates
the two sets instead of treating every direction alike. Cross-fitted: the reals are dealt into
5 folds, and each fold is scored by a classifier trained on the whole library and the other 4
folds, so no real image is scored by a classifier that saw it (class weights balanced, so the
library's size and a library duplicated whole change nothing). Unit, library-centred pixels at
the default's size. Variants, fixed before the run:

- ``+ discriminator, linear``: the logit of an L2 logistic regression (``C = 0.1``) on the
  pixels.
- ``+ discriminator, kernel``: the same on 400 Nystroem features of the Gaussian kernel
  ``exp(-2 |x - y|^2)`` (unit vectors: ``|x - y|^2 = 2 - 2 cos``), ``C = 1``; nonlinear, global.
- ``+ both``: the two scores.

How these were chosen (said before any run of this probe): single-score ROC AUCs on the test
split of seed 24 alone (no head): linear 0.491 / 0.515 / 0.588 / 0.599 / 0.483 on CT long / CT
short / Fashion long / kanji / DDPM, kernel 0.561 / 0.590 / 0.598 / 0.600 / 0.504, against the
default's ``density_q50`` 0.694 / 0.696 / 0.594 / 0.647 / 0.532; so neither is a better score
alone, and the question is whether it adds to the head. A small CNN (3 conv layers, 15 epochs,
the same cross-fitting) was tried there too and dropped before this probe: 0.515 / 0.608 /
0.526 / 0.535 / 0.522 at 32-38 s a split (it learns the generator's artefacts, which every
generated image shares, not where the generator puts its mass).

Rule, as every round's: the all-tasks interval of the paired kappa difference above 0 and no
task's interval below 0 on the development seeds 24-35, then again on seeds 42-44 (trained this
session, scored by no one); of the variants that pass both, the library adopts the one with the
largest all-tasks gain on seeds 42-44 (the fewer scores on a tie within 0.005).

    .venv/bin/python benchmarks/probe_discriminator.py --seeds 24 25 26 27 28 29 30 31 32 33 34 35

writes ``benchmarks/RESULTS_discriminator.md``; ``--seeds 42 43 44 --output
benchmarks/RESULTS_discriminator_seeds42-44.md`` the confirmation.

Outcome: **all three dropped on the development seeds**, so no confirmation run (589 s). The
linear discriminator costs over all tasks -0.003 [-0.005, -0.000] (CT short -0.009 [-0.015,
-0.003], CT long -0.002 [-0.004, -0.000]; kanji +0.003 [-0.003, +0.009]); the kernel one moves
no task (all tasks -0.001 [-0.003, +0.002], every task within +-0.002); both -0.003 [-0.006,
-0.000]. A learned density ratio with 200 to 800 reals is a noisier estimate of what the k-NN
densities already read, not new evidence. Seeds 42-44 stay unscored by this probe. Also tried
after this run and not made a probe (single-score AUCs, test splits of seeds 24-26): the default's
scores in the space of a fixed, untrained two-layer CNN (32 and 64 filters of 3x3, average
pooling; local translation tolerance without losing detail), ``top1`` / ``density_q50`` 0.664 /
0.671, 0.647 / 0.664, 0.541 / 0.573, 0.532 / 0.569, 0.530 / 0.501 against the pixels' 0.676 /
0.696, 0.670 / 0.724, 0.554 / 0.591, 0.549 / 0.617, 0.537 / 0.518 on CT long / CT short /
Fashion long / kanji / DDPM: worse on every task, kanji most.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from sklearn.kernel_approximation import Nystroem
from sklearn.linear_model import LogisticRegression

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from probe_covariance import round18_reference  # noqa: E402
from probe_head import unit_pixels  # noqa: E402
from probe_manifold import _positive_logreg, variants_main  # noqa: E402

from skfingerprint import relations as R  # noqa: E402
from skfingerprint.images import auto_pixel_size  # noqa: E402

#: Folds of the reals for cross-fitting (fixed before the run).
FOLDS = 5


def _linear_logit(X, y, real_test):
    clf = LogisticRegression(C=0.1, class_weight="balanced", max_iter=1000).fit(X, y)
    return clf.decision_function(real_test)


def _kernel_logit(X, y, real_test):
    features = Nystroem(gamma=2.0, n_components=400, random_state=0).fit(X)
    clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=1000)
    clf.fit(features.transform(X), y)
    return clf.decision_function(features.transform(real_test))


def cross_fitted(real: np.ndarray, lib: np.ndarray, logit) -> np.ndarray:
    """``(n,)``: each real image's logit from a classifier trained on the library (label 1)
    against the reals of the other folds (label 0); ``logit(X, y, real_test)`` fits and scores."""
    out = np.empty(len(real))
    for fold in np.array_split(np.random.default_rng(0).permutation(len(real)), FOLDS):
        rest = np.ones(len(real), dtype=bool)
        rest[fold] = False
        X = np.r_[lib, real[rest]]
        y = np.r_[np.ones(len(lib)), np.zeros(rest.sum())]
        out[fold] = logit(X, y, real[fold])
    return out


def split_scores(pairs) -> dict:
    real, lib = unit_pixels(pairs, auto_pixel_size(pairs.real.sizes() + pairs.library.sizes()))
    _, ids = R.top_k(real, lib, 1)
    linear = cross_fitted(real, lib, _linear_logit)[:, None]
    kernel = cross_fitted(real, lib, _kernel_logit)[:, None]
    return {
        **round18_reference(real, lib, ids),
        "linear": linear,
        "kernel": kernel,
    }


VARIANTS = {
    "default (round 18)": (["plain", "whitened"], _positive_logreg),
    "+ discriminator, linear": (["plain", "whitened", "linear"], _positive_logreg),
    "+ discriminator, kernel": (["plain", "whitened", "kernel"], _positive_logreg),
    "+ both": (["plain", "whitened", "linear", "kernel"], _positive_logreg),
}


if __name__ == "__main__":
    raise SystemExit(variants_main(__file__, __doc__, split_scores, VARIANTS))
