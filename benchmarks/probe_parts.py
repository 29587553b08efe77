"""Round 13: partial copies, each part of a real image matched on its own.

Same evaluation as ``probe_density.py`` (the default's 12 pixel scores of the best candidate at
32 px, each standardised within its split, the sign-constrained logistic regression with
``C=0.1``, the ``prior`` cut). Why: generators copy *parts* of their training images as well as
whole images (Somepalli et al. 2023 found diffusion models replicating objects and regions
composed with new content, and matched on image parts for that reason), and the kanji samples
(``samples.png``) look like new characters built from radicals of trained ones. Every default
score compares whole images, so a real image whose left half is in one sample and its right
half in another scores no better than an unused one. Hypotheses:

- ``+ halves``: for each half (left, right, top, bottom; each centred on the library's mean of
  that region, unit length), the real image's best cosine to the same region of any library
  image; two scores: the mean over the four halves, and the mean of each half's best cosine
  minus its best cosine to the same region of another real (the default's ``calib``, per part).
- ``+ quadrants``: the same two scores over the four 16x16 quadrants.

**Not a blind test.** Both were tried by hand on seeds 15-20 before this probe was written
(single-score AUCs and the head with them added): kanji did not move (the halves' best cosine
tracks the whole image's), Fashion under the long DCGAN gained most (quadrants: kappa up on five
seeds of six), the CT phantom lost a little on some seeds. The run on those seeds is that look
with intervals, under the usual rule (the all-tasks interval of the difference to the default
above 0, no task's interval below 0); a variant that passes would be confirmed on seeds 24-26,
trained in this session while this probe was written and not looked at by anyone.

    .venv/bin/python benchmarks/probe_parts.py --seeds 15 16 17 18 19 20 [--cache-dir DIR]

writes ``benchmarks/RESULTS_parts.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from probe_detector import base_scores  # noqa: E402
from probe_manifold import _positive_logreg, variants_main  # noqa: E402

from skfingerprint.images import pixel_vectors  # noqa: E402
from skfingerprint.relations import _l2_normalize  # noqa: E402

SIZE = 32
HALF = SIZE // 2
_ALL = slice(None)
HALVES = [
    (_ALL, slice(0, HALF)),
    (_ALL, slice(HALF, SIZE)),
    (slice(0, HALF), _ALL),
    (slice(HALF, SIZE), _ALL),
]
QUADRANTS = [
    (slice(i * HALF, (i + 1) * HALF), slice(j * HALF, (j + 1) * HALF))
    for i in (0, 1)
    for j in (0, 1)
]


def part_scores(real_px: np.ndarray, lib_px: np.ndarray, parts) -> np.ndarray:
    """The mean over ``parts`` of each part's best cosine to the library, and of that minus
    the part's best cosine to another real; ``(n, 2)``."""
    real3, lib3 = real_px.reshape(-1, SIZE, SIZE), lib_px.reshape(-1, SIZE, SIZE)
    top, calib = [], []
    for rows, cols in parts:
        r = real3[:, rows, cols].reshape(len(real3), -1)
        g = lib3[:, rows, cols].reshape(len(lib3), -1)
        mean = g.mean(0, keepdims=True)
        r, g = _l2_normalize(r - mean), _l2_normalize(g - mean)
        best = (r @ g.T).max(1)
        rr = r @ r.T
        np.fill_diagonal(rr, -np.inf)
        top.append(best)
        calib.append(best - rr.max(1))
    return np.stack([np.mean(top, 0), np.mean(calib, 0)], 1)


def split_scores(pairs) -> dict:
    real_px, lib_px = pixel_vectors(pairs.real, SIZE), pixel_vectors(pairs.library, SIZE)
    mean = lib_px.mean(0, keepdims=True)
    real, lib = _l2_normalize(real_px - mean), _l2_normalize(lib_px - mean)
    return {
        "default": base_scores(real, lib),
        "halves": part_scores(real_px, lib_px, HALVES),
        "quadrants": part_scores(real_px, lib_px, QUADRANTS),
    }


VARIANTS = {
    "default (12 pixel scores, 32 px)": (["default"], _positive_logreg),
    "+ halves": (["default", "halves"], _positive_logreg),
    "+ quadrants": (["default", "quadrants"], _positive_logreg),
}


if __name__ == "__main__":
    raise SystemExit(variants_main(__file__, __doc__, split_scores, VARIANTS))
