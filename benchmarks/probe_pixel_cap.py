"""Round 14: on images larger than 64 px, should the default's pixel size stop at 64?

``pixel_size="auto"`` takes the relation scores at the images' smallest side, at most 64 px
(``images.AUTO_PIXEL_SIZE_CAP``): round 11 (``probe_pixel_size.py``) found 64 px better than
32 px on 64 px images, and nothing larger was ever measured, while users' images are larger
(ImageCLEF's CT slices are 256 px, downsampled to 64 today). On a task drawn at 128 px (the CT
phantom under the short DCGAN, ``ct-phantom-128/dcgan-short`` of ``realgen.task.LARGE_TASKS``;
the DCGAN gains one stage for the size), with the evaluation of ``probe_pixel_size.py`` (12
scores of the best candidate, each standardised within its split, the sign-constrained logistic
regression with ``C=0.1``, the ``prior`` cut). Hypotheses, fixed before any generator of this
task was trained:

- ``12 scores at 128 px``: as 64 px did over 32 px, the images' own size keeps detail a
  generator that memorised an image reproduces; better than 64 px.
- ``12 scores at 32 px``: the other direction, for the trend.
- ``PixelNN, prior cut`` at 64 px (its default) and at 128 px: the baseline as
  ``bench_quality.py`` runs it, for where the default stands; not candidates.

Rule, fixed before the run: development on seeds 0-2; if ``12 scores at 128 px`` passes there
(its difference to 64 px has a 95% interval above 0: one task, so that is the rule's all-tasks
interval), it is confirmed on seeds 3-5 (trained with seeds 0-2, read only after the
development run) by the same rule, and only then does the cap rise to 128. If it fails either,
the cap stays at 64 and this file is the record. One task, one generator: a cap raised on it
would be checked on the next large task drawn.

    .venv/bin/python benchmarks/probe_pixel_cap.py --cache-dir DIR --seeds 0 1 2

writes ``benchmarks/RESULTS_pixel_cap.md``.

Outcome: 128 px passed development on seeds 0-2 (+0.039 [+0.008, +0.072]) and **failed
confirmation** on seeds 3-5 (``RESULTS_pixel_cap_seeds3-5.md``: -0.050 [-0.081, -0.019], 32 px
-0.050 too; the generators of seeds 3-5 were trained after the development run, on another
machine, as the cache of seeds 0-2 had been lost). The cap stays at 64. On those unseen seeds
the default at 64 px beat pixel nearest neighbour by +0.122 [+0.082, +0.161].
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from probe_detector import main  # noqa: E402
from probe_head import LEGEND  # noqa: E402
from probe_pixel_size import run  # noqa: E402

VARIANTS = {
    "12 scores at 64 px (the default's cap)": (64,),
    "12 scores at 128 px": (128,),
    "12 scores at 32 px": (32,),
}
BASELINES = {"PixelNN 64 px, prior cut": 64, "PixelNN 128 px, prior cut": 128}

if __name__ == "__main__":
    raise SystemExit(
        main(
            run=partial(run, variants=VARIANTS, baselines=BASELINES),
            methods=list(VARIANTS) + list(BASELINES),
            doc=__doc__,
            script="probe_pixel_cap.py",
            default_output=BENCH / "RESULTS_pixel_cap.md",
            legend=LEGEND,
            tasks=[("ct-phantom-128", "dcgan-short")],
        )
    )
