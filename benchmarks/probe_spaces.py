"""Round two of the detector's hypotheses: other pixel spaces and a per-real local scale.

Round one (``probe_variants.py``, ``RESULTS_variants.md``) found nothing that beats the five
per-real relation scores of 32 px pixels combined by a ``C = 0.1`` logistic regression. Here,
on the same task folders and with the same evaluation (threshold chosen on train, test kappa
and AUC, mean over the 3 seeds), each hypothesis is one row:

- **local scale** (H1): a copy stands out of the *continuum* of a real image's library
  neighbours; an unused image has a smooth tail. Scores: the mean of the 5 best cosines;
  ``top1 - top2``; ``(top1 - mean of ranks 2..51) / std of ranks 2..51`` (a per-real z-score,
  instead of only the split's z-score).
- **residual space** (H2): the library's top principal components carry what every image
  shares (body outline, intensity); memorised detail lives in the rest. The five scores on
  pixels with the top 8 or 32 components of the library projected out, and on a whitened
  64-component PCA (a Mahalanobis-like metric).
- **edges** (H3): the five scores on the Sobel gradient magnitude of the 32 px image
  (generators copy structure more faithfully than intensity).
- **local copies** (H4): 4 x 4 patches of 8 x 8 pixels; per patch position, the best cosine of
  the real patch to the library's patches at that position; the mean over positions
  (a partial copy raises it even when the whole image is not copied).

Each alone, and added to the five 32 px scores (the default), ``C = 0.1``.

    .venv/bin/python benchmarks/probe_spaces.py [--cache-dir DIR]

writes ``benchmarks/RESULTS_spaces.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy.ndimage import sobel

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _test_labels  # noqa: E402
from probe_variants import _z, evaluate, per_real, probe_main  # noqa: E402

from skfingerprint import load_imageclef_gans  # noqa: E402
from skfingerprint.images import pixel_vectors  # noqa: E402
from skfingerprint.pairs import _l2_normalize  # noqa: E402
from skfingerprint.relations import top_k  # noqa: E402


def local_scale(real: np.ndarray, lib: np.ndarray) -> np.ndarray:
    """(n, 3) z-scored: mean of the 5 best cosines, top1 - top2, per-real z of top1 (H1)."""
    mean = lib.mean(0, keepdims=True)
    sims, _ = top_k(_l2_normalize(real - mean), _l2_normalize(lib - mean), 51)
    tail = sims[:, 1:]
    local_z = (sims[:, 0] - tail.mean(1)) / (tail.std(1) + 1e-6)
    return _z(np.c_[sims[:, :5].mean(1), sims[:, 0] - sims[:, 1], local_z])


def residual(real: np.ndarray, lib: np.ndarray, drop: int, whiten: int = 0):
    """Both sets with the library's top ``drop`` principal directions removed, or projected on
    ``whiten`` whitened components (H2)."""
    mean = lib.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(lib - mean, full_matrices=False)
    if whiten:
        w = vt[:whiten].T / s[:whiten]
        return (real - mean) @ w, (lib - mean) @ w
    p = vt[:drop].T
    r, g = real - mean, lib - mean
    return r - (r @ p) @ p.T, g - (g @ p) @ p.T


def edges(v: np.ndarray, size: int = 32) -> np.ndarray:
    """Sobel gradient magnitude of flattened ``size x size`` images (H3)."""
    img = v.reshape(-1, size, size)
    return np.hypot(sobel(img, axis=1), sobel(img, axis=2)).reshape(len(v), -1)


def local_copies(real: np.ndarray, lib: np.ndarray, size: int = 32, patch: int = 8):
    """Mean over patch positions of the best patch cosine to the library, z-scored (H4)."""
    mean = lib.mean(0, keepdims=True)
    r = (real - mean).reshape(-1, size, size)
    g = (lib - mean).reshape(-1, size, size)
    best = []
    for i in range(0, size, patch):
        for j in range(0, size, patch):
            rp = _l2_normalize(r[:, i : i + patch, j : j + patch].reshape(len(r), -1))
            gp = _l2_normalize(g[:, i : i + patch, j : j + patch].reshape(len(g), -1))
            best.append((rp @ gp.T).max(1))
    return _z(np.mean(best, 0)[:, None])


def run(folder: Path) -> dict:
    train, test = load_imageclef_gans(folder / "train"), load_imageclef_gans(folder / "test")
    y = _test_labels(folder, test.ids)
    splits = [
        (pixel_vectors(p.real, 32), pixel_vectors(p.library, 32))
        for p in (train.X_pairs, test.X_pairs)
    ]
    base = [per_real(r, g) for r, g in splits]
    out = {"default: 5 scores 32 px": evaluate(base[0], train.y, base[1], y)}

    def row(name, feats):
        """``feats``: the (train, test) per-real scores of one hypothesis."""
        out[f"{name} alone"] = evaluate(feats[0], train.y, feats[1], y)
        out[f"default + {name}"] = evaluate(
            np.c_[base[0], feats[0]], train.y, np.c_[base[1], feats[1]], y
        )

    ls = [local_scale(r, g) for r, g in splits]
    for c, name in enumerate(("H1 mean of top 5", "H1 top1 - top2", "H1 per-real z of top1")):
        out[f"{name} alone"] = evaluate(ls[0][:, c : c + 1], train.y, ls[1][:, c : c + 1], y)
    row("H1 all three", ls)
    for drop in (8, 32):
        row(f"H2 residual minus {drop} PCs", [per_real(*residual(r, g, drop)) for r, g in splits])
    row("H2 whitened 64 PCs", [per_real(*residual(r, g, 0, 64)) for r, g in splits])
    row("H3 edges", [per_real(edges(r), edges(g)) for r, g in splits])
    row("H4 local copies", [local_copies(r, g) for r, g in splits])
    return out


def main(argv=None) -> int:
    return probe_main(
        run,
        __doc__,
        "Pixel spaces and local scale",
        "probe_spaces.py",
        BENCH / "RESULTS_spaces.md",
        argv,
        with_sd=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
