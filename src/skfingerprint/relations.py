"""Identity-free relation features: how the library relates to a real image, against other reals.

Membership is a property of the *relation* between a real image, the generated library and the
other real images of its split, not of what the image looks like. A classifier fed the raw
vectors of ~200 labelled images learns what used images look like, which does not transfer to
other patients (DESIGN.md section 7). :func:`relation_features` turns one split's embeddings
into per-candidate features that carry no image content, in every embedding space the split
carries (the fused ViT embedding, and pixels when the embedder adds them).

For a real image ``r`` of the split ``R`` (all its reals, passed together: the ImageCLEF
protocol) and the library ``G``, in each space (cosines of L2-normalised vectors; pixel vectors
are first centred on the library's mean image):

per real image (the same on every candidate row of ``r``)
    ``top1``: the best cosine to ``G``; ``calib``: ``top1`` minus the cosine to ``r``'s nearest
    other real (a real image that is close to everything is not evidence);
    ``attribution``: how many library images have ``r`` as their nearest real, times
    ``|R| / |G|`` (1 on average whatever the sizes); ``margin``: for ``r``'s nearest library
    image ``g``, ``cos(g, r)`` minus ``g``'s best cosine to another real; ``density``,
    ``density_q100``, ``density_q50``: the ``q|G|``-th best cosine to ``G`` minus the
    ``q|R|``-th best cosine to the other reals, for q = 1/200, 1/100 and 1/50 (a k-NN density
    ratio in the spirit of DOMIAS, with ``k`` proportional to the sizes so the score does not
    move when the library is duplicated; the coarser scales held where the nearest image's
    similarity was inverted, ``benchmarks/RESULTS_detector_seeds345.md``); ``hull``: minus the
    distance from ``r`` to the affine hull of its :data:`HULL_K` nearest distinct library images
    (the residual of its best reconstruction by weights summing to 1, regularised as locally
    linear embedding is: a generator trained on ``r`` puts samples *around* it, so ``r`` lies
    inside their spread, while an unused image near the same samples lies off it);
    ``hull_calib``: ``hull`` minus the same score against ``r``'s nearest other reals
    (``benchmarks/RESULTS_manifold_seeds678.md``); ``span``: minus the share of ``r``'s
    energy (centred on the library's mean) outside the principal subspace of the distinct
    library images that holds :data:`SPAN_VARIANCE` of their variance, how far ``r`` lies from
    what the generator produces as a whole rather than near one sample; ``span_calib``: the
    same share outside the other reals' principal subspace of as many directions (fitted in 5
    folds, never with ``r``; the folds follow the order of ``top1``, so the order of the reals
    changes nothing) minus ``r``'s share outside the library's (``benchmarks/RESULTS_subspace.md``).
    Both are 0 in a whitened space, where they did not pay.
per candidate ``g_j``
    ``cos``: ``cos(r, g_j)``; ``owner``: 1 if ``r`` is ``g_j``'s nearest real; ``owner_margin``:
    ``cos(g_j, r)`` minus ``g_j``'s best cosine to another real (reverse attribution).

A space can also be scored *whitened* (``"pixels_whitened"``, in the default since
``benchmarks/RESULTS_whiten.md``): its vectors mapped by :func:`within_mode_whiten`, which
discounts the directions in which the generator varies the samples of one mode; the candidates
stay those of the first space.

Every score except ``owner`` is standardised with the split's own mean and spread over its real
images (``cos`` with the statistics of ``top1``): that calibrates the scores against the other
reals and removes what the library's size does to a maximum. A call with fewer than
:data:`MIN_SPLIT` reals cannot estimate those statistics and uses the ones kept from ``fit``.
"""

from __future__ import annotations

import numpy as np

from .pairs import PairEmbeddings, _l2_normalize

__all__ = [
    "MIN_SPLIT",
    "PER_CANDIDATE",
    "PER_REAL",
    "relation_feature_names",
    "within_mode_whiten",
]

PER_REAL = (
    "top1",
    "calib",
    "attribution",
    "margin",
    "density",
    "density_q100",
    "density_q50",
    "hull",
    "hull_calib",
    "span",
    "span_calib",
)
PER_CANDIDATE = ("cos", "owner", "owner_margin")

#: Fewest real images a ``transform`` call needs to standardise with its own statistics.
MIN_SPLIT = 20

# The fractions of a set's size that set the k of the density scores' k-th best cosines, in
# the order of PER_REAL's density scores.
_DENSITY_FRACTIONS = (1 / 200, 1 / 100, 1 / 50)

#: Neighbours (distinct library images, other reals) of the ``hull`` scores' reconstructions.
HULL_K = 10
# The reconstruction's ridge, as a fraction of the neighbours' local Gram matrix's trace (the
# regulariser of locally linear embedding; without it near-duplicate neighbours make the solve
# singular).
HULL_REG = 1e-3

# Library rows compared with the reals at a time (bounds memory to chunk x n floats).
_CHUNK = 4096

#: The share of the distinct library images' variance that the ``span`` scores' principal
#: subspace keeps (fixed before ``benchmarks/probe_subspace.py`` ran).
SPAN_VARIANCE = 0.9
# ``span_calib`` fits the other reals' subspace in this many folds, never with the real itself.
_SPAN_FOLDS = 5

#: Suffix of a space's within-mode whitened copy (:func:`within_mode_whiten`).
WHITENED = "_whitened"
#: The whitening's ridge, as a fraction of the mean eigenvalue of the within-mode covariance
#: (0.5 beat 0.1 on the benchmark's development seeds, ``benchmarks/RESULTS_whiten.md``).
WHITEN_SHRINK = 0.5


def relation_feature_names(spaces) -> list[str]:
    """Names of the columns of the selector's relation output, in order.

    Parameters
    ----------
    spaces : sequence of str
        The selector's ``spaces_`` (``relation_spaces`` resolved), e.g. ``("pixels",)``.

    Returns
    -------
    list of str
        ``"<space>:<score>"`` for the 14 scores of each space (the 3 per-candidate ones, then
        the 11 per-real ones), then ``"selection_cosine"``.

    Examples
    --------
    >>> from skfingerprint.relations import relation_feature_names
    >>> relation_feature_names(("pixels",))[:4]
    ['pixels:cos', 'pixels:owner', 'pixels:owner_margin', 'pixels:top1']
    """
    names = [f"{s}:{f}" for s in spaces for f in (*PER_CANDIDATE, *PER_REAL)]
    return [*names, "selection_cosine"]


def available_spaces(E: PairEmbeddings) -> tuple[str, ...]:
    """The spaces ``E`` carries: ``"vit"`` (its main embedding), then its extra spaces. Each
    can also be scored whitened, as ``"<space>_whitened"`` (:func:`within_mode_whiten`)."""
    return ("vit", *sorted(E.spaces))


def space_vectors(E: PairEmbeddings, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Unit ``(real, library)`` vectors of one space of ``E``.

    Extra spaces (pixels) are centred on their library's mean before normalising: raw images
    share a large common component that would make every cosine close to 1. A name ending in
    ``"_whitened"`` is its space passed through :func:`within_mode_whiten`.
    """
    if name.endswith(WHITENED):
        return within_mode_whiten(*space_vectors(E, name.removesuffix(WHITENED)))
    if name == "vit":
        return _l2_normalize(E.real), _l2_normalize(E.library)
    real, lib = E.spaces[name]
    mean = lib.mean(0, keepdims=True)
    return _l2_normalize(real - mean), _l2_normalize(lib - mean)


def within_mode_whiten(
    real: np.ndarray, lib: np.ndarray, shrink: float = WHITEN_SHRINK
) -> tuple[np.ndarray, np.ndarray]:
    """Unit ``real`` and ``lib`` vectors mapped by ``(S + shrink tr(S)/d I) ^ -1/2`` (then
    centred on the library's mean and normalised again).

    ``S`` is the covariance of the differences between each distinct library image and its
    nearest other one: how the generator varies the samples of one mode. Whitening with it (as
    linear discriminant analysis does with its within-class scatter) discounts those
    directions, so a real image's match reflects the mode it matches more than the sample's
    noise. Distinct images, so that duplicating the library changes nothing; with fewer than
    two, or no difference at all, the vectors come back unchanged.

    Parameters
    ----------
    real : ndarray of shape (n, d)
    lib : ndarray of shape (m, d)
        Unit vectors of one space (as :func:`space_vectors` gives them).
    shrink : float, default=WHITEN_SHRINK
        The ridge added to ``S``, as a fraction of its mean eigenvalue.

    Returns
    -------
    real, lib : ndarray of float32
    """
    distinct, inverse = np.unique(lib, axis=0, return_inverse=True)
    if len(distinct) < 2:
        return real, lib
    nearest = np.empty(len(distinct), dtype=np.int64)
    step = max(1, _CHUNK * 256 // len(distinct))
    for i in range(0, len(distinct), step):
        sims = distinct[i : i + step] @ distinct.T
        rows = np.arange(len(sims))
        sims[rows, i + rows] = -np.inf  # not itself
        nearest[i : i + step] = sims.argmax(1)
    return _whiten_by(distinct - distinct[nearest], real, lib, shrink, (distinct, inverse))


def _eigen_directions(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The positive eigenvalues of ``rows.T @ rows`` (ascending) and their orthonormal
    eigenvectors as rows ``(r, d)``, from the smaller of the two Gram matrices (an eigh of
    min(m, d) rows; an SVD of the rows took ~4x longer at m = 5000, d = 4096). Null directions
    (eigenvalues below 1e-9 of the largest) are left out: the Gram route has no vector there."""
    rows = np.asarray(rows, dtype=np.float64)
    if len(rows) < rows.shape[1]:
        variances, u = np.linalg.eigh(rows @ rows.T)
    else:
        variances, u = np.linalg.eigh(rows.T @ rows)
    kept = variances > variances.max(initial=0.0) * 1e-9
    variances, u = variances[kept], u[:, kept]
    if len(rows) < rows.shape[1]:
        return variances, (u / np.sqrt(variances)).T @ rows
    return variances, u.T


def _whiten_by(diffs: np.ndarray, real: np.ndarray, lib: np.ndarray, shrink: float, unique=None):
    """``real`` and ``lib`` mapped by ``(S + shrink tr(S)/d I) ^ -1/2``, ``S`` the mean outer
    product of the rows of ``diffs``, then centred on the library's mean and unit length
    (``unique``: ``np.unique(lib, axis=0, return_inverse=True)`` where the caller has it)."""
    # S = diffs.T @ diffs = V diag(variances) V^T
    variances, vt = _eigen_directions(np.asarray(diffs, dtype=np.float64) / np.sqrt(len(diffs)))
    ridge = shrink * variances.sum() / lib.shape[1]
    if ridge <= 0:
        return real, lib
    # (S + ridge I)^-1/2 x = ridge^-1/2 (x - V (1 - (1 + var/ridge)^-1/2) V^T x), up to the
    # common factor ridge^-1/2, which normalising removes
    shrunk = (1 - 1 / np.sqrt(1 + variances / ridge)).astype(np.float32)
    vt = vt.astype(np.float32)  # the vectors are float32: so are their products

    def whiten(x: np.ndarray) -> np.ndarray:
        return x - ((x @ vt.T) * shrunk) @ vt

    # the library's distinct rows whitened once: a matrix product can round a row differently
    # by where it sits in the matrix (BLAS blocking), and a duplicate that came out 1 ulp away
    # from its original would count as a distinct image in the hull and span scores
    distinct, inverse = np.unique(lib, axis=0, return_inverse=True) if unique is None else unique
    real_w, lib_w = whiten(real), whiten(distinct)[inverse.reshape(-1)]
    mean = lib_w.mean(0, keepdims=True)
    return _l2_normalize(real_w - mean), _l2_normalize(lib_w - mean)


def top_k(real: np.ndarray, lib: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosines and indices ``(n, k)`` of each real row's ``k`` nearest library rows, best
    first (ties broken by library order)."""
    k = min(k, len(lib))
    step = max(1, _CHUNK * 256 // len(lib))
    sims, ids = [], []
    for i in range(0, len(real), step):
        s = real[i : i + step] @ lib.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.lexsort((part, -np.take_along_axis(s, part, 1)), axis=1)
        idx = np.take_along_axis(part, order, 1)
        ids.append(idx)
        sims.append(np.take_along_axis(s, idx, 1))
    return np.concatenate(sims).astype(np.float32), np.concatenate(ids)


def _kth_best(sims: np.ndarray, k: int) -> np.ndarray:
    """The k-th largest value of each row (1-based)."""
    k = min(k, sims.shape[1])
    return -np.partition(-sims, k - 1, axis=1)[:, k - 1]


def hull_residual(x: np.ndarray, neighbours: np.ndarray) -> np.ndarray:
    """``||x_i - w_i^T N_i||`` for the affine weights ``w_i`` (summing to 1) that best rebuild
    each row ``x_i`` from its ``k`` neighbours ``N_i``, with a ridge of ``HULL_REG`` times the
    trace of their local Gram matrix.

    Parameters
    ----------
    x : ndarray of shape (n, d)
    neighbours : ndarray of shape (n, k, d)

    Returns
    -------
    ndarray of shape (n,), float64
    """
    x = np.asarray(x, dtype=np.float64)
    neighbours = np.asarray(neighbours, dtype=np.float64)
    diff = neighbours - x[:, None, :]
    gram = diff @ diff.transpose(0, 2, 1)  # (n, k, k)
    k = gram.shape[1]
    trace = np.trace(gram, axis1=1, axis2=2)[:, None, None]
    # the tiny floor keeps the solve defined when every neighbour equals x (residual 0)
    gram = gram + (HULL_REG * trace / k + 1e-12) * np.eye(k)
    w = np.linalg.solve(gram, np.ones((len(x), k, 1)))[..., 0]
    w /= w.sum(1, keepdims=True)
    return np.linalg.norm(x - np.einsum("nk,nkd->nd", w, neighbours), axis=1)


def _hull_residuals(x: np.ndarray, pool: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``hull_residual`` of each row of ``x`` from its neighbours ``pool[ids]``, in chunks of
    reals (bounds the gathered neighbours to ~8 MB)."""
    step = max(1, _CHUNK * 512 // (ids.shape[1] * x.shape[1]))
    return np.concatenate(
        [hull_residual(x[i : i + step], pool[ids[i : i + step]]) for i in range(0, len(x), step)]
    )


def _density_ratios(lib_sims: np.ndarray, rr: np.ndarray, m: int, fractions) -> np.ndarray:
    """``(n, len(fractions))``: for each q, the ``q m``-th best cosine of each real to the
    library minus its ``q (n - 1)``-th best to the other reals (NaN with one real).

    ``lib_sims`` holds at least each real's ``max(q) m`` best library cosines; ``rr`` is the
    real-real cosine matrix with ``-inf`` on its diagonal."""
    n = len(rr)
    return np.stack(
        [
            _kth_best(lib_sims, max(1, round(q * m)))
            - (_kth_best(rr, max(1, round(q * (n - 1)))) if n > 1 else np.full(n, np.nan))
            for q in fractions
        ],
        axis=1,
    )


def _hull_scores(real: np.ndarray, distinct: np.ndarray, rr: np.ndarray, k: int) -> np.ndarray:
    """``(n, 2)``: ``hull`` and ``hull_calib`` with ``k`` neighbours (``rr`` as in
    :func:`_density_ratios`). The library side is over its *distinct* images, so that
    duplicating the library changes nothing; ``hull_calib`` is NaN with one real."""
    hull = -_hull_residuals(real, distinct, top_k(real, distinct, k)[1])
    if len(real) < 2:
        return np.c_[hull, np.full(len(real), np.nan)]
    k_real = min(k, len(real) - 1)
    near_reals = np.argpartition(-rr, k_real - 1, axis=1)[:, :k_real]
    return np.c_[hull, hull + _hull_residuals(real, real, near_reals)]


def _principal_directions(x: np.ndarray, kept: float | None = None, rank: int | None = None):
    """``(r, d)`` orthonormal principal directions of the centred rows of ``x``, largest
    first: the fewest that hold ``kept`` of their variance, or the first ``rank`` (as many as
    there are)."""
    centred = np.asarray(x, dtype=np.float64) - np.mean(x, axis=0, keepdims=True)
    variances, vt = _eigen_directions(centred)
    variances, vt = variances[::-1], vt[::-1]  # eigh's ascending order, reversed
    if rank is None:
        share = np.cumsum(variances) / max(variances.sum(), 1e-300)
        rank = int(np.searchsorted(share, kept)) + 1 if len(share) else 0
    return vt[:rank].astype(np.float32)


def _outside_share(x: np.ndarray, directions: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """The share of each row's energy (centred on ``mean``) outside the span of
    ``directions``."""
    centred = x - mean
    # the residual's energy, not 1 - the inside's: where the subspace holds (nearly) every
    # dimension, the difference of two near-equal energies is rounding that standardising
    # would blow up; the residual's squared norm is rounding squared
    outside = centred - (centred @ directions.T) @ directions
    return (outside**2).sum(1) / np.maximum((centred**2).sum(1), 1e-30)


def _span_scores(
    real: np.ndarray, distinct: np.ndarray, top1: np.ndarray, kept: float = SPAN_VARIANCE
) -> np.ndarray:
    """``(n, 2)``: ``span`` and ``span_calib`` from the library's *distinct* images, the
    subspace holding ``kept`` of their variance (NaN with one real)."""
    directions = _principal_directions(distinct, kept=kept)
    outside = _outside_share(real, directions, distinct.mean(0, keepdims=True))
    n = len(real)
    calib = np.full(n, np.nan)
    if n > 1:
        fold = np.empty(n, dtype=np.int64)
        fold[np.argsort(-top1, kind="stable")] = np.arange(n) % min(_SPAN_FOLDS, n)
        for f in np.unique(fold):
            rest = real[fold != f]
            others = _principal_directions(rest, rank=len(directions))
            calib[fold == f] = _outside_share(real[fold == f], others, rest.mean(0, keepdims=True))
    return np.c_[-outside, calib - outside]


def _space_raw(real, lib, ids, span: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Raw per-real ``(n, 11)`` and per-candidate ``(n, k, 3)`` scores in one space
    (``span=False``: the two ``span`` scores NaN, so 0 once standardised)."""
    n, m = len(real), len(lib)
    kept_k = max(1, round(max(_DENSITY_FRACTIONS) * m))  # the coarsest density score's k
    rr = real @ real.T
    np.fill_diagonal(rr, -np.inf)
    # For every library image: its nearest real, that cosine, and the second-best one.
    owner = np.empty(m, dtype=np.int64)
    best = np.empty(m, dtype=np.float32)
    second = np.full(m, -np.inf, dtype=np.float32)
    top1 = np.full(n, -np.inf, dtype=np.float32)
    nearest_lib = np.zeros(n, dtype=np.int64)
    # each real's kept_k best cosines so far (merged per chunk: memory n x 2 kept_k)
    kept = np.empty((n, 0), dtype=np.float32)
    for start in range(0, m, _CHUNK):
        gr = lib[start : start + _CHUNK] @ real.T  # (chunk, n)
        top2 = np.argsort(-gr, axis=1)[:, :2] if n > 1 else np.zeros((len(gr), 1), np.int64)
        owner[start : start + len(gr)] = top2[:, 0]
        best[start : start + len(gr)] = np.take_along_axis(gr, top2[:, :1], 1)[:, 0]
        if n > 1:
            second[start : start + len(gr)] = np.take_along_axis(gr, top2[:, 1:2], 1)[:, 0]
        chunk_best = gr.max(0)
        better = chunk_best > top1
        nearest_lib[better] = start + gr.argmax(0)[better]
        top1 = np.maximum(top1, chunk_best)
        kept = np.concatenate([kept, gr.T], axis=1)
        kk = min(kept_k, kept.shape[1])
        kept = -np.partition(-kept, kk - 1, axis=1)[:, :kk]

    def other_best(g: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Best cosine of library images ``g`` to a real other than ``rows`` (per element)."""
        return np.where(owner[g] == rows, second[g], best[g])

    rows = np.arange(n)
    own = np.einsum("nd,nd->n", real, lib[nearest_lib])
    distinct = np.unique(lib, axis=0)  # the hull and span scores' library, sorted once
    real_nn = rr.max(1) if n > 1 else np.full(n, np.nan, np.float32)
    per_real = np.column_stack(
        [
            top1,
            top1 - real_nn,
            np.bincount(owner, minlength=n) * n / m,
            own - other_best(nearest_lib, rows),
            _density_ratios(kept, rr, m, _DENSITY_FRACTIONS),
            _hull_scores(real, distinct, rr, HULL_K),
            _span_scores(real, distinct, top1) if span else np.full((n, 2), np.nan),
        ]
    )
    safe = np.where(ids < 0, 0, ids)
    step = max(1, _CHUNK * 256 // (ids.shape[1] * real.shape[1]))  # ~4 MB of gathered vectors
    cand_cos = np.concatenate(
        [
            np.einsum("nd,nkd->nk", real[i : i + step], lib[safe[i : i + step]])
            for i in range(0, n, step)
        ]
    )
    per_cand = np.stack(
        [
            cand_cos,
            (owner[safe] == rows[:, None]).astype(np.float32),
            cand_cos - other_best(safe, rows[:, None]),
        ],
        axis=2,
    )
    if n < 2:  # no other real: the scores against other reals are undefined (NaN -> 0 later)
        per_real[:, [1, 3, 4, 5, 6]] = np.nan
        per_cand[..., 2] = np.nan
    return per_real.astype(np.float64), per_cand.astype(np.float64)


def raw_relations(E: PairEmbeddings, spaces, k: int):
    """Candidates and raw scores of one split.

    The candidates of each real image are its ``k`` nearest library images in ``spaces[0]``
    (exact search); the scores are computed in every space of ``spaces``.

    Returns
    -------
    sims, ids : ndarray of shape (n, k)
        Cosines in ``spaces[0]`` and library indices of the candidates, best first.
    per_real, per_cand : list of ndarray
        Per space, in the order of ``spaces``: raw ``(n, 11)`` and ``(n, k, 3)`` scores.
    """
    missing = [s for s in spaces if s.removesuffix(WHITENED) not in available_spaces(E)]
    if missing:
        raise ValueError(
            f"relation spaces {missing} are not in the input, which carries "
            f"{available_spaces(E)} (each also as '<space>{WHITENED}'); pixel spaces come "
            "from ViTLayerFusionEmbedder(pixel_size=...)"
        )
    vectors = {name: space_vectors(E, name) for name in spaces}
    sims, ids = top_k(*vectors[spaces[0]], k)
    per_real, per_cand = [], []
    for name in spaces:
        # no span scores in a whitened space: they cost kanji -0.036 [-0.060, -0.011] there
        # on unseen seeds (benchmarks/RESULTS_subspace_seeds33-35.md)
        pr, pc = _space_raw(*vectors[name], ids, span=not name.endswith(WHITENED))
        per_real.append(pr)
        per_cand.append(pc)
    return sims, ids, per_real, per_cand


def split_statistics(per_real: list) -> np.ndarray:
    """``(n_spaces, 2, 11)``: mean and spread of each per-real score over the split's reals,
    NaN ignored; a score with no value (none computed in that space, or no real) gets mean 0
    and spread 1 (numpy's nanmean would warn about the empty column)."""
    stats = []
    for pr in per_real:
        known = ~np.isnan(pr)
        count = np.maximum(known.sum(0), 1)
        mean = np.where(known, pr, 0.0).sum(0) / count
        spread = np.sqrt(np.where(known, (pr - mean) ** 2, 0.0).sum(0) / count)
        stats.append([mean, np.where(spread > 1e-9, spread, 1.0)])
    return np.asarray(stats, dtype=np.float64)


def standardised(per_real: list, per_cand: list, stats: np.ndarray, sims: np.ndarray):
    """The ``(n, k, 14 * n_spaces + 1)`` float32 feature array (see the module docstring).

    NaN scores (real-real scores of a split of one image) become 0, the mean."""
    n, k = sims.shape
    blocks = []
    for pr, pc, (mean, spread) in zip(per_real, per_cand, stats, strict=True):
        z_real = (pr - mean) / spread
        # cos on the scale of top1, owner as is, owner_margin on the scale of margin
        z_cand = np.stack(
            [
                (pc[..., 0] - mean[0]) / spread[0],
                pc[..., 1],
                (pc[..., 2] - mean[3]) / spread[3],
            ],
            axis=2,
        )
        blocks += [z_cand, np.broadcast_to(z_real[:, None, :], (n, k, len(PER_REAL)))]
    blocks.append(sims[..., None])
    return np.nan_to_num(np.concatenate(blocks, axis=2), nan=0.0).astype(np.float32)
