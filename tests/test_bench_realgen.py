"""The trained-generator membership suite (benchmarks/realgen, benchmarks/bench_quality.py):
sources, splits, folders, cache, the statistics and the quick run's report."""

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import cohen_kappa_score

from skfingerprint import load_imageclef_gans

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import bench_quality  # noqa: E402
from realgen import dcgan  # noqa: E402
from realgen.sources import NEAR_DUPLICATE, SOURCES, SourceUnavailableError, load_source  # noqa: E402
from realgen.task import QUICK_SIZES, TASKS, _deal, build_task, load_generator  # noqa: E402


def _source_or_skip(name, n, seed=0):
    try:
        return load_source(name, n, seed=seed)
    except SourceUnavailableError as e:  # .ci/run installs them; a bare machine may not have them
        pytest.skip(str(e))


def test_deal_keeps_each_group_in_one_cell_and_fills_every_cell():
    group = np.repeat(np.arange(50), 4)  # 50 patients of 4 slices
    cells = _deal(group, [40, 40, 60, 60], np.random.default_rng(0))
    rows = np.concatenate(cells)
    assert np.array_equal(np.sort(rows), np.arange(200))  # every row exactly once
    for a in range(4):
        assert len(cells[a]) >= [40, 40, 60, 60][a] or a == 3
        for b in range(a + 1, 4):
            assert not set(group[cells[a]]) & set(group[cells[b]])
    assert [len(c) for c in cells] == [40, 40, 60, 60]  # groups of 4 fill the targets exactly


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_sources_give_distinct_images_with_groups(name):
    real = _source_or_skip(name, 120)
    size = int(name.rsplit("-", 1)[1]) if name[-1].isdigit() else 32  # "ct-phantom-128": 128
    assert real.images.dtype == np.uint8 and real.images.shape == (120, size, size)
    assert real.group.shape == (120,)
    assert real.images.reshape(120, -1).std(1).min() > 0  # no blank image
    if not name.startswith("ct-phantom"):  # one image per group, and no near-duplicate pair
        v = real.images.reshape(120, -1).astype(np.float64)
        corr = np.corrcoef(v)
        np.fill_diagonal(corr, 0)
        assert corr.max() <= NEAR_DUPLICATE
        assert len(np.unique(real.group)) == 120
    again = _source_or_skip(name, 120)
    np.testing.assert_array_equal(real.images, again.images)  # the seed decides
    other = _source_or_skip(name, 120, seed=1)
    assert not np.array_equal(real.images, other.images)


def test_kanji_64_renders_the_same_characters_as_kanji_at_twice_the_size():
    small = _source_or_skip("kanji", 60).images.astype(np.float64)
    large = _source_or_skip("kanji-64", 60).images.astype(np.float64)
    down = large.reshape(60, 32, 2, 32, 2).mean(axis=(2, 4))

    def mean_corr(a, b):
        return np.mean([np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b, strict=True)])

    # the seed picks the same characters; the size only scales the font
    assert mean_corr(small, down) > 0.7
    assert mean_corr(small, down) > mean_corr(small, np.roll(down, 30, axis=0)) + 0.3


def test_dcgan_32_samples_come_from_the_network_and_repeat():
    torch.manual_seed(0)
    G = dcgan.Generator(nz=8, width=4, image_size=32).eval()
    a, b = dcgan.sample(G, 5, seed=1), dcgan.sample(G, 5, seed=1)
    assert a.dtype == np.uint8 and a.shape == (5, 32, 32)
    np.testing.assert_array_equal(a, b)
    assert dcgan.Discriminator(4, 32)(torch.zeros(2, 1, 32, 32)).shape == (2,)
    with pytest.raises(ValueError, match="image_size must be one of"):
        dcgan.Generator(image_size=48)


@pytest.mark.parametrize(
    "size, widths",
    [(32, [4, 2, 1]), (64, [8, 4, 2, 1]), (128, [16, 8, 4, 2, 1])],
)
def test_dcgan_stages_double_with_the_image_size(size, widths):
    # Catches: a stage lost or added at one size (the 128 px network built as the 64 px one and
    # its output upsampled nowhere), and a change of the 32/64 px layouts, whose cached
    # generators would then no longer load.
    w = 4
    G, D = dcgan.Generator(nz=8, width=w, image_size=size), dcgan.Discriminator(w, size)
    convs = [m for m in G.net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.out_channels for m in convs] == [w * c for c in widths] + [1]
    assert G(torch.zeros(2, 8)).shape == (2, 1, size, size)
    down = [m.out_channels for m in D.net if isinstance(m, torch.nn.Conv2d)]
    assert down == [w * c for c in reversed(widths)] + [1]
    assert D(torch.zeros(2, 1, size, size)).shape == (2,)


TINY_DCGAN = dict(kind="dcgan", epochs=1, width=4, batch_size=16)


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("realgen")
    args = ("ct-phantom", "dcgan-long", 0, root)
    folder, info = build_task(*args, sizes=QUICK_SIZES, generator_params=TINY_DCGAN, log=None)
    return args, folder, info


def test_build_task_writes_loadable_group_disjoint_folders(tiny_task):
    _, folder, info = tiny_task
    assert not info["cached"]
    train = load_imageclef_gans(folder / "train")
    test = load_imageclef_gans(folder / "test")
    assert len(train.X_pairs.library) == QUICK_SIZES["n_train_library"]
    assert len(test.X_pairs.library) == QUICK_SIZES["n_test_library"]
    assert test.y is None and set(np.unique(train.y)) == {0, 1}
    with open(folder / "test_labels.csv", newline="") as f:
        labels = {i: int(v) for i, v in csv.reader(f)}
    assert sorted(labels) == sorted(test.ids)
    counts = info["counts"]
    assert [int(train.y.sum()), int((1 - train.y).sum())] == counts[:2]
    assert [sum(labels.values()), len(labels) - sum(labels.values())] == counts[2:]
    # the train library is exactly the saved generator's samples (latent seed 10_000 + 2 * seed)
    lib = np.stack(
        [img[..., 0] for _, batch in train.X_pairs.library.iter_batches(64) for img in batch]
    )
    (weights,) = (folder.parents[2] / "generators").glob("ct-phantom-dcgan-long-seed0-*.pt")
    expected = dcgan.sample(load_generator(weights), len(lib), seed=10_000)
    np.testing.assert_array_equal(np.round(lib * 255).astype(np.uint8), expected)
    assert (folder / "samples.png").is_file()
    assert json.loads((folder / "config.json").read_text())["counts"] == counts


def test_build_task_splits_whole_patients_and_trains_on_used_images_only(tiny_task, monkeypatch):
    """Rebuild in a fresh root, capturing what the generator is trained on."""
    import realgen.task as task

    seen = {}

    def fake_train(params, images, seed, log):
        seen["images"] = images.copy()
        return dcgan.Generator(nz=8, width=4, image_size=32).eval()

    monkeypatch.setattr(task, "_train", fake_train)
    root = tiny_task[1].parents[3] / "other"
    folder, info = build_task(
        "ct-phantom", "dcgan-long", 0, root, sizes=QUICK_SIZES, generator_params=TINY_DCGAN,
        log=None,
    )  # fmt: skip
    real = load_source("ct-phantom", sum(QUICK_SIZES[k] for k in list(QUICK_SIZES)[:4]), seed=0)
    key = {img.tobytes(): g for img, g in zip(real.images, real.group, strict=True)}
    train = load_imageclef_gans(folder / "train")
    test = load_imageclef_gans(folder / "test")
    with open(folder / "test_labels.csv", newline="") as f:
        test_y = np.array([int(v) for _, v in csv.reader(f)])

    def groups(images, mask):
        return {key[(img[..., 0] * 255).round().astype(np.uint8).tobytes()]
                for img, m in zip(images, mask, strict=True) if m}  # fmt: skip

    train_imgs = [img for _, b in train.X_pairs.real.iter_batches(64) for img in b]
    test_imgs = [img for _, b in test.X_pairs.real.iter_batches(64) for img in b]
    cells = [
        groups(train_imgs, train.y == 1), groups(train_imgs, train.y == 0),
        groups(test_imgs, test_y == 1), groups(test_imgs, test_y == 0),
    ]  # fmt: skip
    for a in range(4):
        for b in range(a + 1, 4):
            assert not cells[a] & cells[b], "a patient on two sides"
    used = {img.tobytes() for img in seen["images"]}
    trained_on = {key[b] for b in used}
    assert trained_on == cells[0] | cells[2]  # every used patient, and only them
    assert len(used) == info["counts"][0] + info["counts"][2]


def test_control_on_a_deal_is_the_control_on_that_seeds_task(tiny_task):
    """The 12-deal control deals the real images exactly as the task of that seed does: its
    test labels and kappa equal those of the control fitted on the task's folders."""
    from skfingerprint.images import pixel_vectors

    (source, _, seed, _), folder, _ = tiny_task
    deal = bench_quality.control_on_deal(source, seed, QUICK_SIZES)
    train = load_imageclef_gans(folder / "train")
    test = load_imageclef_gans(folder / "test")
    y_test = bench_quality._test_labels(folder, test.ids)
    _, pred = bench_quality.real_only_control(
        pixel_vectors(train.X_pairs.real, 32), train.y, pixel_vectors(test.X_pairs.real, 32), seed
    )
    assert sorted(deal["y"]) == sorted(y_test)
    assert cohen_kappa_score(deal["y"], deal["pred"]) == pytest.approx(
        cohen_kappa_score(y_test, pred), abs=1e-9
    )


def test_build_task_reuses_the_cache(tiny_task):
    args, folder, _ = tiny_task
    again, info = build_task(*args, sizes=QUICK_SIZES, generator_params=TINY_DCGAN, log=None)
    assert again == folder and info["cached"]
    other, info = build_task(
        *args, sizes=QUICK_SIZES, generator_params={**TINY_DCGAN, "epochs": 2}, log=None
    )
    assert other != folder and not info["cached"]  # another generator, another task


def test_mean_kappa_is_sklearns_kappa_averaged_over_seeds():
    rng = np.random.default_rng(0)
    y, pred = rng.integers(0, 2, 300), rng.integers(0, 2, 300)
    pred[:120] = y[:120]  # some agreement
    seed_id = np.repeat([0, 1, 2], 100)
    expected = np.mean([cohen_kappa_score(y[seed_id == s], pred[seed_id == s]) for s in range(3)])
    assert bench_quality.mean_kappa(y, pred, seed_id) == pytest.approx(expected)
    # vectorised over leading axes, as scipy's bootstrap calls it
    batch = bench_quality.mean_kappa(np.stack([y, y]), np.stack([pred, y]), np.stack([seed_id] * 2))
    assert batch == pytest.approx([expected, 1.0])


def test_kappa_interval_brackets_the_value_and_is_zero_against_itself():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.7, y, 1 - y)  # kappa about 0.4
    seed_id = np.repeat([0, 1], 200)
    value, low, high = bench_quality.kappa_interval(y, pred, seed_id, 300)
    assert low < value < high and 0.2 < value < 0.6 and high - low < 0.4
    assert bench_quality.kappa_interval(y, pred, seed_id, 300, reference=pred) == (0, 0, 0)
    diff = bench_quality.kappa_interval(y, y, seed_id, 300, reference=pred)
    assert diff[1] > 0  # perfect predictions beat noisy ones, with an interval above 0


@pytest.mark.slow
def test_quick_run_writes_every_table_and_the_control_row(tmp_path):
    for name in ("fashion", "kanji"):
        _source_or_skip(name, 10)
    out = tmp_path / "q.md"
    code = bench_quality.main(
        ["--quick", "--output", str(out), "--figures", str(tmp_path / "fig"),
         "--cache-dir", str(tmp_path / "cache"), "--n-jobs", "1", "--first-seed", "3"]
    )  # fmt: skip
    assert code == 0
    text = out.read_text()
    assert "QUICK SMOKE RUN" in text and "## Summary" in text
    # the sample grids are the first seed's, and say which (not "seed 0" whatever was run)
    assert text.count("Samples of seed 3 (the first)") == len(bench_quality.TASKS)
    for source, generator in bench_quality.TASKS:
        name = f"{source} / {generator}"
        assert f"## {name}" in text and f"**{name}**" in text
        assert (tmp_path / "fig" / f"roc_{source}_{generator}.png").stat().st_size > 0
    assert text.count(f"| {bench_quality.CONTROL} |") == len(bench_quality.TASKS) + 1
    assert "| Control, 2 deals |" in text and "control over 2 deals" in text
    for method in bench_quality.METHODS:
        assert f"| {method} |" in text


def test_relation_scores_ignore_order_and_library_duplication():
    """The probe's scores are relations, not positions: permuting the reals permutes the rows,
    and duplicating every library image leaves the top-1, calibration, attribution (normalised
    by library size) and margin scores unchanged. The fixed-k scores (top5, density) do change:
    duplicates fill the k slots, so they depend on library size (a limit the detector issue
    must fix, e.g. k proportional to the library)."""
    from probe_relations import FEATURES, relation_scores

    from skfingerprint import make_pairs

    rng = np.random.default_rng(0)
    real = rng.integers(0, 256, (12, 32, 32)).astype(np.uint8)
    noise = rng.normal(0, 1, (12, 32, 32)) * np.tile([4, 25, 60], 4)[:, None, None]
    copies = np.repeat(real[:4], 3, axis=0) + noise  # distinct noise: no near-tied neighbours
    library = np.concatenate([copies.clip(0, 255), rng.integers(0, 256, (12, 32, 32))])
    library = library.astype(np.uint8)  # three near-copies of each of the first four reals
    base = relation_scores(make_pairs(real, library))
    order = rng.permutation(12)
    np.testing.assert_allclose(relation_scores(make_pairs(real[order], library)), base[order],
                               rtol=1e-5, atol=1e-5)  # fmt: skip
    doubled = relation_scores(make_pairs(real, np.concatenate([library, library])))
    invariant = [FEATURES.index(f) for f in ("top1", "real_nn", "calib", "attribution", "margin")]
    np.testing.assert_allclose(doubled[:, invariant], base[:, invariant], rtol=1e-5, atol=1e-5)
    fixed_k = [FEATURES.index(f) for f in ("top5", "density")]
    assert not np.allclose(doubled[:, fixed_k], base[:, fixed_k])
    attribution = FEATURES.index("attribution")
    assert base[:4, attribution].mean() > base[4:, attribution].mean()  # copies attract


def test_bench_quality_runs_the_suite_unless_tasks_are_named():
    resolve_tasks = bench_quality.resolve_tasks
    assert resolve_tasks(None) == list(TASKS)
    assert resolve_tasks(["kanji-64/dcgan-long", "fashion/ddpm"]) == [
        ("kanji-64", "dcgan-long"),
        ("fashion", "ddpm"),
    ]
    assert resolve_tasks(["ct-phantom/ddpm"]) == [("ct-phantom", "ddpm")]  # an unseen pairing
    assert resolve_tasks(["kanji/dcgan-short"]) == [("kanji", "dcgan-short")]  # and another
    with pytest.raises(ValueError, match=r"unknown tasks \['fashion/dcgan-medium'\]"):
        resolve_tasks(["fashion/dcgan-medium"])


def test_library_size_probe_grows_each_library_with_new_samples_of_its_generator(
    tmp_path, monkeypatch
):
    # Catches: the generator not found from the task folder, the task's own sampling seeds
    # reused (the "larger" library would repeat its images: no new evidence), a larger
    # library that does not contain the smaller one, or the splits' libraries swapped.
    import probe_library_size as P

    # a cache of its own: other tests add generators of other configs to the shared one
    folder, _ = build_task(
        "ct-phantom",
        "dcgan-long",
        0,
        tmp_path,
        sizes=QUICK_SIZES,
        generator_params=TINY_DCGAN,
        log=None,
    )
    seeds = []

    def recording_sample(params, model, n, seed):
        seeds.append(seed)
        return dcgan.sample(model, n, seed=seed)

    monkeypatch.setattr(P, "_sample", recording_sample)
    splits = {name: load_imageclef_gans(folder / name) for name in P.SPLITS}
    libraries = P._libraries(folder, splits)
    (weights,) = (folder.parents[2] / "generators").glob("ct-phantom-dcgan-long-seed0-*.pt")
    # the task sampled its libraries with 10_000 + 2 * seed + split (seed 0 here)
    assert seeds == [20_000, 20_001] and not set(seeds) & {10_000, 10_001}
    for i, name in enumerate(P.SPLITS):
        own = np.stack([img for _, b in splits[name].X_pairs.library.iter_batches(64) for img in b])
        grown = libraries[name]
        assert [len(grown[f]) for f in P.FACTORS] == [f * len(own) for f in P.FACTORS]
        np.testing.assert_array_equal(grown[1], own)
        for small, large in zip(P.FACTORS[:-1], P.FACTORS[1:], strict=True):
            np.testing.assert_array_equal(grown[large][: len(grown[small])], grown[small])
        fresh = dcgan.sample(
            load_generator(weights), len(grown[max(P.FACTORS)]) - len(own), seed=seeds[i]
        )
        np.testing.assert_array_equal(
            np.round(grown[max(P.FACTORS)][len(own) :, ..., 0] * 255), fresh
        )
