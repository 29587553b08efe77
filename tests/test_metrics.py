import warnings

import numpy as np
import pytest
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import StratifiedKFold, cross_val_score

from skfingerprint import format_reports, kappa_scorer, membership_report


def test_report_values_match_hand_computation():
    y_true = [1, 1, 1, 1, 0, 0, 0, 0]
    y_pred = [1, 1, 1, 0, 1, 0, 0, 0]
    r = membership_report(y_true, y_pred, output_dict=True)
    # TP=3 FP=1 FN=1 TN=3: P=R=0.75, F1=0.75 (standard 2PR/(P+R)), acc=0.75, kappa=0.5
    assert r == pytest.approx(
        {"kappa": 0.5, "accuracy": 0.75, "precision": 0.75, "recall": 0.75, "f1": 0.75, "n": 8}
    )


def test_f1_is_the_standard_one_not_the_papers():
    r = membership_report([1, 1, 0, 0], [1, 0, 0, 0], output_dict=True)
    assert r["precision"] == 1.0 and r["recall"] == 0.5
    assert r["f1"] == pytest.approx(2 * 1.0 * 0.5 / 1.5)


def test_table_lists_every_metric():
    table = membership_report([1, 0, 1, 0], [1, 0, 0, 0])
    assert [line.split()[0] for line in table.splitlines()[1:]] == [
        "kappa",
        "accuracy",
        "precision",
        "recall",
        "f1",
    ]
    both = format_reports({"CANet": {"kappa": 0.2}, "MaxSimilarity": {"kappa": 0.1}})
    assert both.splitlines()[0].split() == ["metric", "CANet", "MaxSimilarity"]
    assert both.splitlines()[1].split() == ["kappa", "0.200", "0.100"]


def test_constant_predictions_give_zero_kappa_not_nan():
    assert membership_report([0, 0, 0], [0, 0, 0], output_dict=True)["kappa"] == 0.0


@pytest.mark.parametrize(
    ("y_true", "y_pred", "match"),
    [
        ([0, 2], [0, 1], r"only 0 .* found \[2\]"),
        ([0, 1], [0, np.nan], "only 0"),
        (["a", "b"], [0, 1], "dtype"),
        ([], [], "empty"),
        ([0, 1, 1], [0, 1], "differ in length"),
        ([[0, 1]], [[0, 1]], "1-d"),
    ],
)
def test_bad_labels_are_refused(y_true, y_pred, match):
    with pytest.raises(ValueError, match=match):
        membership_report(y_true, y_pred)


class _FixedLabels(ClassifierMixin, BaseEstimator):
    """Predicts the labels it was given, whatever the input."""

    def __init__(self, labels=None):
        self.labels = labels

    def fit(self, X, y):
        self.classes_ = np.array([0, 1])
        return self

    def predict(self, X):
        return np.asarray(self.labels)


def test_kappa_scorer_is_kappa_not_accuracy():
    """On 9 used images and 1 not used, saying 'used' for all is 90% accurate and kappa 0."""
    X, y = np.zeros((10, 1)), np.r_[np.ones(9, int), 0]
    always_used = _FixedLabels(np.ones(10, int)).fit(X, y)
    assert kappa_scorer(always_used, X, y) == pytest.approx(0.0)
    half = _FixedLabels(np.r_[np.ones(5, int), np.zeros(5, int)]).fit(X, y)  # 4 used missed
    assert kappa_scorer(half, X, y) == pytest.approx(cohen_kappa_score(y, half.predict(X)))
    assert kappa_scorer(half, X, y) != pytest.approx(0.5)  # 0.5 is the accuracy


def test_kappa_scorer_works_as_scoring():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(int)
    scores = cross_val_score(LogisticRegression(), X, y, scoring=kappa_scorer, cv=3)
    # each fold's score is sklearn's kappa of that fold's predictions, computed here
    by_hand = []
    for train, test in StratifiedKFold(3).split(X, y):
        pred = LogisticRegression().fit(X[train], y[train]).predict(X[test])
        by_hand.append(cohen_kappa_score(y[test], pred))
    np.testing.assert_allclose(scores, by_hand, atol=1e-12)
    assert scores.mean() > 0.8 and scores.min() < 1.0  # not all perfect: accuracy would differ


# --- label checking and the printed table, exactly (each kills a one-token change) ------------


def test_check_binary_labels_returns_int64_and_names_the_argument():
    from skfingerprint.metrics import check_binary_labels

    for y in ([True, False], [0.0, 1.0], np.array([0, 1], np.uint8)):
        got = check_binary_labels(y, "y")
        assert got.dtype == np.int64 and got.tolist() == [int(v) for v in y]
    assert check_binary_labels([1], "y").tolist() == [1]  # one label is fine
    with pytest.raises(ValueError, match="^labels is empty$"):
        check_binary_labels([], "labels")
    with pytest.raises(ValueError, match=r"found \[2, 3, 4, 5, 6\]$"):  # at most 5 listed
        check_binary_labels([0, 2, 3, 4, 5, 6, 7], "y")
    with pytest.raises(ValueError, match="^y_true must hold"):
        membership_report([0, 2], [0, 1])
    with pytest.raises(ValueError, match="^y_pred must hold"):
        membership_report([0, 1], [0, 2])


def test_undefined_precision_recall_f1_are_zero_without_a_warning():
    """No image predicted used (precision 0/0), or none truly used (recall 0/0): 0, silently."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        none_flagged = membership_report([1, 0, 1], [0, 0, 0], output_dict=True)
        none_used = membership_report([0, 0, 0], [1, 0, 0], output_dict=True)
        nothing = membership_report([0, 0, 0], [0, 0, 0], output_dict=True)  # F1 is 0/0 too
    assert nothing["precision"] == nothing["recall"] == nothing["f1"] == 0.0
    assert none_flagged["precision"] == 0.0 and none_flagged["f1"] == 0.0
    assert none_used["recall"] == 0.0 and none_used["f1"] == 0.0


def test_the_table_is_laid_out_exactly():
    # columns are max(7, longest name) + 1 wide, right-aligned, 3 decimals
    assert membership_report([1, 0], [1, 0]).splitlines()[0] == "metric" + " " * 7 + "score"
    table = format_reports({"a": {"kappa": 0.5}, "long_name": {"kappa": -0.25}})
    header = "metric" + " " * 4 + " " * 9 + "a" + " long_name"
    assert table == header + "\n" + "kappa" + " " * 10 + "0.500" + " " * 4 + "-0.250"


# --- with scores: ROC AUC and the TPR at 1% FPR ---------------------------------------------


def test_scores_add_auc_and_tpr_at_1pct_fpr_computed_by_hand():
    # 4 used, 4 not used; the used scores 0.9, 0.8, 0.35, 0.2, the unused 0.7, 0.3, 0.25, 0.1.
    # Pairs (used > unused): 0.9 and 0.8 beat all 4, 0.35 beats 3, 0.2 beats 1 -> AUC 12/16.
    # ROC: (0, 0.5) once 0.9 and 0.8 are flagged, then (0.25, 0.5) at 0.7: the TPR at 1% FPR
    # lies on the first segment, 0.5.
    y = [1, 1, 1, 1, 0, 0, 0, 0]
    score = [0.9, 0.8, 0.35, 0.2, 0.7, 0.3, 0.25, 0.1]
    pred = [1, 1, 0, 0, 1, 0, 0, 0]
    r = membership_report(y, pred, y_score=score, output_dict=True)
    assert r["auc"] == pytest.approx(12 / 16)
    assert r["tpr_at_1pct_fpr"] == pytest.approx(0.5)
    assert r["kappa"] == membership_report(y, pred, output_dict=True)["kappa"]  # unchanged
    table = membership_report(y, pred, y_score=score)
    assert [line.split() for line in table.splitlines()[-2:]] == [
        ["auc", "0.750"],
        ["TPR@1%FPR", "0.500"],
    ]


def test_tpr_at_fpr_interpolates_the_roc_curve_between_its_points():
    """With 4 unused images the curve's points sit at FPR 0, 0.25, ...: 1% FPR lies between the
    first two, read on the straight line (a mixed detector), not rounded down to the first."""
    from skfingerprint import tpr_at_fpr

    y = [1, 1, 1, 1, 0, 0, 0, 0]
    # the top score is unused: the curve starts (0, 0) -> (0.25, 0) -> (0.25, 1) -> (1, 1)
    assert tpr_at_fpr(y, [0.8, 0.7, 0.6, 0.5, 0.9, 0.1, 0.2, 0.3], 0.01) == 0.0
    assert tpr_at_fpr(y, [0.8, 0.7, 0.6, 0.5, 0.9, 0.1, 0.2, 0.3], 0.25) == 1.0
    # one used above everything: (0, 0.25); then an unused: (0.25, 0.25); then the rest
    s = [0.9, 0.6, 0.5, 0.4, 0.7, 0.1, 0.2, 0.3]
    assert tpr_at_fpr(y, s, 0.01) == pytest.approx(0.25)
    assert tpr_at_fpr(y, s, 0.0) == pytest.approx(0.25)
    assert tpr_at_fpr(y, s, 0.5) == pytest.approx(1.0)
    # 100 unused, 2 used: one used above every unused one, one below 3 of them (0.97-0.99):
    # (0, 0.5) -> (0.03, 0.5) -> (0.03, 1)
    y2 = [1, 1] + [0] * 100
    s2 = np.r_[2.0, 0.965, np.linspace(0, 0.99, 100)]
    assert tpr_at_fpr(y2, s2, 0.01) == pytest.approx(0.5)
    assert tpr_at_fpr(y2, s2, 0.029) == pytest.approx(0.5)
    assert tpr_at_fpr(y2, s2, 0.031) == pytest.approx(1.0)


def test_tpr_at_fpr_matches_the_benchmarks_definition_on_random_scores():
    from sklearn.metrics import roc_curve

    from skfingerprint import tpr_at_fpr

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    s = rng.normal(size=300) + y
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    for level in (0.0, 0.01, 0.05, 0.1, 0.5, 1.0):
        assert tpr_at_fpr(y, s, level) == pytest.approx(np.interp(level, fpr, tpr))


def test_scores_of_one_class_give_nan_auc_not_an_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor scikit-learn's warning for an undefined AUC
        r = membership_report([1, 1, 1], [1, 0, 1], y_score=[0.2, 0.5, 0.9], output_dict=True)
    assert np.isnan(r["auc"]) and np.isnan(r["tpr_at_1pct_fpr"])
    assert r["recall"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("score", "match"),
    [
        ([0.1, 0.2], r"one score per real image \(3\); got shape \(2,\)"),
        ([[0.1, 0.2, 0.3]], r"one score per real image \(3\); got shape \(1, 3\)"),
        ([0.1, np.nan, np.inf], "y_score holds 2 non-finite values"),
        (["a", "b", "c"], "y_score must be numbers; got dtype <U1"),
    ],
)
def test_bad_scores_are_refused(score, match):
    from skfingerprint import tpr_at_fpr

    with pytest.raises(ValueError, match=match):
        membership_report([1, 0, 1], [1, 0, 0], y_score=score)
    with pytest.raises(ValueError, match=match):  # the same rule, naming the same argument
        tpr_at_fpr([1, 0, 1], score)


def test_tpr_at_fpr_refuses_what_has_no_curve():
    from skfingerprint import tpr_at_fpr

    with pytest.raises(ValueError) as one_class:
        tpr_at_fpr([0, 0], [0.1, 0.2])
    assert str(one_class.value) == (
        "y_true holds one class: the ROC curve needs used and not-used images"
    )
    with pytest.raises(ValueError, match=r"^y_true must hold only 0 \(not used\) and 1"):
        tpr_at_fpr([0, 2], [0.1, 0.2])
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match=r"fpr must be in \[0, 1\]"):
            tpr_at_fpr([0, 1], [0.1, 0.2], bad)


def test_the_table_shows_auc_only_when_every_method_has_it():
    a = membership_report([1, 0], [1, 0], y_score=[0.9, 0.1], output_dict=True)
    b = membership_report([1, 0], [1, 0], output_dict=True)
    assert "auc" in format_reports({"a": a, "a2": a})
    assert "auc" not in format_reports({"a": a, "b": b})
    assert "TPR@1%FPR" not in format_reports({"a": a, "b": b})
