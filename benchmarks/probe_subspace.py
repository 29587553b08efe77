"""Round 18: the pixel scores in the generator's own subspace.

Same evaluation as ``probe_covariance.py`` (each score standardised within its split, the
sign-constrained logistic regression with ``C=0.1``, the ``prior`` cut), reference = the default
since round 16: the 12 pixel scores plain and the 12 in the within-mode whitened space, the
per-candidate scores of the best candidate in plain pixels. Why: round 16's whitening paid on
every task but kanji (+0.005, +0.012, +0.018), and the kanji generator leaves almost no near
copies (6.8% / 1.3% of its used reals above the unused ones' 95th / 99th percentile of the best
cosine, against 5% / 1% by chance), so its evidence is diffuse: in *which* directions a real
image agrees with what the generator produces, not in one close sample. The whitening divides by
how the generator varies a mode but also *amplifies* the directions it hardly varies at all
(where its samples are all alike, e.g. blank margins or what it cannot draw), and there a real
image's own detail counts as much as a match. Linear discriminant analysis keeps, after the
within-class whitening, only the between-class directions. Hypotheses (both computed on the
distinct library images, so duplicating the library changes nothing):

- ``+ between-mode subspace``: the whitened vectors projected onto the principal directions of
  the whitened library that hold 90% of its variance (an LDA's discriminant subspace, the
  number of directions set by the data), centred on the library's mean and normalised again,
  and the 12 scores computed there too (36 scores).
- ``plain + between-mode subspace``: the same subspace *instead of* the whitened space (24).
- ``+ library-subspace fit``: two per-real scores of the plain vectors, how much of a real
  image lies in the span of what the generator produces, globally instead of near its
  neighbours (round 6's hull was local): minus the share of its energy outside the library's
  principal subspace (90% of the variance), and that share outside the other reals' principal
  subspace (as many directions, fitted in 5 folds without the image) minus the first: a used
  image lies closer to the generator's span than to the reals'. 26 scores.

- ``+ library-subspace fit, every space``: the library's form of the last one (added after the
  development run, in which ``+ library-subspace fit`` passed, and before its confirmation run
  was read; the implementation check, as round 16's): both scores are per-real scores of
  *every* relation space (``relations.PER_REAL``'s ``span`` and ``span_calib``), so also in the
  whitened space, and the other reals' folds follow the order of each real's best cosine
  instead of a random draw, so that the order of the reals changes nothing. 28 scores.
  **Dropped**: it passed the development seeds (+0.012 [+0.006, +0.018]) and failed the
  confirmation on kanji (-0.036 [-0.060, -0.011]), while ``+ library-subspace fit`` passed
  both (+0.013 [+0.007, +0.019] and +0.015 [+0.005, +0.024], no task below 0).
- ``+ span of the plain space (the library's form)``: added after both runs above were read,
  so *chosen after seeing the confirmation seeds*: the library's form of the variant that
  passed, the two scores in the plain space only (the whitened space's stay 0), the folds by
  the order of the best cosine. It differs from ``+ library-subspace fit`` only in how the
  reals are dealt into folds; it is the implementation check, and what the library adopts.

Fixed before any run; nothing tried by hand. Development on seeds 24-32 (scored before, by
rounds 15-17 and two unseen looks); the rule, as every round's: the all-tasks interval of the
difference to the reference above 0 and no task's interval below 0. A variant that passes is
confirmed on seeds 33-35, trained last session and scored by no one.

    .venv/bin/python benchmarks/probe_subspace.py --seeds 24 25 26 27 28 29 30 31 32

writes ``benchmarks/RESULTS_subspace.md``; ``--seeds 33 34 35 --output
benchmarks/RESULTS_subspace_seeds33-35.md`` the confirmation. Outcome: ``+ library-subspace
fit`` **passed both** (+0.013 [+0.007, +0.019], +0.015 [+0.005, +0.024]; kanji +0.009, -0.003),
and so did its library form (+0.015 [+0.009, +0.020], +0.014 [+0.005, +0.024]; kanji +0.009,
-0.014 [-0.032, +0.004]), which the default adopts (``relations.PER_REAL``'s ``span``,
``span_calib``). The between-mode subspace added nothing on the development seeds (+0.001
[-0.004, +0.006]; on the confirmation seeds +0.008 [+0.000, +0.016], not a reason to keep a
variant that failed development) and replacing the whitened space by it -0.000: both dropped.
Seeds 33-35 have now been looked at. A generality check with its rule fixed before the run
(as round 16's: kept unless below 0 there), where the pixel space has more dimensions than the
library has images (the 128 px CT task scored at 64 px, seeds 3-5; ``--tasks
ct-phantom-128/dcgan-short --seeds 3 4 5 --output benchmarks/RESULTS_subspace_ct128.md``): the
library's form +0.001 [-0.019, +0.020], so it stays, gaining nothing there (the "dropped"
verdicts in that file are the suite's rule, printed for every probe).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from probe_covariance import scores_in  # noqa: E402
from probe_detector import base_scores  # noqa: E402
from probe_head import unit_pixels  # noqa: E402
from probe_manifold import _positive_logreg, variants_main  # noqa: E402

from skfingerprint import relations as R  # noqa: E402
from skfingerprint.images import auto_pixel_size  # noqa: E402

#: The share of the variance the principal subspaces keep (fixed before the run).
KEPT_VARIANCE = 0.9
FOLDS = 5


def principal_directions(x: np.ndarray, kept: float = KEPT_VARIANCE, rank: int | None = None):
    """``(r, d)`` orthonormal principal directions of the centred rows of ``x``: the fewest
    that hold ``kept`` of the variance, or the first ``rank``."""
    centred = x - x.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    if rank is None:
        share = np.cumsum(s**2) / max((s**2).sum(), 1e-30)
        rank = int(np.searchsorted(share, kept) + 1)
    return vt[: min(rank, len(vt))].astype(np.float32)


def outside_share(x: np.ndarray, directions: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The share of each row's (centred) energy outside the span of ``directions``."""
    centred = x - mean
    inside = ((centred @ directions.T) ** 2).sum(1)
    return 1 - inside / np.maximum((centred**2).sum(1), 1e-30)


def between_mode_space(real_w: np.ndarray, lib_w: np.ndarray):
    v = principal_directions(np.unique(lib_w, axis=0))
    real_p, lib_p = real_w @ v.T, lib_w @ v.T
    mean = lib_p.mean(0, keepdims=True)
    return R._l2_normalize(real_p - mean), R._l2_normalize(lib_p - mean)


def subspace_fit(real: np.ndarray, lib: np.ndarray, seed: int = 0) -> np.ndarray:
    distinct = np.unique(lib, axis=0)
    v_lib = principal_directions(distinct)
    out_lib = outside_share(real, v_lib, distinct.mean(0, keepdims=True))
    out_real = np.empty(len(real))
    fold = np.random.default_rng(seed).permutation(len(real)) % FOLDS
    for f in range(FOLDS):
        rest = real[fold != f]
        v = principal_directions(rest, rank=len(v_lib))
        out_real[fold == f] = outside_share(real[fold == f], v, rest.mean(0, keepdims=True))
    return np.c_[-out_lib, out_real - out_lib]


def split_scores(pairs) -> dict:
    """The score groups; the first 12 columns of the library's scores are the default's before
    this round (``span`` and ``span_calib`` joined ``relations.PER_REAL`` after it)."""
    real, lib = unit_pixels(pairs, auto_pixel_size(pairs.real.sizes() + pairs.library.sizes()))
    _, ids = R.top_k(real, lib, 1)
    whitened = R.within_mode_whiten(real, lib)
    plain_all, whitened_all = base_scores(real, lib), scores_in(whitened, ids)
    return {
        "plain": plain_all[:, :12],
        "whitened": whitened_all[:, :12],
        "between-mode": scores_in(between_mode_space(*whitened), ids)[:, :12],
        "subspace fit": subspace_fit(real, lib),
        "span, plain": plain_all[:, 12:],
        "span, whitened": whitened_all[:, 12:],
    }


VARIANTS = {
    "default (plain + within-mode whitened)": (["plain", "whitened"], _positive_logreg),
    "+ between-mode subspace": (["plain", "whitened", "between-mode"], _positive_logreg),
    "plain + between-mode subspace": (["plain", "between-mode"], _positive_logreg),
    "+ library-subspace fit": (["plain", "whitened", "subspace fit"], _positive_logreg),
    "+ library-subspace fit, every space": (
        ["plain", "whitened", "span, plain", "span, whitened"],
        _positive_logreg,
    ),
    "+ span of the plain space (the library's form)": (
        ["plain", "whitened", "span, plain"],
        _positive_logreg,
    ),
}


if __name__ == "__main__":
    raise SystemExit(variants_main(__file__, __doc__, split_scores, VARIANTS))
