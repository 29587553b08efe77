"""``X_pairs``: one row per real image, each judged against one shared library of generated images.

Slicing keeps the library object shared (never copied per row), so cross-validation folds split
the real images while every fold keeps the whole library, and a pickle holds the library once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .images import ImageSet, _row_key, as_image_set

__all__ = ["PairEmbeddings", "PairedImages", "make_pairs"]


class PairedImages:
    """Rows ``(real image, library)``: what ``Pipeline.fit(X_pairs, y)`` takes.

    Build it with :func:`make_pairs` or :func:`skfingerprint.load_imageclef_gans`.

    Parameters
    ----------
    real : ImageSet
        The real images, one per row.
    library : ImageSet
        The generated images every row is judged against; shared by all rows and all slices.
    reference : ImageSet, optional
        Further real images, unlabelled and not rows, that join every row's relation scores as
        the other reals of its split do (e.g. the other ImageCLEF split's reals, when one model
        made both libraries: :func:`~skfingerprint.load_imageclef_gans`'s ``pool_with``).
        Shared by all rows and all slices, like the library. Only the relation features
        (``features="relations"``, the default) read it; the paper's features and the
        baselines judge each row on its own.

    Attributes
    ----------
    shape : tuple of int
        ``(n_rows, 2)``: sklearn counts and slices rows through it.
    ids : list of str
        The real images' identifiers.

    Raises
    ------
    TypeError
        ``real``, ``library`` or ``reference`` is not an :class:`~skfingerprint.ImageSet`.

    Examples
    --------
    >>> import numpy as np
    >>> from skfingerprint import PairedImages, as_image_set
    >>> real = as_image_set(np.zeros((4, 32, 32), np.uint8))
    >>> library = as_image_set(np.zeros((10, 32, 32), np.uint8))
    >>> X_pairs = PairedImages(real, library)
    >>> X_pairs
    PairedImages(n_rows=4, library=10 generated images)
    >>> X_pairs[:2]  # rows slice, the library stays whole
    PairedImages(n_rows=2, library=10 generated images)
    """

    def __init__(
        self, real: ImageSet, library: ImageSet, reference: ImageSet | None = None
    ) -> None:
        if not isinstance(real, ImageSet) or not isinstance(library, ImageSet):
            raise TypeError(
                "PairedImages takes two ImageSet objects; use make_pairs(real, generated)"
            )
        if reference is not None and not isinstance(reference, ImageSet):
            raise TypeError(
                f"PairedImages' reference must be an ImageSet or None; got "
                f"{type(reference).__name__} (make_pairs(..., reference=...) builds one)"
            )
        self.real = real
        self.library = library
        self.reference = reference

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.real), 2)

    @property
    def ids(self) -> list[str]:
        return self.real.ids

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, key: Any) -> Any:
        key = _row_key(key, "PairedImages supports row indexing only")
        if isinstance(key, (int, np.integer)):
            return self.real[key], self.library
        return PairedImages(self.real[key], self.library, self.reference)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        extra = "" if self.reference is None else f", reference={len(self.reference)} real images"
        return (
            f"PairedImages(n_rows={len(self)}, library={len(self.library)} generated images{extra})"
        )


def make_pairs(
    real: Any,
    generated: Any,
    *,
    real_ids: Sequence[str] | None = None,
    generated_ids: Sequence[str] | None = None,
    reference: Any = None,
) -> PairedImages:
    """Build ``X_pairs``: every real image paired with the shared library of generated images.

    Parameters
    ----------
    real : folder, list of paths, or array (n, H, W[, C])
        The real images to audit, one row each.
    generated : folder, list of paths, or array (m, H, W[, C])
        The images the generative model produced (the library).
    real_ids, generated_ids : sequence of str, optional
        Identifiers of the images (file stems by default for files, ``"0"``, ``"1"``, ... for
        arrays); they name the rows of a submission.
    reference : folder, list of paths, or array, optional
        Other real images, unlabelled, that join every row's relation scores without being
        rows (see :class:`PairedImages`).

    Returns
    -------
    PairedImages
        ``n`` rows that slice like an array and share one library.

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        When either input is empty or not images (see :func:`skfingerprint.images.as_image_set`).

    Examples
    --------
    >>> import numpy as np
    >>> from skfingerprint import make_pairs
    >>> X = make_pairs(np.zeros((4, 32, 32), np.uint8), np.zeros((10, 32, 32), np.uint8))
    >>> X
    PairedImages(n_rows=4, library=10 generated images)
    >>> X[[0, 2]].library is X.library
    True
    """
    real_set = as_image_set(real, name="real")
    library = as_image_set(generated, name="generated")
    if real_ids is not None:
        real_set = ImageSet(paths=real_set.paths, array=real_set.array, ids=real_ids)
    if generated_ids is not None:
        library = ImageSet(paths=library.paths, array=library.array, ids=generated_ids)
    if reference is not None:
        reference = as_image_set(reference, name="reference")
    return PairedImages(real_set, library, reference)


def _l2_normalize(a: np.ndarray) -> np.ndarray:
    """Rows of ``a`` scaled to unit L2 norm (zero rows stay zero), float32, a new array."""
    a = np.asarray(a, dtype=np.float32)
    norms = np.linalg.norm(a, axis=-1, keepdims=True)
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)


class PairEmbeddings:
    """What the embedder hands the candidate selector for ``X_pairs``.

    Parameters
    ----------
    real : ndarray of shape (n, D)
        One embedding per row (real image).
    library : ndarray of shape (m, D)
        The shared library's embeddings, held once.
    library_key : str
        Identifies the library's content and the embedding that produced ``library``, so the
        selector builds one index per distinct library and reuses it.
    ids : list of str, optional
        The real images' ids.
    spaces : dict of str to (ndarray, ndarray), optional
        Further embedding spaces of the same images, ``name -> (real (n, D_s), library (m,
        D_s))``, e.g. ``"pixels"`` (see ``ViTLayerFusionEmbedder(pixel_size=...)``). The
        selector's relation features are computed in each of them besides the main one.
    reference : PairEmbeddings, optional
        The embeddings of ``X_pairs.reference`` (other real images that join the relation
        scores without being rows) against the same library; kept whole by slicing.
    learned_from_labels : bool, default=False
        The main embedding was shaped by the membership labels of the fit (a gate trained on
        ``y``). Relation scores in that space then separate the fit's own used images only;
        the selector warns when it is asked to score them.

    Raises
    ------
    ValueError
        Embeddings that are not 2-d, real and library embeddings of different sizes, a space
        whose real rows do not match the main embedding's, or a reference with another library
        or other spaces.

    Examples
    --------
    >>> import numpy as np
    >>> from skfingerprint import PairEmbeddings
    >>> emb = PairEmbeddings(np.ones((3, 8)), np.ones((20, 8)), library_key="lib-v1")
    >>> emb, emb[[0, 2]].shape
    (PairEmbeddings(n_rows=3, library=20, dim=8), (2, 8))
    """

    def __init__(
        self,
        real,
        library,
        library_key: str,
        ids=None,
        spaces=None,
        reference=None,
        learned_from_labels: bool = False,
    ) -> None:
        self.real = np.asarray(real, dtype=np.float32)
        self.library = np.asarray(library, dtype=np.float32)
        if self.real.ndim != 2 or self.library.ndim != 2:
            raise ValueError("PairEmbeddings needs 2-d real and library embeddings")
        if self.real.shape[1] != self.library.shape[1]:
            raise ValueError(
                f"real and library embeddings differ in size: {self.real.shape[1]} != "
                f"{self.library.shape[1]}"
            )
        self.library_key = library_key
        self.ids = ids
        self.spaces = {}
        for name, (space_real, space_lib) in (spaces or {}).items():
            space_real = np.asarray(space_real, dtype=np.float32)
            space_lib = np.asarray(space_lib, dtype=np.float32)
            if (
                space_real.ndim != 2
                or space_lib.ndim != 2
                or len(space_real) != len(self.real)
                or len(space_lib) != len(self.library)
                or space_real.shape[1] != space_lib.shape[1]
            ):
                raise ValueError(
                    f"space {name!r}: real {space_real.shape} and library {space_lib.shape} do "
                    f"not match the main embeddings ({len(self.real)} real, {len(self.library)} "
                    "library rows, one width)"
                )
            self.spaces[name] = (space_real, space_lib)
        if reference is not None and (
            not isinstance(reference, PairEmbeddings)
            or reference.library_key != library_key
            or reference.library.shape != self.library.shape
            or set(reference.spaces) != set(self.spaces)
            or reference.reference is not None
        ):
            raise ValueError(
                "PairEmbeddings' reference must be a PairEmbeddings of other real images against "
                "the same library (same library_key and shape), in the same spaces, without a "
                "reference of its own"
            )
        self.reference = reference
        self.learned_from_labels = bool(learned_from_labels)

    def with_reference_rows(self) -> PairEmbeddings:
        """These rows, then the reference's, as one ``PairEmbeddings`` without a reference
        (the set the relation scores are computed over); ``self`` when there is none."""
        if self.reference is None:
            return self
        ref = self.reference
        ids = None if self.ids is None or ref.ids is None else [*self.ids, *ref.ids]
        spaces = {
            name: (np.concatenate([real, ref.spaces[name][0]]), lib)
            for name, (real, lib) in self.spaces.items()
        }
        rows = np.concatenate([self.real, ref.real])
        return PairEmbeddings(
            rows,
            self.library,
            self.library_key,
            ids,
            spaces,
            learned_from_labels=self.learned_from_labels,
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.real.shape

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, key: Any) -> PairEmbeddings:
        if isinstance(key, tuple) and len(key) == 2 and key[1] is Ellipsis:
            key = key[0]
        idx = np.arange(len(self))[key]
        ids = None if self.ids is None else [self.ids[i] for i in np.atleast_1d(idx)]
        rows = np.atleast_1d(idx)
        spaces = {name: (real[rows], lib) for name, (real, lib) in self.spaces.items()}
        return PairEmbeddings(
            self.real[rows],
            self.library,
            self.library_key,
            ids,
            spaces,
            self.reference,
            self.learned_from_labels,
        )

    def __repr__(self) -> str:
        return (
            f"PairEmbeddings(n_rows={len(self)}, library={len(self.library)}, "
            f"dim={self.real.shape[1]})"
        )


def check_pairs(X: Any, *, name: str = "X") -> PairedImages:
    """Check that ``X`` is ``X_pairs`` (raise a TypeError that says how to build it if not)."""
    if not isinstance(X, PairedImages):
        raise TypeError(
            f"{name} must be X_pairs built by skfingerprint.make_pairs(real, generated) or "
            f"load_imageclef_gans(path); got {type(X).__name__}"
        )
    return X
