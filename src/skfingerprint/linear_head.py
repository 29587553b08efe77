"""``LinearRelationClassifier``: a logistic regression on a real image's relation scores.

The simple head beside CANet on the selector's relation features
(``FaissCandidateSelector(features="relations")``): it reads the first candidate's row (the
per-real scores of every space, and the best candidate's own scores), fits a regularised
logistic regression whose weights are kept >= 0 (every relation score is built so that higher
means "more likely used"), and cuts its scores where they mark the training split's used
fraction (or at the kappa-maximising threshold, or a fixed one). CANet
on the same features starts from a logistic regression too (its linear skip: ``C=1``, no sign
constraint, the best cosine as one more input) and must earn anything it adds.
"""

from __future__ import annotations

from numbers import Real
from typing import Any

import numpy as np
from scipy.optimize import minimize
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._contracts import check_candidates
from .baselines import _ThresholdMixin

__all__ = ["LinearRelationClassifier"]


class LinearRelationClassifier(_ThresholdMixin, ClassifierMixin, BaseEstimator):
    """Logistic regression on the relation scores of each real image's best candidate.

    Parameters
    ----------
    C : float, default=0.1
        Inverse L2 strength of the logistic regression. 0.1 rather than scikit-learn's 1.0:
        with ~200 labelled images, on the membership benchmark it gave a higher AUC on all 5
        tasks (+0.004 to +0.032) and kappa +0.07 and +0.03 on two of them, within 0.02 on the
        others (``benchmarks/RESULTS_variants.md``).
    threshold : {"prior", "kappa"}, float or None, default="prior"
        ``"prior"``: the training decision values' quantile that marks the training split's
        used fraction (:func:`~skfingerprint.baselines.prior_threshold`). ``"kappa"`` (or
        None): the kappa-maximising threshold on them. A float fixes it. ``"prior"`` by
        default because on weak signals the kappa-maximising cut of ~200 scores drifts to the
        extremes; with the coarser density scores it gained +0.063 kappa over all tasks on three
        unseen seeds (``benchmarks/RESULTS_detector_seeds345.md``), but only +0.005 [-0.003,
        +0.013] on six later draws (``benchmarks/RESULTS_detector_6seeds.md``): its benefit
        depends on the draw. It assumes a test split's used fraction is near the training
        split's (where another is known, give ``used_fraction``).
    used_fraction : float in (0, 1) or None, default=None
        The share of a test split expected to be used, where it is known (an organiser's
        statement, an auditor's prior) and differs from the training split's. With
        ``threshold="prior"`` the cut is then the training decision values' quantile that
        marks that share: the relation scores are standardised within each split, so a
        quantile of the training split marks about the same share of any split. None: the
        training split's own share. On the membership benchmark's test splits dealt to a used
        fraction of 0.25 or 0.75 (whole groups, seeds 87-92,
        ``benchmarks/RESULTS_prevalence*.md``) the default marked about half of each split
        whatever it held; given the share it marked it, and moved test kappa by -0.020 to
        +0.113 (paired; 9 of 20 task x fraction intervals above 0, none below).
    positive : bool, default=True
        Keep every weight >= 0 (the intercept is free). Every relation score is built so that
        a higher value means "more likely used", and several are correlated (the best
        candidate's ``cos`` is ``top1``; three density scales), so with ~200 labels an
        unconstrained fit can give one a negative weight that only fits the training draw's
        noise. On 6 draws of the membership benchmark it gained +0.046 [+0.037, +0.055] test
        kappa over all tasks, no task below 0, and on 3 draws no one had looked at +0.050
        [+0.034, +0.066] (``benchmarks/RESULTS_manifold.md`` and ``_seeds678.md``). False:
        scikit-learn's plain ``LogisticRegression``.

    Attributes
    ----------
    classes_ : ndarray of shape (2,)
        ``[0, 1]``.
    model_ : sklearn.linear_model.LogisticRegression
        The fitted regression on the first candidate's scores (all columns but the cosine).
        With ``positive=True`` its ``coef_`` and ``intercept_`` are those of the constrained
        fit (same objective, weights bounded), so ``model_.decision_function`` applies it.
    threshold_ : float
        Predict 1 where the regression's decision value exceeds it.
    train_kappa_ : float
        Kappa on the training rows at ``threshold_`` (optimistic).
    score_scale_ : float
        Spread of the training decision values; scales ``predict_proba``.
    n_features_in_ : int
        Features per candidate of the training array.

    See Also
    --------
    skfingerprint.FaissCandidateSelector : ``features="relations"`` makes this input.
    skfingerprint.CANetClassifier : ``pair_features="relations"``, the attention head.

    Examples
    --------
    >>> import numpy as np
    >>> from skfingerprint import LinearRelationClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 3, 5)).astype(np.float32)
    >>> y = np.tile([0, 1], 30)
    >>> X[:, 0, 1] += 3.0 * y  # one score carries the membership
    >>> clf = LinearRelationClassifier().fit(X, y)
    >>> float((clf.predict(X) == y).mean()) > 0.8
    True
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "threshold": [Real, StrOptions({"kappa", "prior"}), None],
        "used_fraction": [Interval(Real, 0, 1, closed="neither"), None],
        "positive": ["boolean"],
    }

    def __init__(
        self,
        C: float = 0.1,
        threshold: float | str | None = "prior",
        used_fraction: float | None = None,
        positive: bool = True,
    ) -> None:
        self.C = C
        self.threshold = threshold
        self.used_fraction = used_fraction
        self.positive = positive

    def _scores(self, X: Any) -> np.ndarray:
        return check_candidates(X, relations=True, dtype=np.float32)[:, 0, :-1]

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any) -> LinearRelationClassifier:
        """Fit the regression and the threshold.

        Parameters
        ----------
        X : ndarray of shape (n, k, F)
            Relation features of :class:`~skfingerprint.FaissCandidateSelector`.
        y : array-like of 0/1, shape (n,)
            1 = used to train the generator. Both classes must be present.

        Returns
        -------
        self : LinearRelationClassifier
        """
        if self.used_fraction is not None and self.threshold != "prior":
            raise ValueError(
                f"used_fraction={self.used_fraction!r} sets the share the 'prior' cut marks; "
                f"threshold={self.threshold!r} cuts elsewhere. Use threshold='prior'"
            )
        scores = self._scores(X)
        y = self._check_y(y, len(scores))
        self.n_features_in_ = np.asarray(X).shape[2]
        if self.positive:
            self.model_ = _positive_logistic_regression(scores, y, self.C)
        else:
            self.model_ = LogisticRegression(C=self.C, max_iter=2000).fit(scores, y)
        self._fit_threshold(self.model_.decision_function(scores), y, self.used_fraction)
        return self

    def score_samples(self, X: Any) -> np.ndarray:
        """The regression's decision value of each real image (higher = more likely used).

        Parameters
        ----------
        X : ndarray of shape (n, k, F)

        Returns
        -------
        ndarray of shape (n,)
        """
        check_is_fitted(self, "model_")
        scores = self._scores(X)
        if np.asarray(X).shape[2] != self.n_features_in_:
            raise ValueError(
                f"X has {np.asarray(X).shape[2]} features per candidate, but "
                f"LinearRelationClassifier was fitted with {self.n_features_in_}"
            )
        return self.model_.decision_function(scores)

    def __setstate__(self, state: dict) -> None:
        # files saved before ``positive`` existed hold a plain fit
        state = dict(state)
        state.setdefault("positive", False)
        state.setdefault("used_fraction", None)  # and before ``used_fraction``
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.classifier_tags.multi_class = False
        return tags


def _positive_logistic_regression(X: np.ndarray, y: np.ndarray, C: float) -> LogisticRegression:
    """scikit-learn's L2 logistic regression objective, ``||w||^2 / 2 + C sum_i log(1 +
    exp(-s_i (X_i w + b)))`` with ``s = 2y - 1``, minimised with ``w >= 0`` (L-BFGS-B), as a
    ``LogisticRegression`` holding that ``coef_`` and ``intercept_``."""
    X = np.asarray(X, dtype=np.float64)
    s = 2.0 * np.asarray(y, dtype=np.float64) - 1.0

    def loss(theta):
        w, b = theta[:-1], theta[-1]
        margin = s * (X @ w + b)
        value = 0.5 * w @ w + C * np.logaddexp(0.0, -margin).sum()
        g = -C * s * np.exp(-np.logaddexp(0.0, margin))  # d loss / d (X w + b)
        return value, np.r_[w + X.T @ g, g.sum()]

    bounds = [(0.0, None)] * X.shape[1] + [(None, None)]
    res = minimize(
        loss, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B", bounds=bounds,
        options={"maxiter": 2000, "gtol": 1e-8},
    )  # fmt: skip
    model = LogisticRegression(C=C)
    model.classes_ = np.array([0, 1])
    model.coef_ = np.maximum(res.x[None, :-1], 0.0)  # L-BFGS-B may overstep a bound by ~1e-11
    model.intercept_ = res.x[-1:].copy()
    model.n_features_in_ = X.shape[1]
    model.n_iter_ = np.array([res.nit])
    return model
