"""make_fingerprint_pipeline builds the right steps, and its pipeline fits, predicts and plots."""

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import cohen_kappa_score
from sklearn.pipeline import Pipeline

from skfingerprint import (
    CANetClassifier,
    FaissCandidateSelector,
    LinearRelationClassifier,
    MaxSimilarityClassifier,
    ViTLayerFusionEmbedder,
)
from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.pipeline import TINY_CANET, TINY_VIT, make_fingerprint_pipeline

from .conftest import points_at

FAST = dict(
    **TINY_VIT,
    k=10,
    random_state=0,
    embedder_params=dict(gate_epochs=20, dtype="float32"),
)


@pytest.fixture(scope="module")
def task():
    return make_synthetic_leak(
        16, 16, 48, image_size=32, leak_fraction=0.6, distortion=0.3, random_state=0
    )


@pytest.fixture(scope="module")
def fitted_canet(task):
    pipe = make_fingerprint_pipeline("canet", features="paper", **FAST, max_epochs=3, **TINY_CANET)
    return pipe.fit(task.X_pairs, task.y)


def test_paper_features_follow_the_paper():
    pipe = make_fingerprint_pipeline("canet", features="paper")
    assert isinstance(pipe, Pipeline)
    assert [name for name, _ in pipe.steps] == ["embed", "select", "clf"]
    embed, select, clf = (step for _, step in pipe.steps)
    assert isinstance(embed, ViTLayerFusionEmbedder)
    assert (embed.model, embed.pretrained, embed.fusion) == ("vit_base_patch16_224", True, "gated")
    assert embed.pixel_size is None
    assert isinstance(select, FaissCandidateSelector)
    assert (select.k, select.min_similarity, select.features) == (100, 0.6, "paper")
    assert select.relation_spaces is None  # the paper's input has no relation scores
    assert isinstance(clf, CANetClassifier)
    assert (clf.threshold, clf.pair_features) == (0.6, "concat")


def test_default_is_the_linear_head_on_relation_scores():
    embed, select, clf = (step for _, step in make_fingerprint_pipeline().steps)
    assert embed.pixel_size == "auto"  # the images' own size up to 64 px, resolved in fit
    assert (select.features, select.min_similarity) == ("relations", None)
    # pretrained ViT: its scores too
    assert select.relation_spaces == ("pixels", "pixels_whitened", "vit")
    assert embed.fusion == "mean"  # no gate learned from the labels the head is fitted on
    assert isinstance(clf, LinearRelationClassifier)
    untrained = make_fingerprint_pipeline(**TINY_VIT)
    assert untrained.named_steps["select"].relation_spaces == ("pixels", "pixels_whitened")
    # trained weights from a checkpoint (or fine-tuning) count as trained without pretrained
    for trained in (dict(checkpoint="vit.pth"), dict(finetune="all")):
        spaces = make_fingerprint_pipeline(**TINY_VIT, **trained).named_steps["select"]
        assert spaces.relation_spaces == ("pixels", "pixels_whitened", "vit"), trained
    quiet = make_fingerprint_pipeline()  # no progress printed unless asked for
    assert (quiet.verbose, quiet["embed"].verbose) == (False, 0)
    canet = make_fingerprint_pipeline("canet").named_steps["clf"]
    assert (canet.pair_features, canet.threshold) == ("relations", 0.5)


def test_relation_scores_do_not_learn_from_the_labels(task):
    """With relation scores the ViT's blocks are fused without the membership labels, which the
    head is then fitted on: a gate trained on them made the ViT's relation scores separate the
    training reals only (-0.121 kappa over the benchmark's tasks, RESULTS_vit_space.md). Fitted
    on the labels or on their opposite, the pipeline hands its head the same scores; with the
    learned gate asked for, it does not (so the comparison can see the difference)."""
    params = dict(FAST, relation_spaces=("pixels", "vit"))

    def scores(labels, **kw):
        steps = make_fingerprint_pipeline(**params, **kw)[:-1]
        return steps.fit_transform(task.X_pairs, labels)

    flipped = 1 - task.y
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        np.testing.assert_array_equal(scores(task.y), scores(flipped))
    assert not [w for w in seen if "membership labels" in str(w.message)]
    # the learned gate, asked for, is allowed but named: the selector warns on its ViT space
    leak = r"\['vit'\] read the ViT embedding, whose gate was trained on the membership labels"
    with pytest.warns(UserWarning, match=leak):
        gated, gated_flipped = scores(task.y, fusion="gated"), scores(flipped, fusion="gated")
    assert not np.allclose(gated, gated_flipped)
    assert make_fingerprint_pipeline(fusion="gated")["embed"].fusion == "gated"


def test_feature_choices_are_checked():
    with pytest.raises(ValueError, match="features must be one of"):
        make_fingerprint_pipeline(features="pixels")
    with pytest.raises(ValueError) as info:
        make_fingerprint_pipeline("linear", features="paper")
    assert str(info.value) == (
        "classifier='linear' reads relation scores; use features='relations' (or "
        "classifier='canet' / 'maxsim' with the paper's features)"
    )
    with pytest.raises(ValueError) as info:
        make_fingerprint_pipeline(pixel_size=None)
    assert str(info.value) == ("relation_spaces names 'pixels' but pixel_size is None; give a size")
    with pytest.raises(ValueError, match="takes none"):
        make_fingerprint_pipeline("linear", max_epochs=3)


def test_used_fraction_reaches_the_linear_head_and_nothing_else():
    # Catches: the factory dropping used_fraction (the head then marks the training split's
    # share, silently), or accepting it for a head that cannot cut there, or refusing it
    # without naming the head that can.
    assert make_fingerprint_pipeline()["clf"].used_fraction is None
    assert make_fingerprint_pipeline(used_fraction=0.3)["clf"].used_fraction == 0.3
    for classifier in ("canet", "maxsim"):
        remedy = f"classifier='{classifier}' has no such cut. Use classifier='linear'"
        with pytest.raises(ValueError, match=remedy):
            make_fingerprint_pipeline(classifier, used_fraction=0.3)
    for bad in (0, 1.0, True, "0.3"):
        with pytest.raises(ValueError, match="used_fraction must be a number in \\(0, 1\\)"):
            make_fingerprint_pipeline(used_fraction=bad)


def test_parameters_reach_their_steps(tmp_path):
    pipe = make_fingerprint_pipeline(
        "canet",
        **TINY_VIT,
        layers="L1+3",
        fusion="mean",
        finetune="last",
        k=7,
        min_similarity=0.2,  # neither features' "auto" (0.6 for the paper's, None)
        threshold=0.4,
        random_state=3,
        verbose=1,
        cache_dir=tmp_path,
        embedder_params=dict(batch_size=8),
        max_epochs=2,
        hidden=(32, 16),
        n_heads=2,
    )
    p = pipe.get_params()
    assert p["embed__model"] == "vit_tiny_patch16_224"
    assert p["embed__pretrained"] is False
    assert p["embed__model_kwargs"] == TINY_VIT["model_kwargs"]
    assert p["embed__model_kwargs"] is not TINY_VIT["model_kwargs"]  # no shared mutable state
    assert (p["embed__layers"], p["embed__fusion"], p["embed__finetune"]) == (
        "L1+3",
        "mean",
        "last",
    )
    assert (p["embed__cache_dir"], p["embed__batch_size"]) == (tmp_path, 8)
    assert (p["select__k"], p["select__min_similarity"]) == (7, 0.2)
    assert (p["clf__threshold"], p["clf__max_epochs"], p["clf__hidden"]) == (0.4, 2, (32, 16))
    assert p["embed__random_state"] == p["select__random_state"] == p["clf__random_state"] == 3
    assert p["embed__verbose"] == p["clf__verbose"] == 1
    assert pipe.verbose is True  # the Pipeline's own step timings too
    clone(pipe)  # every step's parameters survive sklearn's clone


def test_maxsim_variant():
    pipe = make_fingerprint_pipeline("maxsim", **TINY_VIT)
    assert isinstance(pipe.named_steps["clf"], MaxSimilarityClassifier)
    assert pipe.named_steps["clf"].threshold is None  # learned in fit


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(classifier="svm"), "classifier must be one of"),
        (dict(classifier="maxsim", max_epochs=3), "classifier='maxsim'"),
        (
            dict(embedder_params=dict(k=5, layers=(1,))),
            r"^embedder_params sets \['layers'\], which make_fingerprint_pipeline takes as its "
            r"own arguments; pass them directly$",
        ),
    ],
)
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_fingerprint_pipeline(**kwargs)


def test_canet_pipeline_fits_and_predicts(task, fitted_canet):
    proba = fitted_canet.predict_proba(task.X_pairs)
    assert proba.shape == (32, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    pred = fitted_canet.predict(task.X_pairs)
    assert set(np.unique(pred)) <= {0, 1}
    np.testing.assert_array_equal(pred, (proba[:, 1] >= 0.6).astype(int))
    assert fitted_canet.named_steps["select"].k_ == 10
    assert fitted_canet.named_steps["embed"].layers_ == (1, 2, 3)


def test_maxsim_pipeline_fits_and_predicts(task):
    """It flags a real image where its best candidate's cosine is above the learned threshold,
    and that threshold gives the best training kappa of any cut of those cosines (checked by
    brute force here; catches a threshold not learned on the selector's cosines, a kappa that
    is not the best, or predict not reading the threshold)."""
    pipe = make_fingerprint_pipeline("maxsim", **FAST).fit(task.X_pairs, task.y)
    pred = pipe.predict(task.X_pairs)
    assert pred.shape == (32,)
    clf = pipe.named_steps["clf"]
    best = pipe[:-1].transform(task.X_pairs)[:, 0, -1].astype(np.float64)
    np.testing.assert_array_equal(pred, (best > clf.threshold_).astype(int))
    cuts = np.unique(best)
    best_kappa = max(
        cohen_kappa_score(task.y, best > t) for t in np.r_[cuts[0] - 1, (cuts[:-1] + cuts[1:]) / 2]
    )
    assert cohen_kappa_score(task.y, pred) == pytest.approx(best_kappa, abs=1e-12)
    assert clf.train_kappa_ == pytest.approx(best_kappa, abs=1e-12)
    assert 0 < pred.sum() < len(pred)  # a real cut, not all one class


def test_plot_leak_candidates(task, fitted_canet, tmp_path):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from skfingerprint.plotting import plot_leak_candidates

    path = tmp_path / "leaks.png"
    fig = plot_leak_candidates(
        task.X_pairs, fitted_canet, y=task.y, n_rows=3, n_candidates=2, fig=Figure(), path=path
    )
    assert path.stat().st_size > 1000
    assert len(fig.axes) == 3 * 3
    # default rows: the highest P(used), best first
    proba = fitted_canet.predict_proba(task.X_pairs)[:, 1]
    first = fig.axes[0].get_title()
    assert task.ids[int(np.argmax(proba))] in first and "P(used)" in first
    assert "cos " in fig.axes[1].get_title()
    assert not fig.axes[1].get_xticks().size and not fig.axes[1].get_yticks().size
    assert fig.get_suptitle()


def test_plot_leak_candidates_from_embedder_and_selector(task, fitted_canet):
    """Without a classifier: each row shows its nearest library images by a brute-force cosine
    in the embedding, marked "copy" exactly where the generator copied that real image
    (catches another space or order of candidates, or the copy mark compared to the wrong
    id)."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from skfingerprint.plotting import plot_leak_candidates

    pair = (fitted_canet.named_steps["embed"], fitted_canet.named_steps["select"])
    E = pair[0].transform(task.X_pairs)
    real = E.real / np.linalg.norm(E.real, axis=1, keepdims=True)
    lib = E.library / np.linalg.norm(E.library, axis=1, keepdims=True)
    sims = real @ lib.T
    nearest = np.argsort(-sims, axis=1, kind="stable")[:, :3]
    # row 0, and the first real image with a copy of it among its 3 nearest
    copied = [i for i in range(len(real)) if (task.generated_source[nearest[i]] == i).any()]
    rows = [0, copied[0]]
    # ground truth of the generator: which real image each generated one copies
    source = [task.ids[s] if s >= 0 else None for s in task.generated_source]
    fig = plot_leak_candidates(
        task.X_pairs, pair, rows=rows, n_candidates=3, library_source=source, fig=Figure()
    )
    assert len(fig.axes) == 2 * 4
    assert "P(used)" not in fig.axes[0].get_title()  # no classifier, no probability
    for r, row in enumerate(rows):
        assert fig.axes[4 * r].get_title().startswith(f"real: {task.ids[row]}")
        for c, j in enumerate(nearest[row]):
            copy = ", copy" if task.generated_source[j] == row else ""
            expected = f"#{c + 1} {task.generated_ids[j]}\ncos {sims[row, j]:.3f}{copy}"
            assert fig.axes[4 * r + 1 + c].get_title() == expected
    with pytest.raises(TypeError, match="fitted Pipeline"):
        plot_leak_candidates(task.X_pairs, "model", fig=Figure())
    with pytest.raises(ValueError, match="library_source"):
        plot_leak_candidates(task.X_pairs, pair, library_source=["a"], fig=Figure())


def test_plot_of_the_default_pipeline_shows_the_candidates_it_scored(task):
    """With relation scores the candidates come from the pixel space: the plot must show those
    (and say so), not the ViT's nearest images."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from skfingerprint.plotting import plot_leak_candidates

    pipe = make_fingerprint_pipeline(**FAST).fit(task.X_pairs, task.y)
    fig = plot_leak_candidates(task.X_pairs, pipe, rows=[3], n_candidates=2, fig=Figure())
    assert "pixels cosine" in fig.get_suptitle()
    best = pipe[:-1].transform(task.X_pairs)[3, 0, -1]
    assert f"cos {best:.3f}" in fig.axes[1].get_title()


def test_warnings_point_at_the_users_line(task):
    """A warning raised deep inside Pipeline.fit names this file, not scikit-learn's."""
    import warnings

    pipe = make_fingerprint_pipeline(**{**FAST, "k": 1000})  # more than the 48 generated
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe.fit(task.X_pairs, task.y)  # the line the warning must point at
    ours = [w for w in caught if "larger than the library" in str(w.message)]
    assert ours and all(points_at(w, __file__) for w in ours), [w.filename for w in ours]
