"""The official ImageCLEFmed GANs metrics: Cohen's kappa first, then accuracy, P, R and F1.

F1 is the standard ``2PR / (P + R)`` (the paper's formula drops the 2).
"""

from __future__ import annotations

from collections.abc import Mapping

from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    make_scorer,
    precision_score,
    recall_score,
)

from ._contracts import check_binary_labels, cohen_kappa

__all__ = ["METRIC_NAMES", "format_reports", "kappa_scorer", "membership_report"]

METRIC_NAMES = ("kappa", "accuracy", "precision", "recall", "f1")

#: Cohen's kappa as a scorer: ``cross_val_score(pipe, X_pairs, y, scoring=kappa_scorer)``.
kappa_scorer = make_scorer(cohen_kappa_score)


def membership_report(y_true, y_pred, *, output_dict: bool = False) -> str | dict[str, float]:
    """Kappa, accuracy, precision, recall and F1 of membership predictions (1 = used).

    Parameters
    ----------
    y_true, y_pred : array-like of 0/1, shape (n,)
        True and predicted labels, one per real image.
    output_dict : bool, default=False
        Return a dict instead of a printable table.

    Returns
    -------
    str or dict
        A table (one metric a line), or ``{"kappa": ..., "accuracy": ..., "precision": ...,
        "recall": ..., "f1": ..., "n": ...}``.

    Raises
    ------
    ValueError
        Labels other than 0/1, empty or mismatched inputs.

    Examples
    --------
    >>> from skfingerprint import membership_report
    >>> membership_report([1, 0, 1, 0], [1, 0, 0, 0], output_dict=True)["precision"]
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
    return scores if output_dict else format_reports({"score": scores})


def format_reports(reports: Mapping[str, Mapping[str, float]]) -> str:
    """Side-by-side table of several :func:`membership_report` dicts, one column a method.

    Parameters
    ----------
    reports : mapping of str to mapping of str to float
        Column name (a method) to its ``membership_report(..., output_dict=True)``. Metrics
        missing from any report are left out.

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
    for metric in METRIC_NAMES:
        if all(metric in r for r in reports.values()):
            lines.append(
                f"{metric:<10}" + "".join(f"{reports[n][metric]:>{width + 1}.3f}" for n in names)
            )
    return "\n".join(lines)
