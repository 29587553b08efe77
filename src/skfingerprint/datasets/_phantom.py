"""The phantom renderer of the synthetic tasks: random patients and their CT-like axial slices.

Smooth random fields, anatomical shapes (body outline, lungs with vessels, spine, ribs, heart),
and the rendering of neighbouring slices of a patient as float images; the leak and task builder
(:func:`~skfingerprint.datasets.make_synthetic_leak`) draws on it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

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
