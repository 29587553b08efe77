"""Round 17: which differences the pixel whitening should discount.

Same evaluation as ``probe_whiten.py`` (each score standardised within its split, the
sign-constrained logistic regression with ``C=0.1``, the ``prior`` cut), with the default since
round 16 as the reference: the 12 pixel scores plain and the 12 again in the within-mode
whitened space (``relations.within_mode_whiten``: the covariance of each distinct library
image's difference to its nearest other one), the per-candidate scores of the best candidate in
plain pixels, as the library computes them. Why: round 16's whitening paid on every task of
the suite three times (+0.028, +0.032, +0.029 over all tasks) but gained nothing where the
pixel space has more dimensions than the library has images (``RESULTS_whiten_ct128.md``),
and one nearest neighbour per image is a noisy estimate of how a mode varies. Hypotheses, each
*replacing* the whitened space's covariance:

- ``whitened by 3 library neighbours``: the differences of each distinct library image to its
  3 nearest other ones (three times the rows, so a steadier estimate of the same variation).
- ``whitened against the nearest real``: the differences of each distinct library image to its
  nearest real image of the split (how the generator's samples depart from real images: its
  artefacts and its own variation, discounted whatever the mode).

Fixed before any run; nothing tried by hand. Development on seeds 24-29 (scored before, by
rounds 15 and 16); the rule, as every round's: the all-tasks interval of the difference to the
reference above 0 and no task's interval below 0. A variant that passes is confirmed on seeds
33-35, trained in this session while this probe was written and scored by no one.

    .venv/bin/python benchmarks/probe_covariance.py --seeds 24 25 26 27 28 29

writes ``benchmarks/RESULTS_covariance.md``. Outcome: **both dropped**, each below the reference
over all tasks (3 neighbours -0.010 [-0.017, -0.003], kanji -0.018 [-0.036, -0.002]; the nearest
real -0.011 [-0.021, -0.001], the CT phantom under the short DCGAN -0.024 [-0.046, -0.003]):
the single nearest other sample is the better estimate of how a mode varies, and the
departures from real images are not what to discount. Seeds 33-35 stay unscored.
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
from skfingerprint.images import auto_pixel_size  # noqa: E402


def _nearest_others(distinct: np.ndarray, k: int) -> np.ndarray:
    """``(m, k)`` indices of each row's ``k`` nearest other rows."""
    sims = distinct @ distinct.T
    np.fill_diagonal(sims, -np.inf)
    return np.argsort(-sims, axis=1)[:, :k]


def neighbour_diffs(lib: np.ndarray, k: int) -> np.ndarray:
    distinct = np.unique(lib, axis=0)
    near = _nearest_others(distinct, k)
    return (distinct[:, None, :] - distinct[near]).reshape(-1, lib.shape[1])


def nearest_real_diffs(real: np.ndarray, lib: np.ndarray) -> np.ndarray:
    distinct = np.unique(lib, axis=0)
    return distinct - real[(distinct @ real.T).argmax(1)]


def scores_in(space: tuple[np.ndarray, np.ndarray], ids: np.ndarray) -> np.ndarray:
    """The 12 scores in ``space``, the per-candidate ones of the plain pixels' best candidate."""
    per_real, per_cand = R._space_raw(*space, ids)
    return np.c_[per_cand[:, 0, :], per_real]


def round18_reference(real, lib, ids, whitened=None) -> dict:
    """The default's scores since round 18, the reference of rounds 19 on: the first 14 plain
    (3 + 11) and 12 whitened columns, whatever joins later (``whitened``: the whitened space
    where the caller has it already)."""
    whitened = R.within_mode_whiten(real, lib) if whitened is None else whitened
    return {
        "plain": base_scores(real, lib)[:, :14],
        "whitened": scores_in(whitened, ids)[:, :12],
    }


def split_scores(pairs) -> dict:
    real, lib = unit_pixels(pairs, auto_pixel_size(pairs.real.sizes() + pairs.library.sizes()))
    _, ids = R.top_k(real, lib, 1)
    shrink = R.WHITEN_SHRINK
    return {
        "plain": base_scores(real, lib),
        "within-mode": scores_in(R.within_mode_whiten(real, lib), ids),
        "3 neighbours": scores_in(R._whiten_by(neighbour_diffs(lib, 3), real, lib, shrink), ids),
        "nearest real": scores_in(
            R._whiten_by(nearest_real_diffs(real, lib), real, lib, shrink), ids
        ),
    }


VARIANTS = {
    "default (plain + within-mode whitened)": (["plain", "within-mode"], _positive_logreg),
    "whitened by 3 library neighbours": (["plain", "3 neighbours"], _positive_logreg),
    "whitened against the nearest real": (["plain", "nearest real"], _positive_logreg),
}


if __name__ == "__main__":
    raise SystemExit(variants_main(__file__, __doc__, split_scores, VARIANTS))
