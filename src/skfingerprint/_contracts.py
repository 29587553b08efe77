"""The contracts the estimators share: candidate arrays, labels, seeds, layer strings, kappa.

One home for each rule that several modules apply, so that they cannot drift apart:

- the candidate array of :class:`~skfingerprint.FaissCandidateSelector` (``(n, k, F)``, cosine
  last; a masked candidate has cosine :data:`MASKED_COSINE`, i.e. ``cosine < -1``; the first
  candidate of a row always counts as valid where a consumer needs one) and its validation;
- binary membership labels (1 = used), and the training rule that both classes be present;
- a score per real image (higher = more likely used), as the metrics and the scores file read;
- the integer seed a ``random_state`` gives;
- the paper's layer notation ``"L6+12+18"``;
- Cohen's kappa with its degenerate case (one class in labels and predictions alike) as 0.

Imports numpy only at import time (the command line's parser reads the layer notation here).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

#: Cosine of a masked candidate, outside ``[-1, 1]``: ``X[..., -1] < -1`` is the mask of a
#: selector's output.
MASKED_COSINE = -2.0

#: A candidate whose cosine is below this was masked by the selector.
MASK_BELOW = -1.0

#: The paper's notation of the fused blocks: ``"L6+12+18"`` (or ``"6+12+18"``), 1-based.
LAYER_STRING = re.compile(r"\s*L?\s*\d+(\s*\+\s*\d+)*\s*")


def candidate_mask(X, first_always_valid: bool = True):
    """Boolean ``(n, k)``: True where a candidate is *valid* (not masked).

    Works alike on a numpy array and a torch tensor of shape ``(n, k, F)`` (cosine last). With
    ``first_always_valid`` the first candidate of every row counts as valid even when its cosine
    says masked, so that every real image has at least one candidate to attend to and pool.
    """
    valid = X[..., -1] >= MASK_BELOW
    if first_always_valid:
        valid[:, 0] = True
    return valid


def check_candidates(
    X: Any,
    *,
    name: str = "X",
    relations: bool = False,
    finite: str = "all",
    dtype=None,
) -> np.ndarray:
    """Check a candidate array ``(n, k, F)`` of :class:`~skfingerprint.FaissCandidateSelector`.

    The rule: a non-empty 3-d array of floats (integers are refused: a candidate array is
    cosines and unit vectors, an integer array is something else), ``F = 2D + 1`` odd and
    ``>= 3`` (``[real vector, candidate vector, cosine]``), or with ``relations`` any
    ``F >= 2`` (relation scores, cosine last).

    Parameters
    ----------
    X : array-like
    name : str, default="X"
        Named in the errors.
    relations : bool, default=False
        The rows are relation scores (``features="relations"``) rather than ``[r, c, cosine]``.
    finite : {"all", "cosine"}, default="all"
        What must be finite: every value, or only the cosines (for a consumer that reads only
        them, such as the max-similarity baseline).
    dtype : numpy dtype, optional
        Convert to it (C-contiguous) before the finiteness check; kept as given when None.

    Returns
    -------
    ndarray
    """
    from .pairs import PairedImages, PairEmbeddings  # the inputs of the steps before

    if isinstance(X, (str, bytes, PairEmbeddings, PairedImages)) or X is None:
        raise TypeError(
            f"{name} must be the (n, k, 2D+1) candidate array of FaissCandidateSelector; got "
            f"{type(X).__name__}: put a FaissCandidateSelector step before this classifier"
        )
    arr = np.asarray(X)
    if arr.ndim != 3:
        raise ValueError(
            f"{name} must be a 3-d float array (n, k, 2D+1): n real images, k candidates, "
            f"2D + 1 features, as FaissCandidateSelector returns; got shape {arr.shape}"
        )
    if arr.dtype.kind != "f":
        raise ValueError(
            f"{name} must hold floats ([real vector, candidate vector, cosine] per candidate); "
            f"got dtype {arr.dtype}"
        )
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty: shape {arr.shape}")
    if relations and arr.shape[2] < 2:
        raise ValueError(
            f"{name} must have at least 2 features per candidate (relation scores, cosine) for "
            f"pair_features='relations'; got {arr.shape[2]}"
        )
    if not relations and (arr.shape[2] < 3 or arr.shape[2] % 2 == 0):
        raise ValueError(
            f"{name} must have 2D + 1 features per candidate (real vector, candidate vector, "
            f"cosine), an odd number >= 3, as the (n, k, 2D+1) candidate array of "
            f"FaissCandidateSelector has; got {arr.shape[2]}"
        )
    if dtype is not None:
        with np.errstate(over="ignore"):  # what overflows is refused just below
            arr = np.ascontiguousarray(arr, dtype=dtype)
    if finite == "all":
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinity")
    elif not np.isfinite(arr[..., -1]).all():
        raise ValueError(f"{name} contains NaN or infinite cosines")
    return arr


def check_binary_labels(y, name: str) -> np.ndarray:
    """``y`` as int64 0/1 labels (1 = used): 1-d, non-empty, bool or numbers that are 0 or 1."""
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-d, one 0/1 label per real image; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if arr.dtype == bool:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{name} must hold only 0 (not used) and 1 (used); got dtype {arr.dtype}")
    bad = np.unique(arr[~np.isin(arr, (0, 1))])
    if bad.size:
        raise ValueError(
            f"{name} must hold only 0 (not used) and 1 (used); found {bad[:5].tolist()}"
        )
    return arr.astype(np.int64)


def check_training_labels(y, n: int, estimator: str) -> np.ndarray:
    """Training labels of ``n`` real images: 0/1, one per image, both classes present."""
    y = check_binary_labels(y, "y")
    if y.size != n:
        raise ValueError(
            f"y has {y.size} labels for {n} real images (X and y differ in length: {n} != {y.size})"
        )
    present = np.unique(y)
    if present.size < 2:
        raise ValueError(
            f"y holds only one class (only class {int(present[0])} appears); {estimator} needs "
            "both used (1) and not used (0) real images"
        )
    return y


def check_scores(scores, n: int, name: str) -> np.ndarray:
    """``scores`` as float64, one finite number per real image (``n`` of them)."""
    arr = np.asarray(scores)
    if arr.ndim != 1 or arr.size != n:
        raise ValueError(f"{name} must hold one score per real image ({n}); got shape {arr.shape}")
    if arr.dtype.kind not in "iufb":  # text that happens to parse as numbers is refused too
        raise ValueError(f"{name} must be numbers; got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise ValueError(f"{name} holds {bad} non-finite values (NaN or infinity)")
    return arr


def derive_seed(random_state, size: int | None = None):
    """The int seed (or ``size`` seeds) that a ``random_state`` gives, in ``[0, 2**31 - 1)``.

    An int ``random_state`` always gives the same seed; ``None`` a fresh one.
    """
    from sklearn.utils import check_random_state

    rng = check_random_state(random_state)
    if size is None:
        return int(rng.randint(np.iinfo(np.int32).max))
    return rng.randint(np.iinfo(np.int32).max, size=size)


def cohen_kappa(y_true, y_pred) -> float:
    """Cohen's kappa, 0 where it is undefined (labels and predictions all of one class)."""
    from sklearn.metrics import cohen_kappa_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if np.unique(np.r_[y_true, y_pred]).size < 2:
        return 0.0
    return float(cohen_kappa_score(y_true, y_pred))
