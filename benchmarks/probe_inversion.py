"""Round 23 (a diagnostic): is kanji's membership signal in the generator at all?

Twenty-two rounds of scores computed from the generated library found nothing that brings
kanji under the long DCGAN to the issue's +0.10 over the best baseline, a head fitted on the
test split's own labels does not reach it either (``RESULTS_ceiling.md``), and eight times the
library adds nothing there (``RESULTS_library_size.md``). All of that reads the generator
through a finite library. This probe reads the generator itself, which no ImageCLEF
participant has: **the white-box attack of GAN-Leaks** (Chen et al., CCS 2020), each real
image reconstructed by the generator, ``min_z ||G(z) - r||^2``, found by gradient descent on
the latent from the latents of the real's nearest library samples (the suite's libraries are
the generator's samples of known latents, regenerated here from the task's seed, and checked to
reproduce the library's images). A generator trained on ``r`` should reconstruct it better than
an image it never saw: as many samples as one likes, and between them.

If the reconstruction error separates kanji's used reals no better than the library's scores
do, the library is not what limits the detector: the generator itself does not carry more, and
the issue's target is out of reach of any method that sees only its samples. If it separates
them much better, the signal is there and a black-box score could still find more of it.

Scores per real image, in the [0, 1] pixels the default reads (32 px here), standardised
within the split like every score of the probes:

- ``inversion``: minus the best reconstruction's mean squared error;
- ``gain``: the nearest library sample's squared error minus the reconstruction's (how much
  the generator improves on its samples for this image);
- ``inversion, cosine``: the reconstruction's cosine to the real in the default's space
  (centred on the library's mean image).

Variants: the default since round 18 (its 26 scores, the reference), the inversion scores
alone (a sign-constrained head on the three) and added to the default; and the single scores
(no head) for their AUC. Same evaluation as ``probe_moments.py``.

The DDPM has no latent to invert (its sampler is a chain of 25 noisy steps), so this probe runs
on the suite's DCGAN tasks only.

How the inversion was set (said before the run): on seed 45's test split of kanji and of the CT
phantom under the long DCGAN, the error alone, no head. 20, 50, 200 and 800 Adam steps and a
latent prior of 0.01 or 0.1 all left kanji's AUC at 0.555-0.573 (its nearest library sample's
error: 0.566); more steps reconstruct unused images too (kanji's mean squared error 0.121 at
the nearest sample, 0.029 after 200 steps, 0.023 after 800, where the AUC fell to 0.555). On
the CT phantom 200 steps without prior gave 0.640 against the nearest sample's 0.557 (a prior
of 0.1: 0.565). So 200 steps, 4 starts, step 0.05, no prior: the form that found most where
there was something to find. Seeds 45-47 were trained for this probe and scored by nothing
before it.

    .venv/bin/python benchmarks/probe_inversion.py --seeds 45 46 47 --cache-dir DIR

writes ``benchmarks/RESULTS_inversion.md`` (~19 min on 2 cores, the generators cached; each
split's 800 test reals x 4 starts x 200 steps take ~60 s).

Outcome (seeds 45-47; CT long / CT short / Fashion long / kanji, all four tasks): added to the
default, the inversion scores gain **+0.070 [+0.046, +0.095]**, +0.022 [-0.001, +0.045],
+0.023 [-0.000, +0.046], **kanji +0.007 [-0.015, +0.028]**; +0.030 [+0.018, +0.041] (AUC
0.722 -> 0.754, 0.746 -> 0.766, 0.668 -> 0.671, 0.613 -> 0.616). Alone, the reconstruction
error ranks the reals better than the nearest library sample's error on every task (AUC 0.671
/ 0.639 / 0.546 / 0.575 against 0.615 / 0.594 / 0.534 / 0.560) and worse than the default's
scores (kanji 0.575 against 0.613). The generator read in full carries more than its library
on the CT phantom, and on kanji nothing the library's scores do not already have: what limits
kanji is not the finite library but how little this generator keeps of its training images
(in pixels, as measured here). Not a method for the library: no ImageCLEF participant has the
generator, and the suite's latents are known only because the benchmark drew them.

Not tried: GAN-Leaks' *calibrated* attack, which subtracts each image's reconstruction error
under a reference generator trained on other images of the same source (how hard the image is
to draw at all). The task's only images known to be unused are the 100 labelled train reals;
a reference generator on the other test reals would be trained partly on the answer key.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _test_labels  # noqa: E402
from probe_covariance import round18_reference  # noqa: E402
from probe_detector import main  # noqa: E402
from probe_head import LEGEND  # noqa: E402
from probe_manifold import _positive_logreg, fit_variants  # noqa: E402
from realgen import dcgan  # noqa: E402
from realgen import task as realgen_task  # noqa: E402

from skfingerprint import load_imageclef_gans  # noqa: E402
from skfingerprint import relations as R  # noqa: E402
from skfingerprint.images import pixel_vectors  # noqa: E402
from skfingerprint.pairs import _l2_normalize  # noqa: E402

#: The suite's tasks whose generator has a latent to invert.
DCGAN_TASKS = tuple(t for t in realgen_task.TASKS if t[1].startswith("dcgan"))
SIZE = 32
#: Starts per real (the latents of its nearest library samples), Adam steps and step size.
STARTS = 4
STEPS = 200
LR = 0.05
#: Weight of the latent's squared norm (per latent dimension) in the loss: keeps the latent
#: where the generator was trained (GAN-Leaks' prior), so that it cannot draw just anything.
PRIOR = 0.0


def library_latents(generator, n: int, seed: int) -> torch.Tensor:
    """The latents ``realgen.dcgan.sample`` drew for a library of ``n`` images from ``seed``
    (with its default chunks, as ``build_task`` calls it)."""
    return dcgan.sample_latents(generator.nz, n, seed=seed)


def as_pixels(generated: torch.Tensor) -> torch.Tensor:
    """The generator's ``[-1, 1]`` images as flattened ``[0, 1]`` pixels, as read back."""
    return generated.add(1.0).div(2.0).flatten(1)


def squared_errors(real: np.ndarray, lib: np.ndarray) -> np.ndarray:
    """``(n_real, n_lib)`` mean squared pixel errors."""
    d2 = (real**2).sum(1)[:, None] - 2 * real @ lib.T + (lib**2).sum(1)[None]
    return np.maximum(d2, 0) / real.shape[1]


def invert(generator, real: np.ndarray, errors: np.ndarray, lib_z: torch.Tensor) -> np.ndarray:
    """Each real image's best reconstruction by ``generator``, ``(n, SIZE**2)`` in [0, 1]:
    Adam on the latent from the latents of its :data:`STARTS` nearest library images
    (``errors``, :func:`squared_errors`), the best start kept."""
    starts = np.argsort(errors, axis=1)[:, :STARTS]  # (n, STARTS)
    target = torch.from_numpy(real).repeat_interleave(STARTS, 0)
    z = lib_z[torch.from_numpy(starts.ravel())].clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=LR)
    for p in generator.parameters():  # only the latent is optimised
        p.requires_grad_(False)
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        loss = ((as_pixels(generator(z)) - target) ** 2).mean(1) + PRIOR * (z**2).mean(1)
        loss.sum().backward()
        opt.step()
    with torch.no_grad():
        recon = as_pixels(generator(z))
        err = ((recon - target) ** 2).mean(1).view(len(real), STARTS)
        best = err.argmin(1)
        return recon.view(len(real), STARTS, -1)[torch.arange(len(real)), best].numpy()


def inversion_scores(pairs, generator, latents: torch.Tensor) -> dict:
    real_px, lib_px = pixel_vectors(pairs.real, SIZE), pixel_vectors(pairs.library, SIZE)
    with torch.no_grad():
        regenerated = as_pixels(generator(latents)).numpy()
    # the regenerated library must be the library (uint8 rounding apart), or the latents are
    # not the library's and the starts would be wrong
    worst = np.abs(regenerated - lib_px).max()
    if worst > 1.5 / 255:
        raise RuntimeError(f"the regenerated library differs from the files by {worst:.3f}")
    errors = squared_errors(real_px, lib_px)
    recon = invert(generator, real_px, errors, latents)
    err = ((recon - real_px) ** 2).mean(1)
    nearest = errors.min(1)
    mean = lib_px.mean(0, keepdims=True)
    real, lib = _l2_normalize(real_px - mean), _l2_normalize(lib_px - mean)
    cosine = (real * _l2_normalize(recon - mean)).sum(1)
    _, ids = R.top_k(real, lib, 1)
    return {
        **round18_reference(real, lib, ids),
        "inversion": np.c_[-err, nearest - err, cosine],
        "err": -err[:, None],
        "gain": (nearest - err)[:, None],
        "cosine": cosine[:, None],
        "library": -nearest[:, None],
    }


VARIANTS = {
    "default (round 18)": (["plain", "whitened"], _positive_logreg),
    "inversion scores alone": (["inversion"], _positive_logreg),
    "+ inversion": (["plain", "whitened", "inversion"], _positive_logreg),
    "inversion error alone (no head)": (["err"], None),
    "gain over the library alone (no head)": (["gain"], None),
    "reconstruction cosine alone (no head)": (["cosine"], None),
    "nearest library sample's error (no head)": (["library"], None),
}


def run(folder: Path) -> dict:
    """``probe_manifold.run_variants`` with the task's generator: test labels and each
    variant's test scores and prior-cut predictions (:func:`probe_manifold.fit_variants`)."""
    generator, _, seed = realgen_task.task_generator(folder)
    start = time.perf_counter()
    f = {}
    for i, name in enumerate(("train", "test")):
        data = load_imageclef_gans(folder / name)
        latents = library_latents(generator, len(data.X_pairs.library), 10_000 + 2 * seed + i)
        f[name] = (data, inversion_scores(data.X_pairs, generator, latents))
    print(f"  {folder.parent.name} {folder.name}: {time.perf_counter() - start:.0f} s", flush=True)
    (train, f_train), (test, f_test) = f["train"], f["test"]
    return {"y": _test_labels(folder, test.ids), **fit_variants(train.y, f_train, f_test, VARIANTS)}


if __name__ == "__main__":
    raise SystemExit(
        main(
            run=run,
            methods=list(VARIANTS),
            doc=__doc__,
            script=Path(__file__).name,
            default_output=BENCH / "RESULTS_inversion.md",
            legend=LEGEND,
            tasks=DCGAN_TASKS,
        )
    )
