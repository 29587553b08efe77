"""The official ImageCLEFmed GANs metrics: Cohen's kappa first, then accuracy, P, R and F1;
with scores, ROC AUC and the true-positive rate at a 1% false-positive rate beside them.

F1 is the standard ``2PR / (P + R)`` (the paper's formula drops the 2). The TPR at a low FPR
is what a membership audit is judged by when a false accusation is costly (Carlini et al.,
"Membership Inference Attacks From First Principles", 2022): a detector with a fair AUC can
still flag no member at 1% FPR.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    make_scorer,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from ._contracts import check_binary_labels, check_scores, cohen_kappa

__all__ = [
    "METRIC_NAMES",
    "SCORE_METRIC_NAMES",
    "format_reports",
    "kappa_scorer",
    "membership_report",
    "tpr_at_fpr",
]

METRIC_NAMES = ("kappa", "accuracy", "precision", "recall", "f1")
#: What :func:`membership_report` adds when it is given scores.
SCORE_METRIC_NAMES = ("auc", "tpr_at_1pct_fpr")
_ROW_NAMES = {"tpr_at_1pct_fpr": "TPR@1%FPR"}

#: Cohen's kappa as a scorer: ``cross_val_score(pipe, X_pairs, y, scoring=kappa_scorer)``.
kappa_scorer = make_scorer(cohen_kappa_score)


def membership_report(
    y_true, y_pred, *, y_score=None, output_dict: bool = False
) -> str | dict[str, float]:
    """Kappa, accuracy, precision, recall and F1 of membership predictions (1 = used); with
    scores, ROC AUC and the TPR at 1% FPR too.

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, shape (n,)
        True and predicted labels, one per real image.
    y_score : array-like of shape (n,), optional
        A score per real image, higher for "used" (``predict_proba(X)[:, 1]``). Adds ``"auc"``
        (ROC AUC) and ``"tpr_at_1pct_fpr"`` (:func:`tpr_at_fpr` at 0.01); both are NaN when
        ``y_true`` holds one class.
    output_dict : bool, default=False
        Return a dict instead of a printable table.

    Returns
    -------
    str or dict
        A table (one metric a line), or ``{"kappa": ..., "accuracy": ..., "precision": ...,
        "recall": ..., "f1": ..., "n": ...}`` (with ``"auc"`` and ``"tpr_at_1pct_fpr"`` when
        ``y_score`` is given).

    Raises
    ------
    ValueError
        Labels other than 0/1, empty or mismatched inputs, scores that are not finite numbers.

    Examples
    --------
    >>> from skfingerprint import membership_report
    >>> membership_report([1, 0, 1, 0], [1, 0, 0, 0], output_dict=True)["precision"]
    1.0
    >>> membership_report([1, 0, 1, 0], [1, 0, 0, 0], y_score=[0.9, 0.2, 0.4, 0.3],
    ...                   output_dict=True)["auc"]
    1.0
    """
    yt, yp = check_binary_labels(y_true, "y_true"), check_binary_labels(y_pred, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in length: {yt.size} != {yp.size}")
    scores = {
        "kappa": cohen_kappa(yt, yp),
        "accuracy": float(accuracy_score(yt, yp)),
        "precision": float(precision_score(yt, yp, zero_division=0)),
        "recall": float(recall_score(yt, yp, zero_division=0)),
        "f1": float(f1_score(yt, yp, zero_division=0)),
        "n": int(yt.size),
    }
    if y_score is not None:
        ys = check_scores(y_score, yt.size, "y_score")
        one_class = np.unique(yt).size < 2
        scores["auc"] = np.nan if one_class else float(roc_auc_score(yt, ys))
        scores["tpr_at_1pct_fpr"] = np.nan if one_class else tpr_at_fpr(yt, ys, 0.01)
    return scores if output_dict else format_reports({"score": scores})


def tpr_at_fpr(y_true, y_score, fpr: float = 0.01) -> float:
    """The true-positive rate at a false-positive rate: the ROC curve read at ``fpr``.

    The curve's points are joined by straight lines (a detector that picks at random between
    two thresholds reaches every point between them), so with few not-used images the value
    interpolates between the first thresholds.

    Parameters
    ----------
    y_true : array-like of 0/1, shape (n,)
        True labels (1 = used); both classes must be present.
    y_score : array-like of shape (n,)
        A score per real image, higher for "used".
    fpr : float, default=0.01
        The false-positive rate, in [0, 1].

    Returns
    -------
    float

    Examples
    --------
    >>> from skfingerprint.metrics import tpr_at_fpr
    >>> tpr_at_fpr([1, 1, 0, 0], [0.9, 0.3, 0.5, 0.1], fpr=0.25)
    0.5
    """
    yt = check_binary_labels(y_true, "y_true")
    ys = check_scores(y_score, yt.size, "y_score")
    if not 0.0 <= fpr <= 1.0:
        raise ValueError(f"fpr must be in [0, 1]; got {fpr!r}")
    if np.unique(yt).size < 2:
        raise ValueError("y_true holds one class: the ROC curve needs used and not-used images")
    curve_fpr, curve_tpr, _ = roc_curve(yt, ys)
    return float(np.interp(fpr, curve_fpr, curve_tpr))


def format_reports(reports: Mapping[str, Mapping[str, float]]) -> str:
    """Side-by-side table of several :func:`membership_report` dicts, one column a method.

    Parameters
    ----------
    reports : mapping of str to mapping of str to float
        Column name (a method) to its ``membership_report(..., output_dict=True)``. Metrics
        missing from any report are left out (AUC and TPR@1%FPR where a method gave no
        scores).

    Returns
    -------
    str
        A table, one metric a line.

    Examples
    --------
    >>> from skfingerprint import format_reports
    >>> print(format_reports({"a": {"kappa": 0.5}, "b": {"kappa": 0.25}}).splitlines()[1])
    kappa        0.500   0.250
    """
    names = list(reports)
    width = max(7, *(len(n) for n in names))
    lines = ["metric    " + "".join(f"{n:>{width + 1}}" for n in names)]
    for metric in METRIC_NAMES + SCORE_METRIC_NAMES:
        if all(metric in r for r in reports.values()):
            row = _ROW_NAMES.get(metric, metric)
            lines.append(
                f"{row:<10}" + "".join(f"{reports[n][metric]:>{width + 1}.3f}" for n in names)
            )
    return "\n".join(lines)
