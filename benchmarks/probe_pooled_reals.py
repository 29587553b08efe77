"""Round 25: the relation scores computed over the real images of both splits at once.

Round 24 (``probe_pooled.py``) judged both splits against the union of the two libraries of
one generator and kept it. The relation scores of a split are still computed among that
split's reals only: which real is each generated image's nearest (``attribution``, ``owner``),
how a real's best match compares with its nearest other reals (``calib``, ``margin``, the
density ratios, the hull and span against the other reals). The generator was trained on used
images of *both* splits (ImageCLEFmed GANs 2025: one model made both libraries), so with only
the training split's 200 reals present, the copies of the test split's used images are owned
by whichever training real happens to be nearest, and the training scores the head learns
from carry that noise. Both splits' reals are given to the user at once (unlabelled on the
test side), so a user may compute the scores over all of them. Hypothesis, fixed before the
run:

- ``pooled libraries and reals``: the default pipeline fitted on the training split against
  the pooled library (as round 24), then the relation scores of every real image of both
  splits computed in one pass (``pipe[:-1].transform`` of all reals against the pooled
  library; its statistics are those of all the reals), the linear head refitted on the
  training rows' scores and applied to the test rows'. Why: every generated image's owner
  among all the reals it may copy, and the calibration against 1,000 reals instead of 200 or
  800 (the density ratios' ``k`` grows with the set, so their scale does not move).
- reference: ``pooled libraries`` (round 24's kept option); ``default`` for context.

Rule, as every round's: kept when the all-tasks interval of the difference to the reference is
above 0 and no task's interval below 0, on seeds 45-50, then again on seeds 51-53.

    .venv/bin/python benchmarks/probe_pooled_reals.py --cache-dir /work/cache/realgen \\
        --seeds 45 46 47 48 49 50

writes ``benchmarks/RESULTS_pooled_reals.md``.

Outcome: **kept**, as part of ``pool_with``: seeds 45-50 +0.014 [+0.005, +0.024] over all
tasks (CT short +0.033, the DDPM +0.032, the other three -0.005 to +0.008, none below 0);
seeds 51-53, trained this session, +0.030 [+0.016, +0.043] (every task +0.017 to +0.034,
kanji +0.034 [+0.005, +0.066]). The library form (``PairedImages.reference``, filled by
``load_imageclef_gans(..., pool_with=...)`` with the pooled folders' reals) gives the same
test predictions as this probe's hand-built route (P(used) within 2e-6, checked on kanji seed
51 and the DDPM seed 52).
"""

from __future__ import annotations

import sys
from pathlib import Path

from sklearn.base import clone

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _test_labels  # noqa: E402
from probe_detector import main  # noqa: E402

from skfingerprint import PairedImages, load_imageclef_gans, make_pairs  # noqa: E402
from skfingerprint.images import ImageSet  # noqa: E402
from skfingerprint.pipeline import TINY_VIT, make_fingerprint_pipeline  # noqa: E402

METHODS = ["pooled libraries", "pooled libraries and reals", "default"]
LEGEND = "Every row is cut as the pipeline cuts (its linear head's threshold)."


def run(folder: Path) -> dict:
    train = load_imageclef_gans(folder / "train", pool_with=folder / "test")
    test = load_imageclef_gans(folder / "test", pool_with=folder / "train")
    seed = int(folder.name.removeprefix("seed").split("-")[0])
    out = {"y": _test_labels(folder, test.ids)}

    def pipe():
        return make_fingerprint_pipeline(**TINY_VIT, k=100, random_state=seed)

    own_train = load_imageclef_gans(folder / "train")
    own_test = load_imageclef_gans(folder / "test")
    default = pipe().fit(own_train.X_pairs, own_train.y)
    out["default"] = (
        default.predict_proba(own_test.X_pairs)[:, 1],
        default.predict(own_test.X_pairs),
    )
    # round 24's form: the pooled library alone (pool_with now also adds the reals as
    # X_pairs.reference, the library form of this round's hypothesis)
    x_train, x_test = (PairedImages(d.X_pairs.real, d.X_pairs.library) for d in (train, test))
    pooled = pipe().fit(x_train, train.y)
    out["pooled libraries"] = (pooled.predict_proba(x_test)[:, 1], pooled.predict(x_test))
    reals = ImageSet(paths=[*train.real_paths, *test.real_paths])
    both = pooled[:-1].transform(make_pairs(reals, train.generated_paths))
    n = len(train.ids)
    head = clone(pooled[-1]).fit(both[:n], train.y)
    out["pooled libraries and reals"] = (head.predict_proba(both[n:])[:, 1], head.predict(both[n:]))
    return out


if __name__ == "__main__":
    raise SystemExit(
        main(
            run=run,
            methods=METHODS,
            doc=__doc__,
            script="probe_pooled_reals.py",
            default_output=BENCH / "RESULTS_pooled_reals.md",
            legend=LEGEND,
        )
    )
