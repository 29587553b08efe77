"""Real image sources of the membership suite: 32x32 grayscale images with group ids.

A *group* is what must sit wholly on one side of every split (a patient, a product, a written
character): images of one group are alike, so a group on both sides would let a classifier of
the real image alone recognise it, and used / not-used images would share near-duplicates.

- ``ct-phantom``: our CT-like phantom (``make_synthetic_leak``); group = patient (about four
  neighbouring slices each).
- ``fashion``: Fashion-MNIST (Zalando product photos, 28x28, padded to 32x32) from Debian's
  ``dataset-fashion-mnist``; group = image (one product each), near-duplicates removed.
- ``kanji``: kanji written by hand, rendered from Debian's ``fonts-seto`` (a font traced from
  one person's handwriting); group = character, near-duplicates removed.
- ``ct-phantom-64``, ``kanji-64``: the same sources at 64x64 (the phantom drawn at that size:
  other patients than the 32 px source's for the same seed; the same characters rendered
  twice as large). The suite's images are 32 px, while users' are larger (ImageCLEF's CT
  slices are 256 px), so a choice of scale made on 32 px images needs larger ones to be judged.
  Fashion-MNIST has no 64 px version (its images are 28 px).
- ``ct-phantom-128``: the phantom drawn at 128 px, to judge the cap of the default's pixel size
  (64 px, chosen on the 64 px sources) on images larger than it.

The two real sources are Debian packages (``make bench`` installs them where it can:
``apt-get install dataset-fashion-mnist fonts-seto``); a missing one raises
:class:`SourceUnavailableError` naming the package.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

__all__ = ["SOURCES", "SourceUnavailableError", "load_source"]

IMAGE_SIZE = 32
FASHION_FILE = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
KANJI_FONT = Path("/usr/share/fonts/truetype/seto/setofont.ttf")
#: Two images whose centred pixel vectors correlate above this are near-duplicates: one is
#: dropped before the split (checked by eye on the pairs just above and below it).
NEAR_DUPLICATE = 0.95


class SourceUnavailableError(RuntimeError):
    """A real image source whose Debian package is not installed."""


@dataclass(frozen=True)
class RealImages:
    """``images`` uint8 ``(n, s, s)`` (s = 32, or the size its name ends with) and ``group``
    int ``(n,)``: one id per patient, product or character."""

    images: np.ndarray
    group: np.ndarray


def _require(path: Path, package: str) -> Path:
    if not path.is_file():
        raise SourceUnavailableError(
            f"{path} not found: install Debian's {package} "
            f"(`apt-get install {package}`, as root) to run this source"
        )
    return path


def _drop_near_duplicates(images: np.ndarray, n: int) -> np.ndarray:
    """Indices of the first ``n`` images (in order) none of which correlates above
    :data:`NEAR_DUPLICATE` with an earlier kept one."""
    v = images.reshape(len(images), -1).astype(np.float32)
    v -= v.mean(1, keepdims=True)
    v /= np.linalg.norm(v, axis=1, keepdims=True) + 1e-8
    kept: list[int] = []
    for i in range(len(v)):
        if not kept or (v[kept] @ v[i]).max() <= NEAR_DUPLICATE:
            kept.append(i)
            if len(kept) == n:
                return np.asarray(kept)
    raise ValueError(f"only {len(kept)} distinct images, {n} asked for")


def _ct_phantom(n: int, seed: int, size: int = IMAGE_SIZE) -> RealImages:
    from skfingerprint.datasets import make_synthetic_leak

    half = n // 2
    data = make_synthetic_leak(
        half, n - half, 1, image_size=size, random_state=1000 + seed
    )  # its y and its one generated image are not used: the suite splits and generates
    return RealImages(data.real_images, np.asarray(data.patient))


def _fashion(n: int, seed: int) -> RealImages:
    with gzip.open(_require(FASHION_FILE, "dataset-fashion-mnist"), "rb") as f:
        raw = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    pool = raw[np.random.default_rng(seed).permutation(len(raw))[: 4 * n]]
    pool = np.pad(pool, ((0, 0), (2, 2), (2, 2)))  # deduplicate the images the suite uses
    return RealImages(pool[_drop_near_duplicates(pool, n)], np.arange(n))


def _render_kanji(codepoints: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    from PIL import Image, ImageDraw, ImageFont

    # 28 pt on 32 px, the same margin at other sizes
    font = ImageFont.truetype(str(_require(KANJI_FONT, "fonts-seto")), 28 * size // 32)
    out = np.zeros((len(codepoints), size, size), dtype=np.uint8)
    for i, cp in enumerate(codepoints):
        canvas = Image.new("L", (size, size))
        ImageDraw.Draw(canvas).text(
            (size / 2, size / 2), chr(int(cp)), fill=255, font=font, anchor="mm"
        )
        out[i] = np.asarray(canvas)
    return out


def _kanji(n: int, seed: int, size: int = IMAGE_SIZE) -> RealImages:
    # CJK Unified Ideographs; code points the font lacks render as its .notdef glyph (or blank)
    candidates = np.random.default_rng(seed).permutation(np.arange(0x4E00, 0x9FA6))[: 6 * n]
    images = _render_kanji(candidates, size)
    missing = _render_kanji(np.array([0x10FFFD]), size)[0]  # a private-use code point: .notdef
    present = np.flatnonzero(
        (images.reshape(len(images), -1) != missing.reshape(-1)).any(1)
        & (images.reshape(len(images), -1).max(1) > 0)
    )
    images = images[present]
    return RealImages(images[_drop_near_duplicates(images, n)], np.arange(n))


SOURCES = {
    "ct-phantom": _ct_phantom,
    "fashion": _fashion,
    "kanji": _kanji,
    "ct-phantom-64": partial(_ct_phantom, size=64),
    "kanji-64": partial(_kanji, size=64),
    "ct-phantom-128": partial(_ct_phantom, size=128),
}


def load_source(name: str, n: int, *, seed: int) -> RealImages:
    """``n`` distinct real images of source ``name`` with their groups; ``seed`` picks them."""
    if name not in SOURCES:
        raise ValueError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    return SOURCES[name](n, seed)
