"""Round 12: calibrating a real image's best match against its own flipped copies.

Same evaluation as ``probe_density.py`` (the default's 12 pixel scores of the best candidate at
32 px, each standardised within its split, the sign-constrained logistic regression with
``C=0.1``, the ``prior`` cut). Why: membership attacks on classifiers gained most from
*difficulty calibration* (Watson et al. 2022): a score minus what the same example would get
had it not been trained on. The default calibrates against the *other* reals (``calib``,
density ratios, ``hull_calib``); none asks what *this* image's own statistics (ink, contrast,
texture, how much of it is background) buy it from any library. An image flipped or rotated
keeps those statistics but was not in the training set (no generator here trains with flips),
so its best cosine to the library is an estimate of the image's difficulty. Hypotheses:

- ``+ self-reference``: ``top1(r)`` minus the mean of ``top1`` of ``r`` flipped left-right,
  flipped up-down and rotated by 180 degrees (flipped in pixels, then centred on the library's
  mean as ``r``), one score.
- ``+ self-reference, each``: the three differences, one score per transform.

**Not a blind test.** These scores were tried by hand on seeds 15-20 of the suite before this
probe was written (single-score AUC and the head with the mean reference added): the CT phantom
gained (single-score AUC 0.66-0.79 vs ``top1`` 0.62-0.74), Fashion lost (0.50-0.56 vs
0.50-0.58: a nearly symmetric garment's flip is the garment, and its reference is the score
itself), kanji moved by no more than its noise. The run on those seeds is the record of that
look with intervals, under the usual rule (the all-tasks interval of the difference to the
default above 0, no task's interval below 0); a variant passing it would still have to pass on
seeds no one has looked at for it.

    .venv/bin/python benchmarks/probe_reference.py --seeds 15 16 17 18 19 20 [--cache-dir DIR]

writes ``benchmarks/RESULTS_reference.md``.
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

#: Each transform reverses some axes of an ``(n, SIZE, SIZE)`` stack.
TRANSFORMS = {
    "left-right": (2,),
    "up-down": (1,),
    "rotated 180": (1, 2),
}


def self_reference_scores(real_px: np.ndarray, lib: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """``top1(r) - top1(T r)`` for each transform ``T`` (columns in ``TRANSFORMS`` order)."""
    real = _l2_normalize(real_px - mean)
    top1 = (real @ lib.T).max(1)
    stack = real_px.reshape(-1, SIZE, SIZE)
    cols = []
    for axes in TRANSFORMS.values():
        moved = np.flip(stack, axis=axes).reshape(len(real_px), -1)
        cols.append(top1 - (_l2_normalize(moved - mean) @ lib.T).max(1))
    return np.stack(cols, 1)


def split_scores(pairs) -> dict:
    real_px, lib_px = pixel_vectors(pairs.real, SIZE), pixel_vectors(pairs.library, SIZE)
    mean = lib_px.mean(0, keepdims=True)
    real, lib = _l2_normalize(real_px - mean), _l2_normalize(lib_px - mean)
    each = self_reference_scores(real_px, lib, mean)
    return {
        "default": base_scores(real, lib),
        "reference": each.mean(1, keepdims=True),
        "each": each,
    }


VARIANTS = {
    "default (12 pixel scores, 32 px)": (["default"], _positive_logreg),
    "+ self-reference": (["default", "reference"], _positive_logreg),
    "+ self-reference, each": (["default", "each"], _positive_logreg),
}


if __name__ == "__main__":
    raise SystemExit(variants_main(__file__, __doc__, split_scores, VARIANTS))
