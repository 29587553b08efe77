"""One loader for every kind of image input a user has.

Files are read lazily, one batch at a time, so a folder of any size never sits in memory whole.
Every image comes out as float32 intensities in [0, 1], shape ``(H, W, C)`` with ``C`` 1 (gray)
or 3 (colour); :func:`to_model_input` turns a batch into the normalised tensor a ViT expects.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ._lru import LRUCache
from ._warnings import warn_at_caller

__all__ = ["IMAGE_EXTENSIONS", "ImageLoadError", "ImageSet", "as_image_set", "to_model_input"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


# Entries kept per file memo below, least recently used evicted first: a few hundred bytes each
# (path, digest), so at most some 100 MB, and more files than most libraries hold.
_MAX_FILE_ENTRIES = 200_000
# File digests by (path, size, mtime): re-hashing a large library on every transform is wasted I/O.
_FILE_KEYS: LRUCache[tuple[str, int, int], str] = LRUCache(_MAX_FILE_ENTRIES)
# (height, width) from file headers, keyed the same way: checking files and learning their sizes
# opens each header once.
_FILE_SIZES: LRUCache[tuple[str, int, int], tuple[int, int]] = LRUCache(_MAX_FILE_ENTRIES)


def _row_key(key: Any, refusal: str) -> Any:
    """The rows in ``key`` (of an ``ImageSet`` or ``PairedImages``): sklearn's ``_array_indexing``
    passes ``(rows, Ellipsis)``; any other tuple raises ``IndexError`` (``refusal``, then key)."""
    if isinstance(key, tuple):
        if len(key) == 2 and key[1] is Ellipsis:
            return key[0]
        raise IndexError(f"{refusal}; got {key!r}")
    return key


class ImageLoadError(ValueError):
    """An image file could not be read; the message names the file and the reason.

    A subclass of ``ValueError``, raised when an image is opened (header) or decoded.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from skfingerprint import ImageLoadError, as_image_set
    >>> bad = Path(tempfile.mkdtemp()) / "broken.png"
    >>> _ = bad.write_bytes(b"")
    >>> try:
    ...     as_image_set([bad]).read(0)
    ... except ImageLoadError as exc:
    ...     print(type(exc).__name__, "broken.png" in str(exc))
    ImageLoadError True
    """


@contextmanager
def _open_image(path: Path) -> Iterator[Image.Image]:
    """Open an image file; every way it can fail becomes an error that names the file."""
    if not path.is_file():
        raise FileNotFoundError(f"Image file not found: '{path}'")
    if path.stat().st_size == 0:
        raise ImageLoadError(f"Cannot read image '{path}': the file is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            # PIL's DecompressionBombWarning etc. should not leak; errors still raise.
            warnings.simplefilter("ignore")
            with Image.open(path) as img:
                yield img
    except UnidentifiedImageError:
        raise ImageLoadError(
            f"Cannot read image '{path}': not an image file Pillow recognises"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated / corrupt data
        raise ImageLoadError(f"Cannot read image '{path}': {exc}") from exc


def _file_memo(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"Image file not found: '{path}'") from None
    return (str(path), st.st_size, st.st_mtime_ns)


def _header_size(path: Path) -> tuple[int, int]:
    """``(height, width)`` from the file's header (opened once per file version)."""
    memo = _file_memo(path)
    size = _FILE_SIZES.get(memo)
    if size is None:
        with _open_image(path) as img:  # parses the header only
            size = (int(img.height), int(img.width))
        _FILE_SIZES.put(memo, size)
    return size


def _read_file(path: Path) -> np.ndarray:
    """Decode one file into float32 ``(H, W, C)`` in [0, 1], with the file named on failure."""
    with _open_image(path) as img:
        img.load()
        return _pil_to_float(img)


def _pil_to_float(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img, dtype=np.float32) / 65535.0
    elif mode == "I":  # 16-bit PNGs open as 32-bit ints in some Pillow versions
        arr = np.asarray(img, dtype=np.float32)
        arr = arr / (65535.0 if arr.max(initial=0) > 255 else 255.0)
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float32)
    elif mode in ("L", "RGB"):
        arr = np.asarray(img, dtype=np.float32) / 255.0
    elif mode == "LA":
        arr = np.asarray(img.getchannel("L"), dtype=np.float32) / 255.0
    elif mode == "RGBA":  # the alpha channel carries no anatomy
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    elif mode == "1":
        arr = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    else:  # P, CMYK, YCbCr, ...
        arr = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return np.clip(arr, 0.0, 1.0)


def _array_to_float(arr: np.ndarray) -> np.ndarray:
    """One validated array image to float32 ``(H, W, C)`` in [0, 1]."""
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    else:
        out = arr.astype(np.float32, copy=False)
    if out.ndim == 2:
        out = out[:, :, None]
    elif out.shape[2] == 4:
        out = out[:, :, :3]
    return out


def _validate_array(arr: np.ndarray, name: str) -> np.ndarray:
    if arr.ndim not in (3, 4):
        raise ValueError(
            f"{name}: an image array must have shape (n, H, W) or (n, H, W, C); got shape "
            f"{arr.shape}"
        )
    if arr.ndim == 4 and arr.shape[3] not in (1, 3, 4):
        raise ValueError(
            f"{name}: the last axis of an (n, H, W, C) array must be 1, 3 or 4 channels; got "
            f"shape {arr.shape}"
        )
    if arr.shape[0] == 0:
        raise ValueError(f"{name}: the image array is empty (0 images)")
    if min(arr.shape[1:3]) < 2:
        raise ValueError(f"{name}: images must be at least 2x2 pixels; got shape {arr.shape}")
    if arr.dtype in (np.uint8, np.uint16):
        return arr
    if arr.dtype.kind == "b" or arr.dtype.kind in "iu":
        raise ValueError(
            f"{name}: integer image arrays must be uint8 or uint16; got {arr.dtype}. Convert with "
            "arr.astype(np.uint8) (0-255) or arr.astype(np.float32) / max_value (0-1)."
        )
    if arr.dtype.kind != "f":
        raise ValueError(f"{name}: unsupported image array dtype {arr.dtype}")
    finite = np.isfinite(arr).reshape(arr.shape[0], -1).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(
            f"{name}: images contain NaN or infinite values (image indices {bad[:10].tolist()}"
            f"{'...' if bad.size > 10 else ''})"
        )
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ValueError(
            f"{name}: float images must hold intensities in [0, 1]; got values in "
            f"[{lo:g}, {hi:g}]. Divide by the maximum intensity (for example arr / 255.0) first."
        )
    return arr


def list_image_files(folder: Path) -> list[Path]:
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ValueError(
            f"Folder '{folder}' holds no image files (looked for {', '.join(IMAGE_EXTENSIONS)})"
        )
    return files


class ImageSet(Sequence):
    """An ordered collection of images, read lazily from files or held as an array.

    Use :func:`as_image_set` to build one from anything a user has. Indexing with an integer
    gives the underlying item (a path or an array image); indexing with a slice, an index array
    or a boolean mask gives a new ``ImageSet`` of those images, so sklearn's ``_safe_indexing``
    works on it.

    Parameters
    ----------
    paths : list of Path, optional
        Image files, read when needed. Exactly one of ``paths`` and ``array`` is given.
    array : ndarray, optional
        Validated image array ``(n, H, W)`` or ``(n, H, W, C)``.
    ids : list of str, optional
        One identifier per image; file stems by default, ``"0"``, ``"1"``, ... for arrays.

    Raises
    ------
    ValueError
        Both or neither of ``paths`` and ``array`` given, or as many ids as images.

    Examples
    --------
    >>> import numpy as np
    >>> from skfingerprint import as_image_set
    >>> images = as_image_set(np.zeros((5, 32, 32), dtype=np.uint8))
    >>> images
    ImageSet(5 images in a uint8 array (5, 32, 32))
    >>> images[1:3].ids
    ['1', '2']
    >>> images.read(0).shape  # float32 in [0, 1], channels last
    (32, 32, 1)
    """

    def __init__(
        self,
        paths: Sequence[Path] | None = None,
        array: np.ndarray | None = None,
        ids: Sequence[str] | None = None,
    ) -> None:
        if (paths is None) == (array is None):
            raise ValueError("ImageSet needs exactly one of paths= and array=")
        self.paths = None if paths is None else [Path(p) for p in paths]
        self.array = array
        n = len(self.paths) if self.paths is not None else len(array)
        self.ids = (
            [str(i) for i in ids]
            if ids is not None
            else [p.stem for p in self.paths]
            if self.paths is not None
            else [str(i) for i in range(n)]
        )
        if len(self.ids) != n:
            raise ValueError(f"ImageSet: {len(self.ids)} ids for {n} images")

    # --- sequence protocol -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def shape(self) -> tuple[int]:
        """``(n_images,)``, so sklearn counts samples without loading anything."""
        return (len(self),)

    def __getitem__(self, key: Any) -> Any:
        key = _row_key(key, "ImageSet supports 1-d indexing only")
        if isinstance(key, (int, np.integer)):
            return self.paths[key] if self.paths is not None else self.array[key]
        idx = np.arange(len(self))[key]
        if idx.ndim != 1:
            raise IndexError(f"ImageSet supports 1-d indexing only; got {key!r}")
        ids = [self.ids[i] for i in idx]
        if self.paths is not None:
            return ImageSet(paths=[self.paths[i] for i in idx], ids=ids)
        return ImageSet(array=self.array[idx], ids=ids)

    def __iter__(self) -> Iterator[Any]:
        return (self[i] for i in range(len(self)))

    def __repr__(self) -> str:
        if self.paths is not None:
            return f"ImageSet({len(self)} image files)"
        return f"ImageSet({len(self)} images in a {self.array.dtype} array {self.array.shape})"

    # --- reading -----------------------------------------------------------------------------
    def read(self, i: int) -> np.ndarray:
        """Image ``i`` as float32 ``(H, W, C)`` in [0, 1], ``C`` 1 or 3.

        Parameters
        ----------
        i : int
            Position of the image.

        Returns
        -------
        ndarray of shape (H, W, C), float32

        Raises
        ------
        FileNotFoundError, ImageLoadError
            The file is missing or cannot be decoded (the message names it).
        """
        if self.paths is not None:
            return _read_file(self.paths[i])
        return _array_to_float(self.array[i])

    def iter_batches(
        self, batch_size: int = 32, indices: Sequence[int] | None = None
    ) -> Iterator[tuple[np.ndarray, list[np.ndarray]]]:
        """Yield ``(indices, images)`` batches, reading only one batch at a time.

        Parameters
        ----------
        batch_size : int, default=32
            Images per batch.
        indices : sequence of int, default=None
            Which images, in this order; all of them when None.

        Yields
        ------
        indices : ndarray of int
            Positions of the batch's images.
        images : list of ndarray
            The images, as :meth:`read` returns them.
        """
        order = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=int)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            yield chunk, [self.read(int(i)) for i in chunk]

    def content_key(self, i: int) -> str:
        """A digest of image ``i``'s content: equal images get equal keys, wherever they live.

        Parameters
        ----------
        i : int
            Position of the image.

        Returns
        -------
        str
            A hex digest (files: of their bytes; arrays: of dtype, shape and values).

        Raises
        ------
        FileNotFoundError
            The image file is missing.
        """
        h = hashlib.blake2b(digest_size=16)
        if self.paths is not None:
            path = self.paths[i]
            memo = _file_memo(path)
            key = _FILE_KEYS.get(memo)
            if key is None:
                h.update(b"file")
                h.update(path.read_bytes())
                key = h.hexdigest()
                _FILE_KEYS.put(memo, key)
            return key
        img = np.ascontiguousarray(self.array[i])
        h.update(f"array{img.dtype.str}{img.shape}".encode())
        h.update(img.tobytes())
        return h.hexdigest()

    def check_files(self) -> None:
        """Check every file exists and has a readable image header, before any long work.

        Raises
        ------
        FileNotFoundError, ImageLoadError
            Naming the first bad file. Corruption past the header shows only on full decode.
        """
        self.sizes()

    def sizes(self) -> list[tuple[int, int]]:
        """``(height, width)`` of every image, from file headers or the array's shape.

        A file's header is read once per version of the file (path, size, modification time),
        so checking files and asking their sizes again costs no further reads.

        Returns
        -------
        list of tuple of int

        Raises
        ------
        FileNotFoundError, ImageLoadError
            A file is missing or its header cannot be read.
        """
        if self.paths is None:
            return [(int(self.array.shape[1]), int(self.array.shape[2]))] * len(self)
        return [_header_size(path) for path in self.paths]


def as_image_set(images: Any, *, name: str = "images") -> ImageSet:
    """Turn a folder, a list of image paths or an image array into an :class:`ImageSet`.

    Parameters
    ----------
    images : str, Path, list of str or Path, ndarray or ImageSet
        A folder (its image files, sorted by name), a list of image files, or an array
        ``(n, H, W)`` / ``(n, H, W, C)`` of dtype uint8, uint16 or float in [0, 1].
    name : str, default="images"
        What the input is called in error messages.

    Returns
    -------
    ImageSet

    Raises
    ------
    ValueError
        Empty input, a folder with no images, a bad array (shape, dtype, NaN, range).
    FileNotFoundError
        A path that does not exist.
    TypeError
        Anything else.

    Examples
    --------
    >>> import numpy as np
    >>> from skfingerprint.images import as_image_set
    >>> as_image_set(np.zeros((3, 32, 32), dtype=np.uint8))
    ImageSet(3 images in a uint8 array (3, 32, 32))
    """
    if isinstance(images, ImageSet):
        return images
    if isinstance(images, (str, os.PathLike)):
        path = Path(images)
        if path.is_dir():
            return ImageSet(paths=list_image_files(path))
        if path.is_file():
            return ImageSet(paths=[path])
        raise FileNotFoundError(f"{name}: no such file or folder: '{path}'")
    if isinstance(images, np.ndarray):
        return ImageSet(array=_validate_array(images, name))
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"{name}: the list of images is empty")
        bad = [type(p).__name__ for p in images if not isinstance(p, (str, os.PathLike))]
        if bad:
            raise TypeError(
                f"{name}: a list of images must hold file paths (str or Path); found {bad[0]}. "
                "Stack in-memory images into one array of shape (n, H, W) instead."
            )
        paths = [Path(p) for p in images]
        missing = [p for p in paths if not p.is_file()]
        if missing:
            raise FileNotFoundError(
                f"{name}: image file not found: '{missing[0]}'"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            )
        return ImageSet(paths=paths)
    raise TypeError(
        f"{name}: expected a folder, a list of image paths or an array of shape (n, H, W[, C]); "
        f"got {type(images).__name__}"
    )


def to_model_input(
    images: Sequence[np.ndarray],
    size: int | tuple[int, int],
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
):
    """Stack float ``(H, W, C)`` images into a ``(B, 3, h, w)`` float32 torch tensor.

    Grayscale is repeated to 3 channels; every image is resized (bilinear, antialiased) to
    ``size``, then normalised with the model's ``mean`` and ``std`` (left in [0, 1] when they
    are None, for augmentation before normalising).
    """
    import torch
    import torch.nn.functional as F

    h, w = (size, size) if isinstance(size, int) else size
    out = torch.empty((len(images), 3, h, w), dtype=torch.float32)
    mean_t = torch.tensor(mean or (0.0,) * 3, dtype=torch.float32).view(3, 1, 1)
    std_t = torch.tensor(std or (1.0,) * 3, dtype=torch.float32).view(3, 1, 1)
    for j, img in enumerate(images):
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
        if t.shape[1:] != (h, w):  # before repeating grayscale: a third of the work, same values
            t = F.interpolate(
                t[None], size=(h, w), mode="bilinear", align_corners=False, antialias=True
            )[0]
        out[j] = (t - mean_t) / std_t  # a grayscale channel broadcasts to the three
    return out


def gray_vectors(images: list[np.ndarray], size: int) -> np.ndarray:
    """Float ``(H, W, C)`` images as flattened ``size x size`` grayscale vectors, float32: the
    mean of the colour channels (of a colour image), resized as :func:`to_model_input` does."""
    gray = [img.mean(axis=2, keepdims=True) if img.shape[2] != 1 else img for img in images]
    return to_model_input(gray, size)[:, 0].reshape(len(images), -1).numpy()


#: The real and generated images' typical brightest pixels differing by this factor or more
#: mean the two sets are not on one intensity scale: 12-bit data in 16-bit files reads 16x
#: darker than 8-bit data (both are scaled to 0-1 by their type's range), while two sets of one
#: modality, or a generator's output and its training images, differ by far less.
INTENSITY_MISMATCH_RATIO = 4.0


def intensity_peak(vectors: np.ndarray) -> float:
    """The typical brightest pixel of a set of :func:`pixel_vectors`: the median over its
    images of each one's maximum."""
    return float(np.median(vectors.max(axis=1)))


def sampled_intensity_peak(images: ImageSet, n: int = 32, size: int = 32) -> float:
    """:func:`intensity_peak` of up to ``n`` images spread evenly over ``images``, read at
    ``size`` px: a cheap estimate where the pixel vectors are not computed anyway (an embedder
    without ``pixel_size``, whose ViT tokens may all come from its cache)."""
    idx = np.unique(np.linspace(0, len(images) - 1, min(n, len(images))).round().astype(int))
    return intensity_peak(pixel_vectors(images[idx], size))


def warn_on_intensity_mismatch(real_peak: float, library_peak: float) -> None:
    """One warning when the reals and the library (their :func:`intensity_peak`) are on
    different intensity scales: pixel similarities would then compare brightness, not content
    (``benchmarks/RESULTS_bitdepth.md``)."""
    low, high = sorted((real_peak, library_peak))
    if high <= 0.0 or high < INTENSITY_MISMATCH_RATIO * low:
        return
    darker, brighter = ("real", "generated") if real_peak < library_peak else ("generated", "real")
    ratio = f"{high / low:.0f}x" if low > 0 else "infinitely"
    warn_at_caller(
        f"the {darker} images are {ratio} darker than the {brighter} ones (their brightest "
        f"pixel: {low:.3f} against {high:.3f}, medians over each set "
        "on a 0-1 scale): they are not on one intensity scale, and their similarities would "
        "compare brightness, not content. 12-bit data stored in 16-bit files reads 16x darker "
        "than 8-bit images; rescale one set to the other's range before the audit."
    )


#: ``auto_pixel_size`` never goes above this: on 64 px images the scores at 64 px beat 32 px; on
#: 32 px images upsampled to 64 px they lost (RESULTS_head.md); on 128 px images 128 px did not
#: beat 64 px on unseen seeds (round 14, RESULTS_pixel_cap_seeds3-5.md)
AUTO_PIXEL_SIZE_CAP = 64


def auto_pixel_size(sizes) -> int:
    """The side for :func:`pixel_vectors` of images of these ``(height, width)`` sizes: their
    smallest side (no image is upsampled), at most :data:`AUTO_PIXEL_SIZE_CAP`."""
    return min(AUTO_PIXEL_SIZE_CAP, *(min(h, w) for h, w in sizes))


def pixel_vectors(images: ImageSet, size: int, batch_size: int = 256) -> np.ndarray:
    """Every image of ``images`` as a flattened ``size x size`` grayscale vector, ``(n, size**2)``.

    Streamed in batches of ``batch_size`` images (the vectors are what is kept)."""
    out = np.empty((len(images), size * size), dtype=np.float32)
    for idx, batch in images.iter_batches(batch_size):
        out[idx] = gray_vectors(batch, size)
    return out
