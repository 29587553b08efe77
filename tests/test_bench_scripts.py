"""Helpers of the benchmark scripts that the suite does not run (they are slow): the parts that
can silently go stale or wrong are checked here."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from skfingerprint import relations as R

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def test_named_mutations_still_find_each_line_they_mutate():
    # Catches: a source line named by benchmarks/named_mutations.sh changed without the script
    # (it happened once: the script then stopped before its third mutation).
    res = subprocess.run(
        ["bash", "benchmarks/named_mutations.sh", "--check"],
        cwd=ROOT,
        env={**os.environ, "PY": sys.executable},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("found in src/skfingerprint/") == 3


def test_vit_b_flops_count_two_per_multiply_add():
    # Catches: the roofline divided by fvcore's 17.56 GMACs ("GFLOPs") instead of 2 x that, which
    # halves the image rate the matmul peak allows; and a block count ignored.
    from bench_embed import vit_b_gflop

    assert vit_b_gflop() == pytest.approx(2 * 17.56, rel=0.005)
    # the 12 blocks cost the same each; the patch embedding is the rest (~0.7%)
    assert vit_b_gflop(9) == pytest.approx(vit_b_gflop(0) + 0.75 * (vit_b_gflop() - vit_b_gflop(0)))
    assert 0.005 < vit_b_gflop(0) / vit_b_gflop() < 0.01


def test_imageclef_grid_rows_put_each_ratio_beside_its_own_timings():
    # Catches: a row printing another grid's ratio, or one fit and the grid swapped in the
    # timings (the table is written from these dicts, never read back).
    from bench_embed import _imageclef_grid_lines

    text = "\n".join(
        _imageclef_grid_lines(
            {
                "threshold": {"one_fit_s": 267.0, 3: {"s": 455.0, "nets_trained": 4},
                              "grid_over_fit": 455.0 / 267.0},
                True: {"one_fit_s": 220.0, "grid_s": 330.0, "grid_over_fit": 1.5},
                False: {"one_fit_s": 290.0, "grid_s": 348.0, "grid_over_fit": 1.2},
            }
        )
    )  # fmt: skip
    rows = [line for line in text.splitlines() if line.startswith("| ") and " s / " in line]
    assert len(rows) == 3
    assert "4 nets" in rows[0] and "267 s / 455 s" in rows[0] and "**1.70**" in rows[0]
    assert "stop_early=True" in rows[1] and "220 s / 330 s" in rows[1] and "**1.50**" in rows[1]
    assert "stop_early=False" in rows[2] and "290 s / 348 s" in rows[2] and "**1.20**" in rows[2]
    assert _imageclef_grid_lines(None) == []


def test_grid_ratios_pair_each_round_with_its_own_fit():
    # Catches: the ratio of the medians (a fast minute's grid over a slow minute's fit) instead
    # of the median of the rounds' ratios; rounds paired out of order; a list of rounds of
    # another length paired silently.
    from bench_embed import _ratio_cell, paired_ratio

    out = paired_ratio("grid_over_fit", [30.0, 20.0, 25.0], [20.0, 10.0, 20.0])
    assert out["grid_over_fit_rounds"] == [1.5, 2.0, 1.25]
    assert out["grid_over_fit"] == 1.5  # the ratio of the medians: 25 / 20 = 1.25
    assert _ratio_cell(out) == "**1.50** (1.50, 2.00, 1.25)"
    assert _ratio_cell(paired_ratio("grid_over_fit", [3.0], [2.0])) == "**1.50**"
    with pytest.raises(ValueError):
        paired_ratio("ratio", [1.0], [1.0, 2.0])


def _unit_rows(seed: int, n_real: int, n_lib: int, dim: int):
    """Random unit reals and library."""
    rng = np.random.default_rng(seed)
    real, lib = rng.normal(size=(n_real, dim)), rng.normal(size=(n_lib, dim))
    real /= np.linalg.norm(real, axis=1, keepdims=True)
    lib /= np.linalg.norm(lib, axis=1, keepdims=True)
    return real, lib


def _per_real(real, lib):
    """The library's raw per-real scores."""
    return R._space_raw(real, lib, np.zeros((len(real), 1), dtype=np.int64))[0]


def test_probe_scales_hull_at_k_10_is_the_librarys_hull():
    # Catches: the probe's multi-scale hull drifting from the library's definition (no dedupe
    # of the library, the calibration's sign, the reals' neighbours taken from the library),
    # which would make its k = 5 and 20 scores measure something else than the default's.
    from probe_scales import hull_scores

    real, lib = _unit_rows(0, 30, 80, 16)
    lib = np.concatenate([lib, lib[:40]])  # duplicates: the hull is over distinct images
    np.testing.assert_allclose(hull_scores(real, lib, 10), _per_real(real, lib)[:, 7:9], atol=1e-9)


def test_probe_density_at_the_default_fractions_is_the_librarys_density():
    # Catches: the probe's coarser density scales computed by another definition than the
    # default's (k from the wrong set's size, the real's own cosine left in, sign flipped).
    from probe_density import density_scores

    real, lib = _unit_rows(1, 450, 900, 8)
    got = density_scores(real, lib, fractions=(1 / 200, 1 / 100, 1 / 50))
    np.testing.assert_allclose(got, _per_real(real, lib)[:, 4:7], atol=1e-6)


def test_probes_run_the_named_tasks_instead_of_their_own(tmp_path):
    # Catches: --tasks parsed but ignored (the probe's own tasks run, and a check on another
    # generator silently repeats the old ones), or an unknown name reaching the run.
    import probe_detector

    seen = []

    class Reached(Exception):
        """Raised by the fake run: reaching a task is all this test needs."""

    def fake_run(folder):
        seen.append(folder.parent.name)
        raise Reached

    (tmp_path / "tasks" / "ct-phantom-64-dcgan-long" / "seed0").mkdir(parents=True)
    (tmp_path / "tasks" / "kanji-dcgan-long" / "seed0").mkdir(parents=True)
    argv = ["--cache-dir", str(tmp_path), "--tasks", "ct-phantom-64/dcgan-long"]
    with pytest.raises(Reached):
        probe_detector.main(argv, run=fake_run, methods=["a"], tasks=[("kanji", "dcgan-long")])
    assert seen == ["ct-phantom-64-dcgan-long"]
    with pytest.raises(SystemExit) as exc:
        probe_detector.main(["--tasks", "fashion/dcgan-medium"], run=fake_run, methods=["a"])
    assert exc.value.code == 2 and seen == ["ct-phantom-64-dcgan-long"]


def test_a_variants_probe_is_named_after_its_file_and_runs_its_own_variants(monkeypatch):
    # Catches: the RESULTS file not derived from the script's name (``probe_parts.py`` writing
    # ``RESULTS_probe_parts.md``, or every probe writing one file over another's record), the
    # reference row not first, or the run reading other variants than the probe's.
    import probe_manifold

    got = {}
    monkeypatch.setattr(probe_manifold, "main", lambda argv, **kw: got.update(kw) or 0)

    def split_scores(pairs):
        return {}

    variants = {"reference": (["a"], None), "other": (["a", "b"], None)}
    assert probe_manifold.variants_main("/x/probe_parts.py", "doc", split_scores, variants) == 0
    assert got["script"] == "probe_parts.py"
    assert got["default_output"] == probe_manifold.BENCH / "RESULTS_parts.md"
    assert got["methods"] == ["reference", "other"]
    assert got["run"].func is probe_manifold.run_variants
    assert got["run"].keywords == {"split_scores": split_scores, "variants": variants}


def _varied_generator():
    """A tiny DCGAN generator whose images differ visibly from latent to latent (at the
    DCGAN's own initialisation they are all ~0.5 grey)."""
    import torch
    from realgen.dcgan import Generator

    torch.manual_seed(0)
    G = Generator(nz=8, width=4, image_size=32)
    with torch.no_grad():
        for module in G.modules():
            if isinstance(module, torch.nn.ConvTranspose2d):
                module.weight.normal_(0.0, 0.5)
    return G.eval()


def test_probe_inversion_regenerates_the_librarys_latents():
    # Catches: the latents drawn from another seed or from torch's global generator, which
    # would start every inversion from the wrong sample (300 images: two of the sampler's
    # chunks of 256).
    import torch
    from probe_inversion import as_pixels, library_latents
    from realgen.dcgan import sample

    G = _varied_generator()
    files = sample(G, 300, seed=7).reshape(300, -1) / 255.0
    with torch.no_grad():
        regenerated = as_pixels(G(library_latents(G, 300, 7))).numpy()
    assert np.abs(regenerated - files).max() <= 0.5 / 255 + 1e-6
    with torch.no_grad():
        other_seed = as_pixels(G(library_latents(G, 300, 8))).numpy()
    assert np.abs(other_seed - files).max() > 0.1


def test_probe_inversion_reconstructs_better_than_the_nearest_sample(monkeypatch):
    # Catches: the latent stepped up the error instead of down (an image the generator draws
    # between its library samples must come out closer than the nearest of them), and, with no
    # step, the best start chosen by the largest error or the starts taken from the farthest
    # samples (the reconstruction must then be the nearest sample itself).
    import probe_inversion as P
    import torch

    G = _varied_generator()
    lib_z = torch.randn(40, 8)
    z_real = lib_z[:10] + 0.5 * torch.randn(10, 8)
    with torch.no_grad():
        lib, real = P.as_pixels(G(lib_z)).numpy(), P.as_pixels(G(z_real)).numpy()
    errors = P.squared_errors(real, lib)
    recon = P.invert(G, real, errors, lib_z)
    err = ((recon - real) ** 2).mean(1)
    assert np.all(err < errors.min(1))
    assert np.mean(err) < 0.2 * np.mean(errors.min(1))
    monkeypatch.setattr(P, "STEPS", 0)
    unmoved = P.invert(G, real, errors, lib_z)
    assert np.abs(unmoved - lib[errors.argmin(1)]).max() < 1e-6


def test_bench_canet_arms_switch_what_they_name_and_put_it_back():
    # Catches an arm that patches a name the net does not read (both arms would then time the
    # same code and the row would report ~1.0x), and an arm that leaves its patch behind for
    # the rows after it.
    import torch
    from bench_canet import attention_kernel_torch_picks, bernoulli_dropout
    from torch.profiler import ProfilerActivity, profile

    from skfingerprint.canet import CANetModule

    torch.manual_seed(0)
    net = CANetModule(n_features=17, n_candidates=5, hidden=(16, 8), n_heads=2).train()
    X = torch.randn(4, 5, 17)

    def output():  # the pooled candidates (the logit starts at the skip, dropout or not)
        torch.manual_seed(1)
        return net.forward_prepared(*net.prepare(X), return_embedding=True)[1].detach()

    def kernels():
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            net(X)
        return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}

    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    uniform, math = output(), kernels()
    with bernoulli_dropout():
        assert not torch.equal(output(), uniform)
    assert torch.equal(output(), uniform)
    assert flash not in math
    with attention_kernel_torch_picks():
        assert flash in kernels()
    assert kernels() == math


def _look_text(date: str, seeds: str, verdicts: dict) -> str:
    """A ``bench_quality.py`` summary with the given verdict per task: ``(word, diff, lo, hi)``."""
    lines = ["# Membership benchmark suite", f"Date: {date} UTC  ", f"Seeds [{seeds}] (a seed)"]
    for task, (word, diff, lo, hi) in verdicts.items():
        lines.append(
            f"- **{task}**: best baseline PixelNN, prior cut (kappa +0.100 [+0.060, +0.140]); "
            f"the default pipeline {word} by {diff:+.3f} [{lo:+.3f}, {hi:+.3f}]; pooled ..."
        )
        lines.append(f"Verdict: best baseline PixelNN (kappa ...); the default pipeline {word} by")
    return "\n".join(lines)


def test_summarise_looks_reads_each_verdict_and_tallies_only_the_current_defaults_looks():
    # Catches: a tie or a loss counted as a win, the "Verdict:" repeat counted twice, a look
    # that met +0.10 only to two decimals counted, a tie above +0.10 counted as met, the z
    # interval in place of Student's t over few looks, or looks before the default's adoption
    # mixed into its summary.
    from datetime import datetime

    import summarise_looks as S

    ties = "ties with it (interval contains 0)"
    lost = {"kanji / dcgan-long": ("LOSES to it", -0.05, -0.09, -0.01)}
    old = S.parse_look(_look_text("2026-12-01 10:00", "0, 1, 2", lost), "old")
    looks = [old] + [
        S.parse_look(
            _look_text(
                f"2026-12-0{5 + i} 10:00",
                f"{3 * i}, {3 * i + 1}, {3 * i + 2}",
                {
                    "kanji / dcgan-long": ("BEATS it", d, d - 0.04, d + 0.04),
                    "fashion / ddpm": (ties, 0.12, -0.01, 0.25),
                },
            ),
            f"look{i}",
        )
        for i, d in enumerate([0.100, 0.099, 0.050])
    ]
    assert looks[1]["tasks"]["kanji / dcgan-long"] == ("PixelNN, prior cut", "won", 0.1, 0.06, 0.14)
    assert looks[1]["seeds"] == [0, 1, 2] and old["date"] == datetime(2026, 12, 1, 10, 0)
    since = datetime(2026, 12, 4)
    summary = S.summarise([x for x in looks if x["date"] >= since], ["kanji / dcgan-long"])
    kanji = summary["kanji / dcgan-long"]
    assert (kanji["looks"], kanji["won"], kanji["tied"], kanji["lost"], kanji["met"]) == (
        3,
        3,
        0,
        0,
        1,
    )
    diffs = np.array([0.100, 0.099, 0.050])
    half = 4.302653 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 df)
    assert kanji["mean"] == pytest.approx(diffs.mean())
    assert kanji["interval"] == pytest.approx((diffs.mean() - half, diffs.mean() + half), rel=1e-5)
    fashion = S.summarise(looks, ["fashion / ddpm"])["fashion / ddpm"]
    assert (fashion["tied"], fashion["met"]) == (3, 0)
    page = S.report(looks, since=since)
    assert "## Today's default: 3 looks since 2026-12-04 00:00 UTC (9 draws)" in page
    assert "12 draws, 7 task x look pairs: 3 won, 3 tied, 1 lost" in page
    assert "| old | 2026-12-01 10:00 | 0-2 | -0.050! |  |" in page
    with pytest.raises(ValueError, match="notes.md: not a bench_quality.py summary"):
        S.parse_look("# just notes\n", "notes.md")


def test_probe_prevalence_deals_whole_groups_at_the_asked_fraction_and_marks_the_top_share():
    # Catches: a deal that keeps the even mix, draws a row twice, or splits a group (thinning a
    # patient's slices moves the scores taken against the nearest other reals by itself: the
    # probe's first run), and "told the fraction" marking the lowest scores or a rounded-off
    # share.
    from probe_prevalence import N_KEPT, deal, top_fraction

    y = np.r_[np.ones(400, int), np.zeros(400, int)]
    singletons, patients = np.arange(800), np.arange(800) // 4  # one class per patient
    rng = np.random.default_rng(0)
    for fraction, n_used in [(0.25, 133), (0.5, 266), (0.75, 400)]:
        keep = deal(y, singletons, fraction, rng)
        assert len(np.unique(keep)) == len(keep) == N_KEPT
        assert y[keep].sum() == n_used
        keep = deal(y, patients, fraction, rng)
        assert np.all(np.bincount(patients[keep])[np.unique(patients[keep])] == 4)
        assert abs(y[keep].sum() - n_used) < 4 and abs(len(keep) - N_KEPT) < 8
    scores = np.array([0.1, 0.9, 0.5, 0.7, 0.2, 0.3, 0.8, 0.0])
    assert top_fraction(scores, 0.25).tolist() == [0, 1, 0, 0, 0, 0, 1, 0]
    assert top_fraction(scores, 0.5).tolist() == [0, 1, 1, 1, 0, 0, 1, 0]


def test_probe_ceiling_today_fits_noise_on_shuffled_labels_and_leaves_the_default_head_alone():
    # Catches: the noise fit trained on the true labels or scored against them (either reads
    # ~0 here, where one score carries the true labels strongly, instead of what a head gains
    # by fitting noise), the two heads' columns swapped, and head_on_scores refitting the
    # pipeline's own fitted head in place (the "default" row would then be scored by a head
    # fitted on the test labels).
    from probe_ceiling_today import SHUFFLES, head_on_scores, noise_fit

    from skfingerprint import LinearRelationClassifier

    rng = np.random.default_rng(0)
    y = rng.permutation(np.r_[np.ones(100, int), np.zeros(100, int)])
    scores = rng.normal(size=(200, 40))
    scores[:, 0] += 3.0 * y  # a real signal, which shuffled labels must not see
    relations = np.concatenate([scores, np.zeros((200, 1))], axis=1)[:, None, :]
    default_head = LinearRelationClassifier().fit(relations, y)
    weights = default_head.model_.coef_.copy()
    head = head_on_scores(default_head)
    kappas = np.asarray(noise_fit(head, relations, scores, y, seed=0))
    assert kappas.shape == (SHUFFLES, 2)
    own, any_linear = kappas.mean(0)
    # 40 weights fit 200 noise labels: the sign-constrained, shrunk head less than the
    # unconstrained one (measured over 5 seeds: 0.26-0.30 and 0.36-0.39); a bug reads ~0
    assert 0.15 < own < any_linear
    np.testing.assert_array_equal(default_head.model_.coef_, weights)
    fit_scores, other_scores = head(relations[:100], y[:100], relations[100:])
    assert fit_scores.shape == (100,) and other_scores.shape == (100,)
