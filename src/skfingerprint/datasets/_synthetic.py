"""Synthetic membership-inference tasks: CT-like slices and a generator that leaks.

The generator here is a stand-in for a GAN trained on the "used" real images: part of its output
are perturbed copies of used images (memorisation, the privacy leak an audit must find), the rest
are new slices of patients that appear in no real set (what a GAN that learned the distribution
produces). The ground truth of every generated image is known, which makes the task a test bed for
the estimators of this package when the official ImageCLEF data is not at hand.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from numbers import Integral, Real
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage
from sklearn.utils import Bunch
from sklearn.utils._param_validation import Interval, validate_params

from .._contracts import derive_seed
from ..pairs import make_pairs

__all__ = ["make_synthetic_leak", "write_imageclef_layout"]

# Default number of slices drawn per patient when ``patients_per_split`` is None.
_SLICES_PER_PATIENT = 4


# --------------------------------------------------------------------------------------------
# Smooth random fields (sums of plane waves, evaluated as one small matrix product)
# --------------------------------------------------------------------------------------------


@dataclass
class _Waves:
    """Random plane waves ``sum_k a_k sin(fx_k u + fy_k v + phase_k)`` on the image grid."""

    fx: np.ndarray
    fy: np.ndarray
    phase: np.ndarray
    amp: np.ndarray
    omega: np.ndarray  # phase drift per unit of slice position

    @classmethod
    def sample(
        cls, rng: np.random.Generator, n: int, fmin: float, fmax: float, drift: float = 0.0
    ) -> _Waves:
        # frequencies in cycles per field of view (the grid spans [-1, 1], i.e. 2 units)
        freq = rng.uniform(fmin, fmax, n) * np.pi
        angle = rng.uniform(0.0, 2.0 * np.pi, n)
        amp = rng.normal(size=n)
        amp /= np.sqrt(np.sum(amp**2)) + 1e-12
        return cls(
            fx=freq * np.cos(angle),
            fy=freq * np.sin(angle),
            phase=rng.uniform(0.0, 2.0 * np.pi, n),
            amp=amp * np.sqrt(2.0),  # sum of a_k^2 = 2: the field has unit RMS
            omega=rng.normal(0.0, drift, n),
        )

    def field(self, u: np.ndarray, v: np.ndarray, z: float = 0.0) -> np.ndarray:
        """Evaluate on the grid given by the 1-D coordinates ``u`` (columns) and ``v`` (rows)."""
        au = np.outer(u, self.fx) + (self.phase + self.omega * z)  # (n_u, n_waves)
        bv = np.outer(v, self.fy)  # (n_v, n_waves)
        # sum_k a_k sin(a + b) = sum_k a_k (cos b sin a + sin b cos a): one matrix product
        left = np.concatenate([np.cos(bv) * self.amp, np.sin(bv) * self.amp], axis=1)
        right = np.concatenate([np.sin(au), np.cos(au)], axis=1)
        return (left.astype(np.float32) @ right.astype(np.float32).T).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# Drawing primitives
# --------------------------------------------------------------------------------------------


def _shape_masks(
    u: np.ndarray,
    cx: float,
    cy: float,
    ax: float,
    ay: float,
    harm_c: np.ndarray,
    harm_s: np.ndarray,
    edge_px: float,
    scales: tuple[float, ...] = (1.0,),
) -> list[np.ndarray]:
    """Soft (anti-aliased) masks of a star-shaped blob: an ellipse with a Fourier-perturbed rim.

    ``u`` holds the normalised coordinates (range [-1, 1]) of the pixel centres along both axes.
    One mask per entry of ``scales`` (concentric copies shrunk by that factor); only the bounding
    box of the shape is evaluated.
    """
    size = u.size
    masks = [np.zeros((size, size), dtype=np.float32) for _ in scales]
    harm_c, harm_s = np.asarray(harm_c).tolist(), np.asarray(harm_s).tolist()
    rmax = 1.0 + sum(map(abs, harm_c)) + sum(map(abs, harm_s))
    half = 0.5 * size  # pixels per normalised unit
    edge = edge_px / (half * min(ax, ay))
    pad = (rmax + edge) * 1.05
    c0 = max(int(np.floor((cx - ax * pad + 1.0) * half)), 0)
    c1 = min(int(np.ceil((cx + ax * pad + 1.0) * half)) + 1, size)
    r0 = max(int(np.floor((cy - ay * pad + 1.0) * half)), 0)
    r1 = min(int(np.ceil((cy + ay * pad + 1.0) * half)) + 1, size)
    if c0 >= c1 or r0 >= r1:
        return masks
    dx = ((u[c0:c1] - cx) / ax)[None, :].astype(np.float32)
    dy = ((u[r0:r1] - cy) / ay)[:, None].astype(np.float32)
    r = np.sqrt(dx * dx + dy * dy)
    rs = np.maximum(r, 1e-6)
    cos1 = dx / rs
    sin1 = dy / rs
    rim = np.ones_like(r)
    ck, sk = cos1, sin1
    for a, b in zip(harm_c, harm_s, strict=True):
        rim += a * ck + b * sk
        ck, sk = ck * cos1 - sk * sin1, sk * cos1 + ck * sin1
    for mask, scale in zip(masks, scales, strict=True):
        mask[r0:r1, c0:c1] = np.clip((rim * scale - r) / (edge * scale) + 0.5, 0.0, 1.0)
    return masks


def _add_blobs(
    img: np.ndarray,
    cx: np.ndarray,
    cy: np.ndarray,
    radius: np.ndarray,
    amp: np.ndarray,
    gaussian: bool,
) -> None:
    """Add Gaussian blobs or soft discs (centres/radii in pixels) to ``img`` in place.

    All profiles are evaluated at once on windows of one size; blobs partly outside the image are
    clipped, blobs wholly outside are dropped.
    """
    cx, cy = np.asarray(cx, np.float64).ravel(), np.asarray(cy, np.float64).ravel()
    radius = np.broadcast_to(np.asarray(radius, np.float64), cx.shape)
    amp = np.broadcast_to(np.asarray(amp, np.float64), cx.shape)
    if cx.size == 0:
        return
    size_v, size_u = img.shape
    ext = int(np.ceil((3.0 * radius.max() + 1.0) if gaussian else (radius.max() + 1.5)))
    win = 2 * ext + 1
    x0 = np.floor(cx).astype(np.int64) - ext
    y0 = np.floor(cy).astype(np.int64) - ext
    inside = (x0 < size_u) & (x0 + win > 0) & (y0 < size_v) & (y0 + win > 0) & (amp != 0)
    if not inside.any():
        return
    cx, cy, radius, amp, x0, y0 = (a[inside] for a in (cx, cy, radius, amp, x0, y0))
    offs = np.arange(win, dtype=np.float32) + 0.5
    xx = (x0[:, None] + offs[None, :] - cx[:, None]).astype(np.float32)  # (n, win)
    yy = (y0[:, None] + offs[None, :] - cy[:, None]).astype(np.float32)
    d2 = yy[:, :, None] ** 2 + xx[:, None, :] ** 2  # (n, win, win)
    r = radius.astype(np.float32)[:, None, None]
    if gaussian:
        prof = np.exp(-d2 / (2.0 * r * r))
    else:
        prof = np.clip(r - np.sqrt(d2) + 0.5, 0.0, 1.0)
    prof *= amp.astype(np.float32)[:, None, None]
    # paste through a padded canvas, so windows at the border need no special case
    canvas = np.zeros((size_v + 2 * win, size_u + 2 * win), dtype=np.float32)
    for patch, xi, yi in zip(prof, x0 + win, y0 + win, strict=True):
        canvas[yi : yi + win, xi : xi + win] += patch
    img += canvas[win:-win, win:-win]


def _to_px(w: float | np.ndarray, size: int) -> float | np.ndarray:
    """Normalised coordinate in [-1, 1] to continuous pixel coordinate in [0, size]."""
    return (w + 1.0) * 0.5 * size


# --------------------------------------------------------------------------------------------
# Patients
# --------------------------------------------------------------------------------------------


@dataclass
class _Patient:
    """Anatomy and scanner parameters of one synthetic patient (all in normalised units)."""

    body: tuple  # cx, cy, ax, ay
    body_hc: np.ndarray
    body_hs: np.ndarray
    fat_thick: float
    bg: float
    fat: float
    tissue: float
    lung_int: float
    tex_amp: float
    texture: _Waves
    lung_tex_amp: float
    lung_texture: _Waves
    lungs: list  # per side: dict(cx, cy, ax, ay, hc, hs, dhc, dhs)
    lung_growth: float
    vessels: list  # per side: array (n, 8): px, py, dx, dy, zc, zw, radius, amp
    heart: tuple  # cx, cy, ax, ay, delta, onset
    spine: tuple  # cx, cy, radius, intensity
    aorta: tuple  # dx, dy (from spine), radius, intensity
    ribs: np.ndarray  # (n, 4): angle, drift, radius, amp
    lesions: list  # tuples: side, px, py, zc, zw, radius, amp
    table: tuple | None  # v, thickness, curvature, intensity
    noise: float
    blur: float


def _sample_patient(rng: np.random.Generator) -> _Patient:
    cx, cy = rng.normal(0.0, 0.03), rng.normal(-0.03, 0.025)
    ax, ay = rng.uniform(0.68, 0.86), rng.uniform(0.48, 0.6)
    k = np.arange(2, 6)
    body_hc = rng.normal(0.0, 0.035, k.size) / (k - 1)
    body_hs = rng.normal(0.0, 0.035, k.size) / (k - 1)
    body_hs[0] += rng.uniform(0.0, 0.04)  # flatter back, lying on the table

    lungs = []
    base_cy = cy + rng.normal(-0.05, 0.03)
    for side in (-1.0, 1.0):
        kk = np.arange(1, 5)
        hc = rng.normal(0.0, 0.06, kk.size) / kk
        hs = rng.normal(0.0, 0.06, kk.size) / kk
        hc[0] += -side * rng.uniform(0.02, 0.08)  # flatter mediastinal side
        lungs.append(
            {
                "cx": cx + side * ax * rng.uniform(0.38, 0.48),
                "cy": base_cy + rng.normal(0.0, 0.025),
                "ax": ax * rng.uniform(0.26, 0.34),
                "ay": ay * rng.uniform(0.55, 0.7),
                "hc": hc,
                "hs": hs,
                "dhc": rng.normal(0.0, 0.08, kk.size) / kk,
                "dhs": rng.normal(0.0, 0.08, kk.size) / kk,
            }
        )

    vessels = []
    for _ in range(2):
        n = int(rng.integers(14, 30))
        rad = np.sqrt(rng.uniform(0.0, 1.0, n)) * 0.85
        ang = rng.uniform(0.0, 2.0 * np.pi, n)
        vessels.append(
            np.column_stack(
                [
                    rad * np.cos(ang),
                    rad * np.sin(ang),
                    rng.normal(0.0, 0.6, n),
                    rng.normal(0.0, 0.6, n),
                    rng.uniform(-0.1, 1.1, n),
                    rng.uniform(0.08, 0.3, n),
                    rng.uniform(0.006, 0.018, n),
                    rng.uniform(60.0, 140.0, n),
                ]
            )
        )

    lesions = []
    if rng.random() < 0.35:
        for _ in range(int(rng.integers(1, 4))):
            rad = np.sqrt(rng.random()) * 0.7
            ang = rng.uniform(0.0, 2.0 * np.pi)
            amp = rng.uniform(60.0, 120.0) if rng.random() < 0.8 else -rng.uniform(10.0, 25.0)
            lesions.append(
                (
                    int(rng.integers(0, 2)),
                    rad * np.cos(ang),
                    rad * np.sin(ang),
                    rng.uniform(0.0, 1.0),
                    rng.uniform(0.06, 0.15),
                    rng.uniform(0.015, 0.045),
                    amp,
                )
            )

    n_ribs = int(rng.integers(3, 6))
    ribs = np.column_stack(
        [
            np.concatenate(  # both sides, posterior-lateral arcs
                [rng.uniform(0.15, 1.3, n_ribs), np.pi - rng.uniform(0.15, 1.3, n_ribs)]
            ),
            rng.normal(0.0, 0.3, 2 * n_ribs),
            rng.uniform(0.012, 0.022, 2 * n_ribs),
            rng.uniform(70.0, 120.0, 2 * n_ribs),
        ]
    )

    table = None
    if rng.random() < 0.6:
        table = (
            cy + ay + rng.uniform(0.04, 0.1),
            rng.uniform(0.015, 0.03),
            rng.uniform(-0.08, 0.08),
            rng.uniform(90.0, 150.0),
        )

    tissue = rng.uniform(100.0, 130.0)
    return _Patient(
        body=(cx, cy, ax, ay),
        body_hc=body_hc,
        body_hs=body_hs,
        fat_thick=rng.uniform(0.05, 0.12),
        bg=rng.uniform(0.0, 12.0),
        fat=rng.uniform(55.0, 85.0),
        tissue=tissue,
        lung_int=rng.uniform(15.0, 40.0),
        tex_amp=rng.uniform(3.0, 8.0),
        texture=_Waves.sample(rng, 8, 1.5, 8.0, drift=1.5),
        lung_tex_amp=rng.uniform(2.0, 6.0),
        lung_texture=_Waves.sample(rng, 8, 6.0, 18.0, drift=4.0),
        lungs=lungs,
        lung_growth=rng.uniform(0.35, 0.5),
        vessels=vessels,
        heart=(
            cx + rng.uniform(0.02, 0.14),
            cy - ay * rng.uniform(0.15, 0.35),
            ax * rng.uniform(0.22, 0.3),
            ay * rng.uniform(0.3, 0.42),
            rng.uniform(12.0, 30.0),
            rng.uniform(0.35, 0.55),
        ),
        spine=(
            cx + rng.normal(0.0, 0.015),
            cy + ay * rng.uniform(0.42, 0.52),
            ay * rng.uniform(0.16, 0.2),
            rng.uniform(200.0, 240.0),
        ),
        aorta=(
            rng.uniform(0.06, 0.12),
            -rng.uniform(0.12, 0.18),
            rng.uniform(0.045, 0.065),
            rng.uniform(145.0, 185.0),
        ),
        ribs=ribs,
        lesions=lesions,
        table=table,
        noise=rng.uniform(6.0, 14.0),
        blur=rng.uniform(0.5, 0.9),
    )


def _render_slice(p: _Patient, z: float, u: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render the axial slice at position ``z`` (0 = apex, 1 = lung base) as float32."""
    size = u.size
    half = 0.5 * size
    cx, cy, ax, ay = p.body
    # the body narrows a little towards the apex
    bscale = 0.95 + 0.05 * z
    body, inner = _shape_masks(
        u, cx, cy, ax * bscale, ay * bscale, p.body_hc, p.body_hs, 1.0, (1.0, 1.0 - p.fat_thick)
    )
    tex = p.texture.field(u, u, z)
    img = p.bg + body * (p.fat - p.bg + inner * (p.tissue - p.fat + p.tex_amp * tex))

    # lungs: size follows the slice position (small at the apex, largest mid-chest)
    grow = 1.0 - p.lung_growth + p.lung_growth * math.sin(math.pi * (0.1 + 0.8 * z))
    lung_mask = np.zeros_like(img)
    vessel_layer = np.zeros_like(img)
    lung_geom = []
    vx, vy, vr, va = [], [], [], []
    for lung, ves in zip(p.lungs, p.vessels, strict=True):
        lx, ly = lung["ax"] * grow, lung["ay"] * (0.8 + 0.2 * grow)
        lcy = lung["cy"] + 0.1 * ay * (z - 0.5)
        hc = lung["hc"] + lung["dhc"] * (z - 0.5)
        hs = lung["hs"] + lung["dhs"] * (z - 0.5)
        (mask,) = _shape_masks(u, lung["cx"], lcy, lx, ly, hc, hs, 1.2)
        np.maximum(lung_mask, mask, out=lung_mask)
        lung_geom.append((lung["cx"], lcy, lx, ly))
        # vessels: move with z and fade in and out of the slice
        env = np.exp(-(((z - ves[:, 4]) / ves[:, 5]) ** 2))
        px = ves[:, 0] + ves[:, 2] * (z - 0.5)
        py = ves[:, 1] + ves[:, 3] * (z - 0.5)
        keep = (env > 0.05) & (px * px + py * py < 1.0)
        vx.append(_to_px(lung["cx"] + px[keep] * lx, size))
        vy.append(_to_px(lcy + py[keep] * ly, size))
        vr.append(np.maximum(ves[keep, 6] * half * (0.6 + 0.4 * env[keep]), 0.6))
        va.append(ves[keep, 7] * env[keep])
    _add_blobs(
        vessel_layer, np.concatenate(vx), np.concatenate(vy), np.concatenate(vr),
        np.concatenate(va), gaussian=True,
    )  # fmt: skip
    nodules = []
    for side, lpx, lpy, zc, zw, rad, amp in p.lesions:
        t = (z - zc) / zw
        if abs(t) < 1.0:
            lcx, lcy, lx, ly = lung_geom[side]
            nodules.append(
                (
                    _to_px(lcx + lpx * lx, size),
                    _to_px(lcy + lpy * ly, size),
                    max(rad * half * math.sqrt(1.0 - t * t), 0.7),
                    amp,
                )
            )
    if nodules:
        _add_blobs(vessel_layer, *np.array(nodules).T, gaussian=False)
    lung_val = p.lung_texture.field(u, u, z)
    lung_val *= p.lung_tex_amp
    lung_val += vessel_layer
    lung_val += p.lung_int

    # heart (lower slices) pushes into the left lung
    hcx, hcy, hax, hay, hdelta, onset = p.heart
    hsize = min(max((z - onset) / 0.3, 0.0), 1.0)
    if hsize > 0.05:
        zeros = np.zeros(1)
        (heart,) = _shape_masks(u, hcx, hcy, hax * hsize, hay * hsize, zeros, zeros, 1.5)
        lung_mask *= 1.0 - heart
        img += heart * hdelta
    img += lung_mask * (lung_val - img)

    # bones and aorta, added on soft tissue
    scx, scy, srad, sint = p.spine
    sx, sy = _to_px(scx, size), _to_px(scy, size)
    spx = srad * half
    bone = sint - p.tissue
    adx, ady, arad, aint = p.aorta
    ang = p.ribs[:, 0] + p.ribs[:, 1] * (z - 0.5)
    rr = 0.9 * bscale * (1 - p.fat_thick)
    blobs = np.array(
        [
            (sx, sy, spx, bone),  # vertebral body
            (sx, sy, 0.65 * spx, -0.25 * bone),  # its softer core
            (sx, sy + 1.45 * spx, 0.75 * spx, 0.7 * bone),  # vertebral arch
            (sx, sy + 1.45 * spx, 0.42 * spx, -0.7 * bone - 15.0),  # spinal canal
            (sx, sy + 2.35 * spx, 0.35 * spx, 0.8 * bone),  # spinous process
            (_to_px(scx + adx, size), _to_px(scy + ady, size), arad * half, aint - p.tissue),
        ]
    )
    ribs = np.column_stack(
        [
            _to_px(cx + rr * ax * np.cos(ang), size),
            _to_px(cy + rr * ay * np.sin(ang), size),
            np.maximum(p.ribs[:, 2] * half, 0.7),
            p.ribs[:, 3],
        ]
    )
    _add_blobs(img, *np.concatenate([blobs, ribs]).T, gaussian=False)

    if p.table is not None:
        tv, thick, curv, tint = p.table
        centre = tv + curv * u[None, :] ** 2  # (1, size): a slightly curved band
        lo = max(int((min(tv, tv + curv) - thick + 1.0) * half) - 2, 0)
        hi = min(int((max(tv, tv + curv) + thick + 1.0) * half) + 3, size)
        if lo < hi:
            band = np.clip((thick - np.abs(u[lo:hi, None] - centre)) * half + 0.5, 0.0, 1.0)
            img[lo:hi] += band * (1.0 - body[lo:hi]) * (tint - img[lo:hi])

    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(p.noise)
    return ndimage.gaussian_filter(img, p.blur, truncate=3.0)


def _draw_patients(
    rng: np.random.Generator, counts: np.ndarray, u: np.ndarray
) -> list[list[np.ndarray]]:
    """Render ``counts[i]`` neighbouring slices of each of ``len(counts)`` fresh patients."""
    out = []
    for k in counts:
        p = _sample_patient(rng)
        k = int(k)
        dz = rng.uniform(0.03, 0.06)
        if k > 1:
            dz = min(dz, 0.75 / (k - 1))
        z0 = rng.uniform(0.1, max(0.9 - (k - 1) * dz, 0.1))
        zs = np.clip(z0 + dz * np.arange(k) + rng.normal(0.0, 0.15 * dz, k), 0.0, 1.0)
        out.append([_render_slice(p, float(z), u, rng) for z in zs])
    return out


def _slice_counts(rng: np.random.Generator, n: int, n_patients: int) -> np.ndarray:
    """Split ``n`` slices over ``n_patients`` patients as evenly as possible, >= 1 each."""
    counts = np.full(n_patients, n // n_patients, dtype=np.int64)
    counts[: n % n_patients] += 1
    return rng.permutation(counts)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


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


# --------------------------------------------------------------------------------------------
# Writing the ImageCLEF folder layout
# --------------------------------------------------------------------------------------------


def _write_pngs(folder: Path, images: np.ndarray, ids: list[str]) -> None:
    from PIL import Image

    folder.mkdir()
    for img, name in zip(images, ids, strict=True):
        Image.fromarray(np.ascontiguousarray(img)).save(folder / f"{name}.png")


def write_imageclef_layout(
    task: Mapping[str, Any], path: str | os.PathLike, *, split: str = "train"
) -> Path:
    """Write a task as the ImageCLEFmed GANs folder layout of 8-bit grayscale PNG files.

    For ``split="train"``::

        <path>/generated/<generated id>.png
        <path>/real_used/<real id>.png
        <path>/real_not_used/<real id>.png

    For ``split="test"`` the labels are withheld::

        <path>/generated/<generated id>.png
        <path>/real_unknown/<real id>.png

    Parameters
    ----------
    task : Bunch or mapping
        A task as returned by :func:`make_synthetic_leak`: needs ``real_images``, ``ids``,
        ``generated_images``, ``generated_ids`` and, for the train split, ``y``.
    path : str or path-like
        Folder to write into. It is created if missing; an existing folder must be empty.
    split : {"train", "test"}, default="train"
        Which layout to write.

    Returns
    -------
    path : pathlib.Path
        The folder written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and is not an empty folder.
    ValueError
        If ``split`` is unknown or ``task`` lacks a field or holds inconsistent arrays.

    Examples
    --------
    >>> from skfingerprint import load_imageclef_gans
    >>> from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout
    >>> task = make_synthetic_leak(10, 10, 30, image_size=32, random_state=0)
    >>> folder = write_imageclef_layout(task, "train")  # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +SKIP
    ['generated', 'real_not_used', 'real_used']
    >>> load_imageclef_gans(folder).X_pairs  # doctest: +SKIP
    PairedImages(n_rows=20, library=30 generated images)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    need = ["real_images", "ids", "generated_images", "generated_ids"]
    if split == "train":
        need.append("y")
    missing = [key for key in need if key not in task]
    if missing:
        raise ValueError(f"task lacks the field(s) {missing} needed for split={split!r}.")

    real = np.asarray(task["real_images"])
    generated = np.asarray(task["generated_images"])
    ids, gen_ids = [str(i) for i in task["ids"]], [str(i) for i in task["generated_ids"]]
    for name, arr, names in (("real_images", real, ids), ("generated_images", generated, gen_ids)):
        if arr.dtype != np.uint8 or arr.ndim != 3:
            raise ValueError(
                f"task['{name}'] must be a uint8 array of shape (n, H, W), "
                f"got dtype {arr.dtype} and shape {arr.shape}."
            )
        if len(names) != len(arr):
            raise ValueError(f"task['{name}'] has {len(arr)} images but {len(names)} ids.")
        if len(set(names)) != len(names):
            raise ValueError(f"the ids of task['{name}'] are not unique.")
    if split == "train":
        y = np.asarray(task["y"])
        if y.shape != (len(real),) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"task['y'] must hold one 0/1 label per real image, got {y!r}.")

    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a folder.")
        if any(path.iterdir()):
            raise FileExistsError(f"{path} is not empty; refusing to write into it.")
    path.mkdir(parents=True, exist_ok=True)

    _write_pngs(path / "generated", generated, gen_ids)
    if split == "train":
        used = y == 1
        names = np.asarray(ids, dtype=object)
        _write_pngs(path / "real_used", real[used], list(names[used]))
        _write_pngs(path / "real_not_used", real[~used], list(names[~used]))
    else:
        _write_pngs(path / "real_unknown", real, ids)
    return path
