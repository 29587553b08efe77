"""Round 11: on images larger than 32 px, at what size should the pixel relation scores be taken?

The default computes its relation scores on 32 px pixels whatever the images' size
(``pixel_size="auto"`` is 32), a choice made on the suite, whose images are 32 px: it could not
be judged there (``probe_head.py``'s 64 px row upsampled 32 px images). Users' images are
larger (ImageCLEF's CT slices are 256 px), and the baseline they compare against,
``PixelNearestNeighbor``, works at 64 px by default. On the two 64 px tasks
(``realgen.task.LARGE_TASKS``: the CT phantom under the short DCGAN, kanji under the long one,
both drawn and rendered at 64 px and never looked at before this probe was written), with the
evaluation of ``probe_density.py`` (12 scores of the best candidate, each standardised within
its split, the sign-constrained logistic regression with ``C=0.1``, the ``prior`` cut).
Hypotheses, fixed before any run:

- ``12 scores at 64 px``: the images' own size carries detail that 32 px averages away, and a
  generator that memorised an image reproduces that detail; better than 32 px.
- ``12 scores at 16 px``: the other direction (coarser, less noise), for the trend.
- ``32 + 64 px``: both (24 scores), in case the sizes carry different evidence.
- ``PixelNN, prior cut`` at 64 px (its default) and at 32 px: the baseline as
  ``bench_quality.py`` runs it, for where the default stands; not candidates.

A size passes by the usual rule (the all-tasks interval of its difference to the 32 px default
above 0, no task's interval below 0). Two tasks of three seeds each are a development run:
a size that passes is to be confirmed on seeds drawn afterwards before ``pixel_size="auto"``
changes.

    .venv/bin/python benchmarks/probe_pixel_size.py [--cache-dir DIR] [--seeds N [N ...]]

writes ``benchmarks/RESULTS_pixel_size.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _test_labels  # noqa: E402
from probe_detector import _z, base_scores, main  # noqa: E402
from probe_head import LEGEND, _prior_cut, unit_pixels  # noqa: E402
from probe_manifold import _positive_logreg  # noqa: E402
from realgen.task import LARGE_TASKS  # noqa: E402

from skfingerprint import load_imageclef_gans  # noqa: E402
from skfingerprint.baselines import PixelNearestNeighbor  # noqa: E402

VARIANTS = {
    "12 scores at 32 px (the default)": (32,),
    "12 scores at 64 px": (64,),
    "12 scores at 16 px": (16,),
    "32 + 64 px": (32, 64),
}
BASELINES = {"PixelNN 64 px, prior cut": 64, "PixelNN 32 px, prior cut": 32}
METHODS = list(VARIANTS) + list(BASELINES)


def run(folder: Path, variants: dict = VARIANTS, baselines: dict = BASELINES) -> dict:
    """Each of ``variants`` (the 12 scores at each of its sizes) and ``baselines`` (PixelNN at
    its size) on one task folder: test labels, scores and prior-cut predictions."""
    train, test = load_imageclef_gans(folder / "train"), load_imageclef_gans(folder / "test")
    out = {"y": _test_labels(folder, test.ids)}
    sizes = sorted({s for v in variants.values() for s in v})
    f_train = {s: base_scores(*unit_pixels(train.X_pairs, s)) for s in sizes}
    f_test = {s: base_scores(*unit_pixels(test.X_pairs, s)) for s in sizes}
    for name, parts in variants.items():
        z_train = _z(np.concatenate([f_train[s] for s in parts], 1))
        z_test = _z(np.concatenate([f_test[s] for s in parts], 1))
        s_train, s_test = _positive_logreg(z_train, train.y, z_test)
        out[name] = _prior_cut(s_train, train.y, s_test)
    for name, size in baselines.items():
        pixel = PixelNearestNeighbor(image_size=size, threshold="prior")
        pixel.fit(train.X_pairs, train.y)
        out[name] = (pixel.score_samples(test.X_pairs), pixel.predict(test.X_pairs))
    return out


if __name__ == "__main__":
    raise SystemExit(
        main(
            run=run,
            methods=METHODS,
            doc=__doc__,
            script="probe_pixel_size.py",
            default_output=BENCH / "RESULTS_pixel_size.md",
            legend=LEGEND,
            tasks=LARGE_TASKS[:2],  # the two the size was chosen on; --tasks for the others
        )
    )
