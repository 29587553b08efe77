"""Round 26: does a ViT relation space that carries no membership signal cost the default?

``make_fingerprint_pipeline()`` adds the ViT's relation scores (``relation_spaces="auto"``
gives ``("pixels", "pixels_whitened", "vit")``) whenever its ViT is trained: timm's pretrained
weights (the factory's default, what a user with a network gets), a ``checkpoint``, or
``finetune``. Whether a pretrained ViT's scores pay cannot be measured offline; what can be
measured is what the head does when a space is added that is useless or weak, which is the
risk a pretrained default runs on images unlike ImageNet's. The only measurement so far
(``RESULTS_variants.md``, round 1) predates the sign-constrained head, the prior cut and
every score added since: the untrained ViT's scores cost 0.02-0.13 kappa there. Hypotheses,
fixed before the run:

- ``+ untrained ViT space``: the default's spaces plus ``"vit"`` from the offline tiny ViT
  (``TINY_VIT``, random weights: its similarities are noise, DESIGN.md section 7). Expected
  with today's head (weights >= 0, ``C=0.1``): at most a small loss (all-tasks difference
  above -0.01).
- ``+ fine-tuned ViT space``: the same tiny ViT contrastively fine-tuned on the split's own
  images (``finetune="all"``, the only trained ViT available offline), whose ``"auto"``
  spaces include ``"vit"``: a trained but membership-blind representation.
- reference: ``default`` (pixels and whitened pixels, the offline default).

Rule, as every round's: a variant is harmless when its all-tasks difference to the default
has an interval reaching above -0.01 and no task's interval lies below -0.02; it pays when the
all-tasks interval lies above 0 and no task's below 0.

    .venv/bin/python benchmarks/probe_vit_space.py --cache-dir /work/cache/realgen \\
        --seeds 45 46 47 48 49 50

Outcome (seeds 45-50, the rows then named ``+ untrained ViT space`` and ``+ fine-tuned ViT
space``, both with the learned gate, the factory's fusion then): **neither harmless: -0.123
[-0.137, -0.110] and -0.079 [-0.091, -0.067] kappa over all tasks, every task's interval below
0** (CT short -0.242 and -0.143). The gate (``fusion="gated"``) is trained in ``fit`` on the
membership labels, and the linear head is then fitted on the same labels; the gate weighs each
image's blocks by that image's own tokens, so it can move the *training* used reals towards
their nearest sample, and the ViT's relation scores then look informative on train and are not
on test. Diagnosis (``/tmp`` script with more rows, seeds 45-47): the same untrained ViT space
with equal weights (``fusion="mean"``) -0.017 [-0.027, -0.008] (untrained, gated: -0.121
[-0.140, -0.101] on those seeds), with the gate trained self-supervised (``labels="ignore"``)
-0.017 [-0.028, -0.006], the fine-tuned ViT with equal weights -0.012 [-0.024, -0.002]. So
``make_fingerprint_pipeline(fusion="auto")`` fuses with equal weights when it scores relations
(the gate stays the paper's with the paper's features), and this probe's rows became the
confirmation below, on seeds the diagnosis had not seen, rule fixed before it ran: the
factory's fusion beats the gate by an all-tasks interval above 0 with no task below 0, with
either ViT space added.

    .venv/bin/python benchmarks/probe_vit_space.py --cache-dir /work/cache/realgen \\
        --seeds 48 49 50 51 52 53 --output benchmarks/RESULTS_vit_space_seeds48-53.md

writes ``benchmarks/RESULTS_vit_space_seeds48-53.md``; the first command (``RESULTS_vit_space.md``)
now runs the same five rows. **Confirmed** (paired with the gate's rows, hand note there):
equal weights beat the learned gate by +0.126 [+0.113, +0.139] (untrained ViT) and +0.076
[+0.064, +0.088] (fine-tuned), every task above 0. Against the pixel spaces alone they still
cost -0.014 [-0.022, -0.006] and -0.017 [-0.026, -0.009]: not harmless by the rule above, the
price of 14 columns that carry nothing the pixels lack.
"""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _test_labels  # noqa: E402
from probe_detector import main  # noqa: E402

from skfingerprint import load_imageclef_gans  # noqa: E402
from skfingerprint.pipeline import TINY_VIT, make_fingerprint_pipeline  # noqa: E402

LEGEND = "Every row is cut as the pipeline cuts (its linear head's threshold)."
VIT = ("pixels", "pixels_whitened", "vit")
PIPELINES = {
    "default": {},
    "+ untrained ViT space, learned gate": {"relation_spaces": VIT, "fusion": "gated"},
    "+ untrained ViT space, factory's fusion": {"relation_spaces": VIT},
    "+ fine-tuned ViT space, learned gate": {"finetune": "all", "fusion": "gated"},
    "+ fine-tuned ViT space, factory's fusion": {"finetune": "all"},
}
METHODS = list(PIPELINES)


def run(folder: Path) -> dict:
    train = load_imageclef_gans(folder / "train")
    test = load_imageclef_gans(folder / "test")
    seed = int(folder.name.removeprefix("seed").split("-")[0])
    out = {"y": _test_labels(folder, test.ids)}
    for name, params in PIPELINES.items():
        pipe = make_fingerprint_pipeline(**TINY_VIT, k=100, random_state=seed, **params)
        pipe.fit(train.X_pairs, train.y)
        out[name] = (pipe.predict_proba(test.X_pairs)[:, 1], pipe.predict(test.X_pairs))
    return out


if __name__ == "__main__":
    raise SystemExit(
        main(
            run=run,
            methods=METHODS,
            doc=__doc__,
            script="probe_vit_space.py",
            default_output=BENCH / "RESULTS_vit_space.md",
            legend=LEGEND,
        )
    )
