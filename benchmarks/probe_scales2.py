"""Round 20: a second, coarser span and the reverse k-NN counts, beside the default.

Same evaluation as ``probe_moments.py``; reference = the default since round 18 (the 14 plain
pixel scores and the 12 whitened ones). Hypotheses, fixed before the run:

- ``+ coarse span``: ``span`` and ``span_calib`` again at a principal subspace holding 50% of
  the distinct generated images' variance instead of 90% (plain space; the other reals'
  subspace of as many directions, in the library's 5 folds dealt by the best cosine). Why: the
  density ratio pays at three scales, the span is read at one; a coarse subspace holds what the
  generator draws most (layouts, the commonest strokes), a fine one its detail. Chosen after
  round 19's exploration of single-score AUCs on seeds 24-35, where the span at 50% ranked
  kanji's reals better than at 90% (0.580 against 0.542) and the other tasks' worse (0.50-0.60
  against 0.53-0.69).
- ``+ reverse k-NN counts``: how many generated images have the real image among their 3 (and
  10) nearest reals, times ``n / (m k)`` (``probe_detector.py``'s ``rknn``; a library duplicated
  whole changes nothing). The default counts only each generated image's *nearest* real
  (``attribution``); with a generator that blends a few training images into one sample, the
  second and third nearest reals are evidence too. It nearly passed twice against older
  defaults (+0.010 [-0.001, +0.021] on seeds 0-2 and +0.008 [-0.001, +0.016] on seeds 3-8,
  ``RESULTS_detector*.md``); twelve seeds can tell a gain of that size from 0.
- ``+ both``: the four scores.

Rule, as every round's: the all-tasks interval of the paired kappa difference above 0 and no
task's interval below 0 on the development seeds 24-35, then again on seeds 39-41 (trained this
session, scored by no one); of the variants that pass both, the library adopts the one with the
largest all-tasks gain on seeds 39-41 (the fewer scores on a tie within 0.005).

    .venv/bin/python benchmarks/probe_scales2.py --seeds 24 25 26 27 28 29 30 31 32 33 34 35

writes ``benchmarks/RESULTS_scales2.md``; ``--seeds 39 40 41 --output
benchmarks/RESULTS_scales2_seeds39-41.md`` the confirmation.

Outcome: **nothing adopted.** On the development seeds ``+ coarse span`` passed (+0.005 [+0.002,
+0.009] over all tasks; CT short +0.011, kanji +0.012, the DDPM -0.003 [-0.007, +0.001]) and so
did ``+ both`` (+0.006 [+0.002, +0.009]); the reverse k-NN counts alone added nothing (-0.000
[-0.002, +0.001]). On the confirmation seeds the coarse span gave +0.000 [-0.004, +0.005] (kanji
-0.003) and ``+ both`` +0.004 [-0.002, +0.011]: both dropped. The reverse k-NN counts passed
there (+0.005 [+0.000, +0.010], Fashion-MNIST under the long DCGAN +0.015 [+0.000, +0.030]) after
failing development: by the rule, not adopted either, the third time they fall just short
(with ``RESULTS_detector*.md``: +0.010, +0.008, -0.000, +0.005, never both intervals above 0).
A library form of the coarse span was written and tested while the confirmation ran (bit-identical
fine span; one eigendecomposition per set serving both subspaces) and discarded with it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from probe_covariance import round18_reference  # noqa: E402
from probe_detector import rknn_scores  # noqa: E402
from probe_head import unit_pixels  # noqa: E402
from probe_manifold import _positive_logreg, variants_main  # noqa: E402

from skfingerprint import relations as R  # noqa: E402
from skfingerprint.images import auto_pixel_size  # noqa: E402

#: The coarse span's share of the variance (fixed before the run).
COARSE_VARIANCE = 0.5


def coarse_span(real: np.ndarray, lib: np.ndarray, top1: np.ndarray) -> np.ndarray:
    """``relations._span_scores`` with the subspace holding :data:`COARSE_VARIANCE`."""
    return R._span_scores(real, np.unique(lib, axis=0), top1, kept=COARSE_VARIANCE)


def split_scores(pairs) -> dict:
    real, lib = unit_pixels(pairs, auto_pixel_size(pairs.real.sizes() + pairs.library.sizes()))
    _, ids = R.top_k(real, lib, 1)
    reference = round18_reference(real, lib, ids)
    return {
        **reference,
        "coarse span": coarse_span(real, lib, reference["plain"][:, 3]),  # column 3 is top1
        "rknn": rknn_scores(real, lib, ks=(3, 10)),
    }


VARIANTS = {
    "default (round 18)": (["plain", "whitened"], _positive_logreg),
    "+ coarse span": (["plain", "whitened", "coarse span"], _positive_logreg),
    "+ reverse k-NN counts": (["plain", "whitened", "rknn"], _positive_logreg),
    "+ both": (["plain", "whitened", "coarse span", "rknn"], _positive_logreg),
}


if __name__ == "__main__":
    raise SystemExit(variants_main(__file__, __doc__, split_scores, VARIANTS))
