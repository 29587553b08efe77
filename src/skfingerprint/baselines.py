"""Honest baselines: one similarity score per real image and one kappa-maximising threshold.

- :class:`MaxSimilarityClassifier` scores a real image by the cosine of its best library
  candidate (the GAN-Leaks "full black-box" / max-similarity baseline on embeddings); it takes
  the output of :class:`~skfingerprint.FaissCandidateSelector` and drops in for the CANet
  classifier as the last step of the pipeline.
- :class:`PixelNearestNeighbor` does the same in pixel space, directly on ``X_pairs``.

Both learn the threshold that maximises Cohen's kappa on their training rows with one shared
helper, :func:`learn_kappa_threshold`.
"""

from __future__ import annotations

from collections import OrderedDict
from numbers import Integral, Real
from typing import Any

import faiss
import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._contracts import (
    candidate_mask,
    check_binary_labels,
    check_candidates,
    check_training_labels,
    cohen_kappa,
)
from .images import intensity_peak, pixel_vectors, warn_on_intensity_mismatch
from .pairs import PairedImages, _l2_normalize, check_pairs

__all__ = [
    "MaxSimilarityClassifier",
    "PixelNearestNeighbor",
    "learn_kappa_threshold",
    "prior_threshold",
]

# Libraries whose pixel vectors a PixelNearestNeighbor keeps (least recently used dropped first).
_MAX_CACHED_LIBRARIES = 4


def _scores_and_labels(scores, y) -> tuple[np.ndarray, np.ndarray]:
    """Scores as float64 and checked 0/1 labels of the same length."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = check_binary_labels(y, "y")
    if s.shape != y.shape:
        raise ValueError(f"scores and y differ in length: {s.size} != {y.size}")
    return s, y


def learn_kappa_threshold(scores, y) -> tuple[float, float]:
    """The threshold on ``scores`` that maximises Cohen's kappa of ``scores > threshold``.

    The candidates are the midpoints between consecutive sorted unique scores; every one is
    evaluated exactly (vectorised, one pass). Among equal kappas the lowest threshold wins.

    Parameters
    ----------
    scores : array-like of shape (n,)
        Higher means "more likely used".
    y : array-like of 0/1, shape (n,)
        Membership labels (1 = used).

    Returns
    -------
    threshold : float
        Predict 1 where ``score > threshold``. With all scores equal, that score (predicts all 0).
    kappa : float
        Cohen's kappa of those predictions on ``(scores, y)`` (0 when undefined).

    Raises
    ------
    ValueError
        Labels other than 0/1, or ``scores`` and ``y`` of different lengths.

    Examples
    --------
    >>> from skfingerprint.baselines import learn_kappa_threshold
    >>> learn_kappa_threshold([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])
    (0.5, 1.0)
    """
    s, y = _scores_and_labels(scores, y)
    uniq, rank = np.unique(s, return_inverse=True)
    if uniq.size == 1:
        return float(uniq[0]), 0.0
    n, pos = float(s.size), float(y.sum())
    neg = n - pos
    # predictions at the cut between uniq[j] and uniq[j + 1]: 1 for every rank > j
    per_rank = np.bincount(rank, minlength=uniq.size).astype(np.float64)
    pos_per_rank = np.bincount(rank, weights=y, minlength=uniq.size)
    pred_pos = np.cumsum(per_rank[::-1])[::-1][1:]  # sum over ranks > j, j = 0..q-2
    tp = np.cumsum(pos_per_rank[::-1])[::-1][1:]
    fp = pred_pos - tp
    tn = neg - fp
    po = (tp + tn) / n
    pe = (pred_pos * pos + (n - pred_pos) * neg) / (n * n)
    # every cut predicts some rows "used" and some not (0 < pred_pos < n), so pe < 1
    kappa = (po - pe) / (1.0 - pe)
    best = int(np.argmax(kappa))
    return float((uniq[best] + uniq[best + 1]) / 2.0), float(kappa[best])


class _ThresholdMixin:
    """Shared by the baselines: learn or fix a threshold on ``score_samples``, predict with it.

    Subclasses define ``score_samples(X)`` and a ``threshold`` parameter; their ``fit`` checks
    ``y`` with ``_check_y`` first, then calls ``_fit_threshold`` on the training scores.
    """

    def _check_y(self, y: Any, n: int) -> np.ndarray:
        return check_training_labels(y, n, type(self).__name__)

    def _fit_threshold(
        self, scores: np.ndarray, y: np.ndarray, used_fraction: float | None = None
    ) -> None:
        """``used_fraction``: the share the ``"prior"`` cut marks (None: the training rows')."""
        self.classes_ = np.array([0, 1])
        if self.threshold is None or self.threshold == "kappa":
            self.threshold_, self.train_kappa_ = learn_kappa_threshold(scores, y)
        elif self.threshold == "prior":
            cut = prior_threshold(scores, y, used_fraction)
            self.threshold_, self.train_kappa_ = _kappa_at(scores, y, cut)
        else:
            self.threshold_ = float(self.threshold)
            _, self.train_kappa_ = _kappa_at(scores, y, self.threshold_)
        spread = float(np.std(scores))
        self.score_scale_ = spread if spread > 0 else 1.0

    def decision_function(self, X: Any) -> np.ndarray:
        """``score - threshold_``: positive means "used".

        Parameters
        ----------
        X : input of ``score_samples``

        Returns
        -------
        ndarray of shape (n,)
        """
        check_is_fitted(self, "threshold_")
        return self.score_samples(X) - self.threshold_

    def predict_proba(self, X: Any) -> np.ndarray:
        """``[1 - p, p]`` with ``p = sigmoid(decision / score_scale_)``.

        A monotone squashing of the decision, **not a calibrated probability**: ``p > 0.5``
        exactly where ``predict`` says 1, and ranks (hence ROC AUC) are those of the scores.

        Parameters
        ----------
        X : input of ``score_samples``

        Returns
        -------
        ndarray of shape (n, 2)
        """
        p = expit(self.decision_function(X) / self.score_scale_)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        """1 (used) where ``score > threshold_``, else 0.

        Parameters
        ----------
        X : input of ``score_samples``

        Returns
        -------
        ndarray of shape (n,), int64
        """
        check_is_fitted(self, "threshold_")
        return self.classes_[(self.decision_function(X) > 0).astype(np.int64)]


def prior_threshold(scores, y, used_fraction: float | None = None) -> float:
    """The cut on ``scores`` that marks the training rows' used fraction as used.

    The quantile ``1 - mean(y)`` of the training scores (``1 - used_fraction`` where that
    share is given instead: a test split's, known to differ). On weak signals the kappa-maximising
    cut of ~200 scores is a noisy estimate that drifts to the extremes; this one only assumes
    that a test split's used fraction is near the training split's, and with scores
    standardised within each split (the relation features) it marks about that fraction of the
    test split (``benchmarks/RESULTS_detector.md``).

    Parameters
    ----------
    scores : array-like of shape (n,)
        Higher means "more likely used".
    y : array-like of 0/1, shape (n,)
        Membership labels (1 = used).
    used_fraction : float in (0, 1) or None, default=None
        The share to mark; None: ``mean(y)``.

    Returns
    -------
    float
        Predict 1 where ``score > threshold``.

    Examples
    --------
    >>> from skfingerprint.baselines import prior_threshold
    >>> prior_threshold([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1])
    2.5
    """
    s, y = _scores_and_labels(scores, y)
    if used_fraction is None:
        used_fraction = y.mean()
    elif not 0 < used_fraction < 1:
        raise ValueError(f"used_fraction must be in (0, 1); got {used_fraction!r}")
    return float(np.quantile(s, 1.0 - used_fraction))


def _kappa_at(scores: np.ndarray, y: np.ndarray, threshold: float) -> tuple[float, float]:
    return threshold, cohen_kappa(y, (np.asarray(scores) > threshold).astype(np.int64))


class MaxSimilarityClassifier(_ThresholdMixin, ClassifierMixin, BaseEstimator):
    """Max-similarity membership baseline: a real image is "used" if its best match is close.

    The score of a real image is the cosine of its best library candidate (``top_m=1``, the
    GAN-Leaks full black-box attack with cosine instead of distance), or the mean cosine of its
    ``top_m`` best unmasked candidates; one threshold, learned to maximise Cohen's kappa on the
    training rows, turns scores into labels. Masked candidates (cosine :data:`MASKED_COSINE`,
    see :class:`~skfingerprint.FaissCandidateSelector`) are ignored; a row with none unmasked
    scores -1.

    Parameters
    ----------
    top_m : int, default=1
        How many of the best unmasked candidates are averaged (fewer if a row has fewer).
    threshold : {"kappa", "prior"}, float or None, default=None
        None or ``"kappa"`` learns the kappa-maximising threshold in ``fit``; ``"prior"`` cuts
        at the training scores' quantile that marks the training rows' used fraction
        (:func:`prior_threshold`); a float fixes it.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        ``[0, 1]``.
    threshold_ : float
        Predict 1 where ``score > threshold_``.
    train_kappa_ : float
        Kappa on the training rows at ``threshold_`` (optimistic: the threshold was chosen on
        them).
    score_scale_ : float
        Standard deviation of the training scores; scales the decision in ``predict_proba``.
    n_features_in_ : int
        ``2D + 1`` of the training candidates.

    See Also
    --------
    PixelNearestNeighbor : The same baseline in pixel space.
    learn_kappa_threshold : The threshold search.

    Examples
    --------
    >>> import numpy as np
    >>> from skfingerprint.baselines import MaxSimilarityClassifier
    >>> X = np.zeros((4, 2, 3), np.float32)  # 4 real images, 2 candidates, D = 1
    >>> X[:, :, -1] = [[0.9, 0.5], [0.95, 0.2], [0.3, 0.1], [0.4, -2.0]]
    >>> clf = MaxSimilarityClassifier().fit(X, [1, 1, 0, 0])
    >>> round(clf.threshold_, 3), clf.predict(X).tolist()
    (0.65, [1, 1, 0, 0])
    """

    _parameter_constraints: dict = {
        "top_m": [Interval(Integral, 1, None, closed="left")],
        "threshold": [Real, StrOptions({"kappa", "prior"}), None],
    }

    def __init__(self, top_m: int = 1, threshold: float | str | None = None) -> None:
        self.top_m = top_m
        self.threshold = threshold

    def score_samples(self, X: Any) -> np.ndarray:
        """The similarity score of each real image (higher = more likely used).

        Parameters
        ----------
        X : ndarray of shape (n, k, 2D+1)
            Output of :class:`~skfingerprint.FaissCandidateSelector`.

        Returns
        -------
        ndarray of shape (n,)
        """
        X = check_candidates(X, finite="cosine")
        if hasattr(self, "n_features_in_") and X.shape[2] != self.n_features_in_:
            raise ValueError(
                f"X has candidate rows of size {X.shape[2]}, but MaxSimilarityClassifier was "
                f"fitted on size {self.n_features_in_} (embeddings of another size?)"
            )
        return self._score(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        cos = X[..., -1].astype(np.float64)
        valid = candidate_mask(X, first_always_valid=False)
        top = -np.sort(-np.where(valid, cos, -np.inf), axis=1)[:, : self.top_m]
        count = np.minimum(valid.sum(axis=1), self.top_m)
        total = np.where(np.isfinite(top), top, 0.0).sum(axis=1)
        return np.where(count > 0, total / np.maximum(count, 1), -1.0)

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> MaxSimilarityClassifier:
        """Learn the kappa-maximising threshold on the training scores.

        Parameters
        ----------
        X : ndarray of shape (n, k, 2D+1)
            Output of :class:`~skfingerprint.FaissCandidateSelector`.
        y : array-like of 0/1, shape (n,)
            1 = used to train the generator. Both classes must be present.

        Returns
        -------
        self : MaxSimilarityClassifier
        """
        X = check_candidates(X, finite="cosine")
        y = self._check_y(y, X.shape[0])
        self.n_features_in_ = X.shape[2]
        self._fit_threshold(self._score(X), y)
        return self

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.classifier_tags.multi_class = False
        return tags


class PixelNearestNeighbor(_ThresholdMixin, ClassifierMixin, BaseEstimator):
    """Pixel-space nearest-neighbour membership baseline, directly on ``X_pairs``.

    Every image is converted to grayscale, resized to ``image_size x image_size`` (bilinear,
    antialiased) and flattened; the library's mean image is subtracted from the library and the
    real images, and the vectors are L2-normalised. The score of a real image is the cosine to
    its nearest library image (FAISS exact inner-product search); one threshold, learned to
    maximise Cohen's kappa on the training rows, turns scores into labels.

    The library's vectors and index are computed once per library object and kept (for up to
    4 libraries), so the fit and predict of a cross-validation fold read the library once.

    Parameters
    ----------
    image_size : int, default=64
        Side of the resized images.
    threshold : {"kappa", "prior"}, float or None, default=None
        None or ``"kappa"`` learns the kappa-maximising threshold in ``fit``; ``"prior"`` cuts
        at the training scores' quantile that marks the training rows' used fraction
        (:func:`prior_threshold`); a float fixes it.
    batch_size : int, default=64
        Images read at a time.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        ``[0, 1]``.
    threshold_ : float
        Predict 1 where ``score > threshold_``.
    train_kappa_ : float
        Kappa on the training rows at ``threshold_`` (optimistic).
    score_scale_ : float
        Standard deviation of the training scores; scales the decision in ``predict_proba``.

    See Also
    --------
    MaxSimilarityClassifier : The same baseline on embeddings.

    Examples
    --------
    >>> from skfingerprint.baselines import PixelNearestNeighbor
    >>> from skfingerprint.datasets import make_synthetic_leak
    >>> task = make_synthetic_leak(12, 12, 60, image_size=32, leak_fraction=0.8,
    ...                            distortion=0.0, random_state=0)
    >>> clf = PixelNearestNeighbor(image_size=32).fit(task.X_pairs, task.y)
    >>> clf.predict(task.X_pairs).shape
    (24,)
    """

    _parameter_constraints: dict = {
        "image_size": [Interval(Integral, 2, None, closed="left")],
        "threshold": [Real, StrOptions({"kappa", "prior"}), None],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
    }

    def __init__(
        self, image_size: int = 64, threshold: float | str | None = None, batch_size: int = 64
    ) -> None:
        self.image_size = image_size
        self.threshold = threshold
        self.batch_size = batch_size

    def _vectors(self, images) -> np.ndarray:
        return pixel_vectors(images, self.image_size, self.batch_size)

    def _library(self, library) -> tuple[np.ndarray, faiss.Index, float]:
        """``(mean image, FAISS index, intensity peak)`` of ``library``, computed once per
        library object."""
        cache = self.__dict__.setdefault("_library_cache", OrderedDict())
        key = (id(library), self.image_size)
        entry = cache.get(key)
        if entry is None or entry[0] is not library:
            vectors = self._vectors(library)
            mean = vectors.mean(axis=0)
            index = faiss.IndexFlatIP(vectors.shape[1])
            index.add(np.ascontiguousarray(_l2_normalize(vectors - mean)))
            # holding the library keeps its id() unique
            entry = (library, mean, index, intensity_peak(vectors))
            cache[key] = entry
            while len(cache) > _MAX_CACHED_LIBRARIES:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return entry[1:]

    def kneighbors(self, X: PairedImages) -> tuple[np.ndarray, np.ndarray]:
        """Cosine to, and index of, each real image's nearest library image in pixel space.

        Parameters
        ----------
        X : PairedImages

        Returns
        -------
        similarities : ndarray of shape (n,)
        indices : ndarray of shape (n,)
            Rows of ``X.library``.
        """
        X = check_pairs(X)
        mean, index, library_peak = self._library(X.library)
        real_vectors = self._vectors(X.real)
        warn_on_intensity_mismatch(intensity_peak(real_vectors), library_peak)
        real = np.ascontiguousarray(_l2_normalize(real_vectors - mean))
        sims, ids = index.search(real, 1)
        return np.clip(sims[:, 0].astype(np.float64), -1.0, 1.0), ids[:, 0]

    def score_samples(self, X: PairedImages) -> np.ndarray:
        """Pixel-space cosine of each real image to its nearest library image.

        Parameters
        ----------
        X : PairedImages
            ``X_pairs`` from :func:`~skfingerprint.make_pairs`.

        Returns
        -------
        ndarray of shape (n,)
        """
        return self.kneighbors(X)[0]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: PairedImages, y: Any) -> PixelNearestNeighbor:
        """Learn the kappa-maximising threshold on the training rows' scores.

        Parameters
        ----------
        X : PairedImages
            ``X_pairs`` from :func:`~skfingerprint.make_pairs`.
        y : array-like of 0/1, shape (n,)
            1 = used to train the generator. Both classes must be present.

        Returns
        -------
        self : PixelNearestNeighbor
        """
        X = check_pairs(X)
        y = self._check_y(y, len(X))
        self._fit_threshold(self.score_samples(X), y)
        return self

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_library_cache", None)  # FAISS indexes do not pickle; rebuilt when needed
        return state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.classifier_tags.multi_class = False
        return tags
