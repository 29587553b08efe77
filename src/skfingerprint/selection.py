"""FAISS candidate selection: the top-k library images of each real image, by cosine similarity.

The selector sits between the embedder and the classifier of the pipeline::

    X_pairs -> ViTLayerFusionEmbedder -> PairEmbeddings
            -> FaissCandidateSelector -> (n, k, 2D+1) candidates -> classifier

It builds one FAISS index per distinct library (``PairEmbeddings.library_key``) and reuses it for
every later ``transform`` on that library, so cross-validation folds that share the library pay
for the index once. With ``index_path`` the fit-time index is also saved to a file the first time
and memory-mapped from it afterwards, so a large library is indexed once across processes.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import OrderedDict
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import faiss
import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import relations
from ._contracts import MASKED_COSINE, derive_seed
from ._faiss_index import (
    _build_index,
    _faiss_threads,
    _meta_path,
    _read_index,
    _save_index,
    _set_search_params,
)
from ._warnings import warn_at_caller
from .pairs import PairEmbeddings, _l2_normalize

__all__ = ["MASKED_COSINE", "FaissCandidateSelector"]


# Libraries whose index is kept besides the fit-time one (least recently used dropped first).
_MAX_CACHED_INDEXES = 4


def _warn_on_label_shaped_space(E: PairEmbeddings, spaces: tuple[str, ...]) -> None:
    """Warn when relation scores would be read in a space shaped by the fit's labels."""
    label_shaped = [s for s in spaces if s.removesuffix(relations.WHITENED) == "vit"]
    if E.learned_from_labels and label_shaped:
        warn_at_caller(
            f"relation space(s) {label_shaped} read the ViT embedding, whose gate was trained on "
            "the membership labels this fit's head is fitted on: its scores then separate the "
            "fit's own used images, not the generator's (measured: -0.08 to -0.12 kappa over the "
            "benchmark's tasks, benchmarks/RESULTS_vit_space.md). Fuse without labels "
            "(ViTLayerFusionEmbedder(fusion='mean') or labels='ignore'), or drop 'vit' from "
            "relation_spaces"
        )


def _check_embeddings(X: Any, name: str = "X") -> PairEmbeddings:
    """Check that ``X`` is a valid :class:`PairEmbeddings` (type, sizes, finite values)."""
    if not isinstance(X, PairEmbeddings):
        raise TypeError(
            f"{name} must be a PairEmbeddings: the output of ViTLayerFusionEmbedder.transform on "
            "X_pairs (from make_pairs or load_imageclef_gans), or one built by hand as "
            f"PairEmbeddings(real, library, library_key); got {type(X).__name__}"
        )
    n, d = X.real.shape
    if d == 0:
        raise ValueError(f"{name}: embeddings have 0 features (D must be > 0)")
    if n == 0:
        raise ValueError(f"{name}: there are no real rows (0 real embeddings)")
    if len(X.library) == 0:
        raise ValueError(f"{name}: the library is empty (0 generated embeddings)")
    if not isinstance(X.library_key, str):
        raise TypeError(f"{name}.library_key must be a str; got {type(X.library_key).__name__}")
    parts = {"real": X.real, "library": X.library}
    if X.reference is not None:  # its rows join every relation score, as the real rows do
        parts["reference.real"] = X.reference.real
    for part, arr in parts.items():
        finite = np.isfinite(arr).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise ValueError(
                f"{name}.{part} contains NaN or infinite values (rows {bad[:10].tolist()}"
                f"{'...' if bad.size > 10 else ''})"
            )
    return X


def _spectral_keep(cands: np.ndarray, seed: int) -> np.ndarray:
    """Which of the candidates (rows of ``cands``, best first) stay after spectral refinement.

    Affinity ``A_ij = max(cos(c_i, c_j), 0)`` (diagonal 1); sklearn ``SpectralClustering`` with 2
    clusters on it (labels assigned by ``cluster_qr``: deterministic and ~25x faster than k-means
    here); the cluster holding the best candidate (row 0) is kept.
    """
    from sklearn.cluster import SpectralClustering

    keep = np.ones(len(cands), dtype=bool)
    if len(cands) < 3:
        return keep
    affinity = np.clip(cands @ cands.T, 0.0, 1.0).astype(np.float64)
    np.fill_diagonal(affinity, 1.0)
    if affinity.min() >= 1.0 - 1e-6:  # all candidates the same direction: nothing to split
        return keep
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Graph is not fully connected"
        labels = SpectralClustering(
            n_clusters=2, affinity="precomputed", assign_labels="cluster_qr", random_state=seed
        ).fit_predict(affinity)
    return labels == labels[0]


class FaissCandidateSelector(TransformerMixin, BaseEstimator, auto_wrap_output_keys=None):
    """The top-k library candidates of each real image by cosine similarity, found with FAISS.

    Both the real and the library embeddings are L2-normalised; the cosine is their inner
    product. For each real row the ``k`` most similar library rows are returned, best first, each
    as ``[real vector, candidate vector, cosine]``, ready for a classifier that compares a real
    image with its whole neighbourhood in the library.

    **Mask convention.** A candidate whose cosine is below ``min_similarity`` (or that the
    spectral refinement drops, or that an approximate index failed to return) is *masked*: its
    candidate vector is zeroed and its cosine set to :data:`MASKED_COSINE` ``= -2.0``, outside
    ``[-1, 1]``, so ``X[..., -1] < -1`` is the mask. Its real vector stays. The best candidate is
    never masked, so every row has at least one candidate.

    **Spectral refinement** (``refine="spectral"``, the paper's outlier removal). For each real
    row, take its unmasked candidates among the best ``refine_top``; build their affinity matrix
    ``A_ij = max(cos(c_i, c_j), 0)`` (diagonal 1); split them in two with scikit-learn's
    ``SpectralClustering(n_clusters=2, affinity="precomputed", assign_labels="cluster_qr")``;
    keep the cluster that holds the
    best candidate and mask the other. Candidates ranked below ``refine_top`` are masked too, so
    the pool of each image is sized by its kept cluster (at most ``refine_top``). Rows with fewer
    than 3 unmasked candidates, or whose candidates all point the same way, are not split. Since
    the split is always in two, a homogeneous neighbourhood loses part of its pool: refinement is
    an option (the paper's), not the default.

    Parameters
    ----------
    k : int, default=100
        Candidates per real image. Larger than a library, it is cut to the library's size (with
        a warning).
    min_similarity : float in [-1, 1] or None, default=0.6
        Candidates with a lower cosine are masked (the paper's threshold). None masks nothing.
    index : str, default="flat"
        ``"flat"`` (exact search), ``"hnsw"`` (``IndexHNSWFlat`` with ``hnsw_m`` links),
        ``"ivf"`` (``IndexIVFFlat`` with about ``4 sqrt(m)`` spherical k-means lists), or any
        FAISS ``index_factory`` string such as ``"IVF256,PQ32"``; always with the inner-product
        metric.
    hnsw_m : int, default=32
        Links per node of the HNSW graph.
    ef_construction : int, default=100
        HNSW build depth. Above FAISS's default of 40 because recall@100 depends on it: on
        ``benchmarks/bench_select.py`` (100,000 vectors) 100 rather than 40 lifts recall at
        ``ef_search=128`` from about 0.95 to 0.97 for about twice the build time.
    ef_search : int, default=128
        HNSW search depth (raised to ``k`` when smaller).
    nprobe : int, default=16
        Inverted lists an IVF index visits per query.
    features : {"paper", "relations"}, default="paper"
        What each candidate row carries. ``"paper"``: ``[real vector, candidate vector,
        cosine]`` (``2D + 1``), the paper's input. ``"relations"``: identity-free relation
        scores in each of ``relation_spaces``, standardised over the real images passed
        together, then the cosine (:mod:`skfingerprint.relations`; ``14 * n_spaces + 1``
        features). Pass a split's real images in one call: the scores compare each with the
        others. Relation scores need every real-library cosine (which library images have
        which real image as nearest), so this mode searches exactly, by blocks of the
        library, and ``index`` and ``index_path`` serve the paper's mode only.
    relation_spaces : tuple of str or None, default=None
        With ``features="relations"``: the spaces scored, the first also choosing the
        candidates: ``"vit"`` (the main embedding) and the input's extra spaces
        (``"pixels"``), each also as ``"<space>_whitened"`` (scored after
        :func:`~skfingerprint.relations.within_mode_whiten`). None is every space of the fit
        input, ``"vit"`` first (not whitened). ``fit`` warns when a ``"vit"`` space comes from
        an embedder whose gate learned the fit's labels (``learned_from_labels``).
    refine : {"spectral"} or None, default=None
        Drop outlier candidates by spectral clustering (see above).
    refine_top : int, default=50
        How many of the best candidates the spectral refinement clusters (the paper's top-50).
    index_path : str, Path or None, default=None
        A file for the fit-time index. If it does not exist, ``fit`` builds the index and saves
        it there (with ``<index_path>.json`` beside it naming the library); if it exists,
        ``fit`` loads it instead of building, after checking that it was built for the same
        library (``library_key``, size, dimension) and ``index``, and raises ``ValueError``
        otherwise (``hnsw_m``, ``ef_construction`` and the seed are not checked: the saved
        index is used as it was built). Delete the file to rebuild. A pickled selector then
        stores the path, not the index. Indexes of other libraries met in ``transform`` are
        built in memory as usual.
    mmap : bool, default=True
        Memory-map the index read from ``index_path`` instead of reading it into memory: it
        loads in milliseconds and the operating system pages in only the vectors searches
        touch (see ``benchmarks/RESULTS_select.md``).
    n_jobs : int or None, default=None
        Threads for FAISS and processes for the spectral refinement (joblib convention). None
        leaves FAISS's OpenMP setting alone and refines in one process.
    random_state : int, RandomState instance or None, default=None
        Seeds IVF k-means and the spectral clustering.

    Attributes
    ----------
    n_features_in_ : int
        Size ``D`` of one embedding.
    k_ : int
        Candidates per row for the fit-time library: ``min(k, library size)``.
    n_library_ : int
        Size of the fit-time library.
    library_key_ : str
        ``library_key`` of the fit-time library.
    index_ : faiss.Index
        The FAISS index of the fit-time library (serialised with ``faiss.serialize_index`` when
        pickled, or re-read from ``index_path`` when that is set). ``features="paper"`` only:
        the relation scores search exactly and build no index.
    spaces_ : tuple of str
        With ``features="relations"``, the spaces scored (``relation_spaces`` resolved).
    relation_stats_ : ndarray of shape (n_spaces, 2, 11)
        With ``features="relations"``, the fit split's mean and spread of each per-real score,
        used by a ``transform`` of fewer than ``relations.MIN_SPLIT`` real images.

    See Also
    --------
    skfingerprint.ViTLayerFusionEmbedder : Produces the ``PairEmbeddings`` this selector takes.
    skfingerprint.MaxSimilarityClassifier : Scores real images from this selector's output.

    Examples
    --------
    >>> import numpy as np
    >>> from skfingerprint.pairs import PairEmbeddings
    >>> from skfingerprint.selection import FaissCandidateSelector
    >>> rng = np.random.default_rng(0)
    >>> library = rng.normal(size=(50, 8)).astype(np.float32)
    >>> E = PairEmbeddings(library[:3] + 0.01, library, library_key="demo")
    >>> sel = FaissCandidateSelector(k=5, min_similarity=0.6).fit(E)
    >>> X = sel.transform(E)
    >>> X.shape  # (rows, k, 2 * D + 1)
    (3, 5, 17)
    >>> sim, idx = sel.kneighbors(E, k=1)
    >>> idx.ravel().tolist()
    [0, 1, 2]
    >>> bool((X[:, 0, -1] > 0.99).all())
    True
    """

    _parameter_constraints: dict = {
        "k": [Interval(Integral, 1, None, closed="left")],
        "min_similarity": [Interval(Real, -1, 1, closed="both"), None],
        "index": [str],
        "hnsw_m": [Interval(Integral, 2, None, closed="left")],
        "ef_construction": [Interval(Integral, 1, None, closed="left")],
        "ef_search": [Interval(Integral, 1, None, closed="left")],
        "nprobe": [Interval(Integral, 1, None, closed="left")],
        "features": [StrOptions({"paper", "relations"})],
        "relation_spaces": [tuple, list, None],
        "refine": [StrOptions({"spectral"}), None],
        "refine_top": [Interval(Integral, 2, None, closed="left")],
        "index_path": [str, os.PathLike, None],
        "mmap": ["boolean"],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        k: int = 100,
        *,
        min_similarity: float | None = 0.6,
        index: str = "flat",
        hnsw_m: int = 32,
        ef_construction: int = 100,
        ef_search: int = 128,
        nprobe: int = 16,
        features: str = "paper",
        relation_spaces=None,
        refine: str | None = None,
        refine_top: int = 50,
        index_path: str | os.PathLike | None = None,
        mmap: bool = True,
        n_jobs: int | None = None,
        random_state=None,
    ) -> None:
        self.k = k
        self.min_similarity = min_similarity
        self.index = index
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.nprobe = nprobe
        self.features = features
        self.relation_spaces = relation_spaces
        self.refine = refine
        self.refine_top = refine_top
        self.index_path = index_path
        self.mmap = mmap
        self.n_jobs = n_jobs
        self.random_state = random_state

    # --- index management ----------------------------------------------------------------------
    def _seed(self) -> int:
        return derive_seed(self.random_state)

    def _effective_k(self, k: int, m: int) -> int:
        if k > m:
            warn_at_caller(
                f"k={k} is larger than the library ({m} generated embeddings); using k={m}"
            )
        return min(k, m)

    def _new_index(self, library: np.ndarray) -> faiss.Index:
        return _build_index(library, self.index, self.hnsw_m, self.ef_construction, self._seed())

    def _index_for(self, E: PairEmbeddings) -> faiss.Index:
        """The index of ``E``'s library: the fit-time one, a cached one, or a new one."""
        m, d = E.library.shape
        fitted = getattr(self, "index_", None)
        if (
            fitted is not None
            and E.library_key == getattr(self, "library_key_", None)
            and fitted.ntotal == m
            and fitted.d == d
        ):
            return fitted
        cache = self.__dict__.setdefault("_index_cache", OrderedDict())
        key = (E.library_key, self.index, self.hnsw_m, self.ef_construction)
        idx = cache.get(key)
        if idx is None or idx.ntotal != m or idx.d != d:
            with _faiss_threads(self.n_jobs):
                idx = self._new_index(E.library)
            cache[key] = idx
            while len(cache) > _MAX_CACHED_INDEXES:
                cache.popitem(last=False)
        cache.move_to_end(key)
        return idx

    def _search(self, E: PairEmbeddings, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosines and library indices ``(n, k)`` of each real row's top-k, best first.

        Missing results of an approximate index are index -1 with cosine ``MASKED_COSINE``; a row
        whose best result is missing is searched exactly.
        """
        idx = self._index_for(E)
        queries = np.ascontiguousarray(_l2_normalize(E.real))
        _set_search_params(idx, k, self.ef_search, self.nprobe)
        with _faiss_threads(self.n_jobs):
            sims, ids = idx.search(queries, k)
        missing = ids[:, 0] < 0
        if missing.any():  # e.g. an IVF query whose probed lists are all empty
            sims[missing], ids[missing] = relations.top_k(
                queries[missing], _l2_normalize(E.library), k
            )
        sims = np.where(ids < 0, MASKED_COSINE, np.clip(sims, -1.0, 1.0)).astype(np.float32)
        order = np.argsort(-sims, axis=1, kind="stable")  # approximate indexes: make sure
        return np.take_along_axis(sims, order, axis=1), np.take_along_axis(ids, order, axis=1)

    # --- sklearn API ---------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: PairEmbeddings, y=None) -> FaissCandidateSelector:
        """Build the FAISS index of ``X``'s library.

        Parameters
        ----------
        X : PairEmbeddings
            Output of :class:`~skfingerprint.ViTLayerFusionEmbedder` on ``X_pairs``.
        y : None
            Ignored.

        Returns
        -------
        self : FaissCandidateSelector
        """
        self._fit(_check_embeddings(X))
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X: PairEmbeddings, y=None) -> np.ndarray:
        """``fit(X).transform(X)``, with the relation scores computed once (``fit`` needs them
        for its statistics; a ``Pipeline`` fits through this).

        Parameters
        ----------
        X : PairEmbeddings
        y : None
            Ignored.

        Returns
        -------
        X_candidates : ndarray, as :meth:`transform` returns it
        """
        E = _check_embeddings(X)
        raw = self._fit(E)
        return self.transform(E) if raw is None else self._relation_output(E, raw)

    def _fit(self, E: PairEmbeddings):
        """Fit on checked embeddings; return the raw relation scores of ``E`` (relation mode)
        or None."""
        m, d = E.library.shape
        for stale in ("_index_cache", "spaces_", "relation_stats_"):  # of an earlier fit
            self.__dict__.pop(stale, None)
        self.n_features_in_ = d
        self.n_library_ = m
        self.k_ = self._effective_k(self.k, m)
        self.library_key_ = E.library_key
        if self.features == "relations":  # exact search in transform: no index to build
            if self.refine is not None:
                raise ValueError(
                    f"refine={self.refine!r} prunes the paper's candidates; "
                    "features='relations' scores every candidate. Use one or the other"
                )
            spaces = self.relation_spaces
            self.spaces_ = relations.available_spaces(E) if spaces is None else tuple(spaces)
            if not self.spaces_:
                raise ValueError("relation_spaces is empty; name at least one space")
            _warn_on_label_shaped_space(E, self.spaces_)
            raw = relations.raw_relations(E.with_reference_rows(), self.spaces_, self.k_)
            self.relation_stats_ = relations.split_statistics(raw[2])
            return raw
        if self.index_path is not None and Path(self.index_path).exists():
            self.index_ = self._load_saved_index()
        else:
            with _faiss_threads(self.n_jobs):
                self.index_ = self._new_index(E.library)
            if self.index_path is not None:
                _save_index(self.index_, Path(self.index_path), self._index_meta())
        return None

    def _index_meta(self) -> dict:
        """What a saved index must match: the fit-time library and the index type."""
        return {
            "library_key": self.library_key_,
            "n_library": int(self.n_library_),
            "n_features": int(self.n_features_in_),
            "index": self.index,
        }

    def _load_saved_index(self) -> faiss.Index:
        """The index saved at ``index_path``, checked against the fit-time library."""
        path = Path(self.index_path)
        meta_path = _meta_path(path)
        try:
            saved = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(
                f"The FAISS index file '{path}' has no readable metadata file '{meta_path}' "
                f"({exc}); delete the index file to rebuild it"
            ) from None
        expected = self._index_meta()
        wrong = {key: saved.get(key) for key in expected if saved.get(key) != expected[key]}
        if wrong:
            details = ", ".join(f"{key}={wrong[key]!r} (now {expected[key]!r})" for key in wrong)
            raise ValueError(
                f"The FAISS index file '{path}' was built for another library or index type: "
                f"{details}. Delete it to rebuild, or pass another index_path"
            )
        idx = _read_index(path, self.mmap)
        if idx.ntotal != self.n_library_ or idx.d != self.n_features_in_:
            raise ValueError(
                f"The FAISS index file '{path}' holds {idx.ntotal} vectors of size {idx.d}; "
                f"its metadata and the library say {self.n_library_} of size "
                f"{self.n_features_in_}. Delete it to rebuild"
            )
        return idx

    def _check_fitted_input(self, X: Any) -> PairEmbeddings:
        check_is_fitted(self, "n_library_")
        E = _check_embeddings(X)
        if E.real.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has embeddings of size {E.real.shape[1]}, but FaissCandidateSelector was "
                f"fitted on embeddings of size {self.n_features_in_}"
            )
        return E

    def kneighbors(self, X: PairEmbeddings, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Raw top-k cosines and library indices of each real row (no threshold, no refinement).

        Needs ``fit`` first, like ``transform``: before it, raises ``NotFittedError`` and builds
        no index (its parameters are validated in ``fit``).

        Parameters
        ----------
        X : PairEmbeddings
        k : int, default=None
            Neighbours per row; ``self.k`` when None. Cut to the library's size (with a warning).
            A selector fitted with ``features="relations"`` searches, exactly, the first of its
            ``spaces_``: the candidates its ``transform`` scores.

        Returns
        -------
        similarities : ndarray of shape (n, k_eff), float32
            Cosines, best first. A neighbour an approximate index failed to return has cosine
            :data:`MASKED_COSINE`.
        indices : ndarray of shape (n, k_eff), int64
            Rows of ``X.library`` (-1 for a missing neighbour).

        Examples
        --------
        >>> import numpy as np
        >>> from skfingerprint.pairs import PairEmbeddings
        >>> from skfingerprint.selection import FaissCandidateSelector
        >>> lib = np.eye(4, dtype=np.float32)
        >>> E = PairEmbeddings([[0.0, 2.0, 0.1, 0.0]], lib, library_key="eye")
        >>> sim, idx = FaissCandidateSelector(k=2).fit(E).kneighbors(E)
        >>> idx.tolist()
        [[1, 2]]
        """
        E = self._check_fitted_input(X)
        k = self.k if k is None else k
        if not isinstance(k, (Integral, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer; got {k!r}")
        k = self._effective_k(int(k), len(E.library))
        if hasattr(self, "spaces_"):  # fitted for relation scores: the candidates of that mode
            return relations.top_k(*relations.space_vectors(E, self.spaces_[0]), k)
        return self._search(E, k)

    def transform(self, X: PairEmbeddings) -> np.ndarray:
        """The top-k candidates of each real row as ``[real, candidate, cosine]``.

        Parameters
        ----------
        X : PairEmbeddings
            Real rows and their library; the library may differ from the fit-time one (its
            index is built once and kept).

        Returns
        -------
        X_candidates : ndarray of shape (n, k_eff, 2 * D + 1), float32
            (``features="paper"``; with ``"relations"``, ``(n, k_eff, 14 * n_spaces + 1)``, last
            column the cosine as below)
            For row ``i`` and rank ``j`` (best first): ``[:D]`` the normalised real vector,
            ``[D:2D]`` the normalised candidate vector (zero if masked), ``[-1]`` the cosine
            (:data:`MASKED_COSINE` if masked). ``k_eff = min(k, library size)``.
        """
        E = self._check_fitted_input(X)
        m, d = E.library.shape
        if self.features == "relations":
            return self._relations(E, self._effective_k(self.k, m))
        sims, ids = self._search(E, self._effective_k(self.k, m))
        n, k = sims.shape
        cands = _l2_normalize(E.library[np.where(ids < 0, 0, ids)])  # (n, k, D)
        mask = self._weak(sims, missing=ids < 0)
        if self.refine == "spectral":
            mask |= self._spectral_mask(cands, mask)

        out = np.empty((n, k, 2 * d + 1), dtype=np.float32)
        out[:, :, :d] = _l2_normalize(E.real)[:, None, :]
        out[:, :, d : 2 * d] = cands
        out[:, :, -1] = sims
        out[mask, d:] = 0.0
        out[mask, -1] = MASKED_COSINE
        return out

    def _relations(self, E: PairEmbeddings, k: int) -> np.ndarray:
        """The ``features="relations"`` output (see :mod:`skfingerprint.relations`)."""
        raw = relations.raw_relations(E.with_reference_rows(), self.spaces_, k)
        return self._relation_output(E, raw)

    def _relation_output(self, E: PairEmbeddings, raw) -> np.ndarray:
        """Standardised, masked relation features of ``E``'s rows from ``raw_relations`` of
        ``E.with_reference_rows()``: the reference reals join the scores and their statistics
        (they are the split's other reals too), and are dropped from the output."""
        n = len(E)
        sims, _, per_real, per_cand = raw
        stats = self.relation_stats_
        if stats.shape[2] != len(relations.PER_REAL):  # fitted by an earlier skfingerprint
            raise ValueError(
                f"this FaissCandidateSelector was fitted with {stats.shape[2]} per-real relation "
                f"scores, but this skfingerprint computes {len(relations.PER_REAL)} "
                f"({', '.join(relations.PER_REAL)}): refit the pipeline"
            )
        if len(sims) >= relations.MIN_SPLIT:
            stats = relations.split_statistics(per_real)
        rows = [pr[:n] for pr in per_real], [pc[:n] for pc in per_cand]
        sims = sims[:n]
        out = relations.standardised(*rows, stats, sims)
        mask = self._weak(sims, missing=np.zeros(sims.shape, dtype=bool))
        out[mask] = 0.0
        out[mask, -1] = MASKED_COSINE
        return out

    def _weak(self, sims: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """``(n, k)`` mask of the candidates to drop: missing ones and those below
        ``min_similarity``; the best candidate always stays (never missing, see _search)."""
        mask = missing.copy()
        if self.min_similarity is not None:
            mask |= sims < self.min_similarity
        mask[:, 0] = False
        return mask

    def _spectral_mask(self, cands: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Extra mask of the spectral refinement, ``(n, k)``."""
        from joblib import Parallel, delayed

        n, k = mask.shape
        top = min(self.refine_top, k)
        seeds = derive_seed(self.random_state, size=n)
        rows = [np.flatnonzero(~mask[i, :top]) for i in range(n)]
        keeps = Parallel(n_jobs=self.n_jobs)(
            delayed(_spectral_keep)(cands[i, r], int(s))
            for i, (r, s) in enumerate(zip(rows, seeds, strict=True))
        )
        extra = np.ones((n, k), dtype=bool)
        for i, (r, keep) in enumerate(zip(rows, keeps, strict=True)):
            extra[i, r[keep]] = False
        return extra

    # --- pickling: FAISS indexes are not picklable; serialise the fit-time one ----------------
    # (or, with index_path, re-read it from its file: a pickle of a 1M-vector selector stays small)
    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state = dict(state)
        state.pop("_index_cache", None)
        if "index_" in state:
            idx = state.pop("index_")
            if self.index_path is None:
                state["_index_bytes"] = faiss.serialize_index(idx)
            else:
                state["_index_from_path"] = True
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        raw = state.pop("_index_bytes", None)
        from_path = state.pop("_index_from_path", False)
        super().__setstate__(state)
        if raw is not None:
            self.index_ = faiss.deserialize_index(raw)
        elif from_path:
            if not Path(self.index_path).exists():
                raise FileNotFoundError(
                    f"This FaissCandidateSelector reads its index from '{self.index_path}', "
                    "which does not exist any more; refit it, or restore the file"
                )
            self.index_ = self._load_saved_index()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = True
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags
