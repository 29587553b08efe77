"""GridSearchCV over the pipeline on a local dask.distributed cluster (joblib's Dask backend).

Two things matter when the grid search is spread over Dask workers:

* the result must not depend on the backend (same ``cv_results_`` scores, same ``best_params_``);
* the embedder's token cache is process-wide memory. Threads of one worker process share it, but
  separate worker processes each start empty and would re-run the ViT; a ``cache_dir`` on a
  folder every worker can read is what lets them reuse one ViT pass.
"""

from concurrent.futures import ThreadPoolExecutor

import joblib
import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from skfingerprint import _vit, clear_memory_cache, kappa_scorer, make_fingerprint_pipeline
from skfingerprint.datasets import make_synthetic_leak

from .conftest import install_vit_counter

distributed = pytest.importorskip("distributed")

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2)
GRID = {"embed__layers": [(1, 2), (2, 4)], "clf__threshold": [None, 0.5]}


def pipeline(cache_dir=None):
    return make_fingerprint_pipeline(
        "maxsim",
        model="vit_tiny_patch16_224",
        pretrained=False,
        model_kwargs=TINY,
        fusion="mean",
        k=5,
        min_similarity=None,
        random_state=0,
        cache_dir=cache_dir,
        # dtype="auto": with a cache_dir, the worker processes use the precision kept in it
        # (on CPUs where the tiny ViT runs about as fast in bf16 as in fp32, probes of their
        # own could disagree with it and miss the shared tokens)
        embedder_params={"gate_epochs": 0, "batch_size": 32, "stop_early": False},
    )


@pytest.fixture(scope="module")
def task():
    return make_synthetic_leak(16, 16, 32, image_size=32, leak_fraction=0.8, random_state=0)


def grid_search(task, cache_dir=None):
    return GridSearchCV(pipeline(cache_dir), GRID, cv=3, scoring=kappa_scorer, error_score="raise")


def assert_same_search(a, b):
    assert a.best_params_ == b.best_params_
    for key in ("mean_test_score", "std_test_score", "rank_test_score"):
        np.testing.assert_allclose(a.cv_results_[key], b.cv_results_[key], atol=1e-6)
    assert a.cv_results_["params"] == b.cv_results_["params"]


@pytest.fixture(scope="module")
def reference(task):
    """The grid search on joblib's default backend, in this process."""
    clear_memory_cache()
    search = grid_search(task).fit(task.X_pairs, task.y)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    return search


def test_concurrent_backbone_loads_get_the_seeded_weights():
    # a seeded random init draws from torch's process-wide generator: unguarded, threads that
    # load at once interleave their draws and get different weights (5 of 5 tries, measured)
    kwargs = dict(pretrained=False, checkpoint=None, model_kwargs=TINY, seed=0, position_code=False)
    expected = _vit.load_backbone("vit_tiny_patch16_224", **kwargs).digest
    for _ in range(3):
        _vit._BACKBONES.clear()
        with ThreadPoolExecutor(4) as pool:
            loaded = list(
                pool.map(lambda _: _vit.load_backbone("vit_tiny_patch16_224", **kwargs), range(4))
            )
        assert {b.digest for b in loaded} == {expected}
        assert all(b is loaded[0] for b in loaded), "built once, shared"


def test_grid_search_on_dask_threads_matches_the_default_backend(task, reference, vit_passes):
    clear_memory_cache()
    _vit._BACKBONES.clear()  # the workers' first fits load the ViT concurrently
    before = vit_passes.images
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        joblib.parallel_backend("dask"),
    ):
        on_dask = grid_search(task).set_params(n_jobs=-1).fit(task.X_pairs, task.y)
    assert_same_search(on_dask, reference)
    # In-process workers share the process-wide memory cache. Two fits running at once may both
    # miss an image before either has stored it, so each of the 64 unique images goes through
    # the ViT once or twice, never once per fit (12 fits + the refit).
    assert 64 <= vit_passes.images - before <= 2 * 64


def _worker_counts():
    """(images this process ran through the ViT, tokens in its memory cache)."""
    from skfingerprint._cache import _MEMORY

    return install_vit_counter().images, len(_MEMORY)


@pytest.mark.slow
def test_worker_processes_reuse_a_shared_cache_dir(task, reference, tmp_path):
    # fill the shared on-disk cache once (here in the test process; any worker would do)
    clear_memory_cache()
    pipeline(tmp_path).fit(task.X_pairs, task.y)
    assert len(list(tmp_path.rglob("*.npy"))) == 64

    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
        joblib.parallel_backend("dask"),
    ):
        client.run(install_vit_counter)  # each worker process counts its own ViT passes
        on_dask = grid_search(task, tmp_path).set_params(n_jobs=-1).fit(task.X_pairs, task.y)
        with_disk = list(client.run(_worker_counts).values())
        # the same search without cache_dir, on workers whose memory cache is emptied first
        client.run(clear_memory_cache)
        grid_search(task).set_params(n_jobs=-1).fit(task.X_pairs, task.y)
        memory_only = list(client.run(_worker_counts).values())
    assert_same_search(on_dask, reference)
    assert len(with_disk) == 2
    # each worker process read tokens from the shared folder and ran no image through the ViT
    assert all(vit == 0 and cached > 0 for vit, cached in with_disk), with_disk
    # without it the workers embed the images themselves: each of the 64 at least once
    assert sum(vit for vit, _ in memory_only) >= 64, memory_only
