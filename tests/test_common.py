"""scikit-learn conformance of every estimator.

sklearn's ``parametrize_with_checks`` feeds 2-d float matrices ``(n_samples, n_features)``. None
of our estimators takes one: the embedder takes images or ``X_pairs``, the selector the
embedder's ``PairEmbeddings``, the classifiers 3-d candidate arrays ``(n, k, 2D+1)`` (the pixel
baseline, ``X_pairs``). Their tags say so (``two_d_array=False``), and sklearn then skips every
data check. So this module runs

1. sklearn's checks that need no data (parameters, cloning, repr, tags, parameter validation),
   taken from ``sklearn.utils.estimator_checks`` by name, on every estimator; and
2. the data checks that matter (fit returns self, refitting is idempotent, results on a subset
   equal the subset of results, results do not depend on row order, fitted attributes end in
   ``_`` and fit leaves parameters alone), written here for the inputs each estimator really
   takes.
"""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.utils import estimator_checks as ec

from skfingerprint import (
    CANetClassifier,
    FaissCandidateSelector,
    LinearRelationClassifier,
    MaxSimilarityClassifier,
    PixelNearestNeighbor,
    ViTLayerFusionEmbedder,
)
from skfingerprint.datasets import make_synthetic_leak

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2)


def estimators():
    return [
        ViTLayerFusionEmbedder(
            "vit_tiny_patch16_224",
            pretrained=False,
            model_kwargs=TINY,
            gate_epochs=10,
            random_state=0,
        ),
        FaissCandidateSelector(k=5, min_similarity=None),
        CANetClassifier(
            max_epochs=2, hidden=(32, 16), n_heads=2, random_state=0, early_stopping=False
        ),
        MaxSimilarityClassifier(),
        PixelNearestNeighbor(image_size=16),
        LinearRelationClassifier(),
    ]


API_CHECKS = [
    ec.check_no_attributes_set_in_init,
    ec.check_parameters_default_constructible,
    ec.check_get_params_invariance,
    ec.check_set_params,
    ec.check_estimator_repr,
    ec.check_estimator_cloneable,
    ec.check_estimator_tags_renamed,
    ec.check_valid_tag_types,
    ec.check_do_not_raise_errors_in_init_or_set_params,
    ec.check_mixin_order,
    ec.check_param_validation,
]


def _id(obj):
    return getattr(obj, "__name__", type(obj).__name__)


@pytest.mark.parametrize("estimator", estimators(), ids=_id)
@pytest.mark.parametrize("check", API_CHECKS, ids=_id)
def test_sklearn_api_checks(estimator, check):
    check(type(estimator).__name__, clone(estimator))


@pytest.mark.parametrize("estimator", estimators(), ids=_id)
def test_tags_say_what_input_is_taken(estimator):
    tags = estimator.__sklearn_tags__()
    assert tags.input_tags.two_d_array is False
    assert tags.requires_fit


# --- data checks on each estimator's real input ------------------------------------------------


@pytest.fixture(scope="module")
def data():
    task = make_synthetic_leak(12, 12, 30, image_size=32, random_state=0)
    embedder = estimators()[0].fit(task.X_pairs, task.y)
    E = embedder.transform(task.X_pairs)
    C = FaissCandidateSelector(k=5, min_similarity=None).fit(E).transform(E)
    relations = FaissCandidateSelector(k=5, min_similarity=None, features="relations")
    # the embedder's gate learned from task.y, which the head below is fitted on: said so
    with pytest.warns(UserWarning, match="whose gate was trained on the membership labels"):
        R = relations.fit(E).transform(E)
    return {
        "LinearRelationClassifier": (R, task.y),
        "ViTLayerFusionEmbedder": (task.X_pairs, task.y),
        "FaissCandidateSelector": (E, None),
        "CANetClassifier": (C, task.y),
        "MaxSimilarityClassifier": (C, task.y),
        "PixelNearestNeighbor": (task.X_pairs, task.y),
    }


def _output(est, X):
    out = est.transform(X) if hasattr(est, "transform") else est.predict_proba(X)
    return out.real if hasattr(out, "library") else out


@pytest.mark.parametrize("estimator", estimators(), ids=_id)
def test_fit_contract(estimator, data):
    X, y = data[type(estimator).__name__]
    params = estimator.get_params()
    assert estimator.fit(X, y) is estimator
    assert estimator.get_params() == params  # fit leaves parameters alone
    fitted = [k for k in vars(estimator) if k.endswith("_") and not k.startswith("_")]
    assert fitted, "fit sets attributes ending in _"
    first = _output(estimator, X)
    again = _output(clone(estimator).fit(X, y), X)  # idempotent, repeatable with random_state
    np.testing.assert_allclose(first, again, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("estimator", estimators(), ids=_id)
def test_subset_and_order_invariance(estimator, data):
    X, y = data[type(estimator).__name__]
    estimator.fit(X, y)
    full = _output(estimator, X)
    idx = np.array([5, 0, 17, 3])
    np.testing.assert_allclose(_output(estimator, X[idx]), full[idx], rtol=1e-5, atol=1e-5)
