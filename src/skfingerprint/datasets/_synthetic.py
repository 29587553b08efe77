"""Synthetic membership-inference tasks: CT-like slices and a generator that leaks.

The generator here is a stand-in for a GAN trained on the "used" real images: part of its output
are perturbed copies of used images (memorisation, the privacy leak an audit must find), the rest
are new slices of patients that appear in no real set (what a GAN that learned the distribution
produces). The ground truth of every generated image is known, which makes the task a test bed for
the estimators of this package when the official ImageCLEF data is not at hand.

This module owns the leaking generator and the task builder; the patients and slices come from
``_phantom``, and the task is written as an ImageCLEF folder by
:func:`skfingerprint.imageclef.write_imageclef_layout`.
"""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, validate_params

from .._contracts import derive_seed
from ..pairs import make_pairs
from ._phantom import _draw_patients, _slice_counts, _to_uint8, _Waves

__all__ = ["make_synthetic_leak"]

# Default number of slices drawn per patient when ``patients_per_split`` is None.
_SLICES_PER_PATIENT = 4


# --------------------------------------------------------------------------------------------
# The leaking generator
# --------------------------------------------------------------------------------------------


def _leak_copy(
    src: np.ndarray,
    partner: np.ndarray | None,
    distortion: float,
    u: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """A perturbed copy of ``src``: blend, affine jitter + elastic warp, intensity jitter."""
    d = distortion
    size = src.shape[0]
    img = src.astype(np.float32)
    if partner is not None:
        w = rng.uniform(0.6, 0.85)
        img = w * img + (1.0 - w) * partner.astype(np.float32)
    if d > 0.0:
        angle = np.deg2rad(np.clip(rng.normal(0.0, 5.0 * d), -12.0 * d, 12.0 * d))
        scale = math.exp(np.clip(rng.normal(0.0, 0.03 * d), -0.08 * d, 0.08 * d))
        shift = np.clip(rng.normal(0.0, 0.015 * size * d, 2), -0.04 * size * d, 0.04 * size * d)
        alpha = 0.012 * size * d  # RMS of the elastic displacement, pixels
        ex = alpha * _Waves.sample(rng, 6, 0.5, 3.0).field(u, u)
        ey = alpha * _Waves.sample(rng, 6, 0.5, 3.0).field(u, u)
        c = 0.5 * (size - 1)
        grid = np.arange(size, dtype=np.float32) - c
        # inverse map: output pixel p reads source at R^-1 (p - shift) / scale + c + elastic
        ca, sa = math.cos(angle) / scale, math.sin(angle) / scale
        xo = grid[None, :] - shift[0]
        yo = grid[:, None] - shift[1]
        xs = ca * xo + sa * yo + c + ex
        ys = -sa * xo + ca * yo + c + ey
        img = ndimage.map_coordinates(img, [ys, xs], order=1, mode="nearest")
        img = img.astype(np.float32, copy=False)
        gain = 1.0 + np.clip(rng.normal(0.0, 0.06 * d), -0.15, 0.15)
        img = img * gain + rng.normal(0.0, 5.0 * d)
        img = ndimage.gaussian_filter(img, 0.6 * d, truncate=3.0)
    return img


def _generator_finish(img: np.ndarray, distortion: float, rng: np.random.Generator) -> np.ndarray:
    """The generator's own noise, applied alike to copies and to novel images."""
    sigma = 1.0 + 5.0 * distortion
    noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma)
    return _to_uint8(img + noise)


def _make_rng(random_state: Any) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(derive_seed(random_state))


def _ids(prefix: str, n: int) -> list[str]:
    width = max(4, len(str(n - 1)))
    return [f"{prefix}_{i:0{width}d}" for i in range(n)]


_DESCR = """\
Synthetic generative-model leak task
------------------------------------

CT-like axial slices (8-bit, body outline, lungs with vessels, spine, ribs, heart, occasional
nodules, table, acquisition noise) of random patients, several neighbouring slices per patient.
Real images are split by patient into "used" (y=1: in the generator's training set) and "not used"
(y=0). The generated library mixes perturbed copies of used images (elastic warp, affine jitter,
intensity jitter, re-noise, occasional blends; strength set by ``distortion``) with new slices of
patients that appear in no real set. ``generated_source`` gives the real row each generated image
copies (-1 for novel images), so the leak is known exactly.

Parameters: n_used={n_used}, n_not_used={n_not_used}, n_generated={n_generated},
image_size={image_size}, leak_fraction={leak_fraction}, distortion={distortion},
patients (used / not used)={p_used} / {p_not}, leaked copies={n_leak}.
"""


@validate_params(
    {
        "n_used": [Interval(Integral, 1, None, closed="left")],
        "n_not_used": [Interval(Integral, 1, None, closed="left")],
        "n_generated": [Interval(Integral, 1, None, closed="left")],
        "image_size": [Interval(Integral, 32, None, closed="left")],
        "leak_fraction": [Interval(Real, 0, 1, closed="both")],
        "distortion": [Interval(Real, 0, 1, closed="both")],
        "patients_per_split": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state", np.random.Generator],
    },
    prefer_skip_nested_validation=True,
)
def make_synthetic_leak(
    n_used: int = 100,
    n_not_used: int = 100,
    n_generated: int = 400,
    *,
    image_size: int = 256,
    leak_fraction: float = 0.3,
    distortion: float = 0.5,
    patients_per_split: int | None = None,
    random_state: int | np.random.RandomState | np.random.Generator | None = None,
) -> Bunch:
    """Make a synthetic membership-inference task with a generator that leaks.

    Real images are CT-like axial slices of random patients (each patient has its own anatomy;
    neighbouring slices of one patient are similar but not equal). They are split *by patient*
    into images the generator was trained on (``y == 1``, "used") and images it never saw
    (``y == 0``). The generated library holds perturbed copies of used images (the leak) and new
    slices of fresh patients (what a generator that learned the distribution makes).

    Parameters
    ----------
    n_used : int, default=100
        Number of real images in the generator's training set (label 1).
    n_not_used : int, default=100
        Number of real images outside the training set (label 0).
    n_generated : int, default=400
        Number of generated (library) images.
    image_size : int, default=256
        Side of the square images in pixels, at least 32.
    leak_fraction : float, default=0.3
        Fraction of the library that are perturbed copies of used images, in [0, 1]. Copies are
        drawn with replacement from the used images: some leak several times, some never.
    distortion : float, default=0.5
        Strength of the perturbation of the copies, in [0, 1]: 0 gives near-exact copies, 1
        heavily distorted ones (elastic warp, rotation, scaling, shift, intensity jitter, blur,
        noise and, now and then, a blend with a second used image) whose membership signal is
        weak but still present.
    patients_per_split : int or None, default=None
        Number of patients in each of the two real splits. ``None`` draws about four slices per
        patient. Must not exceed ``n_used`` nor ``n_not_used``.
    random_state : int, RandomState instance, Generator or None, default=None
        Seed or random generator; an integer makes the output repeatable.

    Returns
    -------
    data : :class:`~sklearn.utils.Bunch`
        Dictionary-like object with the attributes:

        X_pairs : pairs object
            ``make_pairs(real_images, generated_images)``: one row per real image, each judged
            against the whole generated library.
        y : ndarray of shape (n_used + n_not_used,), dtype int64
            1 if the real image was used to train the generator, else 0 (rows shuffled).
        ids : list of str
            Ids of the real images, ``"real_0000"``, ``"real_0001"``, ...
        real_images : ndarray of shape (n_used + n_not_used, image_size, image_size), uint8
            The real images.
        generated_images : ndarray of shape (n_generated, image_size, image_size), uint8
            The generated library, in random order.
        generated_ids : list of str
            Ids of the generated images, ``"gen_0000"``, ...
        generated_source : ndarray of shape (n_generated,), dtype int64
            Row of the used real image each generated image copies (the main one for a blend),
            -1 for novel images.
        patient : ndarray of shape (n_used + n_not_used,), dtype int64
            Patient id of each real image; no patient is in both splits.
        DESCR : str
            Description of the task.

    Examples
    --------
    >>> from skfingerprint.datasets import make_synthetic_leak
    >>> task = make_synthetic_leak(20, 20, 40, image_size=64, random_state=0)
    >>> task.real_images.shape, task.generated_images.shape
    ((40, 64, 64), (40, 64, 64))
    >>> int(task.y.sum())
    20
    """
    n_used, n_not_used, n_generated = int(n_used), int(n_not_used), int(n_generated)
    image_size = int(image_size)
    leak_fraction, distortion = float(leak_fraction), float(distortion)
    if patients_per_split is not None and patients_per_split > min(n_used, n_not_used):
        raise ValueError(
            "patients_per_split must not exceed n_used nor n_not_used (every patient needs at "
            f"least one slice), got patients_per_split={patients_per_split} with "
            f"n_used={n_used} and n_not_used={n_not_used}."
        )
    rng = _make_rng(random_state)
    size = image_size
    u = ((np.arange(size, dtype=np.float64) + 0.5) / size * 2.0 - 1.0).astype(np.float32)

    # --- real images, split by patient
    if patients_per_split is None:
        p_used = max(1, round(n_used / _SLICES_PER_PATIENT))
        p_not = max(1, round(n_not_used / _SLICES_PER_PATIENT))
    else:
        p_used = p_not = int(patients_per_split)
    counts = np.concatenate(
        [_slice_counts(rng, n_used, p_used), _slice_counts(rng, n_not_used, p_not)]
    )
    slices = _draw_patients(rng, counts, u)
    images = np.stack([_to_uint8(s) for patient in slices for s in patient])
    # patient ids in random order, so that they say nothing about the label
    pid_of = rng.permutation(p_used + p_not).astype(np.int64)
    patient = np.repeat(pid_of, counts)
    labels = np.repeat(np.r_[np.ones(p_used, np.int64), np.zeros(p_not, np.int64)], counts)
    order = rng.permutation(n_used + n_not_used)
    real_images, y, patient = images[order], labels[order], patient[order]

    # --- generated library: leaked copies of used images + novel slices of fresh patients
    n_leak = round(leak_fraction * n_generated)
    n_novel = n_generated - n_leak
    used_rows = np.flatnonzero(y == 1)
    sources = rng.choice(used_rows, size=n_leak, replace=True).astype(np.int64)
    p_blend = 0.2 * distortion
    generated = []
    for s in sources:
        partner = None
        if used_rows.size > 1 and rng.random() < p_blend:
            partner = real_images[rng.choice(used_rows[used_rows != s])]
        img = _leak_copy(real_images[s], partner, distortion, u, rng)
        generated.append(_generator_finish(img, distortion, rng))
    if n_novel > 0:
        p_gen = max(1, math.ceil(n_novel / _SLICES_PER_PATIENT))
        for patient_slices in _draw_patients(rng, _slice_counts(rng, n_novel, p_gen), u):
            generated.extend(_generator_finish(s, distortion, rng) for s in patient_slices)
    generated_source = np.r_[sources, np.full(n_novel, -1, dtype=np.int64)]
    gorder = rng.permutation(n_generated)
    generated_images = np.stack(generated)[gorder]
    generated_source = generated_source[gorder]

    ids, generated_ids = _ids("real", n_used + n_not_used), _ids("gen", n_generated)
    return Bunch(
        X_pairs=make_pairs(
            real_images, generated_images, real_ids=ids, generated_ids=generated_ids
        ),
        y=y,
        ids=ids,
        real_images=real_images,
        generated_images=generated_images,
        generated_ids=generated_ids,
        generated_source=generated_source,
        patient=patient,
        DESCR=_DESCR.format(
            n_used=n_used,
            n_not_used=n_not_used,
            n_generated=n_generated,
            image_size=image_size,
            leak_fraction=leak_fraction,
            distortion=distortion,
            p_used=p_used,
            p_not=p_not,
            n_leak=n_leak,
        ),
    )
