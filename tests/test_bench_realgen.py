"""The trained-generator benchmark task (benchmarks/realgen): folders, labels, splits."""

import csv
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from skfingerprint import load_imageclef_gans

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from realgen.dcgan import Generator, sample
from realgen.task import _split_by_patient, build_task, load_generator


def test_split_by_patient_is_disjoint_and_balanced():
    rng = np.random.default_rng(0)
    patient = np.repeat(np.arange(20), 5)  # 20 patients of 5 slices
    y = (patient < 10).astype(int)  # patients 0..9 used
    train, test = _split_by_patient(y, patient, rng)
    assert np.intersect1d(train, test).size == 0
    assert np.union1d(train, test).size == len(y)
    assert not set(patient[train]) & set(patient[test])
    assert y[train].sum() == 25 and (1 - y[train]).sum() == 25


def test_sample_comes_from_the_network_and_repeats():
    torch.manual_seed(0)
    G = Generator(nz=8, width=4).eval()
    a, b = sample(G, 5, seed=1), sample(G, 5, seed=1)
    assert a.dtype == np.uint8 and a.shape == (5, 64, 64)
    np.testing.assert_array_equal(a, b)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.5)
    assert not np.array_equal(a, sample(G, 5, seed=1))  # other weights, other images


@pytest.fixture(scope="module")
def tiny_task(tmp_path_factory):
    root = tmp_path_factory.mktemp("realgen")
    folder, info = build_task(
        0, root, n_used=16, n_not_used=16, n_generated=12, epochs=1, width=4, log=None
    )
    return root, folder, info


def test_build_task_writes_loadable_imageclef_folders(tiny_task):
    _, folder, info = tiny_task
    assert not info["cached"]
    train = load_imageclef_gans(folder / "train")
    test = load_imageclef_gans(folder / "test")
    assert len(train.X_pairs.library) == 12 and len(test.X_pairs.library) == 12
    assert len(train.ids) + len(test.ids) == 32
    assert set(np.unique(train.y)) == {0, 1} and test.y is None
    with open(folder / "test_labels.csv", newline="") as f:
        labels = dict(csv.reader(f))
    assert sorted(labels) == sorted(test.ids)
    # the train library is exactly the saved generator's samples (latent seed 10_000 + 2 * seed)
    lib = np.stack(
        [img[..., 0] for _, batch in train.X_pairs.library.iter_batches(64) for img in batch]
    )
    expected = sample(load_generator(folder), 12, seed=10_000)
    np.testing.assert_array_equal(np.round(lib * 255).astype(np.uint8), expected)
    assert (folder / "samples.png").is_file()


def test_build_task_reuses_the_cache(tiny_task):
    root, folder, _ = tiny_task
    again, info = build_task(
        0, root, n_used=16, n_not_used=16, n_generated=12, epochs=1, width=4, log=None
    )
    assert again == folder and info["cached"]


def test_pretrained_checkpoint_loads_into_the_embedder_and_is_reused(tmp_path):
    from realgen.pretrain import DEFAULTS, pretrain_checkpoint

    from skfingerprint import TINY_VIT, ViTLayerFusionEmbedder

    path, info = pretrain_checkpoint(tmp_path, n_images=16, epochs=1, log=None)
    assert not info["cached"] and path.is_file()
    assert not list(tmp_path.glob("*.tmp"))
    images = np.random.default_rng(0).random((3, 64, 64)).astype(np.float32)

    def tokens(**extra):
        embedder = ViTLayerFusionEmbedder(**TINY_VIT, **extra, fusion="mean", random_state=0)
        return embedder.fit(images).transform(images)

    trained = tokens(checkpoint=str(path))
    assert not np.allclose(trained, tokens())
    # the saved weights are the trained ones, not the random start they were trained from
    start = ViTLayerFusionEmbedder(**TINY_VIT, fusion="mean", random_state=DEFAULTS["random_state"])
    start = start.fit(images).backbone_.module.vit.state_dict()
    saved = torch.load(path, weights_only=True)
    assert saved.keys() == start.keys()
    assert any(not torch.equal(saved[k], start[k]) for k in saved)
    np.testing.assert_allclose(trained, tokens(checkpoint=str(path)))  # the file is the model
    mtime = path.stat().st_mtime_ns
    again, info = pretrain_checkpoint(tmp_path, n_images=16, epochs=1, log=None)
    assert info["cached"] and again == path and path.stat().st_mtime_ns == mtime
    _, info = pretrain_checkpoint(tmp_path, n_images=16, epochs=2, log=None)
    assert not info["cached"]  # another configuration trains again
