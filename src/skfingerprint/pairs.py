"""``X_pairs``: one row per real image, each judged against one shared library of generated images.

Slicing keeps the library object shared (never copied per row), so cross-validation folds split
the real images while every fold keeps the whole library, and a pickle holds the library once.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .images import ImageSet, as_image_set

__all__ = ["PairedImages", "make_pairs"]


class PairedImages:
    """Rows ``(real image, library)``: what ``Pipeline.fit(X_pairs, y)`` takes.

    Build it with :func:`make_pairs` or :func:`skfingerprint.load_imageclef_gans`.

    Parameters
    ----------
    real : ImageSet
        The real images, one per row.
    library : ImageSet
        The generated images every row is judged against; shared by all rows and all slices.

    Attributes
    ----------
    shape : tuple of int
        ``(n_rows, 2)``: sklearn counts and slices rows through it.
    ids : list of str
        The real images' identifiers.
    """

    def __init__(self, real: ImageSet, library: ImageSet) -> None:
        if not isinstance(real, ImageSet) or not isinstance(library, ImageSet):
            raise TypeError(
                "PairedImages takes two ImageSet objects; use make_pairs(real, generated)"
            )
        self.real = real
        self.library = library

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.real), 2)

    @property
    def ids(self) -> list[str]:
        return self.real.ids

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple):  # sklearn's _array_indexing passes (key, Ellipsis)
            if len(key) == 2 and key[1] is Ellipsis:
                key = key[0]
            else:
                raise IndexError(f"PairedImages supports row indexing only; got {key!r}")
        if isinstance(key, (int, np.integer)):
            return self.real[key], self.library
        return PairedImages(self.real[key], self.library)

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        return f"PairedImages(n_rows={len(self)}, library={len(self.library)} generated images)"


def make_pairs(real: Any, generated: Any) -> PairedImages:
    """Build ``X_pairs``: every real image paired with the shared library of generated images.

    Parameters
    ----------
    real : folder, list of paths, or array (n, H, W[, C])
        The real images to audit, one row each.
    generated : folder, list of paths, or array (m, H, W[, C])
        The images the generative model produced (the library).

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
    return PairedImages(as_image_set(real, name="real"), as_image_set(generated, name="generated"))


def check_pairs(X: Any, *, name: str = "X") -> PairedImages:
    """Check that ``X`` is ``X_pairs`` (raise a TypeError that says how to build it if not)."""
    if not isinstance(X, PairedImages):
        raise TypeError(
            f"{name} must be X_pairs built by skfingerprint.make_pairs(real, generated) or "
            f"load_imageclef_gans(path); got {type(X).__name__}"
        )
    return X
