"""Relation features (``FaissCandidateSelector(features="relations")``), the linear head on them,
and CANet with ``pair_features="relations"``."""

import re

import numpy as np
import pytest
import scipy.special
from sklearn.metrics import cohen_kappa_score

from skfingerprint import (
    MASKED_COSINE,
    CANetClassifier,
    FaissCandidateSelector,
    LinearRelationClassifier,
    MaxSimilarityClassifier,
    PairEmbeddings,
)
from skfingerprint import relations as R


def _split(n=40, m=400, d=6, p=10, seed=0):
    """Random reals and library in a main space and a 'pixels' space."""
    rng = np.random.default_rng(seed)
    real, lib = rng.normal(size=(n, d)), rng.normal(size=(m, d))
    preal, plib = rng.normal(size=(n, p)), rng.normal(size=(m, p))
    return PairEmbeddings(real, lib, "lib", spaces={"pixels": (preal, plib)})


def _with(E, real=None, lib=None, real_px=None, lib_px=None):
    return PairEmbeddings(
        E.real if real is None else real,
        E.library if lib is None else lib,
        "other",
        spaces={
            "pixels": (
                E.spaces["pixels"][0] if real_px is None else real_px,
                E.spaces["pixels"][1] if lib_px is None else lib_px,
            )
        },
    )


def _library_duplicated(E):
    """``E`` with every library image twice, in every space."""
    return _with(
        E,
        lib=np.concatenate([E.library, E.library]),
        lib_px=np.concatenate([E.spaces["pixels"][1]] * 2),
    )


def test_the_scores_have_their_defined_values_on_a_worked_example():
    # Orthogonal reals e1, e2, e3; library: a copy of e1, a blend of e1 and e2, and e3 scaled.
    real = np.eye(3)
    lib = np.array([[1.0, 0, 0], [0.8, 0.6, 0], [0, 0, 2.0], [0.6, 0.8, 0]])
    per_real, per_cand = R._space_raw(
        real, lib / np.linalg.norm(lib, axis=1)[:, None], np.array([[0, 1], [3, 1], [2, 0]])
    )
    np.testing.assert_allclose(per_real[:, 0], [1.0, 0.8, 1.0], atol=1e-6)  # top1
    np.testing.assert_allclose(
        per_real[:, 1], [1.0, 0.8, 1.0], atol=1e-6
    )  # calib: reals orthogonal
    # owners: lib0 -> r0, lib1 -> r0, lib2 -> r2, lib3 -> r1; counts 2, 1, 1 times n/m = 3/4
    np.testing.assert_allclose(per_real[:, 2], [1.5, 0.75, 0.75], atol=1e-6)
    # margin of r1: its nearest lib3 has 0.8 to r1 and 0.6 to r0 -> 0.2
    np.testing.assert_allclose(per_real[1, 3], 0.2, atol=1e-6)
    # per candidate of r0: lib0 (cos 1, owner, margin 1 - 0) and lib1 (0.8, owner, 0.8 - 0.6)
    np.testing.assert_allclose(per_cand[0], [[1.0, 1.0, 1.0], [0.8, 1.0, 0.2]], atol=1e-6)
    # r1's candidate lib1 belongs to r0: not owner, margin 0.6 - 0.8
    np.testing.assert_allclose(per_cand[1, 1], [0.6, 0.0, -0.2], atol=1e-6)


def test_attribution_averages_one_whatever_the_sizes():
    for n, m in [(40, 400), (25, 1000)]:
        per_real = R.raw_relations(_split(n=n, m=m), ("vit", "pixels"), 3)[2]
        for pr in per_real:
            assert pr[:, 2].mean() == pytest.approx(1.0)


def test_per_real_scores_survive_duplicating_every_library_image():
    E = _split(m=400)  # density's k = m / 200, m / 100, m / 50: 2, 4, 8, then twice that
    dup = _library_duplicated(E)
    spaces = ("pixels", "vit", "pixels_whitened")
    for a, b in zip(
        R.raw_relations(E, spaces, 3)[2], R.raw_relations(dup, spaces, 3)[2], strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_features_follow_the_order_of_the_reals_and_ignore_the_library_order():
    E = _split()
    spaces = ("pixels", "pixels_whitened", "vit")
    sel = FaissCandidateSelector(
        k=5, min_similarity=None, features="relations", relation_spaces=spaces
    ).fit(E)
    X = sel.transform(E)
    perm = np.random.default_rng(1).permutation(len(E))
    shuffled = _with(E, real=E.real[perm], real_px=E.spaces["pixels"][0][perm])
    np.testing.assert_allclose(sel.transform(shuffled), X[perm], rtol=1e-5, atol=1e-5)
    lperm = np.random.default_rng(2).permutation(len(E.library))
    relib = _with(E, lib=E.library[lperm], lib_px=E.spaces["pixels"][1][lperm])
    np.testing.assert_allclose(sel.transform(relib), X, rtol=1e-5, atol=1e-5)


def test_selector_relation_output_layout_and_mask():
    E = _split()
    paper = FaissCandidateSelector(k=5, min_similarity=0.8).fit(E).transform(E)
    sel = FaissCandidateSelector(k=5, min_similarity=0.8, features="relations").fit(E)
    X = sel.transform(E)
    assert sel.spaces_ == ("vit", "pixels")
    assert X.shape == (len(E), 5, 14 * 2 + 1)
    assert len(R.relation_feature_names(sel.spaces_)) == X.shape[2]
    # candidates chosen in the first space: the same cosines and mask as the paper's search
    np.testing.assert_allclose(X[..., -1], paper[..., -1], atol=1e-6)
    masked = X[..., -1] == MASKED_COSINE
    assert masked.any() and not masked[:, 0].any()
    assert (X[masked][:, :-1] == 0).all()
    # standardised over the split: each per-real score has mean 0 and spread 1 over the reals
    top1 = X[:, 0, 3]  # vit block: cos, owner, owner_margin, then top1
    assert top1.mean() == pytest.approx(0.0, abs=1e-5) and top1.std() == pytest.approx(1.0, 1e-4)


def test_candidates_come_from_the_first_relation_space():
    E = _split()
    sel = FaissCandidateSelector(k=5, min_similarity=None, features="relations")
    X = sel.set_params(relation_spaces=("pixels",)).fit(E).transform(E)
    real, lib = R.space_vectors(E, "pixels")
    best = np.sort(real @ lib.T, axis=1)[:, ::-1][:, :5]
    np.testing.assert_allclose(X[..., -1], best, atol=1e-5)
    assert X.shape[2] == 15
    with pytest.raises(ValueError, match="not in the input"):
        sel.set_params(relation_spaces=("pixels16",)).fit(E)


def test_a_small_call_uses_the_statistics_kept_from_fit():
    E = _split()
    sel = FaissCandidateSelector(k=5, min_similarity=None, features="relations").fit(E)
    one = sel.transform(E[[3]])
    assert np.isfinite(one).all()
    sims, _, per_real, per_cand = R.raw_relations(E[[3]], sel.spaces_, 5)
    expected = R.standardised(per_real, per_cand, sel.relation_stats_, sims)
    np.testing.assert_allclose(one, expected, rtol=1e-5, atol=1e-6)
    # the fit statistics are those of the fit split: its own transform reproduces them
    np.testing.assert_allclose(sel.transform(E)[:, 0, 3].mean(), 0.0, atol=1e-5)


def test_spectral_refinement_is_refused_with_relation_scores():
    """It was silently ignored: the relation output never applied the spectral mask."""
    with pytest.raises(ValueError, match="refine='spectral'.*features='relations'"):
        FaissCandidateSelector(k=5, features="relations", refine="spectral").fit(_split())


def test_selector_refuses_input_without_its_spaces():
    E = _split()
    sel = FaissCandidateSelector(k=5, features="relations").fit(E)
    with pytest.raises(
        ValueError, match=re.escape("come from ViTLayerFusionEmbedder(pixel_size=...)")
    ):
        sel.transform(PairEmbeddings(E.real, E.library, "lib"))


def test_pair_embeddings_slice_every_space_and_check_shapes():
    E = _split(n=6)
    sub = E[[4, 1]]
    np.testing.assert_array_equal(sub.spaces["pixels"][0], E.spaces["pixels"][0][[4, 1]])
    assert sub.spaces["pixels"][1] is E.spaces["pixels"][1]
    with pytest.raises(ValueError, match="space 'pixels'"):
        PairEmbeddings(E.real, E.library, "x", spaces={"pixels": (E.real[:3], E.library)})


# --- the heads ----------------------------------------------------------------------------------


def _planted(n, seed, rule):
    """Candidate arrays (n, 8, 5) whose cosine column says nothing about y."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 8, 5)).astype(np.float32)
    X[..., -1] = -np.sort(-rng.uniform(0.2, 0.9, size=(n, 8)), axis=1)
    y = rule(X).astype(int)
    return X, y


def test_linear_head_reads_the_first_candidates_scores():
    X, y = _planted(300, 0, lambda X: X[:, 0, 1] > 0)
    Xt, yt = _planted(300, 1, lambda X: X[:, 0, 1] > 0)
    clf = LinearRelationClassifier().fit(X, y)
    assert cohen_kappa_score(yt, clf.predict(Xt)) > 0.8
    # the rule lives in row 0 only: moving the signal to another candidate loses it
    moved = Xt.copy()
    moved[:, 0, 1] = 0.0
    assert cohen_kappa_score(yt, clf.predict(moved)) < 0.2
    with pytest.raises(ValueError, match="fitted with 5"):
        clf.predict(Xt[..., 1:])


def test_linear_head_is_a_logistic_regression_on_every_score_but_the_cosine():
    """Its decision values equal a regression fitted by hand on row 0's columns but the last,
    with the given ``C`` (catches a column dropped, ``C`` or ``threshold`` not stored)."""
    from sklearn.linear_model import LogisticRegression

    X, y = _planted(200, 2, lambda X: X[:, 0, -2] > 0)  # the signal in the last score column
    clf = LinearRelationClassifier(C=0.01, threshold=0.3, positive=False).fit(X, y)
    assert clf.get_params() == {
        "C": 0.01, "threshold": 0.3, "used_fraction": None, "positive": False
    }  # fmt: skip
    assert clf.threshold_ == 0.3
    ref = LogisticRegression(C=0.01, max_iter=2000).fit(X[:, 0, :-1], y)
    np.testing.assert_allclose(clf.score_samples(X), ref.decision_function(X[:, 0, :-1]))
    assert clf.model_.coef_.shape == (1, 4)
    assert LinearRelationClassifier().C == 0.1  # the documented default
    # read in float32 whatever the input: a float64 copy gives the same regression
    as64 = LinearRelationClassifier(C=0.01, positive=False).fit(X.astype(np.float64), y)
    np.testing.assert_array_equal(as64.model_.coef_, clf.model_.coef_)
    tags = clf.__sklearn_tags__()
    assert tags.input_tags.two_d_array is False and tags.input_tags.three_d_array is True
    assert tags.classifier_tags.multi_class is False


def test_positive_head_is_the_plain_fit_when_no_bound_binds_and_zeroes_a_contrary_score():
    """``positive=True`` (the default) minimises scikit-learn's objective with weights >= 0:
    where every plain weight is positive it is the plain fit, intercept included (catches
    ``C`` on the wrong term, a wrong gradient, the bound on the intercept); a score that
    lowers P(used) gets weight 0 where the plain fit gives it a negative one."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 2, 4)).astype(np.float32)
    s = X[:, 0, :3].astype(np.float64)
    y = (s @ [1.0, 0.5, 0.2] - 1.0 + rng.logistic(size=300) > 0).astype(int)
    clf = LinearRelationClassifier().fit(X, y)
    assert LinearRelationClassifier().positive is True  # the documented default
    ref = LogisticRegression(C=0.1, tol=1e-10, max_iter=10_000).fit(s, y)
    np.testing.assert_allclose(clf.model_.coef_, ref.coef_, atol=1e-4)
    np.testing.assert_allclose(clf.model_.intercept_, ref.intercept_, atol=1e-4)
    assert clf.model_.intercept_[0] < -0.3  # free to go negative
    np.testing.assert_allclose(clf.score_samples(X), ref.decision_function(s), atol=1e-3)
    contrary = X.copy()
    contrary[:, 0, 1] *= -1  # now higher means "less likely used"
    plain = LinearRelationClassifier(positive=False).fit(contrary, y)
    assert plain.model_.coef_[0, 1] < -0.1
    bounded = LinearRelationClassifier().fit(contrary, y)
    assert bounded.model_.coef_[0, 1] == pytest.approx(0.0, abs=1e-6)
    assert bounded.model_.coef_[0, 0] > 0.3


def test_positive_head_is_the_plain_fit_on_the_scores_its_bound_keeps():
    """Minimising with weights >= 0 where the bound holds one weight at 0 gives, for the others,
    the plain regression on those scores alone. Two correlated scores and one that carries
    nothing (its plain weight comes out negative). Catches the solver run without its bounds
    and the negative weight clipped afterwards (the other weights then are those fitted beside
    it: 0.02 off here)."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    n = 300
    common = rng.normal(size=(n, 1))
    s = np.c_[common + 0.5 * rng.normal(size=(n, 2)), rng.normal(size=(n, 2))]
    y = (s[:, 0] - 0.2 * s[:, 1] + 0.7 * s[:, 2] + rng.logistic(size=n) > 0).astype(int)
    X = np.zeros((n, 2, 5), np.float32)
    X[:, 0, :4] = s
    s = X[:, 0, :4].astype(np.float64)
    assert LinearRelationClassifier(positive=False).fit(X, y).model_.coef_[0, 3] < -0.1
    clf = LinearRelationClassifier().fit(X, y)
    assert clf.model_.coef_[0, 3] == 0.0
    kept = LogisticRegression(C=0.1, tol=1e-12, max_iter=10_000).fit(s[:, :3], y)
    np.testing.assert_allclose(clf.model_.coef_[0, :3], kept.coef_[0], atol=1e-5)
    np.testing.assert_allclose(clf.model_.intercept_, kept.intercept_, atol=1e-5)
    # model_ is a fitted LogisticRegression in its own right (the docs say it applies the fit)
    model = clf.model_
    assert model.C == 0.1 and model.n_iter_.shape == (1,) and model.n_iter_[0] > 0
    np.testing.assert_array_equal(model.classes_, [0, 1])
    p = scipy.special.expit(s @ model.coef_[0] + model.intercept_[0])
    np.testing.assert_allclose(model.predict_proba(s), np.c_[1 - p, p], atol=1e-12)
    np.testing.assert_array_equal(model.predict(s), (p > 0.5).astype(int))


def test_linear_head_saved_before_positive_existed_loads_as_the_plain_fit_it_was():
    """A model file from before ``positive`` (no such attribute) loads with ``positive=False``,
    the fit it holds, and predicts as saved (catches get_params failing on the missing
    attribute, or the file read as a bounded fit)."""
    import pickle

    X, y = _planted(120, 2, lambda X: X[:, 0, 0] > 0)
    old = LinearRelationClassifier(positive=False).fit(X, y)
    del old.positive  # as a file written by the earlier version
    del old.used_fraction  # nor had that one
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded.get_params()["positive"] is False
    assert loaded.get_params()["used_fraction"] is None
    np.testing.assert_array_equal(loaded.predict(X), old.predict(X))


def test_linear_head_cuts_at_the_training_splits_used_fraction_by_default():
    """``threshold="prior"`` (the default) marks the training split's used fraction, not half
    and not the complement (catches ``quantile(y.mean())`` for ``1 - y.mean()``); ``"kappa"``
    and None learn the kappa-maximising cut of the same scores."""
    from skfingerprint.baselines import learn_kappa_threshold

    X, _ = _planted(400, 3, lambda X: X[:, 0, 1] > 0)
    y = (X[:, 0, 1] + np.random.default_rng(4).normal(scale=1.5, size=400) > 1.0).astype(int)
    assert 0.2 < y.mean() < 0.35  # a weak signal, a minority used
    clf = LinearRelationClassifier().fit(X, y)
    assert clf.get_params()["threshold"] == "prior"
    scores = clf.score_samples(X)
    assert clf.threshold_ == np.quantile(scores, 1 - y.mean())
    assert clf.predict(X).mean() == pytest.approx(y.mean(), abs=1 / 400)
    assert clf.train_kappa_ == pytest.approx(cohen_kappa_score(y, clf.predict(X)))
    for rule in ("kappa", None):
        kappa = LinearRelationClassifier(threshold=rule).fit(X, y)
        assert (kappa.threshold_, kappa.train_kappa_) == learn_kappa_threshold(scores, y)
    assert kappa.threshold_ != clf.threshold_
    with pytest.raises(ValueError, match="threshold"):
        LinearRelationClassifier(threshold="median").fit(X, y)


def test_linear_head_told_the_used_fraction_marks_that_share_of_any_split():
    """``used_fraction`` moves the prior cut to the training quantile that marks that share
    (catches ``quantile(f)`` for ``quantile(1 - f)``, which marks the complement, and the
    option ignored); on standardised scores of another split it marks about that share there
    too, which is what makes it the test split's share; with another threshold rule it is an
    error, not silently dropped."""
    X, _ = _planted(400, 5, lambda X: X[:, 0, 1] > 0)
    y = (X[:, 0, 1] + np.random.default_rng(6).normal(scale=1.5, size=400) > 0).astype(int)
    plain = LinearRelationClassifier().fit(X, y)
    for fraction in (0.2, 0.7):
        clf = LinearRelationClassifier(used_fraction=fraction).fit(X, y)
        np.testing.assert_array_equal(clf.model_.coef_, plain.model_.coef_)  # the same fit
        scores = clf.score_samples(X)
        assert clf.threshold_ == np.quantile(scores, 1 - fraction)
        assert clf.predict(X).mean() == pytest.approx(fraction, abs=1 / 400)
        assert clf.train_kappa_ == pytest.approx(cohen_kappa_score(y, clf.predict(X)))
        other, _ = _planted(2000, 7, lambda X: X[:, 0, 1] > 0)
        assert clf.predict(other).mean() == pytest.approx(fraction, abs=0.04)
    with pytest.raises(ValueError, match="threshold='kappa' cuts elsewhere"):
        LinearRelationClassifier(used_fraction=0.3, threshold="kappa").fit(X, y)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="used_fraction"):
            LinearRelationClassifier(used_fraction=bad).fit(X, y)


def test_a_selector_fitted_with_fewer_relation_scores_asks_to_be_refit():
    """Selectors pickled by versions with 5 per-real scores (before the two coarser density
    scales and the hull scores) or 9 (before the span scores): their statistics do not fit the
    11 scores computed now, which must say so, not broadcast or feed the head misaligned
    columns."""
    E = _split()
    sel = FaissCandidateSelector(k=5, min_similarity=None, features="relations").fit(E)
    stats = sel.relation_stats_
    for older in (5, 9):
        sel.relation_stats_ = stats[:, :, :older]
        names = re.escape(f"computes 11 ({', '.join(R.PER_REAL)}): refit the pipeline")
        with pytest.raises(ValueError, match=f"fitted with {older} per-real .*{names}"):
            sel.transform(E)


def test_canet_on_relations_learns_a_neighbourhood_rule_a_cosine_threshold_cannot():
    # used = at least 3 of the 8 candidates have a high score 1: a count over the
    # neighbourhood, invisible to the best cosine and to the first candidate's row alone
    rule = lambda X: (X[..., 1] > 0.6).sum(1) >= 3  # noqa: E731
    X, y = _planted(400, 0, rule)
    Xt, yt = _planted(400, 1, rule)
    canet = CANetClassifier(
        pair_features="relations", hidden=(32, 16), n_heads=2, lr=3e-3, max_epochs=60,
        dropout=0.1, threshold=0.5, random_state=0,
    ).fit(X, y)  # fmt: skip
    kappa_canet = cohen_kappa_score(yt, canet.predict(Xt))
    kappa_cos = cohen_kappa_score(yt, MaxSimilarityClassifier().fit(X, y).predict(Xt))
    kappa_linear = cohen_kappa_score(yt, LinearRelationClassifier().fit(X, y).predict(Xt))
    assert kappa_cos < 0.15 and kappa_linear < 0.4
    assert kappa_canet > 0.6, (kappa_canet, kappa_linear, kappa_cos)


def test_canet_on_relations_starts_as_the_linear_head():
    X, y = _planted(200, 0, lambda X: X[:, 0, 1] + 0.5 * X[:, 0, 2] > 0)
    canet = CANetClassifier(
        pair_features="relations", hidden=(16, 8), n_heads=2, max_epochs=1, lr=1e-12,
        early_stopping=False, random_state=0,
    ).fit(X, y)  # fmt: skip
    module = canet.net_.module_
    kw = canet._module_kwargs
    # the skip is a logistic regression of y on the standardised first row and best cosine
    z = (X[:, 0, :-1] - kw["feature_mean"]) / kw["feature_scale"]
    best = (X[:, 0, -1] - kw["cosine_mean"]) / kw["cosine_scale"]
    expected = z @ kw["relation_skip_init"] + kw["skip_init"][0] * best + kw["skip_init"][1]
    logit = scipy.special.logit(canet.predict_proba(X)[:, 1])
    np.testing.assert_allclose(logit, expected, rtol=1e-3, atol=1e-3)
    assert module.relation_skip is not None
    assert np.corrcoef(expected, X[:, 0, 1] + 0.5 * X[:, 0, 2])[0, 1] > 0.9


def test_canet_on_relations_starts_from_the_sign_constrained_regression():
    """Its skip keeps every weight >= 0, as the linear head does: a score that goes down with
    membership in this training draw gets 0, not a negative weight (an unconstrained start
    cost 0.086 kappa on unseen draws). Same objective as the head's, with C = 1."""
    from skfingerprint.linear_head import _positive_logistic_regression

    X, _ = _planted(300, 2, lambda X: X[:, 0, 1] > 0)
    y = (X[:, 0, 1] - X[:, 0, 2] > 0).astype(int)  # score 2 is against membership
    canet = CANetClassifier(
        pair_features="relations", hidden=(16, 8), n_heads=2, max_epochs=1, lr=1e-12,
        early_stopping=False, random_state=0,
    ).fit(X, y)  # fmt: skip
    kw = canet._module_kwargs
    weights = np.r_[kw["relation_skip_init"], kw["skip_init"][0]]
    # (the one epoch at lr 1e-12 moves a weight by about the learning rate)
    assert weights.min() >= -1e-9 and abs(kw["relation_skip_init"][2]) < 1e-9
    z = (X[:, 0, :-1] - kw["feature_mean"]) / kw["feature_scale"]
    best = (X[:, 0, -1] - kw["cosine_mean"]) / kw["cosine_scale"]
    reference = _positive_logistic_regression(np.c_[z, best], y, C=1.0)
    np.testing.assert_allclose(weights, reference.coef_[0], rtol=1e-5, atol=1e-6)
    assert kw["skip_init"][1] == pytest.approx(reference.intercept_[0], rel=1e-5, abs=1e-6)


# --- every score against a brute-force reference (mutation testing found them unpinned) ---------


def _reference_hull(x, neighbours):
    """Distance from x to its regularised affine reconstruction, by the Lagrange (KKT) system
    of min w'(G + lam I)w subject to sum(w) = 1, with G the Gram matrix of N - x."""
    k = len(neighbours)
    G = (neighbours - x) @ (neighbours - x).T
    lam = 1e-3 * np.trace(G) / k
    kkt = np.block([[2 * (G + lam * np.eye(k)), np.ones((k, 1))], [np.ones((1, k)), 0]])
    w = np.linalg.solve(kkt, np.r_[np.zeros(k), 1.0])[:k]
    return np.linalg.norm(x - w @ neighbours)


def _reference_raw(real, lib, ids):
    """The module docstring's definitions, computed densely and naively."""
    n, m = len(real), len(lib)
    S = real @ lib.T
    RR = real @ real.T
    np.fill_diagonal(RR, -np.inf)
    owner = S.argmax(0)

    def other_best(g, r):
        return max((S[q, g] for q in range(n) if q != r), default=np.nan)

    top1, nearest = S.max(1), S.argmax(1)
    per_real = np.full((n, 11), np.nan)
    per_cand = np.full((*ids.shape, 3), np.nan)
    for r in range(n):
        per_real[r, 0] = top1[r]
        per_real[r, 2] = np.sum(owner == r) * n / m
        if n > 1:
            per_real[r, 1] = top1[r] - RR[r].max()
            per_real[r, 3] = S[r, nearest[r]] - other_best(nearest[r], r)
            for col, q in zip((4, 5, 6), (200, 100, 50), strict=True):
                k_lib, k_real = max(1, round(m / q)), max(1, round((n - 1) / q))
                per_real[r, col] = np.sort(S[r])[::-1][k_lib - 1] - np.sort(RR[r])[::-1][k_real - 1]
        # hull: nearest 10 *distinct* library images; hull_calib: minus the same from the
        # nearest 10 other reals
        distinct = np.array(sorted({tuple(g) for g in lib}))
        near = distinct[np.argsort(-(distinct @ real[r]))[:10]]
        per_real[r, 7] = -_reference_hull(real[r], near)
        if n > 1:
            others = [q for q in np.argsort(-RR[r]) if q != r][:10]
            per_real[r, 8] = per_real[r, 7] + _reference_hull(real[r], real[others])
        for j, g in enumerate(ids[r]):
            per_cand[r, j] = [S[r, g], float(owner[g] == r), S[r, g] - other_best(g, r)]
    # span: minus the share outside the distinct library's principal subspace (90% of its
    # variance); span_calib: the share outside the other reals' (as many directions, fitted
    # in 5 folds dealt by the order of top1) minus that
    distinct = np.array(sorted({tuple(g) for g in lib}))
    v_lib = _reference_directions(distinct, kept=0.9)
    outside = _reference_outside(real, v_lib, distinct.mean(0))
    per_real[:, 9] = -outside
    if n > 1:
        fold = np.empty(n, dtype=int)
        fold[sorted(range(n), key=lambda r: (-top1[r], r))] = np.arange(n) % min(5, n)
        for r in range(n):
            rest = real[fold != fold[r]]
            v = _reference_directions(rest, rank=len(v_lib))
            per_real[r, 10] = _reference_outside(real[r : r + 1], v, rest.mean(0))[0] - outside[r]
    return per_real, per_cand


def _reference_directions(x, kept=None, rank=None):
    """Principal directions by SVD, the fewest holding ``kept`` of the variance or ``rank``."""
    _, sv, vt = np.linalg.svd(x - x.mean(0), full_matrices=False)
    variances = sv**2
    vt = vt[variances > variances.max(initial=0) * 1e-9]
    variances = variances[variances > variances.max(initial=0) * 1e-9]
    if rank is None:
        rank = next(
            r for r in range(1, len(variances) + 1) if variances[:r].sum() >= kept * variances.sum()
        )
    return vt[:rank]


def _reference_outside(x, directions, mean):
    centred = x - mean
    return 1 - ((centred @ directions.T) ** 2).sum(1) / (centred**2).sum(1)


@pytest.mark.parametrize("d", [5, 24])
@pytest.mark.parametrize(
    ("n", "m", "chunk"),
    [
        (420, 900, 4096),
        (420, 900, 7),
        (300, 250, 4096),
        (301, 250, 4096),
        (30, 50, 7),
        (2, 9, 4),
        (1, 5, 2),
    ],
)
def test_raw_scores_equal_a_brute_force_reference(n, m, chunk, d, monkeypatch):
    """Sizes where k of the density scores exceeds 1 on both sides (420 reals, 900 library
    images: k = 4, 9, 18 and 2, 4, 8), also in library chunks of 7, fewer than k, so that the
    best cosines kept across chunks decide; k = 1 over long rows (250 library images: numpy's
    partition is exact on short rows whatever the kth, so a k - 2 slip shows only there); 300
    and 301 reals, where ``round((n - 1) / 200)`` and ``round((n +- 1) / 200)`` differ (1 vs
    2); several library chunks, two reals, and one real (its real-real scores NaN). In 24
    dimensions the 10 neighbours of the hull scores do not span the space (in 5 they do and
    only the regulariser keeps the residual off 0); chunks of 7 cut the hull's reals in
    blocks of 71 (5 dims) or 14."""
    monkeypatch.setattr(R, "_CHUNK", chunk)
    rng = np.random.default_rng(n)
    _assert_raw_scores_are_the_references(rng.normal(size=(n, d)), rng.normal(size=(m, d)), rng)


def _assert_raw_scores_are_the_references(real, lib, rng):
    real = real / np.linalg.norm(real, axis=1, keepdims=True)
    lib = lib / np.linalg.norm(lib, axis=1, keepdims=True)
    ids = rng.integers(0, len(lib), size=(len(real), 3))
    per_real, per_cand = R._space_raw(real.astype(np.float32), lib.astype(np.float32), ids)
    ref_real, ref_cand = _reference_raw(real, lib, ids)
    np.testing.assert_allclose(per_real, ref_real, atol=1e-5)
    np.testing.assert_allclose(per_cand, ref_cand, atol=1e-5)
    assert per_real.dtype == per_cand.dtype == np.float64


def test_raw_scores_of_a_collapsed_generator_equal_the_brute_force_reference():
    """A mode-collapsed generator: 40 distinct samples within ~0.1 of one image, whose
    variance around their mean sums to ~0.3, and reals around the same image. Catches the span's
    variance shares taken over max(total, 1) instead of the total (every direction kept, the
    library's subspace then the whole space), which the references at unit scale cannot see."""
    rng = np.random.default_rng(0)
    centre = rng.normal(size=24)
    centre /= np.linalg.norm(centre)
    lib = centre + 0.02 * rng.normal(size=(40, 24))
    real = centre + 0.04 * rng.normal(size=(20, 24))
    spread = lib / np.linalg.norm(lib, axis=1, keepdims=True)
    assert ((spread - spread.mean(0)) ** 2).sum() < 0.5
    _assert_raw_scores_are_the_references(real, lib, rng)


def test_hull_residual_is_zero_inside_the_affine_hull_and_the_distance_outside():
    # Catches: weights not renormalised to sum 1 (a plain linear fit reaches points off the
    # affine hull, e.g. a scaled copy), the regulariser too large, or the residual taken
    # against the wrong neighbours.
    rng = np.random.default_rng(0)
    neighbours = rng.normal(size=(3, 4, 50))  # 3 points, 4 neighbours each, 50 dims
    w = np.array([0.5, 0.3, 0.1, 0.1])
    inside = np.einsum("k,nkd->nd", w, neighbours)
    assert np.all(R.hull_residual(inside, neighbours) < 1e-2 * np.linalg.norm(inside, axis=1))
    # a point off the hull by a direction orthogonal to it: the residual is that distance
    offset = rng.normal(size=(3, 50))
    for i in range(3):
        basis, _ = np.linalg.qr((neighbours[i] - neighbours[i, :1]).T)
        offset[i] -= basis @ (basis.T @ offset[i])
    offset *= 2.0 / np.linalg.norm(offset, axis=1, keepdims=True)
    got = R.hull_residual(inside + offset, neighbours)
    assert got == pytest.approx(2.0, rel=0.02)
    # a scaled copy of a neighbour is off the affine hull (on the linear span)
    assert R.hull_residual(3 * neighbours[:, 0], neighbours).min() > 1.0

    # every neighbour equal to x (a one-image library that is x): 0, not a singular solve
    assert R.hull_residual(inside[:1], inside[:1, None, :]) == pytest.approx([0.0])


@pytest.mark.parametrize("chunk", [4096, 3])
def test_top_k_is_exact_best_first_and_breaks_ties_by_library_order(chunk, monkeypatch):
    monkeypatch.setattr(R, "_CHUNK", chunk)
    rng = np.random.default_rng(0)
    real = rng.normal(size=(9, 4)).astype(np.float32)
    lib = rng.normal(size=(20, 4)).astype(np.float32)
    lib = np.concatenate([lib, lib[:5]])  # rows 20-24 tie with rows 0-4
    sims, ids = R.top_k(real, lib, 6)
    S = real @ lib.T
    for r in range(9):
        order = sorted(range(len(lib)), key=lambda g: (-S[r, g], g))[:6]
        assert ids[r].tolist() == order
        np.testing.assert_allclose(sims[r], S[r, order], atol=1e-6)
    assert sims.dtype == np.float32
    assert R.top_k(real, lib[:3], 10)[1].shape == (9, 3)  # k capped at the library size
    # k = 1 over long rows (numpy's partition is exact on short rows whatever the kth)
    long_lib = rng.normal(size=(900, 4)).astype(np.float32)
    np.testing.assert_array_equal(
        R.top_k(real, long_lib, 1)[1][:, 0], (real @ long_lib.T).argmax(1)
    )


def test_kth_best_is_the_kth_largest_of_each_row():
    rng = np.random.default_rng(1)
    sims = rng.normal(size=(5, 900))
    for k in (1, 2, 5):
        np.testing.assert_array_equal(R._kth_best(sims, k), np.sort(sims, axis=1)[:, -k])


def test_a_tie_between_library_chunks_goes_to_the_first_library_image(monkeypatch):
    """Two library images equally close to real 0, in different chunks: its nearest library
    image is the first (as in ``top_k``), whose best other real sets the margin."""
    monkeypatch.setattr(R, "_CHUNK", 2)
    c, s = 0.8, 0.6
    real = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32)
    lib = np.array(
        [[c, s, 0, 0], [-1, 0, 0, 0], [c, 0, s, 0], [-1, 0, 0, 0]], dtype=np.float32
    )  # rows 0 and 2 tie for real 0; row 0 is also close to real 1 (cosine s)
    per_real, _ = R._space_raw(real, lib, np.zeros((2, 1), dtype=np.int64))
    assert per_real[0, 3] == pytest.approx(c - s)  # not c - 0, the margin of row 2


def test_span_ranks_reals_inside_what_the_generator_produces_above_reals_off_it():
    # The library spans 4 of 30 dimensions (plus faint noise). 20 reals lie in that span, 20
    # have as much energy again in 10 directions it never uses; no real is near any one
    # sample in particular. Catches: the sign of span flipped, the subspace fitted on the
    # reals instead of the library, or the share measured inside instead of outside.
    rng = np.random.default_rng(0)
    directions = np.linalg.qr(rng.normal(size=(30, 14)))[0].T  # orthonormal rows
    basis, off = directions[:4], directions[4:]
    lib = rng.normal(size=(300, 4)) @ basis + 0.01 * rng.normal(size=(300, 30))
    inside = rng.normal(size=(20, 4)) @ basis + 0.01 * rng.normal(size=(20, 30))
    outside = rng.normal(size=(20, 4)) @ basis + rng.normal(size=(20, 10)) @ off * 0.6
    real = np.concatenate([inside, outside])
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    real, lib = unit(real), unit(lib)
    per_real, _ = R._space_raw(real, lib, R.top_k(real, lib, 1)[1])
    span, span_calib = per_real[:, 9], per_real[:, 10]
    assert span[:20].min() > span[20:].max()
    assert span[:20].min() > -0.01  # all but the noise inside the library's 4 directions
    assert span_calib[:20].mean() > span_calib[20:].mean()


def test_a_whitened_space_carries_no_span_scores():
    # Catches: span scores computed in a whitened space, where they cost kanji -0.036 on unseen
    # seeds (benchmarks/RESULTS_subspace_seeds33-35.md); the plain space keeps them.
    E = _split()
    spaces = ("pixels", "pixels_whitened")
    X = FaissCandidateSelector(
        k=5, min_similarity=None, features="relations", relation_spaces=spaces
    ).fit_transform(E)
    names = R.relation_feature_names(spaces)
    for space, expect_zero in (("pixels", False), ("pixels_whitened", True)):
        for score in ("span", "span_calib"):
            column = X[..., names.index(f"{space}:{score}")]
            assert np.all(column == 0) if expect_zero else column.std() > 0.5, (space, score)


def test_split_statistics_and_standardised_layout_by_hand():
    # every column has its own mean and spread, so a swapped index or operator shows
    per_real = [
        np.array([[1.0, 2, 3, 4, 5, 0, 1, 2, -1, 0, 2], [5.0, 2, 5, 8, np.nan, 4, 7, 6, 3, 8, 4]])
    ]
    stats = R.split_statistics(per_real)
    np.testing.assert_allclose(stats[0, 0], [3.0, 2, 4, 6, 5, 2, 4, 4, 1, 4, 3])  # NaN ignored
    np.testing.assert_allclose(stats[0, 1], [2.0, 1, 1, 2, 1, 2, 3, 2, 2, 4, 1])  # spread 0 -> 1
    assert stats.shape == (1, 2, 11) and stats.dtype == np.float64
    # a NaN adds nothing to the spread either: [1, 3, NaN] has mean 2 and spread 1
    column = np.array([[1.0], [3.0], [np.nan]]) * np.ones((1, 11))
    np.testing.assert_allclose(R.split_statistics([column])[0], [np.full(11, 2.0), np.ones(11)])
    empty = R.split_statistics([np.zeros((0, 11))])
    np.testing.assert_array_equal(empty[0], [np.zeros(11), np.ones(11)])
    per_cand = [np.array([[[3.0, 1, 6], [1.0, 0, np.nan]], [[2.0, 0, 8], [0.0, 1, 4]]])]
    sims = np.array([[0.9, 0.5], [0.7, 0.1]])
    X = R.standardised(per_real, per_cand, stats, sims)
    assert X.shape == (2, 2, 15) and X.dtype == np.float32
    # per candidate: (cos - mean top1) / spread top1, owner as is, (margin - mean) / spread
    np.testing.assert_allclose(X[0, 0, :3], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(X[0, 1, :3], [-1.0, 0.0, 0.0])  # NaN -> 0
    np.testing.assert_allclose(X[1, 1, :3], [-1.5, 1.0, -1.0])
    # per real, the same on every candidate row, then the selection cosine
    np.testing.assert_allclose(X[1, :, 3:14], [[1.0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 1]] * 2)
    np.testing.assert_allclose(X[0, :, 3:14], [[-1.0, 0, -1, -1, 0, -1, -1, -1, -1, -1, -1]] * 2)
    np.testing.assert_allclose(X[..., 14], sims)


def test_space_vectors_centre_pixels_on_the_library_only():
    E = _split(n=5, m=7)
    real, lib = R.space_vectors(E, "pixels")
    preal, plib = E.spaces["pixels"]
    mean = plib.mean(0)
    np.testing.assert_allclose(
        real, (preal - mean) / np.linalg.norm(preal - mean, axis=1, keepdims=True), atol=1e-6
    )
    np.testing.assert_allclose(
        lib, (plib - mean) / np.linalg.norm(plib - mean, axis=1, keepdims=True), atol=1e-6
    )
    vit_real, _ = R.space_vectors(E, "vit")  # the main space is not centred
    np.testing.assert_allclose(
        vit_real, E.real / np.linalg.norm(E.real, axis=1, keepdims=True), atol=1e-6
    )
    assert R.relation_feature_names(("a", "b"))[7:15] == [
        "a:density",
        "a:density_q100",
        "a:density_q50",
        "a:hull",
        "a:hull_calib",
        "a:span",
        "a:span_calib",
        "b:cos",
    ]
    assert R.relation_feature_names(("a",))[-1] == "selection_cosine"


def _whitened_by_hand(real, lib, shrink):
    """``within_mode_whiten`` written out: the d x d covariance and its inverse square root."""
    sims = lib @ lib.T
    np.fill_diagonal(sims, -np.inf)
    diffs = lib - lib[sims.argmax(1)]
    cov = diffs.T @ diffs / len(diffs)
    cov += shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
    values, vectors = np.linalg.eigh(cov)
    w = (vectors / np.sqrt(values)) @ vectors.T
    real_w, lib_w = real @ w, lib @ w
    mean = lib_w.mean(0, keepdims=True)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    return unit(real_w - mean), unit(lib_w - mean)


@pytest.mark.parametrize("d", [5, 60])  # fewer and more dimensions than library images
@pytest.mark.parametrize("chunk", [None, 1])  # 1: the nearest-other search in 4 blocks
def test_within_mode_whitening_is_the_inverse_square_root_of_the_shrunk_covariance(
    d, chunk, monkeypatch
):
    if chunk is not None:
        monkeypatch.setattr(R, "_CHUNK", chunk)
    rng = np.random.default_rng(0)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    real, lib = unit(rng.normal(size=(7, d))), unit(rng.normal(size=(30, d)))
    for shrink in (0.5, 0.1):
        got = R.within_mode_whiten(real.astype(np.float32), lib.astype(np.float32), shrink)
        for a, b in zip(got, _whitened_by_hand(real, lib, shrink), strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
            assert a.dtype == np.float32  # the vectors' own precision, as documented


def test_within_mode_whitening_discounts_the_directions_the_generator_varies():
    # 30 modes; the generator's samples vary each mode in dimensions 0-3 only. Of two real
    # images off a mode by the same distance, along those dimensions or along 4-7, the first
    # matches the library worse in plain cosines and better whitened.
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 8))
    noise = np.zeros((30, 10, 8))
    noise[..., :4] = rng.normal(scale=0.3, size=(30, 10, 4))
    lib = (centres[:, None] + noise).reshape(-1, 8)
    offset = np.r_[np.full(4, 0.5), np.zeros(4)]
    real = np.stack([centres[0] + offset, centres[0] + offset[::-1]])
    E = PairEmbeddings(real, lib, "lib", spaces={"pixels": (real, lib)})
    plain = R.raw_relations(E, ("pixels",), 1)[2][0][:, 0]  # top1
    whitened = R.raw_relations(E, ("pixels_whitened",), 1)[2][0][:, 0]
    assert plain[0] < plain[1] - 0.01
    assert whitened[0] > whitened[1] + 0.01


def test_within_mode_whitening_of_a_library_of_two_images():
    # The fewest that carry a difference (each is the other's nearest): whitened like any
    # library, not handed back as a library of one image would be.
    rng = np.random.default_rng(0)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    real, lib = unit(rng.normal(size=(4, 6))), unit(rng.normal(size=(2, 6)))
    got = R.within_mode_whiten(real, np.concatenate([lib, lib[::-1]]))  # duplicates: still two
    want = _whitened_by_hand(real, lib, R.WHITEN_SHRINK)
    np.testing.assert_allclose(got[0], want[0], atol=1e-5)
    np.testing.assert_allclose(got[1], np.concatenate([want[1], want[1][::-1]]), atol=1e-5)
    assert not np.allclose(got[0], real, atol=1e-2)


def test_whitening_by_given_differences_finds_the_librarys_distinct_images_itself():
    # ``_whiten_by`` without ``unique`` (as probe_covariance.py calls it) maps as with it.
    E = _split(m=60)
    real, lib = R.space_vectors(_library_duplicated(E), "pixels")
    diffs = np.random.default_rng(0).normal(size=(30, lib.shape[1])).astype(np.float32)
    given = R._whiten_by(diffs, real, lib, 0.1, np.unique(lib, axis=0, return_inverse=True))
    found = R._whiten_by(diffs, real, lib, 0.1)
    for a, b in zip(given, found, strict=True):
        np.testing.assert_array_equal(a, b)
    assert given[1].shape == lib.shape and np.array_equal(given[1][:60], given[1][60:])


def test_within_mode_whitening_leaves_a_library_of_one_image_as_it_is():
    # Nothing to estimate a mode's variation from: the inputs come back, with no NaN from a
    # zero covariance and no error from an empty one.
    rng = np.random.default_rng(0)
    real, one = rng.normal(size=(4, 6)), rng.normal(size=(1, 6))
    for lib in (one, np.repeat(one, 5, axis=0), one[:0]):
        got_real, got_lib = R.within_mode_whiten(real, lib)
        assert got_real is real and got_lib is lib


def test_within_mode_whitening_maps_a_duplicated_image_to_the_same_bits():
    # Catches: the library whitened by one matrix product over all its rows, which on some BLAS
    # builds rounds a row by where it sits (seen: 8 of 400 duplicates 1 ulp off their original),
    # and the hull and span scores then counted the copies as distinct images.
    E = _split(m=400)
    dup = _library_duplicated(E)
    _, lib_w = R.within_mode_whiten(*R.space_vectors(dup, "pixels"))
    assert np.array_equal(lib_w[:400], lib_w[400:])
    assert len(np.unique(lib_w, axis=0)) == 400
