"""The three steps composed: Pipeline, cross-validation, grid search, persistence."""

import os
import subprocess
import sys
import warnings

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import (
    GridSearchCV,
    StratifiedKFold,
    TunedThresholdClassifierCV,
    cross_val_score,
)
from sklearn.pipeline import Pipeline

from skfingerprint import (
    CANetClassifier,
    FaissCandidateSelector,
    MaxSimilarityClassifier,
    ViTLayerFusionEmbedder,
    clear_memory_cache,
    kappa_scorer,
    make_pairs,
)
from skfingerprint.datasets import make_synthetic_leak

from .conftest import points_at

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2)


def pipeline(clf=None, **embed):
    return Pipeline(
        [
            (
                "embed",
                ViTLayerFusionEmbedder(
                    "vit_tiny_patch16_224",
                    pretrained=False,
                    model_kwargs=TINY,
                    gate_epochs=20,
                    random_state=0,
                    **embed,
                ),
            ),
            ("select", FaissCandidateSelector(k=5, min_similarity=None)),
            ("clf", clf or CANetClassifier(max_epochs=3, random_state=0, lr=3e-3)),
        ]
    )


@pytest.fixture(scope="module")
def task():
    return make_synthetic_leak(20, 20, 40, image_size=48, random_state=0)


def test_pipeline_fits_and_predicts_one_label_per_real_image(task):
    pipe = pipeline().fit(task.X_pairs, task.y)
    proba = pipe.predict_proba(task.X_pairs)
    assert proba.shape == (40, 2) and np.allclose(proba.sum(1), 1)
    assert set(pipe.predict(task.X_pairs)) <= {0, 1}
    # predict = P(used) > threshold, the paper's 0.6 by default
    np.testing.assert_array_equal(pipe.predict(task.X_pairs), proba[:, 1] > 0.6)


def _manual_cv_kappa(estimator, task, cv=3) -> np.ndarray:
    """Per-fold kappa by hand: clone, fit on the fold's rows of X_pairs, kappa of predict."""
    out = []
    for train, test in StratifiedKFold(cv).split(np.zeros(len(task.y)), task.y):
        model = clone(estimator).fit(task.X_pairs[train], task.y[train])
        out.append(cohen_kappa_score(task.y[test], model.predict(task.X_pairs[test])))
    return np.array(out)


def test_cross_val_score_with_kappa_equals_the_folds_by_hand(task):
    """X_pairs folds split the real images and keep the library; the scorer is kappa."""
    pipe = pipeline(MaxSimilarityClassifier())
    scores = cross_val_score(pipe, task.X_pairs, task.y, scoring=kappa_scorer, cv=3)
    np.testing.assert_allclose(scores, _manual_cv_kappa(pipe, task), atol=1e-12)
    assert scores.mean() > 0.3  # the synthetic leak is learnable: not a degenerate 0


def test_grid_search_over_layers_k_and_threshold_runs_the_vit_once(task, vit_passes):
    clear_memory_cache()
    before = vit_passes.images
    grid = GridSearchCV(
        pipeline(MaxSimilarityClassifier(), stop_early=False),  # every block in one pass
        {
            "embed__layers": [(1, 2), (2, 4)],
            "select__k": [1, 5],
            "clf__threshold": [0.2, 0.5],
        },
        cv=3,
        scoring=kappa_scorer,
    ).fit(task.X_pairs, task.y)
    assert vit_passes.images - before == 80  # 40 reals + 40 library images, once
    # every cell equals the same parameters cross-validated by hand (the token cache shared by
    # the cells must not mix layer sets, and each parameter must reach its step)
    for params, score in zip(
        grid.cv_results_["params"], grid.cv_results_["mean_test_score"], strict=True
    ):
        by_hand = _manual_cv_kappa(pipeline(MaxSimilarityClassifier()).set_params(**params), task)
        assert score == pytest.approx(by_hand.mean(), abs=1e-12), params
    assert grid.best_params_ == grid.cv_results_["params"][grid.best_index_]


def test_tuned_threshold(task):
    tuned = TunedThresholdClassifierCV(
        pipeline(MaxSimilarityClassifier()), scoring=kappa_scorer, cv=3
    ).fit(task.X_pairs, task.y)
    # predict applies the tuned threshold to the refitted pipeline's P(used)
    proba = tuned.estimator_.predict_proba(task.X_pairs)[:, 1]
    np.testing.assert_array_equal(tuned.predict(task.X_pairs), proba >= tuned.best_threshold_)
    assert 0 < tuned.best_threshold_ < 1


def test_joblib_in_a_fresh_process_predicts_the_same(task, tmp_path):
    pipe = pipeline().fit(task.X_pairs, task.y)
    joblib.dump(pipe, tmp_path / "model.joblib")
    np.save(tmp_path / "real.npy", task.real_images)
    np.save(tmp_path / "gen.npy", task.generated_images)
    np.save(tmp_path / "proba.npy", pipe.predict_proba(task.X_pairs))
    code = (
        "import joblib, numpy as np; from skfingerprint import make_pairs;"
        f"p = joblib.load(r'{tmp_path / 'model.joblib'}');"
        f"X = make_pairs(np.load(r'{tmp_path / 'real.npy'}'), np.load(r'{tmp_path / 'gen.npy'}'));"
        f"np.testing.assert_array_equal(p.predict_proba(X), np.load(r'{tmp_path / 'proba.npy'}'));"
        "print('identical')"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "identical"


def test_new_library_at_predict_time(task):
    pipe = pipeline(MaxSimilarityClassifier()).fit(task.X_pairs, task.y)
    other = make_synthetic_leak(5, 5, 30, image_size=48, random_state=1)
    assert pipe.predict(other.X_pairs).shape == (10,)
    # the candidates come from the library passed now, not the one seen in fit
    E = pipe.named_steps["embed"].transform(other.X_pairs)
    best = (E.real / np.linalg.norm(E.real, axis=1, keepdims=True)) @ (
        E.library / np.linalg.norm(E.library, axis=1, keepdims=True)
    ).T
    candidates = pipe[:-1].transform(other.X_pairs)
    np.testing.assert_allclose(candidates[:, 0, -1], best.max(1), atol=1e-5)


def test_bad_inputs_through_the_pipeline(task):
    with pytest.raises(ValueError, match="only 0"):
        pipeline().fit(task.X_pairs, task.y + 1)
    with pytest.raises(ValueError, match="only class 1"):
        pipeline().fit(task.X_pairs, np.ones(40, int))
    with pytest.raises(ValueError, match="empty"):
        make_pairs(task.real_images, task.generated_images[:0])
    with pytest.raises(NotFittedError):
        pipeline().predict(task.X_pairs)


def test_mismatched_embedding_sizes_are_refused(task):
    fitted = pipeline(MaxSimilarityClassifier()).fit(task.X_pairs, task.y)
    wide = pipeline(MaxSimilarityClassifier(), fusion="concat").fit(task.X_pairs, task.y)
    E = wide.named_steps["embed"].transform(task.X_pairs)
    d_fit = fitted.named_steps["embed"].n_features_out_
    d_new = wide.named_steps["embed"].n_features_out_
    assert d_new != d_fit
    match = f"embeddings of size {d_new}, but .* fitted on embeddings of size {d_fit}"
    with pytest.raises(ValueError, match=match):
        fitted.named_steps["select"].transform(E)


def test_seeded_fits_in_threads_match_a_fit_alone(task):
    # The ViT init, the gate and CANet draw from torch's process-wide generator: fits running
    # at once in threads (joblib's threading backend, Dask threads) must not mix their draws.
    from concurrent.futures import ThreadPoolExecutor

    from skfingerprint import _vit

    def fit(_):
        return pipeline().fit(task.X_pairs, task.y)

    alone = fit(None)
    _vit._BACKBONES.clear()  # the threads also create the backbone at once
    with ThreadPoolExecutor(3) as pool:
        fits = list(pool.map(fit, range(3)))
    expected = alone.predict_proba(task.X_pairs)
    for pipe in fits:
        np.testing.assert_array_equal(pipe["embed"].fusion_weights_, alone["embed"].fusion_weights_)
        np.testing.assert_array_equal(pipe.predict_proba(task.X_pairs), expected)


def test_a_seeded_fit_leaves_the_callers_torch_generator_alone(task):
    import torch

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    pipeline().fit(task.X_pairs, task.y)
    np.testing.assert_array_equal(torch.rand(3), expected)


def test_pandas_output_config_leaves_the_pipeline_alone(task):
    """set_config(transform_output="pandas") must not try to wrap PairEmbeddings or the
    candidate array (neither is a table): the steps opt out of set_output."""
    from sklearn import config_context

    expected = pipeline(MaxSimilarityClassifier()).fit(task.X_pairs, task.y)
    with config_context(transform_output="pandas"):
        pipe = pipeline(MaxSimilarityClassifier()).fit(task.X_pairs, task.y)
        np.testing.assert_array_equal(
            pipe.predict_proba(task.X_pairs), expected.predict_proba(task.X_pairs)
        )
        assert isinstance(pipe[:-1].transform(task.X_pairs), np.ndarray)


def test_predict_on_images_of_another_size_warns_once_at_the_callers_line(task):
    # Catches: no record of the fitted size (the 32 px model silently resizes 48 px images), or
    # warnings.warn without warn_at_caller (the warning points into sklearn's pipeline.py).
    small = make_synthetic_leak(20, 20, 40, image_size=32, random_state=0)
    pipe = pipeline(MaxSimilarityClassifier()).fit(small.X_pairs, small.y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.predict(task.X_pairs)  # 48 px
    sizes = [w for w in caught if "fitted on" in str(w.message)]
    assert len(sizes) == 1 and sizes[0].category is UserWarning
    assert str(sizes[0].message).startswith(
        "the embedder was fitted on 32x32 images; these are 48x48 (all 80 images): they are "
        "resized to the ViT's 32x32 input"
    )
    assert points_at(sizes[0], __file__)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.predict(small.X_pairs)  # the fitted size
    assert not [w for w in caught if "fitted on" in str(w.message)]


def test_a_raw_array_with_labels_is_refused_before_any_vit_work(task, monkeypatch):
    # Catches: the embedder dropping y for plain images and running the ViT, so that only the
    # selector refused them, after the whole forward pass.
    from skfingerprint import _vit

    def never(*args, **kwargs):
        raise AssertionError("the ViT was loaded or run")

    monkeypatch.setattr(_vit, "load_backbone", never)
    monkeypatch.setattr(_vit.Backbone, "embed_batch", never)
    monkeypatch.setattr("skfingerprint.embedding.vit_tokens", never)
    message = (
        r"fit got labels y with an image array of shape \(40, 48, 48\), not X_pairs\. .*"
        r"X_pairs = make_pairs\(real_images, generated_images\)"
    )
    with pytest.raises(ValueError, match=message):
        pipeline().fit(task.real_images, task.y)
