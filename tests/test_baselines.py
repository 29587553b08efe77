import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import Pipeline

from skfingerprint import baselines, kappa_scorer
from skfingerprint.baselines import (
    MaxSimilarityClassifier,
    PixelNearestNeighbor,
    learn_kappa_threshold,
)
from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.pairs import PairEmbeddings
from skfingerprint.selection import MASKED_COSINE, FaissCandidateSelector

from .conftest import as_bits, points_at, spy_on


def candidates(cosines):
    """A (n, k, 3) candidate array (D = 1) with the given cosines in the last column."""
    cos = np.asarray(cosines, dtype=np.float32)
    X = np.zeros((*cos.shape, 3), dtype=np.float32)
    X[..., 0] = 1.0
    X[..., 1] = np.where(cos < -1, 0.0, 1.0)
    X[..., -1] = cos
    return X


def planted_embeddings(n_used=40, n_not=40, m=300, d=24, noise=0.3, seed=0):
    """Used real rows have a noisy copy in the library; not-used rows have none."""
    rng = np.random.default_rng(seed)
    real = rng.normal(size=(n_used + n_not, d))
    library = rng.normal(size=(m, d))
    library[:n_used] = real[:n_used] + noise * rng.normal(size=(n_used, d))
    y = np.r_[np.ones(n_used, int), np.zeros(n_not, int)]
    order = rng.permutation(n_used + n_not)
    return PairEmbeddings(real[order], library, "planted"), y[order]


@pytest.fixture(scope="module")
def easy_task():
    return make_synthetic_leak(
        30, 30, 120, image_size=64, leak_fraction=0.75, distortion=0.0, random_state=0
    )


# --- the shared threshold search ------------------------------------------------------------


def brute_force_best_kappa(scores, y):
    uniq = np.unique(scores)
    best = 0.0
    for t in (uniq[:-1] + uniq[1:]) / 2:
        pred = (scores > t).astype(int)
        best = max(best, cohen_kappa_score(y, pred))
    return best


@pytest.mark.parametrize("seed", range(6))
def test_threshold_maximises_kappa(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    scores = np.round(y * rng.uniform(0, 1) + rng.normal(size=60), 1)  # ties included
    t, kappa = learn_kappa_threshold(scores, y)
    assert kappa == pytest.approx(cohen_kappa_score(y, (scores > t).astype(int)))
    assert kappa == pytest.approx(brute_force_best_kappa(scores, y))
    assert t not in set(scores)  # a midpoint, never a score itself


def test_threshold_toy_cases():
    assert learn_kappa_threshold([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == (0.5, 1.0)
    t, kappa = learn_kappa_threshold([0.1, 0.7, 0.3, 0.9, 0.5], [0, 1, 0, 1, 1])
    assert 0.3 < t < 0.5 and kappa == pytest.approx(1.0)
    t, kappa = learn_kappa_threshold([0.4, 0.4, 0.4], [0, 1, 1])
    assert (t, kappa) == (0.4, 0.0)
    with pytest.raises(ValueError, match="differ in length"):
        learn_kappa_threshold([0.1, 0.2], [0, 1, 1])


def test_prior_threshold_marks_the_training_used_fraction():
    """The quantile at 1 - mean(y), on unbalanced labels (a cut at mean(y) marks 3 of 4)."""
    scores = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]
    y = [0, 0, 0, 0, 0, 0, 1, 1]
    t = baselines.prior_threshold(scores, y)
    assert t == pytest.approx(np.quantile(scores, 0.75))
    assert (np.asarray(scores) > t).sum() == 2
    # a given share replaces mean(y) (catches it ignored, or its complement marked)
    given = baselines.prior_threshold(scores, y, used_fraction=0.5)
    assert given == pytest.approx(np.quantile(scores, 0.5))
    assert (np.asarray(scores) > given).sum() == 4
    for bad in (0.0, 1.0):
        with pytest.raises(ValueError, match="used_fraction must be in \\(0, 1\\)"):
            baselines.prior_threshold(scores, y, used_fraction=bad)
    with pytest.raises(ValueError, match="differ in length"):
        baselines.prior_threshold([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError, match=r"only 0 \(not used\) and 1 \(used\); found \[2\]"):
        baselines.prior_threshold([0.1, 0.2], [0, 2])
    # the baselines take the same rule by name
    X = candidates([[0.9], [0.8], [0.7], [0.6], [0.5], [0.4], [0.3], [0.2]])
    clf = MaxSimilarityClassifier(threshold="prior").fit(X, [1, 0, 1, 0, 0, 0, 0, 0])
    assert clf.threshold_ == pytest.approx(np.quantile(clf.score_samples(X), 0.75))
    np.testing.assert_array_equal(clf.predict(X), [1, 1, 0, 0, 0, 0, 0, 0])


def test_both_baselines_use_the_one_threshold_helper(monkeypatch):
    calls = spy_on(monkeypatch, baselines, "learn_kappa_threshold")
    MaxSimilarityClassifier().fit(candidates([[0.9], [0.1]]), [1, 0])
    task = make_synthetic_leak(6, 6, 12, image_size=32, distortion=0.0, random_state=0)
    PixelNearestNeighbor(image_size=16).fit(task.X_pairs, task.y)
    assert [len(scores) for scores, _ in calls] == [2, 12]


# --- MaxSimilarityClassifier ---------------------------------------------------------------


def test_max_similarity_scores_and_threshold():
    X = candidates([[0.9, 0.5], [0.95, 0.2], [0.3, 0.1], [0.4, MASKED_COSINE]])
    clf = MaxSimilarityClassifier().fit(X, [1, 1, 0, 0])
    np.testing.assert_allclose(clf.score_samples(X), [0.9, 0.95, 0.3, 0.4], rtol=1e-6)
    assert clf.threshold_ == pytest.approx(0.65)
    assert clf.train_kappa_ == pytest.approx(1.0)
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    np.testing.assert_allclose(clf.decision_function(X), clf.score_samples(X) - 0.65, atol=1e-6)
    np.testing.assert_array_equal(clf.predict(X), [1, 1, 0, 0])


def test_top_m_averages_unmasked_candidates_only():
    X = candidates([[0.9, 0.7, 0.5], [0.8, MASKED_COSINE, MASKED_COSINE], [0.6, 0.6, 0.0]])
    scores = MaxSimilarityClassifier(top_m=2).fit(X, [1, 0, 0]).score_samples(X)
    np.testing.assert_allclose(scores, [0.8, 0.8, 0.6], rtol=1e-6)
    # candidates need not be sorted
    Xs = candidates([[0.5, 0.9, 0.7]])
    assert MaxSimilarityClassifier(top_m=2).fit(X, [1, 0, 0]).score_samples(Xs)[0] == (
        pytest.approx(0.8)
    )
    all_masked = candidates([[MASKED_COSINE, MASKED_COSINE]])
    assert MaxSimilarityClassifier().fit(X, [1, 0, 0]).score_samples(all_masked)[0] == -1.0


def test_fixed_threshold_is_used_as_given():
    X = candidates([[0.9], [0.7], [0.3]])
    clf = MaxSimilarityClassifier(threshold=0.8).fit(X, [1, 1, 0])
    assert clf.threshold_ == 0.8
    np.testing.assert_array_equal(clf.predict(X), [1, 0, 0])
    assert clf.train_kappa_ == pytest.approx(cohen_kappa_score([1, 1, 0], [1, 0, 0]))


def test_predict_proba_is_monotone_and_agrees_with_predict():
    rng = np.random.default_rng(0)
    cos = np.sort(rng.uniform(-1, 1, size=(50, 5)), axis=1)[:, ::-1]
    y = (cos[:, 0] + 0.2 * rng.normal(size=50) > 0.5).astype(int)
    X = candidates(cos)
    clf = MaxSimilarityClassifier().fit(X, y)
    proba = clf.predict_proba(X)
    assert proba.shape == (50, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    order = np.argsort(clf.score_samples(X))
    assert (np.diff(proba[order, 1]) >= 0).all()
    np.testing.assert_array_equal(proba[:, 1] > 0.5, clf.predict(X) == 1)
    assert proba[:, 1].max() - proba[:, 1].min() > 0.5, "spread, not all ~0.5"


@pytest.mark.parametrize(
    ("y", "match"),
    [
        ([1, 1, 1, 1], "only one class"),
        ([0, 0, 0, 0], "only one class"),
        ([1, 2, 1, 2], r"only 0 .* and 1"),
        (["a", "b", "a", "b"], r"only 0 .* and 1"),
        ([1, 0, 1], "3 labels for 4"),
    ],
)
def test_bad_labels(y, match):
    with pytest.raises(ValueError, match=match):
        MaxSimilarityClassifier().fit(candidates([[0.9], [0.1], [0.8], [0.2]]), y)


def test_boolean_and_float_labels_are_accepted():
    X = candidates([[0.9], [0.1], [0.8], [0.2]])
    a = MaxSimilarityClassifier().fit(X, [True, False, True, False]).predict(X)
    b = MaxSimilarityClassifier().fit(X, [1.0, 0.0, 1.0, 0.0]).predict(X)
    np.testing.assert_array_equal(a, b)


def test_max_similarity_input_errors():
    E, y = planted_embeddings()
    with pytest.raises(TypeError, match="FaissCandidateSelector"):
        MaxSimilarityClassifier().fit(E, y)
    with pytest.raises(ValueError, match=r"\(n, k, 2D\+1\)"):
        MaxSimilarityClassifier().fit(np.zeros((80, 5)), y)
    with pytest.raises(ValueError, match=r"\(n, k, 2D\+1\)"):
        MaxSimilarityClassifier().fit(np.zeros((80, 5, 4)), y)  # even last axis
    bad = candidates([[0.9], [np.nan]])
    with pytest.raises(ValueError, match="NaN"):
        MaxSimilarityClassifier().fit(bad, [1, 0])
    with pytest.raises(TypeError, match="candidate array"):
        MaxSimilarityClassifier().fit("not an array", [1, 0])
    clf = MaxSimilarityClassifier().fit(candidates([[0.9], [0.1]]), [1, 0])
    with pytest.raises(ValueError, match="size 5.*size 3"):
        clf.predict(np.zeros((2, 1, 5), np.float32))
    with pytest.raises(NotFittedError):
        MaxSimilarityClassifier().predict(candidates([[0.9]]))


def test_max_similarity_ends_a_pipeline_in_cross_validation():
    E, y = planted_embeddings()
    pipe = Pipeline(
        [("select", FaissCandidateSelector(k=20)), ("clf", MaxSimilarityClassifier(top_m=1))]
    )
    cv = StratifiedKFold(4, shuffle=True, random_state=0)
    scores = cross_val_score(pipe, E, y, cv=cv, scoring=kappa_scorer)
    assert scores.mean() >= 0.9, scores
    pipe.fit(E, y)
    assert pipe.predict_proba(E[:5]).shape == (5, 2)
    restored = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(restored.predict(E), pipe.predict(E))


def test_pixel_nn_on_an_easy_leak(easy_task):
    clf = PixelNearestNeighbor().fit(easy_task.X_pairs, easy_task.y)
    assert clf.train_kappa_ >= 0.9
    pred = clf.predict(easy_task.X_pairs)
    assert cohen_kappa_score(easy_task.y, pred) >= 0.9
    sims, idx = clf.kneighbors(easy_task.X_pairs)
    copies = easy_task.generated_source[idx]
    found = copies == np.arange(len(idx))  # nearest library image is a copy of this real one
    assert found[easy_task.y == 1].mean() >= 0.9
    assert not found[easy_task.y == 0].any()
    assert (sims[found] > 0.98).all()


def test_pixel_nn_cross_validation(easy_task):
    cv = StratifiedKFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(
        PixelNearestNeighbor(), easy_task.X_pairs, easy_task.y, cv=cv, scoring=kappa_scorer
    )
    assert scores.min() >= 0.8, scores


def test_pixel_nn_reads_the_library_once(easy_task, monkeypatch):
    X = easy_task.X_pairs
    library = X.library
    reads = []
    original = type(library).read

    def counting(self, i):
        if self is library:
            reads.append(i)
        return original(self, i)

    monkeypatch.setattr(type(library), "read", counting)
    clf = PixelNearestNeighbor().fit(X[:40], easy_task.y[:40])
    clf.predict(X[40:])
    clf.predict_proba(X)
    assert len(reads) == len(library)
    clf.set_params(image_size=32).fit(X, easy_task.y)  # another size: computed again, once
    assert len(reads) == 2 * len(library)


def test_pixel_nn_warns_when_reals_and_library_are_on_different_intensity_scales(easy_task):
    """12-bit reals in uint16 against the 8-bit library: each call that compares them warns,
    naming the darker set and 16x, the library's peak read from the cached library (a second
    call reads no image of it again); the same images on one scale pass quietly."""
    import warnings

    from skfingerprint import make_pairs

    real8, lib8 = easy_task.real_images, easy_task.generated_images
    real12 = as_bits(real8, 12)
    clf = PixelNearestNeighbor(image_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        clf.fit(make_pairs(real8, lib8), easy_task.y)
    dark = make_pairs(real12, lib8)
    for call in (clf.predict, clf.score_samples):
        with pytest.warns(UserWarning) as caught:
            call(dark)
        assert len(caught) == 1
        assert str(caught[0].message).startswith(
            "the real images are 16x darker than the generated ones (their brightest pixel: "
        )
        assert points_at(caught[0], __file__)
    with pytest.warns(UserWarning, match="^the generated images are 16x darker than the real"):
        clf.predict(make_pairs(real8, as_bits(lib8, 12)))


def test_pixel_nn_pickle_round_trip(easy_task):
    clf = PixelNearestNeighbor(image_size=32).fit(easy_task.X_pairs, easy_task.y)
    restored = pickle.loads(pickle.dumps(clf))
    assert not hasattr(restored, "_library_cache")
    np.testing.assert_array_equal(
        restored.decision_function(easy_task.X_pairs), clf.decision_function(easy_task.X_pairs)
    )
    assert not hasattr(clone(clf), "threshold_")


def test_pixel_nn_input_errors(easy_task):
    E, y = planted_embeddings()
    with pytest.raises(TypeError, match="make_pairs"):
        PixelNearestNeighbor().fit(E, y)
    with pytest.raises(TypeError, match="make_pairs"):
        PixelNearestNeighbor().fit(easy_task.real_images, easy_task.y)
    with pytest.raises(ValueError, match="only one class"):
        PixelNearestNeighbor().fit(easy_task.X_pairs, np.ones(60, int))
    with pytest.raises(ValueError, match="59 labels for 60"):
        PixelNearestNeighbor().fit(easy_task.X_pairs, easy_task.y[:59])


@pytest.mark.slow
def test_end_to_end_pipeline_with_a_tiny_vit():
    from skfingerprint import ViTLayerFusionEmbedder

    task = make_synthetic_leak(
        16, 16, 48, image_size=64, leak_fraction=0.75, distortion=0.0, random_state=1
    )
    tiny = dict(img_size=64, patch_size=16, embed_dim=64, depth=4, num_heads=2)
    pipe = Pipeline(
        [
            (
                "embed",
                ViTLayerFusionEmbedder(
                    "vit_tiny_patch16_224",
                    pretrained=False,
                    model_kwargs=tiny,
                    fusion="mean",
                    gate_epochs=0,
                    random_state=0,
                    batch_size=64,
                ),
            ),
            ("select", FaissCandidateSelector(k=10)),
            ("clf", MaxSimilarityClassifier()),
        ]
    )
    train, test = np.arange(0, 32, 2), np.arange(1, 32, 2)
    pipe.fit(task.X_pairs[train], task.y[train])
    assert pipe.named_steps["select"].k_ == 10
    pred = pipe.predict(task.X_pairs[test])
    assert set(pred) <= {0, 1}
    assert cohen_kappa_score(task.y[test], pred) >= 0.6


# --- exact behaviour the threshold search and pixel baseline promise (found by mutation testing)


def test_kappa_at_is_strictly_above_and_zero_for_one_class_predictions():
    from skfingerprint.baselines import _kappa_at

    y = np.array([0, 0, 1])
    assert _kappa_at(np.array([0.5, 0.2, 0.9]), y, 0.5) == (0.5, 1.0)  # 0.5 is not above 0.5
    assert _kappa_at(np.array([0.6, 0.7, 0.9]), y, 0.5) == (0.5, 0.0)  # all flagged: 0, not nan


def test_pixel_nn_parameters_and_tags():
    assert PixelNearestNeighbor().get_params() == {
        "image_size": 64,
        "threshold": None,
        "batch_size": 64,
    }
    assert PixelNearestNeighbor(threshold=0.3).threshold == 0.3
    tags = PixelNearestNeighbor().__sklearn_tags__()
    assert tags.input_tags.two_d_array is False and tags.classifier_tags.multi_class is False


def test_pixel_nn_similarity_is_the_cosine_of_library_centred_pixels(easy_task):
    """At image_size 16 with batch_size 5: the best cosine of pixels centred on the library's
    mean image (per pixel), against a dense computation."""
    from skfingerprint.images import pixel_vectors

    X = easy_task.X_pairs[:12]
    sims, ids = PixelNearestNeighbor(image_size=16, batch_size=5).kneighbors(X)
    real, lib = pixel_vectors(X.real, 16), pixel_vectors(X.library, 16)
    mean = lib.mean(axis=0)
    r = (real - mean) / np.linalg.norm(real - mean, axis=1, keepdims=True)
    g = (lib - mean) / np.linalg.norm(lib - mean, axis=1, keepdims=True)
    dense = r @ g.T
    np.testing.assert_allclose(sims, dense.max(1), atol=1e-5)
    np.testing.assert_array_equal(ids, dense.argmax(1))
    assert sims.dtype == np.float64


def test_pixel_nn_cache_keeps_the_most_recent_libraries_and_never_pickles(easy_task):
    clf = PixelNearestNeighbor(image_size=16)
    libraries = [make_pairs_like(easy_task, seed) for seed in range(6)]
    for X in libraries:
        clf.kneighbors(X)
    cache = clf.__dict__["_library_cache"]
    kept = [entry[0] for entry in cache.values()]
    assert kept == [X.library for X in libraries[-baselines._MAX_CACHED_LIBRARIES :]]
    # alternating between two cached libraries reads neither again
    clf.kneighbors(libraries[-1])
    assert [e[0] for e in cache.values()][-1] is libraries[-1].library
    assert pickle.loads(pickle.dumps(clf)).__dict__.get("_library_cache") is None
    assert pickle.loads(pickle.dumps(PixelNearestNeighbor())).image_size == 64  # no cache yet


def make_pairs_like(task, seed):
    """The task's first 4 reals against a new random library of 10 images."""
    from skfingerprint import make_pairs

    rng = np.random.default_rng(seed)
    return make_pairs(task.real_images[:4], rng.integers(0, 256, (10, 64, 64), dtype=np.uint8))


# --- survivors of the second mutation run (issue 18): each test names the bug it catches ------


def test_threshold_separates_adjacent_float32_scores():
    """Midpoints are taken in float64: in float32 the midpoint of two adjacent float32 scores
    rounds onto one of them and ``score > threshold`` mislabels it (catches ``dtype=None``)."""
    a = np.float32(1.0)
    b = np.nextafter(a, np.float32(2.0))
    scores = np.array([a, a, b, b], dtype=np.float32)
    threshold, kappa = learn_kappa_threshold(scores, [0, 0, 1, 1])
    assert threshold == (float(a) + float(b)) / 2
    assert float(a) < threshold < float(b)
    assert kappa == 1.0
    np.testing.assert_array_equal(scores > threshold, [False, False, True, True])


@pytest.mark.parametrize("fit", ["learn", "estimator"])
def test_label_errors_name_y(fit):
    """The message names the argument ``y`` (catches the name passed as None or misspelled)."""
    with pytest.raises(
        ValueError, match=r"^y must hold only 0 \(not used\) and 1 \(used\); found \[2\]$"
    ):
        if fit == "learn":
            learn_kappa_threshold([0.1, 0.2], [0, 2])
        else:
            MaxSimilarityClassifier().fit(candidates([[0.9], [0.1]]), [0, 2])


def test_one_class_message_names_the_estimator_and_what_it_needs():
    with pytest.raises(ValueError) as err:
        MaxSimilarityClassifier().fit(candidates([[0.9], [0.1]]), [1, 1])
    assert str(err.value) == (
        "y holds only one class (only class 1 appears); MaxSimilarityClassifier needs both "
        "used (1) and not used (0) real images"
    )


def test_equal_training_scores_give_unit_scale_and_finite_probabilities():
    """With no spread in the training scores the decision is not divided by 0 (catches
    ``spread >= 0`` and a scale other than 1)."""
    X = candidates([[0.5], [0.5], [0.5], [0.5]])
    clf = MaxSimilarityClassifier(threshold=0.25).fit(X, [1, 0, 1, 0])
    assert clf.score_scale_ == 1.0
    proba = clf.predict_proba(candidates([[0.75], [0.5]]))[:, 1]
    np.testing.assert_allclose(proba, 1 / (1 + np.exp(-np.array([0.5, 0.25]))), rtol=1e-12)


def test_score_exactly_at_the_threshold_is_not_used():
    """``predict`` is ``score > threshold_`` (catches ``>=``); the probability there is 0.5."""
    clf = MaxSimilarityClassifier(threshold=0.5).fit(candidates([[0.9], [0.1]]), [1, 0])
    X = candidates([[0.5], [0.5000001]])
    assert clf.predict(X).tolist() == [0, 1]
    assert clf.predict_proba(X)[0, 1] == 0.5


def test_top_m_mean_is_exact_in_float64_and_counts_a_cosine_of_minus_one():
    """-1.0 is a real (antipodal) cosine, only values below it are masked (catches ``> -1``);
    the mean is computed in float64 (catches the float32 sum)."""
    tiny = 2.0**-24  # 1 + tiny rounds back to 1 in float32
    X = candidates([[1.0, tiny, tiny], [0.5, -1.0, MASKED_COSINE]])
    scores = MaxSimilarityClassifier(top_m=3).fit(X, [1, 0]).score_samples(X)
    assert scores[0] == (1.0 + 2 * tiny) / 3
    assert scores[1] == (0.5 - 1.0) / 2
    assert scores.dtype == np.float64


def test_max_similarity_tags():
    tags = MaxSimilarityClassifier().__sklearn_tags__()
    assert tags.input_tags.two_d_array is False
    assert tags.input_tags.three_d_array is True
    assert tags.classifier_tags.multi_class is False


def test_candidate_array_messages_are_exact():
    E, y = planted_embeddings()
    with pytest.raises(TypeError) as err:
        MaxSimilarityClassifier().fit(E, y)
    assert str(err.value) == (
        "X must be the (n, k, 2D+1) candidate array of FaissCandidateSelector; got "
        "PairEmbeddings: put a FaissCandidateSelector step before this classifier"
    )
    with pytest.raises(ValueError) as err:
        MaxSimilarityClassifier().fit(np.zeros((2, 1, 4)), [1, 0])
    assert str(err.value) == (
        "X must have 2D + 1 features per candidate (real vector, candidate vector, cosine), an "
        "odd number >= 3, as the (n, k, 2D+1) candidate array of FaissCandidateSelector has; "
        "got 4"
    )
    with pytest.raises(ValueError) as err:
        MaxSimilarityClassifier().fit(np.full((2, 1, 3), "a"), [1, 0])
    assert str(err.value) == (
        "X must hold floats ([real vector, candidate vector, cosine] per candidate); got dtype <U1"
    )
    with pytest.raises(ValueError) as err:
        MaxSimilarityClassifier().fit(candidates([[0.9], [np.inf]]), [1, 0])
    assert str(err.value) == "X contains NaN or infinite cosines"


@pytest.mark.parametrize("shape", [(0, 2, 3), (2, 0, 3)])
def test_empty_candidate_arrays_are_refused(shape):
    """No real images, or no candidates per real image (catches ``and`` and a wrong axis)."""
    with pytest.raises(ValueError) as err:
        MaxSimilarityClassifier(threshold=0.5).fit(np.zeros(shape, np.float32), [])
    assert str(err.value) == f"X is empty: shape {shape}"


def test_array_likes_that_are_not_ndarrays_are_accepted():
    """Anything numpy converts (a torch tensor, nested lists) is taken as an array, with the
    same answers as the ndarray."""
    import torch

    X = candidates([[0.9], [0.1], [0.8], [0.2]])
    y = [1, 0, 1, 0]
    b = MaxSimilarityClassifier().fit(X, y)
    for like in (torch.from_numpy(X), X.tolist()):
        a = MaxSimilarityClassifier().fit(like, y)
        assert a.threshold_ == b.threshold_
        np.testing.assert_array_equal(a.predict(like), b.predict(X))


def test_pixel_nn_reads_images_in_batches_of_batch_size(easy_task, monkeypatch):
    seen = []
    real_pixel_vectors = baselines.pixel_vectors

    def spy(images, size, batch_size=64):
        seen.append(batch_size)
        return real_pixel_vectors(images, size, batch_size)

    monkeypatch.setattr(baselines, "pixel_vectors", spy)
    PixelNearestNeighbor(image_size=16, batch_size=7).kneighbors(easy_task.X_pairs[:4])
    assert seen == [7, 7]  # library, then the real images


def test_pixel_nn_similarity_of_a_copied_image_is_at_most_one(easy_task):
    """A real image found verbatim in the library scores 1, never above (float32 dot products of
    unit vectors can exceed 1: catches a missing or loosened clip)."""
    from skfingerprint import make_pairs

    reals = easy_task.real_images[:20]
    X = make_pairs(reals, np.concatenate([reals, easy_task.real_images[20:40]]))
    sims, ids = PixelNearestNeighbor(image_size=16).kneighbors(X)
    np.testing.assert_array_equal(ids, np.arange(20))
    assert (sims <= 1.0).all()
    np.testing.assert_allclose(sims, 1.0, atol=1e-6)
