"""The shared contracts (``skfingerprint._contracts``): one rule each, the same for every user."""

import numpy as np
import pytest
import torch

from skfingerprint import CANetClassifier, LinearRelationClassifier, MaxSimilarityClassifier
from skfingerprint._contracts import (
    LAYER_STRING,
    MASK_BELOW,
    MASKED_COSINE,
    candidate_mask,
    check_candidates,
    check_training_labels,
    cohen_kappa,
    derive_seed,
)


def _candidates(n=6, k=3, d=2):
    X = np.zeros((n, k, 2 * d + 1), np.float32)
    X[..., -1] = np.linspace(0.9, 0.1, n * k).reshape(n, k)
    return X


def test_masked_cosine_is_below_the_mask_bound():
    assert MASKED_COSINE < MASK_BELOW <= -1.0


def test_candidate_mask_is_the_same_on_numpy_and_torch():
    X = _candidates()
    X[0, :, -1] = MASKED_COSINE  # a row with every candidate masked
    X[1, 2, -1] = MASKED_COSINE
    X[2, 1, -1] = -1.0  # a cosine of exactly -1 is a real (if poor) candidate
    for first in (True, False):
        np_mask = candidate_mask(X, first_always_valid=first)
        torch_mask = candidate_mask(torch.from_numpy(X), first_always_valid=first).numpy()
        np.testing.assert_array_equal(np_mask, torch_mask)
    assert candidate_mask(X)[0].tolist() == [True, False, False]  # the first is always valid
    assert candidate_mask(X, first_always_valid=False)[0].tolist() == [False, False, False]
    assert candidate_mask(X)[1].tolist() == [True, True, False]
    assert candidate_mask(X)[2].tolist() == [True, True, True]


@pytest.mark.parametrize(
    "clf",
    [MaxSimilarityClassifier(), CANetClassifier(max_epochs=1), LinearRelationClassifier()],
    ids=["max-similarity", "canet", "linear"],
)
def test_every_consumer_refuses_an_integer_candidate_array(clf):
    # MaxSimilarityClassifier accepted integer arrays while CANet refused them (drifted checks)
    X = (_candidates() * 10).astype(np.int64)
    with pytest.raises(ValueError, match="must hold floats"):
        clf.fit(X, [0, 1, 0, 1, 0, 1])


@pytest.mark.parametrize(
    "clf",
    [MaxSimilarityClassifier(), CANetClassifier(max_epochs=1)],
    ids=["max-similarity", "canet"],
)
def test_every_consumer_gives_the_same_shape_errors(clf):
    y = [0, 1, 0, 1, 0, 1]
    with pytest.raises(ValueError, match=r"3-d float array \(n, k, 2D\+1\)"):
        clf.fit(_candidates()[:, 0], y)
    with pytest.raises(ValueError, match=r"2D \+ 1 features.*\(n, k, 2D\+1\)"):
        clf.fit(_candidates()[..., 1:], y)
    with pytest.raises(ValueError, match="is empty"):
        clf.fit(_candidates()[:, :0], y)
    with pytest.raises(TypeError, match="FaissCandidateSelector"):
        clf.fit("candidates", y)


def test_check_candidates_converts_before_the_finiteness_check():
    X = _candidates().astype(np.float64)
    X[0, 0, 0] = 1e300  # finite in float64, infinite in float32
    assert check_candidates(X, finite="all") is not None
    with pytest.raises(ValueError, match="NaN or infinity"):
        check_candidates(X, dtype=np.float32)
    assert check_candidates(X, finite="cosine", dtype=None).dtype == np.float64  # kept as given


def test_training_labels_need_both_classes_and_one_per_image():
    assert check_training_labels([True, False], 2, "Est").tolist() == [1, 0]
    with pytest.raises(ValueError, match=r"only one class \(only class 1 appears\); Est needs"):
        check_training_labels([1, 1], 2, "Est")
    with pytest.raises(ValueError, match="3 labels for 2 real images"):
        check_training_labels([1, 0, 1], 2, "Est")


def test_kappa_is_zero_where_undefined():
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 0.0
    assert cohen_kappa([0, 1, 0, 1], [0, 1, 0, 1]) == 1.0


def test_derive_seed_repeats_for_an_int():
    assert derive_seed(3) == derive_seed(3)
    assert 0 <= derive_seed(None) < np.iinfo(np.int32).max
    seeds = derive_seed(np.random.RandomState(0), size=4)
    assert seeds.shape == (4,)
    assert derive_seed(0) == int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))


@pytest.mark.parametrize("text", ["L6+12+18", "6+12+18", " L 3 + 4 ", "12"])
def test_layer_string_accepts_the_paper_notation(text):
    assert LAYER_STRING.fullmatch(text)


@pytest.mark.parametrize("text", ["L6,12", "L", "6+", "six"])
def test_layer_string_refuses_other_text(text):
    assert not LAYER_STRING.fullmatch(text)


def test_overflow_to_float32_is_an_error_not_a_warning():
    """The float32 conversion's overflow is refused by message, without a RuntimeWarning first
    (catches the ``errstate`` dropped)."""
    import warnings

    X = _candidates().astype(np.float64)
    X[0, 0, 0] = 1e300
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="NaN or infinity"):
            check_candidates(X, dtype=np.float32)


def test_relation_rows_need_one_score_and_the_cosine():
    """Two features (one relation score, the cosine) is the smallest relation row (catches
    ``< 2`` moved to 3); one is refused by an exact message."""
    assert check_candidates(np.zeros((1, 1, 2), np.float32), relations=True).shape == (1, 1, 2)
    with pytest.raises(ValueError) as info:
        check_candidates(np.zeros((1, 1, 1), np.float32), relations=True)
    assert str(info.value) == (
        "X must have at least 2 features per candidate (relation scores, cosine) for "
        "pair_features='relations'; got 1"
    )


def test_max_similarity_reads_only_the_cosines():
    """Non-finite values outside the cosine column do not stop the baseline, which never reads
    them (catches the default ``finite="all"``); a non-finite cosine does."""
    X = _candidates()
    X[0, 1, 0] = np.nan
    y = np.tile([1, 0], 3)
    clf = MaxSimilarityClassifier().fit(X, y)
    np.testing.assert_array_equal(clf.score_samples(X), X[:, 0, -1].astype(np.float64))
    X[0, 1, -1] = np.inf
    with pytest.raises(ValueError, match="infinite cosines"):
        clf.score_samples(X)
