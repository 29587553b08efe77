"""Figures for an audit: a real image beside the generated images that look most like it.

matplotlib is imported only when a plotting function is called. :class:`_AppliedModel` (a
fitted model applied once to ``X_pairs``: P(used), labels and nearest generated images) is
shared with :mod:`skfingerprint.report`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .pairs import PairedImages, check_pairs

__all__ = ["plot_leak_candidates"]


def _split_model(model: Any):
    """``(embedder, selector, classifier or None)`` from a fitted pipeline or a pair."""
    from sklearn.pipeline import Pipeline

    from .embedding import ViTLayerFusionEmbedder
    from .selection import FaissCandidateSelector

    if isinstance(model, Pipeline):
        steps = [step for _, step in model.steps if step not in (None, "passthrough")]
        embedder = next((s for s in steps if isinstance(s, ViTLayerFusionEmbedder)), None)
        selector = next((s for s in steps if isinstance(s, FaissCandidateSelector)), None)
        last = steps[-1] if steps else None
        clf = last if last is not selector and hasattr(last, "predict_proba") else None
    elif isinstance(model, (tuple, list)) and len(model) == 2:
        embedder, selector = model
        clf = None
    else:
        raise TypeError(
            "model must be a fitted Pipeline with a ViTLayerFusionEmbedder and a "
            "FaissCandidateSelector step (e.g. from make_fingerprint_pipeline), or a tuple "
            f"(fitted embedder, selector); got {type(model).__name__}"
        )
    if not isinstance(embedder, ViTLayerFusionEmbedder) or not isinstance(
        selector, FaissCandidateSelector
    ):
        raise TypeError(
            "model needs a ViTLayerFusionEmbedder and a FaissCandidateSelector; got "
            f"{type(embedder).__name__} and {type(selector).__name__}"
        )
    return embedder, selector, clf


class _AppliedModel:
    """A fitted model applied to ``X_pairs`` once: the embeddings are computed here and reused
    for P(used), the predicted labels and the nearest generated images of any rows.

    Parameters
    ----------
    model : fitted Pipeline or tuple (embedder, selector)
        As :func:`plot_leak_candidates` takes it (see :func:`_split_model`).
    X_pairs : PairedImages

    Attributes
    ----------
    embedder, selector, clf
        The model's steps (``clf`` None without a classifier).
    embeddings : PairEmbeddings
        ``embedder.transform(X_pairs)``.
    """

    def __init__(self, model: Any, X_pairs: PairedImages) -> None:
        self.embedder, self.selector, self.clf = _split_model(model)
        self.X_pairs = X_pairs
        self._between = _steps_between(model, self.embedder, self.clf)
        self.embeddings = self.embedder.transform(X_pairs)
        self._features = None

    def _classifier_input(self):
        """What the classifier reads: the embeddings through the steps between the embedder and
        the classifier (the selector, for a pipeline of the factory), as ``Pipeline`` does."""
        if self._features is None:
            Xt = self.embeddings
            for step in self._between:
                Xt = step.transform(Xt)
            self._features = Xt
        return self._features

    def proba(self) -> np.ndarray | None:
        """P(used) of every row (None without a classifier)."""
        if self.clf is None:
            return None
        return np.asarray(self.clf.predict_proba(self._classifier_input())[:, 1], dtype=float)

    def predict(self) -> np.ndarray | None:
        """The classifier's 0/1 label of every row (None without a classifier)."""
        if self.clf is None:
            return None
        return np.asarray(self.clf.predict(self._classifier_input())).astype(np.int64)

    def nearest(self, rows=None, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """Cosines and library indices ``(len(rows), k_eff)`` of the nearest generated images
        of ``rows`` (all rows when None), best first, as the selector ranks its candidates;
        ``k`` is cut to the library's size. Index -1: no neighbour there."""
        emb = self.embeddings if rows is None else self.embeddings[rows]
        return self.selector.kneighbors(emb, k=min(k, len(self.X_pairs.library)))


def _steps_between(model: Any, embedder, clf) -> list:
    """The transformers after ``embedder`` and before ``clf`` in a pipeline; ``[selector]``
    for a tuple (which has no classifier)."""
    from sklearn.pipeline import Pipeline

    if not isinstance(model, Pipeline):
        return [model[1]]
    steps = [step for _, step in model.steps if step not in (None, "passthrough")]
    start = next(i for i, s in enumerate(steps) if s is embedder) + 1
    stop = len(steps) - 1 if clf is not None else len(steps)
    return steps[start:stop]


def _gray(img: np.ndarray) -> np.ndarray:
    """A float ``(H, W, C)`` image as ``(H, W)`` grayscale for ``imshow``: the mean of its
    channels (of one channel, that channel), as the pixel space reads it."""
    return img.mean(axis=-1)


def plot_leak_candidates(
    X_pairs: PairedImages,
    model: Any,
    *,
    y=None,
    rows=None,
    n_rows: int = 4,
    n_candidates: int = 4,
    proba=None,
    library_source=None,
    fig=None,
    path: str | os.PathLike | None = None,
    title: str | None = None,
):
    """Show real images beside their most similar generated images, with the cosines.

    Each figure row is one real image (leftmost) followed by its ``n_candidates`` nearest
    library images (best first) in the embedder's space, each titled with its cosine
    similarity to the real image. The real image's title gives its id, the predicted P(used)
    when there is a classifier (or ``proba``) and the true label when ``y`` is given.

    Parameters
    ----------
    X_pairs : PairedImages
        Real images and their library, as given to the pipeline.
    model : fitted Pipeline or tuple (embedder, selector)
        A fitted pipeline holding a :class:`~skfingerprint.ViTLayerFusionEmbedder` and a
        :class:`~skfingerprint.FaissCandidateSelector` (its last step, if it has
        ``predict_proba``, gives P(used)), or a fitted embedder and a selector.
    y : array-like of 0/1, default=None
        True labels of the rows of ``X_pairs`` (1 = used), shown when given.
    rows : array-like of int, default=None
        Rows of ``X_pairs`` to show. None shows the ``n_rows`` rows with the highest P(used),
        or, without a classifier, the highest best-candidate cosine.
    n_rows : int, default=4
        How many rows to pick when ``rows`` is None.
    n_candidates : int, default=4
        Generated images shown per real image.
    proba : array-like of shape (n,), default=None
        P(used) of each row of ``X_pairs``, to use instead of asking the classifier.
    library_source : sequence of str or None, default=None
        Where the ground truth of the generator is known (synthetic data): for each library
        image, the id of the real image it copies (None or ``""`` for a novel image).
        Candidates that are copies of the real image of their row are marked ``copy`` in red.
    fig : matplotlib Figure or SubFigure, default=None
        Where to draw; a new figure (``matplotlib.pyplot.figure``) when None.
    path : str or Path, default=None
        Also save the figure there (format from the extension).
    title : str, default=None
        The figure's title; a description of what is shown when None.

    Returns
    -------
    matplotlib.figure.Figure
        The figure drawn on.

    Examples
    --------
    >>> from skfingerprint.pipeline import TINY_VIT, make_fingerprint_pipeline
    >>> from skfingerprint.plotting import plot_leak_candidates
    >>> from skfingerprint.datasets import make_synthetic_leak
    >>> task = make_synthetic_leak(10, 10, 30, image_size=64, random_state=0)
    >>> pipe = make_fingerprint_pipeline("maxsim", **TINY_VIT, k=5, random_state=0)
    >>> pipe = pipe.fit(task.X_pairs, task.y)
    >>> fig = plot_leak_candidates(task.X_pairs, pipe, y=task.y, n_rows=2)  # doctest: +SKIP
    """
    X_pairs = check_pairs(X_pairs, name="X_pairs")
    _split_model(model)  # a wrong model fails before the checks below
    n = len(X_pairs)
    if n_rows < 1 or n_candidates < 1:
        raise ValueError(f"n_rows and n_candidates must be >= 1; got {n_rows}, {n_candidates}")
    if y is not None:
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y has shape {y.shape}; expected one label per row, ({n},)")
    if proba is not None:
        proba = np.asarray(proba, dtype=float)
        if proba.shape != (n,):
            raise ValueError(f"proba has shape {proba.shape}; expected ({n},)")
    if library_source is not None:
        library_source = ["" if s is None else str(s) for s in library_source]
        if len(library_source) != len(X_pairs.library):
            raise ValueError(
                f"library_source has {len(library_source)} entries for a library of "
                f"{len(X_pairs.library)} images"
            )

    applied = _AppliedModel(model, X_pairs)
    if proba is None:
        proba = applied.proba()
    if rows is None:
        if proba is not None:
            score = proba
        else:
            score = applied.nearest(k=1)[0][:, 0]
        rows = np.argsort(-score, kind="stable")[: min(n_rows, n)]
    rows = np.atleast_1d(np.asarray(rows, dtype=int))
    if rows.size == 0 or rows.min() < -n or rows.max() >= n:
        raise ValueError(f"rows must be non-empty indices into the {n} rows of X_pairs")
    sims, idx = applied.nearest(rows, k=n_candidates)

    if fig is None:
        import matplotlib.pyplot as plt

        fig = plt.figure(figsize=(2.1 * (1 + idx.shape[1]), 2.35 * len(rows) + 0.6))
    axes = fig.subplots(len(rows), 1 + idx.shape[1], squeeze=False)  # 2-D, even for one row
    real, library = X_pairs.real, X_pairs.library
    for r, row in enumerate(rows):
        ax = axes[r, 0]
        ax.imshow(_gray(real.read(int(row))), cmap="gray", vmin=0.0, vmax=1.0)
        lines = [f"real: {real.ids[row]}"]
        facts = []
        if proba is not None:
            facts.append(f"P(used) {proba[row]:.2f}")
        if y is not None:
            facts.append("used" if int(y[row]) == 1 else "not used")
        if facts:
            lines.append(", ".join(facts))
        ax.set_title("\n".join(lines), fontsize=9, fontweight="bold")
        for spine in ax.spines.values():
            spine.set_edgecolor("tab:red" if y is not None and int(y[row]) == 1 else "0.3")
            spine.set_linewidth(2)
        for c in range(idx.shape[1]):
            ax = axes[r, 1 + c]
            j = int(idx[r, c])
            if j < 0:  # an approximate index returned nothing here
                ax.set_title("(no candidate)", fontsize=9)
                ax.axis("off")
                continue
            ax.imshow(_gray(library.read(j)), cmap="gray", vmin=0.0, vmax=1.0)
            copy = library_source is not None and library_source[j] == real.ids[row]
            ax.set_title(
                f"#{c + 1} {library.ids[j]}\ncos {sims[r, c]:.3f}" + (", copy" if copy else ""),
                fontsize=9,
                color="tab:red" if copy else "black",
            )
            if copy:
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:red")
                    spine.set_linewidth(2)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    if title is None:
        how = "highest P(used)" if proba is not None else "highest best cosine"
        # the space the selector chose the candidates in: the embedding, or pixels
        space = getattr(applied.selector, "spaces_", ("vit",))[0]
        space = "embedding" if space == "vit" else space
        title = (
            f"Real images ({how}, left) and their {idx.shape[1]} most similar generated "
            f"images ({space} cosine)"
        )
        keys = []
        if y is not None:
            keys.append("red frame on a real image: it was used to train the generator")
        if library_source is not None:
            keys.append("red 'copy': the generated image is a copy of that real image")
        if keys:
            title += "\n" + "; ".join(keys)
    fig.suptitle(title, fontsize=11)
    if path is not None:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig
