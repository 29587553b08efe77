"""Behaviour of ``CANetClassifier``: learning, masking, determinism, persistence, sklearn API."""

import contextlib
import io
import pickle
import subprocess
import sys
import textwrap

import joblib
import numpy as np
import pytest
import torch
from scipy.special import logit
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.utils._param_validation import InvalidParameterError

from skfingerprint._canet_net import UniformDropout
from skfingerprint.baselines import MaxSimilarityClassifier
from skfingerprint.canet import (
    MASKED_COSINE,
    CANetClassifier,
    CANetModule,
    supervised_contrastive_loss,
)
from skfingerprint.metrics import kappa_scorer

D, K = 8, 5
F = 2 * D + 1
# Tiny and quick: tests run on 2 shared cores.
FAST = dict(hidden=(16, 8), n_heads=2, batch_size=16, lr=3e-3, max_epochs=8, random_state=0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def make_candidates(n, *, noise=1.0, seed=0, n_masked=0):
    """Planted leak: a used real image has a library candidate close to it (real + noise).

    Returns X (n, K, 2D+1) sorted by decreasing cosine, and y alternating 0/1. The last
    ``n_masked`` candidates of every other row are masked the way the selector masks them.
    """
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    real = rng.normal(size=(n, D))
    cand = rng.normal(size=(n, K, D))
    cand[y == 1, 0] = real[y == 1] + noise * rng.normal(size=(int(y.sum()), D))
    unit = lambda a: a / np.linalg.norm(a, axis=-1, keepdims=True)  # noqa: E731
    cos = np.einsum("nd,nkd->nk", unit(real), unit(cand))
    order = np.argsort(-cos, axis=1)
    cand = np.take_along_axis(cand, order[..., None], 1)
    cos = np.take_along_axis(cos, order, 1)
    X = np.concatenate([np.repeat(real[:, None], K, 1), cand, cos[..., None]], -1)
    X = X.astype(np.float32)
    if n_masked:
        X[::2, K - n_masked :, D:-1] = 0.0
        X[::2, K - n_masked :, -1] = MASKED_COSINE
    return X, y


def best_cosine_threshold_kappa(X_train, y_train, X_test, y_test):
    """The max-cosine baseline: one threshold, the best kappa on the training rows."""
    train_best, test_best = X_train[:, 0, -1], X_test[:, 0, -1]
    t = max(np.unique(train_best), key=lambda t: cohen_kappa_score(y_train, train_best >= t))
    return cohen_kappa_score(y_test, (test_best >= t).astype(int))


@pytest.fixture(scope="module")
def data():
    return make_candidates(80, seed=1, n_masked=2)


@pytest.fixture(scope="module")
def fitted(data):
    X, y = data
    with torch.random.fork_rng():
        return CANetClassifier(**FAST).fit(X, y)


# --- learning ---------------------------------------------------------------------------------
def test_learns_planted_signal_at_least_as_well_as_max_cosine():
    X, y = make_candidates(240, noise=0.7, seed=2)
    Xtr, ytr, Xte, yte = X[:120], y[:120], X[120:], y[120:]
    clf = CANetClassifier(**{**FAST, "max_epochs": 20}, threshold=0.5).fit(Xtr, ytr)
    kappa = cohen_kappa_score(yte, clf.predict(Xte))
    baseline = best_cosine_threshold_kappa(Xtr, ytr, Xte, yte)
    assert kappa > 0.6
    assert kappa >= baseline - 0.035  # one held-out image of 120 is ~0.017 of kappa


@pytest.mark.parametrize("pair_features", ["compare", "both"])
def test_compare_pair_features_learn_a_copy_without_the_cosine(pair_features):
    # Same leak, but the cosine column is noise: only the pair vectors say which real image has
    # a near-copy. [|r - c|, r * c] exposes it directly.
    X, y = make_candidates(240, noise=0.3, seed=2)
    rng = np.random.default_rng(5)
    X[..., -1] = np.sort(rng.uniform(0, 1, size=X.shape[:2]), axis=1)[:, ::-1]
    Xtr, ytr, Xte, yte = X[:120], y[:120], X[120:], y[120:]
    assert abs(best_cosine_threshold_kappa(Xtr, ytr, Xte, yte)) < 0.3
    clf = CANetClassifier(
        **{**FAST, "max_epochs": 30},
        pair_features=pair_features,
        early_stopping=False,
        threshold=0.5,
    ).fit(Xtr, ytr)
    assert cohen_kappa_score(yte, clf.predict(Xte)) > 0.5


def test_the_modules_defaults_are_the_papers_sizes():
    module = CANetModule(n_features=2 * 768 + 1, n_candidates=10)
    widths = [m.out_features for m in module.encoder if isinstance(m, torch.nn.Linear)]
    assert widths == [1536, 1024, 512]  # 2D, then the paper's 1024 and 512
    assert module.attention.num_heads == 8 and module.encoder[3].p == 0.6
    assert module.head[0].out_features == 256


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"n_features": 1, "pair_features": "relations"},
            "n_features must be >= 2 (scores + cosine); got 1",
        ),
        ({"n_features": 1}, "n_features must be 2D + 1 (odd, >= 3); got 1"),
        ({"n_features": 4}, "n_features must be 2D + 1 (odd, >= 3); got 4"),
        ({"hidden": ()}, "hidden must be a non-empty sequence of positive ints; got ()"),
        ({"hidden": (16, 0)}, "hidden must be a non-empty sequence of positive ints; got (16, 0)"),
        (
            {"hidden": (8, 4, 6), "n_heads": 4},
            "the attention width hidden[-1]=6 must be divisible by n_heads=4",
        ),
        (
            {"pair_features": "sum"},
            "pair_features must be one of ('concat', 'compare', 'both', 'relations'); got 'sum'",
        ),
    ],
)
def test_the_module_refuses_impossible_shapes_saying_which(kwargs, message):
    with pytest.raises(ValueError) as caught:
        CANetModule(**{"n_features": 17, "n_candidates": 5, **kwargs})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("kwargs", "first_layer"),
    [
        ({"n_features": 3}, (3, 2)),  # D = 1: the smallest pair
        ({"n_features": 2, "pair_features": "relations"}, (2, 16)),  # one score, the cosine
        ({"n_features": 6, "pair_features": "relations"}, (6, 20)),  # 4 (F - 1) above 16
        ({"n_features": 17, "pair_features": "both"}, (33, 16)),  # 4D + 1 inputs
        ({"n_features": 17, "hidden": (6, 8), "n_heads": 4}, (17, 16)),  # the last width divides
        ({"n_features": 17, "hidden": (4, 1), "n_heads": 1}, (17, 16)),
        ({"n_features": 17, "hidden": (8, 6, 4), "n_heads": 2}, (17, 16)),  # attention at the last
        ({"n_features": 17, "attention": False}, (17, 16)),
    ],
)
def test_the_module_takes_the_smallest_shapes_and_sizes_its_first_layer(kwargs, first_layer):
    """The first layer maps each candidate to 2D (``max(4 (F - 1), 16)`` for relation scores),
    from its 2D + 1 inputs (4D + 1 with ``"both"``, F with relation scores)."""
    module = CANetModule(**{"n_candidates": 5, **kwargs}).eval()
    n_features = kwargs["n_features"]
    assert (module.encoder[0].in_features, module.encoder[0].out_features) == first_layer
    assert (module.attention is None) == (kwargs.get("attention") is False)
    X = torch.rand(3, 5, n_features)
    assert module(X).shape == (3,) and torch.isfinite(module(X)).all()


def test_starts_from_the_max_cosine_logistic_baseline(data):
    X, _ = data
    module = CANetModule(F, K, hidden=(16, 8), n_heads=2, skip_init=(2.0, -0.5))
    module.eval()
    with torch.no_grad():
        logit = module(torch.from_numpy(X))
    assert torch.allclose(logit, 2.0 * torch.from_numpy(X[:, 0, -1]) - 0.5, atol=1e-6)


def relation_candidates(n, n_scores=3, seed=0):
    """Relation-score rows (``features="relations"``): ``n_scores`` scores and the cosine per
    candidate, sorted by decreasing cosine, the last candidate of every other row masked; used
    rows have a higher first score and best cosine."""
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    X = rng.normal(size=(n, K, n_scores + 1))
    X[..., -1] = np.sort(rng.uniform(0.2, 0.8, size=(n, K)), axis=1)[:, ::-1]
    X[y == 1, 0, 0] += 1.0
    X[y == 1, 0, -1] += 0.15
    X[::2, -1, :-1], X[::2, -1, -1] = 0.0, MASKED_COSINE
    return X.astype(np.float32), y


@pytest.mark.parametrize("pair_features", ["concat", "relations"])
def test_a_fit_starts_as_the_logistic_regression_on_the_standardised_skip_inputs(pair_features):
    """What ``fit`` hands the net's skip: a logistic regression (C = 1) of y on the best cosine
    standardised over every valid candidate's cosine, and with relation scores, before it, the
    first candidate's scores standardised over every valid candidate (weights >= 0). With a
    learning rate of 1e-9 the trained net is still that start (catches the statistics or the
    scores of another candidate, the mean added, the scale multiplied)."""
    from sklearn.linear_model import LogisticRegression

    from skfingerprint.linear_head import _positive_logistic_regression

    relations = pair_features == "relations"
    X, y = relation_candidates(60) if relations else make_candidates(60, seed=3, n_masked=2)
    clf = CANetClassifier(
        **{**FAST, "lr": 1e-9, "max_epochs": 1},
        weight_decay=0.0,
        early_stopping=False,
        pair_features=pair_features,
    ).fit(X, y)
    valid = X[..., -1] >= -1
    cosines = X[..., -1][valid]
    z = (X[:, 0, -1] - cosines.mean()) / cosines.std()  # the first candidate has the best cosine
    if relations:
        scores = X[..., :-1][valid]
        z = np.column_stack([(X[:, 0, :-1] - scores.mean(0)) / scores.std(0), z])
        start = _positive_logistic_regression(z, y, C=1.0)
    else:
        start = LogisticRegression(C=1.0).fit(z[:, None], y)
        z = z[:, None]
    np.testing.assert_allclose(clf.predict_proba(X)[:, 1], start.predict_proba(z)[:, 1], atol=2e-4)


def test_cosines_above_one_are_read_as_one(data):
    """Rounding can put a cosine a little above 1; the net and the skip's start read it as 1 (a
    start fitted on the unclipped values would differ)."""
    X, y = data
    X = X.copy()
    X[:6, 0, -1] = 1.0
    above = X.copy()
    above[:6, 0, -1] = 1.3
    params = {**FAST, "max_epochs": 2}
    np.testing.assert_array_equal(
        CANetClassifier(**params).fit(above, y).predict_proba(above),
        CANetClassifier(**params).fit(X, y).predict_proba(X),
    )


def test_vectors_are_standardised_so_their_scale_does_not_matter(data):
    """Real and candidate vectors 100 times smaller (the cosines unchanged) give the same net:
    each dimension is divided by its standard deviation in the training rows (catches small
    deviations left unscaled)."""
    X, y = data
    small = X.copy()
    small[..., :-1] *= 0.01
    params = {**FAST, "max_epochs": 2}
    np.testing.assert_allclose(
        CANetClassifier(**params).fit(small, y).predict_proba(small),
        CANetClassifier(**params).fit(X, y).predict_proba(X),
        atol=1e-4,
    )


def test_constant_features_are_left_unscaled_as_standard_scaler_leaves_them():
    from skfingerprint.canet import _scale

    np.testing.assert_array_equal(_scale([0.0, 1e-7, 0.5, 2.0]), [1.0, 1.0, 0.5, 2.0])


@pytest.mark.parametrize("pair_features", ["concat", "compare", "both"])
def test_the_real_vector_is_mapped_once_per_row_as_every_copy_would_be(data, pair_features):
    # the first layer's share of the real vector, computed once per row, gives what mapping each
    # candidate's copy gives, masked candidates in the rows (catches a slice or the bias lost);
    # comparison features hold no shared half, so there the shortcut must not be taken
    X = data[0].copy()
    X[0, 1:, D:-1], X[0, 1:, -1] = 0.0, MASKED_COSINE  # and a row with one valid candidate
    assert (X[1:, :, -1] < -1).any()  # masked candidates in other rows
    torch.manual_seed(0)
    module = CANetModule(F, K, hidden=(16, 8), n_heads=2, pair_features=pair_features).eval()
    torch.nn.init.normal_(module.head[-1].weight)  # not the zero start: logits read every layer
    feats, valid = module.prepare(torch.from_numpy(X))
    with torch.no_grad():
        shared = module.forward_prepared(feats, valid, shared_real=True)
        per_copy = module.forward_prepared(feats, valid, shared_real=False)
    assert shared.std() > 0.1
    torch.testing.assert_close(shared, per_copy, rtol=1e-5, atol=1e-5)


def test_copies_of_the_real_vector_that_differ_are_each_mapped(data):
    """FGSM moves each candidate's copy of the real vector on its own: unshared, the first layer
    maps every copy as it is."""
    torch.manual_seed(0)
    module = CANetModule(F, K, hidden=(16, 8), n_heads=2).eval()
    feats, _ = module.prepare(torch.from_numpy(data[0]))
    feats = feats + 0.5 * torch.randn(feats.shape)  # every copy moved its own way
    with torch.no_grad():
        torch.testing.assert_close(
            module._first_layer(feats, shared_real=False), module.encoder[0](feats)
        )


def test_comparison_features_are_the_distance_and_product_of_the_standardised_halves():
    """``[|r - c|, r * c]`` of the standardised vectors (``"both"``: after ``[r, c]``), then the
    standardised cosine; masked candidates zeroed."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, K, F)).astype(np.float32)
    X[:, :, :D] = X[:, :1, :D]
    X[:, :, -1] = [0.9, 0.5, 0.3, 0.1, MASKED_COSINE]
    mean, scale = rng.normal(size=D), rng.uniform(0.5, 2.0, size=D)
    stats = dict(feature_mean=mean, feature_scale=scale, cosine_mean=0.2, cosine_scale=0.5)
    r, c = (X[..., :D] - mean) / scale, (X[..., D:-1] - mean) / scale
    cosine = (X[..., -1:] - 0.2) / 0.5
    for pair_features, parts in [
        ("compare", [np.abs(r - c), r * c, cosine]),
        ("both", [r, c, np.abs(r - c), r * c, cosine]),
    ]:
        module = CANetModule(F, K, hidden=(16, 8), n_heads=2, pair_features=pair_features, **stats)
        feats, valid = module.prepare(torch.from_numpy(X))
        expected = np.concatenate(parts, axis=-1)
        expected[:, -1] = 0.0  # the masked candidate
        np.testing.assert_allclose(feats.numpy(), expected, rtol=1e-5, atol=1e-5)
        assert valid[:, :-1].all() and not valid[:, -1].any()


def test_fgsm_training_maps_each_perturbed_copy_of_the_real_vector(data, monkeypatch):
    # FGSM perturbs every candidate's copy of the real vector on its own: those passes must
    # not take the first candidate's copy for all (validation and prediction may)
    X, y = data
    calls = []
    first_layer = CANetModule._first_layer

    def spy(self, feats, shared_real):
        calls.append((self.training, shared_real))
        return first_layer(self, feats, shared_real)

    monkeypatch.setattr(CANetModule, "_first_layer", spy)
    CANetClassifier(**{**FAST, "max_epochs": 1}, adversarial_eps=0.1).fit(X, y)
    assert {shared for training, shared in calls if training} == {False}
    calls.clear()
    CANetClassifier(**{**FAST, "max_epochs": 1}).fit(X, y)
    assert {shared for training, shared in calls if training} == {True}


def test_rows_whose_candidates_carry_different_real_vectors_are_refused(fitted, data):
    X, y = data
    bad = X.copy()
    # a row past the first whose second candidate is valid, differing in the last real column
    row = int(np.flatnonzero(bad[:, 1, -1] > -1)[-1])
    assert row > 0
    bad[row, 1, D - 1] += 1.0
    with pytest.raises(ValueError) as caught:
        CANetClassifier(**FAST).fit(bad, y)
    assert str(caught.value) == (
        f"X[{row}] holds different real-image vectors in its valid candidates (its first {D} "
        "columns differ between them): each row of X is one real image's k candidates, "
        "[real vector, candidate vector, cosine], as FaissCandidateSelector returns them "
        "(relation scores, from features='relations', need pair_features='relations')"
    )
    with pytest.raises(ValueError, match="relation scores.*need pair_features='relations'"):
        fitted.predict_proba(bad)  # the likely cause named


# --- masking and invariances -----------------------------------------------------------------
def test_masked_candidates_do_not_change_the_output(fitted, data):
    X, _ = data
    masked = X[..., -1] < -1
    assert masked.any()
    X2 = X.copy()
    noise = np.random.default_rng(3).normal(size=X2.shape).astype(np.float32)
    X2[masked] = noise[masked]  # real and candidate halves both change
    X2[..., -1][masked] = -1.5  # still masked
    np.testing.assert_array_equal(fitted.predict_proba(X), fitted.predict_proba(X2))


def test_a_fully_masked_row_uses_its_first_candidate(fitted, data):
    X, _ = data
    X2 = X[:3].copy()
    X2[0, :, -1] = MASKED_COSINE
    proba = fitted.predict_proba(X2)
    assert np.isfinite(proba).all()
    X3 = X2.copy()
    X3[0, 0, -1] = -1.0  # the first candidate as the lowest valid cosine: same clipped input
    np.testing.assert_allclose(fitted.predict_proba(X3), proba, atol=1e-6)


def test_candidate_order_does_not_matter(fitted):
    X, _ = make_candidates(20, seed=4)
    perm = np.random.default_rng(0).permutation(K)
    np.testing.assert_allclose(
        fitted.predict_proba(X[:, perm]), fitted.predict_proba(X), rtol=0, atol=1e-5
    )


def test_fewer_candidates_at_predict_are_padded_as_masked(fitted, data):
    X, _ = data
    Xm = X.copy()
    Xm[:, 3:, D:-1] = 0.0
    Xm[:, 3:, -1] = MASKED_COSINE
    Xm[:, 0, -1] = np.maximum(Xm[:, 0, -1], -1.0)
    np.testing.assert_allclose(fitted.predict_proba(X[:, :3]), fitted.predict_proba(Xm), atol=1e-6)


# --- predictions and threshold -----------------------------------------------------------------
def test_fitted_attributes_and_output_shapes(fitted, data):
    X, _ = data
    assert fitted.n_features_in_ == F and fitted.n_candidates_ == K
    np.testing.assert_array_equal(fitted.classes_, [0, 1])
    assert fitted.temperature_ == 1.0
    assert len(fitted.history_) >= 1 and "valid_loss" in fitted.history_[-1]
    lrs = fitted.history_[:, "event_lr"]  # cosine annealing from lr to eta_min over max_epochs
    eta_min, epochs = fitted.eta_min, FAST["max_epochs"]
    cosine = [
        eta_min + (FAST["lr"] - eta_min) * (1 + np.cos(np.pi * e / epochs)) / 2
        for e in range(len(lrs))
    ]
    np.testing.assert_allclose(lrs, cosine, rtol=1e-6)
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 2)
    np.testing.assert_array_equal(fitted.predict_proba(X.astype(np.float64)), proba)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    np.testing.assert_allclose(fitted.decision_function(X), proba[:, 1] - fitted.threshold)
    labels = fitted.predict(X)
    assert set(np.unique(labels)) <= {0, 1}
    assert labels.dtype == fitted.classes_.dtype  # labels of classes_'s type, not floats


def test_the_weight_decay_asked_reaches_the_optimiser(data):
    X, y = data
    clf = CANetClassifier(**{**FAST, "max_epochs": 1}, weight_decay=0.05).fit(X, y)
    assert clf.net_.optimizer_.defaults["weight_decay"] == 0.05


def test_each_epoch_draws_its_own_batches(data, monkeypatch):
    """The training rows are shuffled into new batches every epoch (the first rows' order)."""
    from skfingerprint._canet_net import _CANetNet

    X, y = data
    X = X.copy()
    X[:, :, 0] = np.arange(len(X))[:, None]  # each row's number in a feature
    firsts = []
    step = _CANetNet.train_step_single

    def spy(self, batch, **kwargs):
        firsts.append(batch[0][:4, 0, 0].tolist())
        return step(self, batch, **kwargs)

    monkeypatch.setattr(_CANetNet, "train_step_single", spy)
    batch = {**FAST, "max_epochs": 2, "early_stopping": False, "batch_size": 80}
    CANetClassifier(**batch).fit(X, y)  # one batch of every row per epoch
    assert len(firsts) == 2 and firsts[0] != firsts[1]
    assert firsts[0] != [0.0, 1.0, 2.0, 3.0]


def test_threshold_changes_predictions_as_documented(fitted, data):
    X, _ = data
    clf = clone(fitted).set_params(threshold=0.6)
    clf.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    p = clf.predict_proba(X)[:, 1]
    counts = []
    for t in (0.0, 0.3, 0.5, 0.6, 0.8):
        pred = clf.set_params(threshold=t).predict(X)  # no refit needed
        np.testing.assert_array_equal(pred, (p > t).astype(int))
        counts.append(pred.sum())
    assert counts[0] == len(X)
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]


def test_decision_function_is_positive_exactly_where_predict_says_used(fitted, data):
    # decision_function used to be the logit: > 0 at P(used) > 0.5, not at the 0.6 threshold
    X, _ = data
    clf = clone(fitted).set_params(threshold=0.6)
    clf.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    p = clf.predict_proba(X)[:, 1]
    t = float(np.median(p))  # a threshold that splits the images
    clf.set_params(threshold=t)
    np.testing.assert_array_equal(clf.predict(X), (clf.decision_function(X) > 0).astype(int))
    np.testing.assert_allclose(clf.decision_function(X), p - t)
    assert 0 < clf.predict(X).sum() < len(X)


def test_threshold_is_strict_as_in_the_baselines(fitted, data):
    # CANet said used at P(used) == threshold (>=); the baselines do not at score == threshold_
    X, y = data
    clf = clone(fitted)
    clf.__dict__.update({k: v for k, v in fitted.__dict__.items() if k.endswith("_")})
    # P(used) of the one image predicted: batched with the others it may differ in its last bit
    # (BLAS blocks a matmul by batch size; seen on AVX512 machines)
    p = clf.predict_proba(X[:1])[:, 1]
    clf.set_params(threshold=float(p[0]))
    assert clf.predict(X[:1])[0] == 0
    assert clf.set_params(threshold=float(np.nextafter(p[0], 0))).predict(X[:1])[0] == 1
    score = MaxSimilarityClassifier().fit(X, y).score_samples(X[:1])[0]
    assert MaxSimilarityClassifier(threshold=score).fit(X, y).predict(X[:1])[0] == 0


# --- determinism and persistence ---------------------------------------------------------------
def test_int_random_state_repeats_exactly_and_leaves_the_global_rng_alone(data):
    X, y = data
    before = torch.random.get_rng_state()
    a = CANetClassifier(**FAST).fit(X, y).predict_proba(X)
    assert torch.equal(before, torch.random.get_rng_state())
    b = CANetClassifier(**FAST).fit(X, y).predict_proba(X)
    c = CANetClassifier(**{**FAST, "random_state": 1}).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_trains_with_fused_adamw_taking_plain_adamws_steps(fitted):
    from skfingerprint._runtime import adamw

    # the fitted net's optimiser: AdamW at the estimator's weight decay, fused where torch can
    # (a small fit runs ~1.1x faster fused on CPU: benchmarks/bench_canet.py)
    opt = fitted.net_.optimizer_
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["weight_decay"] == CANetClassifier().weight_decay
    fuses_on_cpu = tuple(int(v) for v in torch.__version__.split(".")[:2]) >= (2, 4)
    assert bool(opt.defaults.get("fused")) == fuses_on_cpu
    # and its steps are plain AdamW's
    torch.manual_seed(0)
    x = torch.randn(16, 4)

    def steps(make):
        w = torch.nn.Parameter(torch.ones(4))
        optimiser = make([w])
        for _ in range(5):
            optimiser.zero_grad()
            ((x @ w).tanh() ** 2).sum().backward()
            optimiser.step()
        return w.detach()

    fused = steps(lambda p: adamw(p, lr=0.1, weight_decay=0.5))
    plain = steps(lambda p: torch.optim.AdamW(p, lr=0.1, weight_decay=0.5))
    assert not torch.allclose(fused, torch.ones(4))  # it moved
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)


# --- precision ---------------------------------------------------------------------------------
@contextlib.contextmanager
def training_product_dtypes():
    """Dtypes of every ``nn.Linear`` output inside the block: ``["train"]`` of modules in
    training mode (the training steps), ``["eval"]`` of the rest (validation, prediction)."""
    seen = {"train": set(), "eval": set()}

    def hook(module, args, out):
        if isinstance(module, torch.nn.Linear):
            seen["train" if module.training else "eval"].add(out.dtype)

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield seen
    finally:
        handle.remove()


@pytest.mark.parametrize(
    ("native_bf16", "dtype", "expected"),
    [
        (True, "auto", torch.bfloat16),
        (False, "auto", torch.float32),  # emulated bf16 is tens of times slower: not chosen
        (True, "float32", torch.float32),  # an explicit dtype wins over the hardware
        (False, "bfloat16", torch.bfloat16),
    ],
)
def test_training_steps_multiply_in_the_chosen_precision_and_predict_in_fp32(
    data, monkeypatch, native_bf16, dtype, expected
):
    import skfingerprint._runtime as runtime

    X, y = data
    monkeypatch.setattr(runtime, "cpu_has_fast_bf16", lambda: native_bf16)
    clf = CANetClassifier(**{**FAST, "max_epochs": 2}, dtype=dtype, device="cpu")
    with training_product_dtypes() as fit_dtypes:
        clf.fit(X, y)
    assert clf.dtype_ == str(expected).removeprefix("torch.")
    assert fit_dtypes["train"] == {expected}
    assert fit_dtypes["eval"] == {torch.float32}  # early stopping's validation loss in fp32
    with training_product_dtypes() as predict_dtypes:
        proba = clf.predict_proba(X)
    assert predict_dtypes == {"train": set(), "eval": {torch.float32}}
    assert proba.dtype == np.float64 and np.isfinite(proba).all()
    loaded = pickle.loads(pickle.dumps(clf))  # the precision it trained in, recorded as such
    assert loaded.dtype_ == clf.dtype_ and loaded.get_params()["dtype"] == dtype


def test_bf16_training_learns_the_planted_signal_as_fp32_does():
    X, y = make_candidates(240, noise=0.7, seed=2)
    Xtr, ytr, Xte, yte = X[:120], y[:120], X[120:], y[120:]
    params = dict(**{**FAST, "max_epochs": 20}, threshold=0.5, device="cpu")
    fp32 = CANetClassifier(**params, dtype="float32").fit(Xtr, ytr).predict_proba(Xte)[:, 1]
    bf16 = CANetClassifier(**params, dtype="bfloat16").fit(Xtr, ytr).predict_proba(Xte)[:, 1]
    assert cohen_kappa_score(yte, (bf16 > 0.5).astype(int)) > 0.6
    assert np.corrcoef(fp32, bf16)[0, 1] > 0.99  # the same net, up to bf16's rounding
    assert not np.array_equal(fp32, bf16)  # but trained in another precision


def test_a_model_fitted_before_dtype_existed_loads_as_fp32(fitted, data):
    X, _ = data
    state = fitted.__getstate__()
    del state["dtype"], state["dtype_"]
    old = CANetClassifier.__new__(CANetClassifier)
    old.__setstate__(state)
    assert old.get_params()["dtype"] == "float32" and old.dtype_ == "float32"
    np.testing.assert_array_equal(old.predict_proba(X), fitted.predict_proba(X))
    unfitted = CANetClassifier().__getstate__()
    del unfitted["dtype"]
    fresh = CANetClassifier.__new__(CANetClassifier)
    fresh.__setstate__(unfitted)
    assert fresh.get_params()["dtype"] == "auto"


def test_joblib_round_trip_in_a_fresh_process(fitted, data, tmp_path):
    X, _ = data
    np.save(tmp_path / "X.npy", X)
    joblib.dump(fitted, tmp_path / "clf.joblib")
    code = textwrap.dedent(
        f"""
        import joblib, numpy as np
        clf = joblib.load({str(tmp_path / "clf.joblib")!r})
        X = np.load({str(tmp_path / "X.npy")!r})
        np.save({str(tmp_path / "p.npy")!r}, clf.predict_proba(X))
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), fitted.predict_proba(X))


def test_pickle_holds_cpu_tensors_only_and_a_cuda_fit_loads_without_cuda(fitted, data):
    X, _ = data
    state = fitted.__getstate__()
    assert "net_" not in state
    weights = state["_net_state"]["module"].values()  # numpy: nothing to move between devices
    assert weights and all(type(w) is np.ndarray for w in weights)
    # What a GPU fit pickles: the same CPU state dict, with the fit device recorded as CUDA.
    fitted_on_gpu = pickle.loads(pickle.dumps(fitted))
    fitted_on_gpu.device_ = "cuda:0"
    rng = torch.random.get_rng_state()
    loaded = pickle.loads(pickle.dumps(fitted_on_gpu))
    # rebuilding the net draws initial weights (then overwritten): not from the caller's RNG
    assert torch.equal(torch.random.get_rng_state(), rng)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert loaded.device_ == expected and loaded.net_.device == expected
    assert next(loaded.net_.module_.parameters()).device.type == expected
    np.testing.assert_allclose(loaded.predict_proba(X), fitted.predict_proba(X), atol=1e-6)
    # An unfitted estimator pickles too.
    assert pickle.loads(pickle.dumps(CANetClassifier(threshold=0.3))).threshold == 0.3


# --- scikit-learn API ----------------------------------------------------------------------------
def test_clone_get_params_set_params():
    clf = CANetClassifier(threshold=0.4, hidden=(32, 16), contrastive_weight=0.5)
    params = clf.get_params()
    for name in (
        "threshold",
        "hidden",
        "n_heads",
        "pair_features",
        "dropout",
        "lr",
        "weight_decay",
        "max_epochs",
        "batch_size",
        "eta_min",
        "contrastive_weight",
        "adversarial_eps",
        "calibrate",
        "early_stopping",
        "validation_fraction",
        "patience",
        "device",
        "dtype",
        "random_state",
        "verbose",
    ):
        assert name in params
    twin = clone(clf)
    assert twin.get_params() == params and not hasattr(twin, "net_")
    assert clf.set_params(threshold=0.7) is clf and clf.threshold == 0.7


def test_tags_say_3d_candidates_binary_and_deterministic_when_seeded():
    """What scikit-learn's checks and meta-estimators read: (n, k, F) input, two classes, and
    repeatable fits only with an int seed."""
    tags = CANetClassifier(random_state=0).__sklearn_tags__()
    assert tags.input_tags.three_d_array and not tags.input_tags.two_d_array
    assert not tags.classifier_tags.multi_class and not tags.non_deterministic
    assert CANetClassifier().__sklearn_tags__().non_deterministic


def _kappa_by_hand(params, X, y, cv):
    """Per-fold kappa computed here: fit a CANet on each training fold, threshold its P(used)
    on the test fold by hand (strictly above), sklearn's kappa."""
    from sklearn.model_selection import StratifiedKFold

    out = []
    for train, test in StratifiedKFold(cv).split(X[:, 0, 0], y):
        clf = CANetClassifier(**params).fit(X[train], y[train])
        used = (clf.predict_proba(X[test])[:, 1] > params["threshold"]).astype(int)
        out.append(cohen_kappa_score(y[test], used))
    return np.array(out)


def test_cross_val_score_and_grid_search_over_threshold(data):
    """cross_val_score with kappa_scorer gives each fold's kappa of P(used) > threshold, and the
    grid over the threshold scores each cell so and keeps the best (catches a scorer that is not
    kappa, a threshold lost by clone/set_params, or predict not reading the threshold)."""
    X, y = data
    quick = {**FAST, "max_epochs": 3, "early_stopping": False, "threshold": 0.5}
    scores = cross_val_score(CANetClassifier(**quick), X, y, cv=3, scoring=kappa_scorer)
    np.testing.assert_allclose(scores, _kappa_by_hand(quick, X, y, 3), atol=1e-12)
    thresholds = [0.4, 0.6]
    grid = GridSearchCV(
        CANetClassifier(**quick), {"threshold": thresholds}, cv=2, scoring=kappa_scorer
    ).fit(X, y)
    by_hand = [_kappa_by_hand({**quick, "threshold": t}, X, y, 2).mean() for t in thresholds]
    np.testing.assert_allclose(grid.cv_results_["mean_test_score"], by_hand, atol=1e-12)
    assert by_hand[0] != by_hand[1]  # the threshold really changes the scores here
    best = thresholds[int(np.argmax(by_hand))]
    assert grid.best_params_["threshold"] == best
    refit = CANetClassifier(**{**quick, "threshold": best}).fit(X, y)
    np.testing.assert_array_equal(grid.predict(X), refit.predict(X))


# --- training options ---------------------------------------------------------------------------
def test_calibration_rescales_the_logit_of_the_same_net(fitted, data):
    X, y = data
    with torch.random.fork_rng():
        cal = CANetClassifier(**FAST, calibrate=True).fit(X, y)
    assert cal.temperature_ > 0 and cal.temperature_ != 1.0
    # Same seed, same split: the same net, its logit divided by T.
    np.testing.assert_allclose(
        logit(cal.predict_proba(X)[:, 1]) * cal.temperature_,
        logit(fitted.predict_proba(X)[:, 1]),
        atol=1e-4,
    )
    assert not np.allclose(cal.predict_proba(X), fitted.predict_proba(X))


@pytest.mark.parametrize("option", [{"contrastive_weight": 1.0}, {"adversarial_eps": 0.1}])
def test_contrastive_and_adversarial_terms_change_training(fitted, data, option):
    X, y = data
    other = CANetClassifier(**FAST, **option).fit(X, y)
    plain_loss = [h["train_loss"] for h in fitted.history_]
    other_loss = [h["train_loss"] for h in other.history_]
    assert other_loss[0] != plain_loss[0]
    assert not np.allclose(other.predict_proba(X), fitted.predict_proba(X))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_a_training_step_minimises_bce_plus_weighted_supcon_plus_the_fgsm_term(data, eps):
    """The paper's hybrid loss, computed here from the module's own outputs: BCE of the logits
    + w * SupCon of the pooled embeddings, and with FGSM the same loss again at the features
    moved by eps * sign(gradient), masked candidates left in place (catches a term subtracted
    or divided, the step taken against the gradient, or the step's mask as a divisor)."""
    import torch.nn.functional as nnf

    X, y = data
    w = 0.5
    clf = CANetClassifier(
        **{**FAST, "max_epochs": 1},
        dropout=0.0,
        dtype="float32",
        contrastive_weight=w,
        adversarial_eps=eps,
    ).fit(X, y)
    Xb, yb = torch.from_numpy(X[:16]), torch.from_numpy(y[:16].astype(np.float32))
    assert (Xb[..., -1] < -1).any()  # masked candidates in the batch
    got = clf.net_.train_step_single((Xb, yb))["loss"]

    module = clf.net_.module_.train()
    feats, valid = module.prepare(Xb)
    feats.requires_grad_(True)

    def hybrid(features):
        logit, pooled = module.forward_prepared(
            features, valid, return_embedding=True, shared_real=not eps
        )
        bce = nnf.binary_cross_entropy_with_logits(logit, yb)
        return bce + w * supervised_contrastive_loss(pooled, yb)

    expected = hybrid(feats)
    if eps:
        (grad,) = torch.autograd.grad(expected, feats, retain_graph=True)
        expected = expected + hybrid((feats + eps * grad.sign() * valid[..., None]).detach())
    torch.testing.assert_close(got, expected)


def test_supervised_contrastive_loss():
    z = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
    together = supervised_contrastive_loss(z, torch.tensor([0, 0, 1, 1]))
    apart = supervised_contrastive_loss(z, torch.tensor([0, 1, 0, 1]))
    assert together < apart
    # No anchor has a positive: zero, with a gradient path.
    lone = supervised_contrastive_loss(z[:2].requires_grad_(), torch.tensor([0, 1]))
    assert lone.item() == 0.0 and lone.requires_grad


def test_supervised_contrastive_loss_is_khosla_et_als_formula():
    """Eq. 2 of SupCon written out anchor by anchor: for each anchor i with positives P(i),
    -(t / t0) / |P(i)| * sum_p log(exp(z_i.z_p / t) / sum_{a != i} exp(z_i.z_a / t)) on
    L2-normalised rows, averaged over the anchors that have a positive (the lone one, label 2,
    is skipped). Catches the normalisation on another axis, the temperature multiplied, the
    log-softmax's denominator on the wrong axis or added, a sum over all positives instead of a
    mean per anchor, and the t / t0 factor inverted."""
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(6, 3, generator=gen, dtype=torch.float64) * torch.arange(1.0, 7.0)[:, None]
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    t, t0 = 0.5, 0.25
    z = emb / emb.norm(dim=1, keepdim=True)
    per_anchor = []
    for i in range(6):
        positives = [p for p in range(6) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denominator = sum(torch.exp(z[i] @ z[a] / t) for a in range(6) if a != i)
        logs = [torch.log(torch.exp(z[i] @ z[p] / t) / denominator) for p in positives]
        per_anchor.append(-(t / t0) * sum(logs) / len(positives))
    expected = torch.stack(per_anchor).mean()
    got = supervised_contrastive_loss(emb, labels, temperature=t, base_temperature=t0)
    torch.testing.assert_close(got, expected)


def test_the_temperature_minimises_the_validation_log_loss_within_its_bounds():
    """``calibrate``'s T: the minimiser of the log loss of sigmoid(logit / T), searched over
    [e^-4, e^4] (catches a wrong sign for y, T multiplying the logit, other bounds)."""
    from scipy.special import expit
    from sklearn.metrics import log_loss

    from skfingerprint.canet import _fit_temperature

    rng = np.random.default_rng(0)
    true = rng.normal(size=400)
    y = (rng.random(400) < 1.0 / (1.0 + np.exp(-true))).astype(int)
    logits = 3.0 * true  # overconfident by about 3
    temperature = _fit_temperature(logits, y)
    grid = np.exp(np.linspace(-4.0, 4.0, 4001))
    best = grid[np.argmin([log_loss(y, expit(logits / g)) for g in grid])]
    assert 2.0 < temperature < 4.5
    assert temperature == pytest.approx(best, rel=1e-2)
    # Separable logits want T -> 0, noise wants T -> infinity: each stops at its bound.
    separable = np.where(y == 1, 1.0, -1.0)
    assert _fit_temperature(separable, y) == pytest.approx(np.exp(-4.0), rel=1e-3)
    assert _fit_temperature(-separable, y) == pytest.approx(np.exp(4.0), rel=1e-3)


def test_uniform_dropout_keeps_1_minus_p_and_rescales_as_torchs_dropout():
    # catches keeping with probability p instead of 1 - p, a missing or inverted 1 / (1 - p)
    # scale, dropping in eval mode, and a gradient that does not pass through the same mask
    torch.manual_seed(0)
    drop = UniformDropout(0.6)
    x = torch.full((200_000,), 2.0, requires_grad=True)
    y = drop(x)
    kept = y != 0
    assert abs(kept.float().mean().item() - 0.4) < 0.005
    assert torch.allclose(y[kept], torch.tensor(2.0 / 0.4))
    y.sum().backward()
    assert torch.equal(x.grad, kept.float() / 0.4)
    drop.eval()
    assert torch.equal(drop(x), x)
    assert torch.equal(UniformDropout(0.0).train()(x), x)
    # in bf16 too: the draw stays fp32 (a bf16 uniform keeps 0.398), the output bf16
    half = drop.train()(torch.ones(4_000_000, dtype=torch.bfloat16))
    assert half.dtype == torch.bfloat16
    assert abs((half != 0).float().mean().item() - 0.4) < 0.001
    with pytest.raises(ValueError, match="dropout must be in"):
        UniformDropout(1.0)


# --- errors ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda X, y: (X[:, 0], y), "3-d float array"),
        (lambda X, y: (X.astype(np.int64), y), "must hold floats"),
        (lambda X, y: (np.where(np.arange(F) == 3, np.nan, X).astype(np.float32), y), "NaN"),
        (lambda X, y: (X[..., 1:], y), "2D \\+ 1 features"),
        (lambda X, y: (X, np.where(y == 1, 2, 0)), "only 0 \\(not used\\) and 1"),
        (lambda X, y: (X, np.ones_like(y)), "needs both used"),
        (lambda X, y: (X, y[:-1]), "differ in length"),
    ],
)
def test_bad_training_input_raises_clearly(data, mutate, match):
    X, y = mutate(*data)
    with pytest.raises(ValueError, match=match):
        CANetClassifier(**FAST).fit(X, y)


def test_bad_parameters_raise_clearly(data):
    X, y = data
    with pytest.raises(InvalidParameterError, match="threshold"):
        CANetClassifier(threshold=1.5).fit(X, y)
    with pytest.raises(InvalidParameterError, match="pair_features"):
        CANetClassifier(pair_features="sum").fit(X, y)
    with pytest.raises(InvalidParameterError, match="dtype"):
        CANetClassifier(dtype="float16").fit(X, y)
    with pytest.raises(ValueError, match="must divide"):
        CANetClassifier(**{**FAST, "hidden": (16, 9)}).fit(X, y)
    for hidden in [(16, 0), (16.0, 8.0), [[16, 8]], np.array([], dtype=int)]:
        expected = f"hidden must be a non-empty sequence of positive ints; got {hidden!r}"
        with pytest.raises(ValueError) as caught:
            CANetClassifier(**{**FAST, "hidden": hidden}).fit(X, y)
        assert str(caught.value) == expected
    with pytest.raises(ValueError) as caught:  # only the last width must divide
        CANetClassifier(**{**FAST, "hidden": (8, 4, 6), "n_heads": 4}).fit(X, y)
    assert str(caught.value) == "n_heads=4 must divide the attention width hidden[-1]=6"
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            CANetClassifier(**{**FAST, "device": "cuda"}).fit(X, y)


@pytest.mark.parametrize(("hidden", "n_heads"), [((8,), 2), ((6, 8), 4), ((4, 1), 1)])
def test_any_positive_widths_whose_last_the_heads_divide_are_accepted(data, hidden, n_heads):
    X, y = data
    clf = CANetClassifier(**{**FAST, "max_epochs": 1, "hidden": hidden, "n_heads": n_heads})
    assert clf.fit(X, y).predict_proba(X).shape == (len(X), 2)


def test_predict_errors(fitted, data):
    X, _ = data
    with pytest.raises(NotFittedError):
        CANetClassifier().predict_proba(X)
    with pytest.raises(ValueError) as caught:
        fitted.predict(np.concatenate([X, X[..., :2]], axis=-1))
    assert str(caught.value) == (
        "X has 19 features per candidate, but CANetClassifier was fitted with 17 (2D + 1 for D = 8)"
    )
    with pytest.raises(ValueError, match="fitted with 5"):
        fitted.predict(np.concatenate([X, X[:, :1]], axis=1))
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(np.full_like(X, np.nan))


def test_too_few_images_for_a_validation_split_warns_and_trains_on_all():
    X, y = make_candidates(8, seed=6)
    y = np.array([0, 0, 0, 0, 0, 0, 1, 0])
    with pytest.warns(UserWarning, match="too few images"):
        clf = CANetClassifier(**{**FAST, "max_epochs": 2}, calibrate=True).fit(X, y)
    assert "valid_loss" not in clf.history_[-1] and clf.temperature_ == 1.0
    assert clf.predict_proba(X).shape == (8, 2)


@pytest.mark.parametrize(
    ("y", "fraction", "splits"),
    [
        ([0, 0, 1, 1], 0.5, True),  # 2 of each class, 2 on each side: the smallest allowed
        ([0, 0, 0, 1, 1, 1], 0.1, False),  # 1 image to validate on
        ([0, 0, 1, 1], 0.75, False),  # 1 image to train on
        ([0, 1, 1, 1, 1, 1], 0.5, False),  # 1 image of a class
    ],
)
def test_the_validation_split_needs_two_images_of_each_class_and_on_each_side(y, fraction, splits):
    """The limits of the validation split, each at its edge (catches `<=` for `<`, a limit of 3,
    `and` for `or`, `n + n_valid`), and the warning read whole."""
    y = np.array(y)
    clf = CANetClassifier(validation_fraction=fraction)
    if splits:
        train, valid = clf._split(y, seed=0)
        assert sorted([*train, *valid]) == list(range(len(y)))
        assert sorted(y[valid]) == [0, 1] and sorted(y[train]) == [0, 1]
        return
    n, smallest = len(y), int(np.bincount(y).min())
    expected = (
        f"y has too few images for a stratified validation split of {fraction:g} ({smallest} "
        f"in the smallest class, {n} in all; needs >= 2 of each class and >= 2 on each side): "
        "training on all of them without early stopping or calibration"
    )
    with pytest.warns(UserWarning) as caught:
        assert clf._split(y, seed=0) is None
    assert [str(w.message) for w in caught] == [expected]


def test_the_validation_split_keeps_the_share_of_used_images():
    """Stratified: 8 used of 40 with a fraction of 0.25 put exactly 2 used among the 10 held
    out, whatever the seed (an unstratified split misses that for some seeds)."""
    y = np.zeros(40, int)
    y[::5] = 1
    clf = CANetClassifier(validation_fraction=0.25)
    for seed in range(20):
        train, valid = clf._split(y, seed)
        assert len(valid) == 10 and y[valid].sum() == 2 and y[train].sum() == 6


def test_verbose_logs_every_epoch_and_a_last_line_on_stderr(data, capsys):
    # Catches: the epoch log on stdout (where results go), colour codes in a log file, or no
    # closing line naming the step and its epochs.
    X, y = data
    clf = CANetClassifier(**{**FAST, "max_epochs": 3}, verbose=1).fit(X, y)
    out, err = capsys.readouterr()
    assert out == "" and "\x1b[" not in err
    lines = err.splitlines()
    assert lines[0].split() == ["epoch", "train_loss", "valid_loss", "lr", "dur"]
    assert [line.split()[0] for line in lines[2:-1]] == ["1", "2", "3"]  # one line per epoch
    best = int(np.argmin([e["valid_loss"] for e in clf.history_])) + 1
    assert lines[-1].startswith("CANet training: 3 epochs on 64 real images in ")
    assert lines[-1].endswith(f"at epoch {best}")


def test_early_stoppings_message_goes_to_stderr_with_the_log(data, capsys):
    X, y = data
    clf = CANetClassifier(**{**FAST, "max_epochs": 40}, patience=1, verbose=1).fit(X, y)
    out, err = capsys.readouterr()
    assert len(clf.history_) < 40  # it stopped
    assert out == "" and "Stopping since valid_loss has not improved" in err


def test_verbose_0_prints_nothing(data, capsys):
    # Catches: the stderr sink given to skorch at verbose=0 (skorch prints through any sink but
    # its default print, whatever its own verbose says).
    X, y = data
    CANetClassifier(**{**FAST, "max_epochs": 3}).fit(X, y)
    assert capsys.readouterr() == ("", "")


# --- a grid over the threshold trains each fold's net once ---------------------------------------


@pytest.fixture
def net_trainings(monkeypatch):
    """A list that grows by one at each training of a CANet net."""
    from skfingerprint import canet

    trainings = []
    original = canet._CANetNet.fit

    def counting(self, *args, **kwargs):
        trainings.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(canet._CANetNet, "fit", counting)
    return trainings


def test_grid_over_the_threshold_trains_once_per_fold_and_scores_as_retraining(
    data, monkeypatch, net_trainings
):
    """3 thresholds x 3 folds + the refit: 4 trainings, not 10; and every cell scores exactly as
    when each fit trains its own net (the kept state is the state a retraining gives)."""
    from sklearn.model_selection import GridSearchCV

    from skfingerprint import canet, clear_memory_cache, kappa_scorer

    X, y = data
    grid = {"threshold": [0.3, 0.5, 0.7]}
    clear_memory_cache()
    kept = GridSearchCV(CANetClassifier(**FAST), grid, cv=3, scoring=kappa_scorer).fit(X, y)
    assert len(net_trainings) == 4
    monkeypatch.setattr(canet._FITTED, "max_size", 0)  # nothing kept: every fit trains
    clear_memory_cache()
    net_trainings.clear()
    retrained = GridSearchCV(CANetClassifier(**FAST), grid, cv=3, scoring=kappa_scorer).fit(X, y)
    assert len(net_trainings) == 10
    np.testing.assert_array_equal(
        kept.cv_results_["mean_test_score"], retrained.cv_results_["mean_test_score"]
    )
    np.testing.assert_array_equal(
        kept.best_estimator_.predict_proba(X), retrained.best_estimator_.predict_proba(X)
    )
    assert kept.best_estimator_.threshold == kept.best_params_["threshold"]


def test_kept_nets_outlast_a_grid_that_varies_another_parameter_faster(data, net_trainings):
    """GridSearchCV varies the parameter named last fastest (in a pipeline, ``embed__layers``
    after ``clf__threshold``): here 5 weight decays x 2 folds = 10 nets to keep between the two
    thresholds. A memo of 4 entries (as it was) trained 20; now 10 + the refit."""
    from sklearn.model_selection import GridSearchCV

    from skfingerprint import clear_memory_cache, kappa_scorer

    X, y = data
    clear_memory_cache()
    grid = {"threshold": [0.3, 0.7], "weight_decay": [0.0, 1e-4, 1e-3, 1e-2, 1e-1]}
    fast = {**FAST, "max_epochs": 2}
    GridSearchCV(CANetClassifier(**fast), grid, cv=2, scoring=kappa_scorer).fit(X, y)
    assert len(net_trainings) == 5 * 2 + 1


def test_kept_fits_need_an_int_seed_and_the_same_data_and_parameters(data, monkeypatch):
    from skfingerprint import canet, clear_memory_cache

    X, y = data
    clear_memory_cache()
    a = CANetClassifier(**FAST).fit(X, y)
    assert len(canet._FITTED) == 1
    b = CANetClassifier(**{**FAST, "threshold": 0.9}).fit(X, y)  # reused: same net
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert b.threshold == 0.9 and (b.predict(X) == (b.predict_proba(X)[:, 1] >= 0.9)).all()
    assert b.net_ is not a.net_  # a copy, not shared
    CANetClassifier(**{**FAST, "lr": 1e-3}).fit(X, y)  # another parameter: trained, kept
    CANetClassifier(**FAST).fit(X[:60], y[:60])  # other data: trained, kept
    assert len(canet._FITTED) == 3
    CANetClassifier(**{**FAST, "random_state": None}).fit(X, y)  # unseeded: never kept
    assert len(canet._FITTED) == 3
    clear_memory_cache()
    assert len(canet._FITTED) == 0


def test_a_kept_fit_keeps_the_callers_parameters_and_shares_nothing_with_the_memo(data):
    """A fit restored from the memo keeps the parameters the caller set (here a dtype other than
    the default, which an old model's defaults must not overwrite), and changing what it
    restored (its history, its standardisation) does not reach the next restore."""
    from skfingerprint import clear_memory_cache

    X, y = data
    clear_memory_cache()
    params = {**FAST, "max_epochs": 2, "dtype": "float32"}
    CANetClassifier(**params).fit(X, y)
    kept = CANetClassifier(**params).fit(X, y)  # restored
    assert kept.get_params()["dtype"] == "float32" and kept.dtype_ == "float32"
    loss = kept.history_[-1, "train_loss"]
    kept.history_[-1]["train_loss"] = 99.0
    kept._module_kwargs["cosine_mean"] = 99.0
    again = CANetClassifier(**params).fit(X, y)
    assert again.history_[-1, "train_loss"] == loss
    assert again._module_kwargs["cosine_mean"] != 99.0


class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize(("stream", "kept"), [(_Terminal(), True), (io.StringIO(), False)])
def test_the_epoch_log_keeps_its_colours_on_a_terminal_only(monkeypatch, stream, kept):
    from skfingerprint.canet import _to_stderr

    monkeypatch.setattr(sys, "stderr", stream)
    _to_stderr("1  \x1b[32m0.6931\x1b[0m")
    assert stream.getvalue() == ("1  \x1b[32m0.6931\x1b[0m\n" if kept else "1  0.6931\n")


def test_the_last_line_of_a_one_epoch_fit_says_epoch_and_its_train_loss(data, capsys):
    X, y = data
    clf = CANetClassifier(**{**FAST, "max_epochs": 1}, verbose=1).fit(X, y)
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("CANet training: 1 epoch on 64 real images in ")
    assert f", final train_loss {clf.history_[-1, 'train_loss']:.4f}, best" in last
