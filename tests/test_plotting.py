"""plot_leak_candidates: the right images, in the right order, framed and titled as the key says.

The figure is what an auditor looks at to see which real image leaked into which generated one,
so each panel's pixels, the rows chosen, the frames' colours and the checks of the arguments are
read back from the figure. (The titles of a fitted pipeline's plot: tests/test_pipeline_factory.)
"""

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from skfingerprint import FaissCandidateSelector, ViTLayerFusionEmbedder, make_pairs
from skfingerprint.pipeline import TINY_VIT

pytest.importorskip("matplotlib")
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from skfingerprint.plotting import plot_leak_candidates

N_REAL, N_LIB = 40, 24


def _images(channels: int, seed: int = 0):
    """Real images and a library, half of it noisy copies of the first reals; each channel
    differs, so a grey made of one channel is not their mean."""
    rng = np.random.default_rng(seed)
    shape = (32, 32) if channels == 1 else (32, 32, channels)
    real = rng.integers(0, 256, (N_REAL, *shape), dtype=np.uint8)
    library = rng.integers(0, 256, (N_LIB, *shape), dtype=np.uint8)
    noise = rng.integers(-20, 21, (N_LIB // 2, *shape))
    library[: N_LIB // 2] = np.clip(real[: N_LIB // 2] + noise, 0, 255)
    return real, library


def _fitted_pair(real, library):
    X = make_pairs(real, library)
    embedder = ViTLayerFusionEmbedder(**TINY_VIT, dtype="float32", random_state=0).fit(X)
    E = embedder.transform(X)
    selector = FaissCandidateSelector(k=5, min_similarity=None).fit(E)
    return X, (embedder, selector), E


@pytest.fixture(scope="module")
def rgb():
    real, library = _images(3)
    X, pair, E = _fitted_pair(real, library)
    return SimpleNamespace(real=real, library=library, X=X, pair=pair, E=E)


def _cosines(E):
    real = E.real / np.linalg.norm(E.real, axis=1, keepdims=True)
    lib = E.library / np.linalg.norm(E.library, axis=1, keepdims=True)
    return real @ lib.T


def _shown(ax) -> np.ndarray:
    (image,) = ax.get_images()
    assert image.get_clim() == (0.0, 1.0)  # a fixed scale: dark images stay dark
    assert image.get_cmap().name == "gray"
    return np.asarray(image.get_array())


def test_each_panel_shows_its_image_in_grey(rgb):
    # Catches: a colour image shown as one of its channels or averaged over the wrong axis
    # (`_gray`), the wrong real image or library image in a panel, candidates not in the order
    # of their cosine, and a colour scale stretched per image.
    real, library, X, pair, E = rgb.real, rgb.library, rgb.X, rgb.pair, rgb.E
    sims = _cosines(E)
    rows = [7, 0, 3]
    fig = plot_leak_candidates(X, pair, rows=rows, n_candidates=3, fig=Figure())
    axes = np.asarray(fig.axes).reshape(len(rows), 4)
    for r, row in enumerate(rows):
        np.testing.assert_allclose(_shown(axes[r, 0]), real[row].mean(axis=-1) / 255, atol=1e-6)
        for c, j in enumerate(np.argsort(-sims[row], kind="stable")[:3]):
            expected = library[j].mean(axis=-1) / 255
            np.testing.assert_allclose(_shown(axes[r, 1 + c]), expected, atol=1e-6)


def test_a_grey_image_is_shown_as_it_is():
    # Catches: a one-channel image shown as anything but its one channel.
    real, library = _images(1, seed=1)
    X, pair, _ = _fitted_pair(real[:6], library)
    fig = plot_leak_candidates(X, pair, rows=[4], n_candidates=1, fig=Figure())
    np.testing.assert_allclose(_shown(fig.axes[0]), real[4] / 255, atol=1e-6)


def test_default_rows_are_the_highest_best_cosines_without_a_classifier(rgb):
    # Catches: rows picked by another column or the indices instead of the cosines, the best
    # cosine of the second neighbour, ascending order, and the default n_rows / n_candidates (4).
    X, pair, E = rgb.X, rgb.pair, rgb.E
    best = _cosines(E).max(axis=1)
    fig = plot_leak_candidates(X, pair, fig=Figure())
    assert len(fig.axes) == 4 * (1 + 4)
    shown = [fig.axes[5 * r].get_title().splitlines()[0] for r in range(4)]
    top = np.argsort(-best, kind="stable")[:4]
    assert shown == [f"real: {X.real.ids[i]}" for i in top]
    assert "highest best cosine" in fig.get_suptitle()


def test_p_used_given_orders_the_rows_ties_in_input_order_and_is_read_as_numbers(rgb):
    # Catches: proba ignored (None, or the classifier asked instead), read without converting
    # to float (scores read back from a CSV as text), its shape check inverted, and an
    # unstable sort (tied rows in another order from run to run).
    X, pair = rgb.X, rgb.pair
    levels = np.array(["0.2", "0.9", "0.5"])
    proba = list(levels[np.arange(N_REAL) % 3])  # 40 rows on three levels: many ties
    fig = plot_leak_candidates(X, pair, proba=proba, n_rows=6, n_candidates=1, fig=Figure())
    titles = [fig.axes[2 * r].get_title().splitlines() for r in range(6)]
    first_09 = [i for i in range(N_REAL) if i % 3 == 1][:6]
    assert [t[0] for t in titles] == [f"real: {X.real.ids[i]}" for i in first_09]
    assert all(t[1] == "P(used) 0.90" for t in titles)
    assert fig.get_suptitle() == (
        "Real images (highest P(used), left) and their 1 most similar generated images "
        "(embedding cosine)"
    )


def test_rows_may_be_given_as_whole_floats_or_counted_from_the_end(rgb):
    # Catches: rows not cast to int (a float index into the ids fails) and the lower bound
    # off by one (`<=`: the first row by its negative index refused).
    X, pair = rgb.X, rgb.pair
    fig = plot_leak_candidates(X, pair, rows=np.array([2.0, 5.0]), n_candidates=1, fig=Figure())
    assert fig.axes[2].get_title().startswith(f"real: {X.real.ids[5]}")
    fig = plot_leak_candidates(X, pair, rows=[-N_REAL, N_REAL - 1], n_candidates=1, fig=Figure())
    assert fig.axes[0].get_title().startswith(f"real: {X.real.ids[0]}")
    assert fig.axes[2].get_title().startswith(f"real: {X.real.ids[N_REAL - 1]}")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(n_rows=0), "n_rows and n_candidates must be >= 1; got 0, 4"),
        (dict(n_candidates=0), "n_rows and n_candidates must be >= 1; got 4, 0"),
        (dict(y=np.zeros(3)), "y has shape (3,); expected one label per row, (40,)"),
        (dict(proba=np.zeros((40, 2))), "proba has shape (40, 2); expected (40,)"),
        (dict(rows=[40]), "rows must be non-empty indices into the 40 rows of X_pairs"),
        (dict(rows=[-41]), "rows must be non-empty indices into the 40 rows of X_pairs"),
        (dict(rows=[]), "rows must be non-empty indices into the 40 rows of X_pairs"),
        (dict(rows=[0, 40]), "rows must be non-empty indices into the 40 rows of X_pairs"),
        (dict(library_source=["a"]), "library_source has 1 entries for a library of 24 images"),
    ],
)
def test_bad_arguments_are_refused_with_what_is_wrong(rgb, kwargs, message):
    # Catches: each check dropped, loosened (`and` for `or`, `>` for `>=`) or its message lost.
    X, pair = rgb.X, rgb.pair
    with pytest.raises(ValueError) as info:
        plot_leak_candidates(X, pair, fig=Figure(), **kwargs)
    assert str(info.value) == message


def test_one_row_and_one_candidate_are_enough(rgb):
    # Catches: the lower bounds moved to 2 (`<= 1`, `< 2`).
    X, pair = rgb.X, rgb.pair
    fig = plot_leak_candidates(X, pair, n_rows=1, n_candidates=1, fig=Figure())
    assert len(fig.axes) == 2


def test_bad_pairs_are_named_as_x_pairs(rgb):
    # Catches: the argument's name lost from the message.
    real, pair = rgb.real, rgb.pair
    with pytest.raises(TypeError) as info:
        plot_leak_candidates(real, pair, fig=Figure())
    assert str(info.value).startswith("X_pairs must be X_pairs built by skfingerprint.make_pairs")


def test_a_novel_image_is_no_copy_even_of_a_real_image_named_none(rgb):
    # Catches: a novel image's missing source (None) compared as the text "None", which marks
    # every novel candidate of a real image with that id (a file None.png) as its copy.
    ids = ["None"] + [f"r{i}" for i in range(1, N_REAL)]
    X = make_pairs(rgb.real, rgb.library, real_ids=ids)
    source = [None] * N_LIB
    fig = plot_leak_candidates(
        X, rgb.pair, rows=[0], n_candidates=3, library_source=source, fig=Figure()
    )
    assert not any(ax.get_title().endswith("copy") for ax in fig.axes[1:])


def test_frames_and_titles_follow_the_key(rgb):
    # Catches: a used image's frame not red (or every frame red), a copy not marked, the mark
    # given to a generated image that copies another real image, and the key missing from the
    # title.
    X, pair, E = rgb.X, rgb.pair, rgb.E
    sims = _cosines(E)
    row = 3  # library image 3 is a noisy copy of real image 3
    y = np.zeros(N_REAL, dtype=int)
    y[row] = 1
    source = [X.real.ids[i] if i < N_LIB // 2 else None for i in range(N_LIB)]
    fig = plot_leak_candidates(
        X, pair, y=y, rows=[row, 20], n_candidates=2, library_source=source, fig=Figure()
    )
    axes = np.asarray(fig.axes).reshape(2, 3)
    red, grey = to_rgba("tab:red"), to_rgba("0.3")
    assert axes[0, 0].get_title() == f"real: {X.real.ids[row]}\nused"
    assert axes[1, 0].get_title() == f"real: {X.real.ids[20]}\nnot used"
    for spine in axes[0, 0].spines.values():
        assert spine.get_edgecolor() == red and spine.get_linewidth() == 2
    for spine in axes[1, 0].spines.values():
        assert spine.get_edgecolor() == grey
    for r, real_row in enumerate([row, 20]):
        for c, j in enumerate(np.argsort(-sims[real_row], kind="stable")[:2]):
            ax = axes[r, 1 + c]
            copy = source[j] == X.real.ids[real_row]
            title = f"#{c + 1} {X.library.ids[j]}\ncos {sims[real_row, j]:.3f}"
            assert ax.get_title() == title + (", copy" if copy else "")
            assert to_rgba(ax.title.get_color()) == (red if copy else to_rgba("black"))
            assert all((s.get_edgecolor() == red) == copy for s in ax.spines.values())
    assert axes[0, 1].get_title().endswith(", copy")  # the copy is row 3's best match
    assert fig.get_suptitle() == (
        "Real images (highest best cosine, left) and their 2 most similar generated images "
        "(embedding cosine)\nred frame on a real image: it was used to train the generator; "
        "red 'copy': the generated image is a copy of that real image"
    )


def test_a_new_figure_is_drawn_and_saved_at_the_asked_size(rgb, tmp_path):
    # Catches: no figure made when none is given (`is not None`), and the saved file's
    # resolution.
    import matplotlib.pyplot as plt

    X, pair = rgb.X, rgb.pair
    path = tmp_path / "leaks.png"
    fig = plot_leak_candidates(X, pair, rows=[0, 1], n_candidates=3, path=path, title="mine")
    try:
        assert tuple(fig.get_size_inches()) == pytest.approx((2.1 * 4, 2.35 * 2 + 0.6))
        assert fig.get_suptitle() == "mine"
    finally:
        plt.close(fig)
    with Image.open(path) as saved:
        assert saved.info["dpi"] == pytest.approx((110, 110), abs=0.5)


def test_a_real_image_title_gives_p_used_and_the_label_together(rgb):
    # Catches: the two facts joined with anything but ", ".
    y = np.zeros(N_REAL, dtype=int)
    y[1] = 1
    proba = np.linspace(0.0, 1.0, N_REAL)
    fig = plot_leak_candidates(
        rgb.X, rgb.pair, y=y, proba=proba, rows=[1], n_candidates=1, fig=Figure()
    )
    assert fig.axes[0].get_title() == f"real: {rgb.X.real.ids[1]}\nP(used) {proba[1]:.2f}, used"


@pytest.mark.usefixtures("second_neighbour_missing")
def test_a_missing_neighbour_is_an_empty_panel_and_the_next_one_still_shows(rgb):
    # Catches: the empty panel untitled or left with axes, and `break` for `continue` (the
    # candidates after a missing one not drawn).
    X, pair, E = rgb.X, rgb.pair, rgb.E
    fig = plot_leak_candidates(X, pair, rows=[0, 5], n_candidates=3, fig=Figure())
    axes = np.asarray(fig.axes).reshape(2, 4)
    nearest = np.argsort(-_cosines(E), axis=1, kind="stable")
    for r, row in enumerate([0, 5]):
        gap = axes[r, 2]
        assert gap.get_title() == "(no candidate)" and not gap.axison and not gap.get_images()
        third = axes[r, 3]
        assert third.get_title().startswith(f"#3 {X.library.ids[nearest[row, 2]]}\n")
        np.testing.assert_allclose(
            _shown(third), rgb.library[nearest[row, 2]].mean(axis=-1) / 255, atol=1e-6
        )


def test_a_model_that_is_not_an_embedder_and_a_selector_is_refused_with_what_it_got(rgb):
    # Catches: a two-item string or dict taken for an (embedder, selector) pair (`or` for
    # `and`), either half of the pair left unchecked (`and` for `or`), a pipeline without an
    # embedder or with no step at all failing with StopIteration or IndexError instead of the
    # message, and the messages' words.
    from sklearn.pipeline import Pipeline

    embedder, selector = rgb.pair
    not_a_model = (
        "model must be a fitted Pipeline with a ViTLayerFusionEmbedder and a "
        "FaissCandidateSelector step (e.g. from make_fingerprint_pipeline), or a tuple "
        "(fitted embedder, selector); got "
    )
    needs = "model needs a ViTLayerFusionEmbedder and a FaissCandidateSelector; got "
    cases = [
        ("ab", not_a_model + "str"),
        ({"embed": embedder, "select": selector}, not_a_model + "dict"),
        ((embedder, "index"), needs + "ViTLayerFusionEmbedder and str"),
        (("embedder", selector), needs + "str and FaissCandidateSelector"),
        (Pipeline([("select", selector)]), needs + "NoneType and FaissCandidateSelector"),
        (Pipeline([("embed", embedder)]), needs + "ViTLayerFusionEmbedder and NoneType"),
        (Pipeline([("nothing", "passthrough")]), needs + "NoneType and NoneType"),
    ]
    for model, message in cases:
        with pytest.raises(TypeError) as info:
            plot_leak_candidates(rgb.X, model, fig=Figure())
        assert str(info.value) == message


def test_passthrough_steps_are_skipped(rgb):
    # Catches: a "passthrough" step kept among the steps between the selector and the
    # classifier (its transform called).
    from sklearn.pipeline import Pipeline

    from skfingerprint import MaxSimilarityClassifier

    embedder, selector = rgb.pair
    pipe = Pipeline(
        [("embed", embedder), ("select", selector), ("noop", "passthrough"),
         ("clf", MaxSimilarityClassifier())]
    )  # fmt: skip
    y = (np.arange(N_REAL) < N_LIB // 2).astype(int)  # the reals with a copy in the library
    pipe.fit(rgb.X, y)
    proba = pipe.predict_proba(rgb.X)[:, 1]
    fig = plot_leak_candidates(rgb.X, pipe, n_rows=2, n_candidates=1, fig=Figure())
    top = np.argsort(-proba, kind="stable")[:2]
    assert [fig.axes[2 * r].get_title() for r in range(2)] == [
        f"real: {rgb.X.real.ids[i]}\nP(used) {proba[i]:.2f}" for i in top
    ]
