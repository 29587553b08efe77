"""Round 22: the reals passed through the generator's average transfer function before matching.

Same evaluation as ``probe_moments.py``; reference = the default since round 18 (the 14 plain
pixel scores and the 12 whitened ones). Why: a generator renders what it learned through its
own transfer function (a DCGAN's upsampling layers blur some frequencies and add others; a
collapsed generator draws its modes smoother than the images it saw), so the pixel cosine
between a real image and a sample compares the real's whole spectrum with the sample's
filtered one, and a near copy is penalised for the frequencies the generator cannot render, as
much as an unused image is. Passing the reals through that transfer function first compares
like with like: per spatial frequency ``f`` of the 2-D Fourier transform of the raw pixels, the
gain ``sqrt(mean_G |F g|^2 (f) / mean_R |F r|^2 (f))`` (the library's mean power over the
reals' of the split), applied to every real image, then centred on the library's mean and
scored as the plain pixels are. The library is left as it is. Population statistics only: the
order of the reals or of the library, and a library duplicated whole, change nothing.

How this was chosen (said before any run of this probe): single-score ROC AUCs on the test
splits of seeds 24-35 (no head), the plain ``top1`` / ``density_q50`` against the same on the
matched reals: CT long 0.676 / 0.684 -> 0.688 / 0.728 (seeds 24-26: 0.696 -> 0.738; 27-35:
0.680 -> 0.725), CT short 0.646 / 0.717 -> 0.646 / 0.721, Fashion long 0.541 / 0.577 -> 0.541
/ 0.576, kanji 0.562 / 0.607 -> 0.563 / 0.609, DDPM 0.524 / 0.526 -> 0.520 / 0.523 (means of
the two runs by 3 and 9 seeds, weighted). A gain clipped at 1 (only attenuating) did not help
(CT long ``density_q50`` 0.667) and is not a variant. So the development seeds chose the
transform: **the confirmation on seeds 42-44, trained this session and scored by no one,
decides.** Variants, fixed before the run:

- ``matched instead of plain``: the 14 plain scores computed on the matched reals (their own
  best candidates); the whitened space as in the default (26 scores).
- ``+ matched space``: the 14 scores of the matched reals beside the default's 26 (40).
- ``matched, both spaces``: the plain and the whitened scores both from the matched reals (the
  whitening fitted on them; 26 scores).

Rule, as every round's: the all-tasks interval of the paired kappa difference above 0 and no
task's interval below 0 on the development seeds 24-35, then again on seeds 42-44; of the
variants that pass both, the library adopts the one with the largest all-tasks gain on seeds
42-44 (the fewer scores on a tie within 0.005).

    .venv/bin/python benchmarks/probe_spectrum.py --seeds 24 25 26 27 28 29 30 31 32 33 34 35

writes ``benchmarks/RESULTS_spectrum.md``; ``--seeds 42 43 44 --output
benchmarks/RESULTS_spectrum_seeds42-44.md`` the confirmation.

Outcome: **all three dropped on the development seeds** (the DDPM's interval below 0 in each),
so no confirmation run; seeds 42-44 stay unscored by this probe. Paired kappa differences to
the default, CT long / CT short / Fashion long / kanji / DDPM, all tasks:

- ``matched instead of plain``: **+0.036 [+0.024, +0.048]**, +0.004, +0.011 [+0.000, +0.023],
  -0.005, **-0.019 [-0.034, -0.003]**; +0.006 [+0.000, +0.011].
- ``+ matched space``: **+0.030**, **+0.010 [+0.004, +0.016]**, +0.006, +0.002, **-0.014
  [-0.024, -0.005]**; +0.007 [+0.003, +0.011].
- ``matched, both spaces``: **+0.061 [+0.045, +0.077]**, +0.006, +0.009, +0.001, **-0.044
  [-0.063, -0.025]**; +0.007 [+0.000, +0.013].

The hypothesis holds where the generator renders its images through a strong transfer function
of its own (the CT phantom under the long DCGAN, which collapsed onto few smooth modes: the
largest gain of any round on that task), and it costs the DDPM, whose samples (25 DDIM steps)
carry a spectrum of their own that the reals should not be bent to. It does nothing for kanji.
Not a general rule, and neither of the two tasks that keep issue 13 open gains.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from probe_covariance import round18_reference, scores_in  # noqa: E402
from probe_detector import base_scores  # noqa: E402
from probe_manifold import _positive_logreg, variants_main  # noqa: E402

from skfingerprint import relations as R  # noqa: E402
from skfingerprint.images import auto_pixel_size, pixel_vectors  # noqa: E402
from skfingerprint.pairs import _l2_normalize  # noqa: E402


def spectrum_matched(real_px: np.ndarray, lib_px: np.ndarray, size: int) -> np.ndarray:
    """``real_px`` (flattened ``size x size`` images) filtered, per spatial frequency, by the
    square root of the library's mean power over the reals' mean power."""
    real_f = np.fft.rfft2(real_px.reshape(-1, size, size).astype(np.float64))
    lib_f = np.fft.rfft2(lib_px.reshape(-1, size, size).astype(np.float64))
    lib_power, real_power = (np.abs(lib_f) ** 2).mean(0), (np.abs(real_f) ** 2).mean(0)
    gain = np.sqrt(lib_power / np.maximum(real_power, 1e-12))
    return np.fft.irfft2(real_f * gain, s=(size, size)).reshape(len(real_px), -1)


def split_scores(pairs) -> dict:
    size = auto_pixel_size(pairs.real.sizes() + pairs.library.sizes())
    real_px, lib_px = pixel_vectors(pairs.real, size), pixel_vectors(pairs.library, size)
    mean = lib_px.mean(0, keepdims=True)
    lib = _l2_normalize(lib_px - mean)
    real = _l2_normalize(real_px - mean)
    matched = _l2_normalize(spectrum_matched(real_px, lib_px, size) - mean).astype(np.float32)
    _, ids = R.top_k(real, lib, 1)
    _, matched_ids = R.top_k(matched, lib, 1)
    return {
        **round18_reference(real, lib, ids),
        "matched": base_scores(matched, lib)[:, :14],
        "matched, whitened": scores_in(R.within_mode_whiten(matched, lib), matched_ids)[:, :12],
    }


VARIANTS = {
    "default (round 18)": (["plain", "whitened"], _positive_logreg),
    "matched instead of plain": (["matched", "whitened"], _positive_logreg),
    "+ matched space": (["plain", "whitened", "matched"], _positive_logreg),
    "matched, both spaces": (["matched", "matched, whitened"], _positive_logreg),
}


if __name__ == "__main__":
    raise SystemExit(variants_main(__file__, __doc__, split_scores, VARIANTS))
