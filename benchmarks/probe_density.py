"""Round 8: does the k-NN density ratio pay at coarser scales than the default's three?

Same evaluation as ``probe_scales.py`` (the default's 12 pixel scores of the best candidate at
32 px, each standardised within its split, the sign-constrained logistic regression with
``C=0.1``, the ``prior`` cut). Why: on seeds 0-11, looked at after round 7 failed, the single
scores' test AUC rises from the finest density scale to the coarsest on the CT phantom under the
short DCGAN (0.691, 0.705, 0.721 at q = 1/200, 1/100, 1/50) and on kanji (0.575, 0.586, 0.600,
the best single score there, where the default ties with pixel nearest neighbour on unseen
draws); on the other tasks it is flat or falls slightly. Hypothesis, fixed before the run:

- ``+ density q 1/25, 1/10``: the same density ratio (the ``q|G|``-th best cosine to the
  library minus the ``q|R|``-th best to the other reals) at q = 1/25 and 1/10, two more scores.

Because seeds 0-11 suggested it, passing there (the usual rule: the paired difference to the
default above 0 over all tasks, no task below 0) is not evidence; it becomes the default only
if it passes the same rule on seeds 12-14, drawn before this probe was written and not looked
at by anyone.

    .venv/bin/python benchmarks/probe_density.py [--cache-dir DIR] [--seeds N [N ...]]

writes ``benchmarks/RESULTS_density.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from probe_detector import base_scores  # noqa: E402
from probe_head import unit_pixels  # noqa: E402
from probe_manifold import _positive_logreg, variants_main  # noqa: E402

from skfingerprint import relations as R  # noqa: E402

SIZE = 32
COARSE = (1 / 25, 1 / 10)


def density_scores(real: np.ndarray, lib: np.ndarray, fractions=COARSE) -> np.ndarray:
    """The library's density ratio (``relations._space_raw``) at each of ``fractions``."""
    rr = real @ real.T
    np.fill_diagonal(rr, -np.inf)
    return R._density_ratios(real @ lib.T, rr, len(lib), fractions)


def split_scores(pairs) -> dict:
    real, lib = unit_pixels(pairs, SIZE)
    return {"default": base_scores(real, lib), "coarse": density_scores(real, lib)}


VARIANTS = {
    "default (12 pixel scores, 32 px)": (["default"], _positive_logreg),
    "+ density q 1/25, 1/10": (["default", "coarse"], _positive_logreg),
}


if __name__ == "__main__":
    raise SystemExit(variants_main(__file__, __doc__, split_scores, VARIANTS))
