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
