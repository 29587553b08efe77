import contextlib
import os
import pickle
import re
import subprocess
import sys
import time
import warnings

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from skfingerprint import (
    ImageLoadError,
    ViTLayerFusionEmbedder,
    WeightsUnavailableError,
    clear_memory_cache,
    make_pairs,
)
from skfingerprint import embedding as embedding_module
from skfingerprint._tokens import vit_tokens
from skfingerprint.augment import augment_batch
from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.embedding import _format_sizes, parse_layers
from skfingerprint.pairs import PairEmbeddings

from .conftest import as_bits, points_at, write_png

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=4, num_heads=2)


def tiny_embedder(**params):
    params = {"gate_epochs": 20, "random_state": 0, **params}
    return ViTLayerFusionEmbedder(
        "vit_tiny_patch16_224", pretrained=False, model_kwargs=TINY, **params
    )


def write_checkpoint(images, path):
    """Save the ViT weights of a tiny embedder fitted on ``images`` to ``path``; return it."""
    fitted = tiny_embedder(fusion="mean").fit(images)
    torch.save(fitted.backbone_.module.vit.state_dict(), path)
    return fitted


@pytest.fixture(scope="module")
def task():
    return make_synthetic_leak(12, 12, 24, image_size=48, random_state=0)


def test_outputs_on_pairs_and_plain_images(task):
    emb = tiny_embedder().fit(task.X_pairs, task.y)
    out = emb.transform(task.X_pairs)
    assert isinstance(out, PairEmbeddings)
    assert out.real.shape == (24, 32) and out.library.shape == (24, 32)
    assert out.real.dtype == np.float32 and out.ids == task.ids
    plain = emb.transform(task.real_images)
    np.testing.assert_allclose(plain, out.real, atol=1e-6)
    assert plain.dtype == np.float32  # catches the fused tokens' cast dropped (float64)
    assert emb.layers_ == (1, 2, 3) and emb.depth_ == 4 and emb.n_features_out_ == 32
    concat = tiny_embedder(fusion="concat").fit(task.X_pairs, task.y)
    assert concat.transform(task.real_images).shape == (24, 3 * 32)
    names = concat.get_feature_names_out()
    assert names.dtype == object and list(names[[0, 95]]) == ["vitfusion0", "vitfusion95"]


def test_same_library_key_for_same_library_and_model(task):
    emb = tiny_embedder().fit(task.X_pairs, task.y)
    a, b = emb.transform(task.X_pairs[:5]), emb.transform(task.X_pairs[5:])
    assert a.library_key == b.library_key
    other = make_pairs(task.real_images, task.generated_images[:10])
    assert emb.transform(other).library_key != a.library_key


@pytest.mark.parametrize(
    ("layers", "depth", "expected"),
    [
        (None, 12, (3, 6, 9)),
        (None, 4, (1, 2, 3)),
        ("L6+12", 12, (6, 12)),
        ("3 + 9", 12, (3, 9)),
        ([2, 4], 4, (2, 4)),
        (np.array([1, 3]), 4, (1, 3)),
    ],
)
def test_parse_layers(layers, depth, expected):
    assert parse_layers(layers, depth) == expected


@pytest.mark.parametrize(
    ("layers", "match"),
    [
        ("L6+12+18", r"layers \[18\] out of range: this model has 12 blocks"),
        ([0, 3], r"out of range"),
        ([3, 3], "repeat"),
        ([], "empty"),
        ("six", "not of the form"),
        ([1.5], "whole block numbers"),
        (["a"], "block numbers"),
    ],
)
def test_bad_layers(layers, match):
    with pytest.raises(ValueError, match=match):
        parse_layers(layers, 12)


def test_layers_out_of_range_at_fit_names_the_depth(task):
    with pytest.raises(ValueError, match="this model has 4 blocks"):
        tiny_embedder(layers="L6+12+18").fit(task.X_pairs, task.y)


def test_changing_layers_fusion_or_cloning_never_reruns_the_vit(task, vit_passes):
    clear_memory_cache()
    before = vit_passes.images
    emb = tiny_embedder(stop_early=False).fit(task.X_pairs, task.y)
    assert vit_passes.images - before == 48  # 24 reals + 24 library images, once each
    before = vit_passes.images
    for params in ({"layers": (2, 4)}, {"fusion": "mean"}, {"fusion": "concat"}):
        clone(emb).set_params(**params).fit(task.X_pairs, task.y).transform(task.X_pairs)
    assert vit_passes.images == before


def test_duplicate_images_are_embedded_once(vit_passes):
    # Catches also: the cache scan stopping at the first repeat, so that an image after it
    # (c below) is never embedded.
    clear_memory_cache()
    rng = np.random.default_rng(1)
    a, b, c = rng.integers(0, 256, size=(3, 32, 32), dtype=np.uint8)
    before = vit_passes.images
    out = tiny_embedder(fusion="mean").fit_transform(np.stack([a, b, a, c, b, c]))
    assert vit_passes.images - before == 3
    np.testing.assert_allclose(out[[0, 1, 3]], out[[2, 4, 5]])


def test_grid_search_runs_the_vit_once_per_unique_image(vit_passes):
    clear_memory_cache()
    rng = np.random.default_rng(0)
    X = rng.integers(0, 256, size=(30, 32, 32), dtype=np.uint8)
    y = np.arange(30) % 2
    X[y == 1, :8] = 255  # a learnable difference
    # y is the classifier's: labels="ignore" lets the embedder take plain images beside it
    embed = tiny_embedder(fusion="mean", labels="ignore", stop_early=False)
    pipe = Pipeline([("embed", embed), ("clf", LogisticRegression())])
    grid = GridSearchCV(
        pipe,
        {"embed__layers": [(1,), (2,), (1, 3), (2, 4)], "clf__C": [0.1, 1.0, 10.0]},
        cv=3,
    )
    before = vit_passes.images
    grid.fit(X, y)
    assert vit_passes.images - before == 30
    assert grid.best_score_ > 0.6


@contextlib.contextmanager
def block_calls(module):
    """``{block index: forward calls}`` of a FingerprintViT while the block is open; the hooks
    come off at the end (the backbone is shared by the whole process)."""
    counts = {}
    handles = [
        block.register_forward_hook(lambda *_, i=i: counts.__setitem__(i, counts.get(i, 0) + 1))
        for i, block in enumerate(module.vit.blocks)
    ]
    try:
        yield counts
    finally:
        for handle in handles:
            handle.remove()


def test_stop_early_skips_the_blocks_after_the_deepest_layer_with_the_same_tokens(task):
    clear_memory_cache()
    emb = tiny_embedder(layers=(1, 2), fusion="mean").fit(task.real_images)
    clear_memory_cache()
    with block_calls(emb.backbone_.module) as counts:
        early = emb.transform(task.real_images)
    assert sorted(counts) == [0, 1]  # blocks 3 and 4 never ran
    clear_memory_cache()
    with block_calls(emb.backbone_.module) as counts:
        full = emb.set_params(stop_early=False).transform(task.real_images)
    assert sorted(counts) == [0, 1, 2, 3]
    np.testing.assert_array_equal(early, full)  # same blocks, same numbers


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_deeper_layer_set_runs_only_the_missing_blocks_from_the_kept_state(
    task, vit_passes, dtype
):
    """A pass that stopped after block 1 keeps its state: layers (2, 3) then run blocks 2 and
    3 alone, (4,) block 4 alone, and nothing runs twice; the tokens are those of one pass over
    every block (catches a resume that restarts from the input, or from the wrong block), in
    bf16 too (the kept residual stream is float32 under autocast)."""
    from skfingerprint import _cache

    clear_memory_cache()
    before = vit_passes.images
    images = task.real_images
    emb = tiny_embedder(layers=(1,), fusion="mean", dtype=dtype).fit(images)
    assert vit_passes.images - before == 24
    with block_calls(emb.backbone_.module) as counts:
        deeper = clone(emb).set_params(layers=(2, 3)).fit(images)
    assert counts == {1: 1, 2: 1}  # one batch through blocks 2 and 3, block 1 not again
    with block_calls(emb.backbone_.module) as counts:
        deepest = clone(emb).set_params(layers=(1, 4)).fit(images)
    assert counts == {3: 1}
    assert len(_cache._STATES) == 0  # every block has run: no state is worth keeping
    with block_calls(emb.backbone_.module) as counts:
        clone(emb).set_params(layers=(2,)).fit(images).transform(images)
    assert not counts and vit_passes.images - before == 24
    clear_memory_cache()
    for fitted, layers in [(deeper, (2, 3)), (deepest, (1, 4))]:
        ref = clone(emb).set_params(layers=layers, stop_early=False).fit(images)
        np.testing.assert_allclose(
            fitted.transform(images), ref.transform(images), rtol=1e-5, atol=1e-6
        )


@contextlib.contextmanager
def state_store_holding(emb, n_images: int):
    """The ViT-state store shrunk to room for ``n_images`` of ``emb``'s states, restored
    after."""
    from skfingerprint import _cache

    _cache._STATES.resize(n_images * emb.backbone_.state_nbytes())
    try:
        yield
    finally:
        _cache._STATES.resize(_cache.DEFAULT_STATE_LIMIT)


def test_a_too_shallow_image_given_twice_is_counted_once(task, vit_passes):
    # Catches: a repeated image (the same content key) looked at again in the scan of the
    # cache, so that the second-pass warning counts it twice and the pass runs it twice.
    images = np.concatenate([task.real_images[:6], task.real_images[:6]])
    emb = tiny_embedder(layers=(1,), fusion="mean").fit(images[:1])  # loads the backbone
    with state_store_holding(emb, 5):  # room for 5 of the 6
        clear_memory_cache()
        before = vit_passes.images
        emb = clone(emb).fit(images)
        assert vit_passes.images - before == 6
        with pytest.warns(UserWarning, match=r"^6 images .* holds 5 images' states"):
            clone(emb).set_params(layers=(2, 3)).fit(images)
        assert vit_passes.images - before == 12


def test_a_pass_over_every_block_keeps_no_state(task):
    # Catches: a pass that ran every block keeping the images' ViT states, though no deeper
    # block is left to go on to (for a ViT-B ~600 kB an image, for nothing).
    from skfingerprint import _cache

    clear_memory_cache()
    emb = tiny_embedder(fusion="mean", stop_early=False).fit(task.real_images[:4])
    assert len(_cache._STATES) == 0
    clone(emb).set_params(stop_early=True).fit(task.real_images[4:8])  # stops at block 3
    assert len(_cache._STATES) == 4


def test_a_set_partly_cached_embeds_only_the_rest(task, vit_passes):
    # Catches: the scan of the cache stopping at the first image already cached, so that the
    # images after it are never embedded.
    images = task.real_images[:8]
    emb = tiny_embedder(fusion="mean").fit(images[:1])
    clear_memory_cache()
    vit_tokens(emb, emb._split_input(images[:3])[0], emb.backbone_)
    before = vit_passes.images
    got = vit_tokens(emb, emb._split_input(images)[0], emb.backbone_)
    assert vit_passes.images - before == 5
    clear_memory_cache()
    np.testing.assert_array_equal(got, vit_tokens(emb, emb._split_input(images)[0], emb.backbone_))


def test_augmented_views_are_cached_apart_from_the_plain_tokens(task):
    # Catches: the views' cache tag dropped, so that the gate's view training would read the
    # plain tokens back as the "augmented views" (every pair identical), or overwrite them.
    images = task.real_images[:6]
    emb = tiny_embedder(fusion="mean").fit(images[:1])
    clear_memory_cache()
    real = emb._split_input(images)[0]
    plain = vit_tokens(emb, real, emb.backbone_)
    views = vit_tokens(emb, real, emb.backbone_, augment_seed=3)
    assert np.abs(plain.astype(np.float32) - views.astype(np.float32)).max() > 1e-2
    np.testing.assert_array_equal(vit_tokens(emb, real, emb.backbone_), plain)
    np.testing.assert_array_equal(vit_tokens(emb, real, emb.backbone_, augment_seed=3), views)
    # and augment_p reaches the augmentation: the views differ with it (each p cached apart)
    strong = vit_tokens(emb.set_params(augment_p=1.0), real, emb.backbone_, augment_seed=3)
    weak = vit_tokens(emb.set_params(augment_p=0.0), real, emb.backbone_, augment_seed=3)
    assert not np.array_equal(strong, weak)


def test_views_of_another_augmentation_version_are_not_read_from_the_cache(task, monkeypatch):
    # Catches: the augmentation's version left out of the views' cache tag, so that a cache
    # written before the augmentation changed hands back the old views.
    from skfingerprint import _tokens

    images = task.real_images[:4]
    emb = tiny_embedder(fusion="mean").fit(images[:1])
    clear_memory_cache()
    real = emb._split_input(images)[0]
    views = vit_tokens(emb, real, emb.backbone_, augment_seed=3)
    monkeypatch.setattr(_tokens, "AUGMENT_VERSION", _tokens.AUGMENT_VERSION + 1)
    monkeypatch.setattr(embedding_module, "augment_batch", lambda x, gen, **kwargs: x)
    plain = vit_tokens(emb, real, emb.backbone_)
    np.testing.assert_array_equal(vit_tokens(emb, real, emb.backbone_, augment_seed=3), plain)
    assert not np.array_equal(views, plain)


def test_without_a_kept_state_a_deeper_layer_set_runs_every_block_once(task, vit_passes):
    """A call whose states do not all fit in the state store keeps none (they would evict one
    another): a deeper layer set then runs the ViT again over every block, once."""
    from skfingerprint import _cache

    images = task.real_images
    emb = tiny_embedder(layers=(1,), fusion="mean").fit(images[:1])  # loads the backbone
    with state_store_holding(emb, 23):  # room for 23 of the 24
        clear_memory_cache()
        before = vit_passes.images
        emb = clone(emb).fit(images)
        assert vit_passes.images - before == 24 and len(_cache._STATES) == 0
        # block 1 is too shallow: the second pass is announced, with its count and why
        with pytest.warns(UserWarning, match=r"^24 images .* holds 23 images' states") as rec:
            deeper = clone(emb).set_params(layers=(2, 3)).fit(images)
        assert vit_passes.images - before == 48
        assert str(rec[0].message) == (
            "24 images were embedded by a pass that stopped before block 3 and kept no ViT "
            "state to go on from (the store holds 23 images' states): the ViT runs over them "
            "again, every block this time. In a search over `layers`, stop_early=False embeds "
            "each image once."
        )
        assert points_at(rec[0], __file__)  # it points at the user's line
        with block_calls(deeper.backbone_.module) as counts, warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing runs again, so nothing is announced
            for layers in [(4,), (1, 4), (2,)]:  # that second pass cached every block
                clone(emb).set_params(layers=layers).fit(images).transform(images)
        assert vit_passes.images - before == 48 and not counts
        clear_memory_cache()
        ref = clone(deeper).set_params(stop_early=False).fit(images)
        np.testing.assert_array_equal(deeper.transform(images), ref.transform(images))


def test_model_files_from_before_stop_early_load_with_it_on(task):
    emb = tiny_embedder(fusion="mean").fit(task.real_images)
    state = emb.__getstate__()
    del state["stop_early"]  # as pickled by 0.x, before the parameter existed
    old = ViTLayerFusionEmbedder.__new__(ViTLayerFusionEmbedder)
    old.__setstate__(state)
    assert old.get_params()["stop_early"] is True
    np.testing.assert_array_equal(old.transform(task.real_images), emb.transform(task.real_images))


@pytest.mark.parametrize("fusion", ["gated", "concat"])
def test_a_pickled_embedder_transforms_as_the_original(task, fusion):
    # Catches: the fusion module rebuilt on unpickling without the fitted fusion mode (a concat
    # embedder would load as gated, with D features instead of L * D).
    emb = tiny_embedder(fusion=fusion).fit(task.X_pairs, task.y)
    loaded = pickle.loads(pickle.dumps(emb))
    expected = emb.transform(task.real_images)
    np.testing.assert_array_equal(loaded.transform(task.real_images), expected)
    assert loaded.token_mean_.dtype == torch.float32


def test_an_unfitted_embedder_pickles(task):
    # Catches: unpickling requiring the fitted fusion state, so an unfitted embedder (in a
    # pickled, not yet fitted Pipeline or a joblib worker's copy) could not be loaded.
    loaded = pickle.loads(pickle.dumps(tiny_embedder(fusion="concat")))
    assert loaded.get_params() == tiny_embedder(fusion="concat").get_params()
    assert not hasattr(loaded, "fusion_")


def test_the_gates_augmented_views_follow_augment_p_and_the_vits_patches(task, monkeypatch):
    # Catches: the views masked in 16-pixel squares whatever the ViT's patches (8 here), or
    # augment_p not reaching the augmentation.
    calls = []

    def spy(x, gen, **kwargs):
        calls.append(kwargs)
        return augment_batch(x, gen, **kwargs)

    monkeypatch.setattr(embedding_module, "augment_batch", spy)
    clear_memory_cache()  # views cached by an earlier test would not be drawn again
    tiny_embedder(augment_p=0.3, gate_epochs=2).fit(task.real_images[:6])  # no y: views
    assert calls and all(kw == {"p": 0.3, "patch_size": 8} for kw in calls)


def test_an_embedder_saved_before_pixel_size_and_label_tracking_transforms_as_its_parameters_say(
    task,
):
    # Catches: a model saved before pixel_size_ or learned_from_labels_ existed failing with
    # AttributeError, losing its pixel space (pixel_size=16 given), or flagged as having learned
    # the labels (which is unknown, so nothing downstream should warn).
    emb = tiny_embedder(pixel_size=16).fit(task.X_pairs, task.y)
    assert emb.learned_from_labels_ is True and emb.pixel_size_ == 16
    del emb.pixel_size_, emb.learned_from_labels_
    out = emb.transform(task.X_pairs)
    assert [a.shape for a in out.spaces["pixels"]] == [(24, 256), (24, 256)]
    assert out.learned_from_labels is False


def test_fits_repeat_only_for_a_fixed_random_state_and_the_tags_say_so(task, tmp_path):
    # Catches: the tags calling an embedder with pretrained weights and random_state=None
    # deterministic: its weights are fixed, but the gate's start and training are not (shown
    # here with fixed weights from a checkpoint), so sklearn's idempotence checks would fail.
    path = tmp_path / "tiny.pth"
    write_checkpoint(task.real_images, path)
    fits = [
        tiny_embedder(checkpoint=path, random_state=None).fit(task.X_pairs, task.y)
        for _ in range(2)
    ]
    assert fits[0].backbone_.digest == fits[1].backbone_.digest  # the same weights
    a, b = (fit.transform(task.real_images) for fit in fits)
    assert np.abs(a - b).max() > 1e-3  # yet another gate
    for pretrained in (False, True):
        unseeded = ViTLayerFusionEmbedder("vit_tiny_patch16_224", pretrained=pretrained)
        assert unseeded.__sklearn_tags__().non_deterministic
    tags = tiny_embedder(random_state=0).__sklearn_tags__()
    assert not tags.non_deterministic
    assert tags.input_tags.three_d_array and not tags.input_tags.two_d_array
    assert tags.requires_fit


def test_disk_cache_survives_the_process_and_writes_atomically(task, tmp_path, vit_passes):
    clear_memory_cache()
    tiny_embedder(cache_dir=tmp_path).fit(task.X_pairs, task.y)
    files = list(tmp_path.rglob("*"))
    assert sum(f.suffix == ".npy" for f in files) == 48
    assert not [f for f in files if f.name.endswith(".tmp")]
    clear_memory_cache()  # as in a new process
    before = vit_passes.images
    emb = tiny_embedder(cache_dir=joblib.Memory(tmp_path, verbose=0)).fit(task.X_pairs, task.y)
    assert vit_passes.images == before
    assert emb.transform(task.real_images).shape == (24, 32)


def test_transform_refuses_embeddings_and_bad_images_naming_x(task):
    # Catches: the refusal of already embedded input or of a bad image array not saying what X
    # was, or naming another argument.
    emb = tiny_embedder(fusion="mean").fit(task.real_images)
    with pytest.raises(TypeError) as refused:
        emb.transform(emb.transform(task.X_pairs))
    assert str(refused.value) == "X is already embedded (PairEmbeddings); pass images or X_pairs"
    with pytest.raises(ValueError) as refused:
        emb.transform(np.zeros(5))
    assert str(refused.value) == (
        "X: an image array must have shape (n, H, W) or (n, H, W, C); got shape (5,)"
    )


def test_after_a_fit_that_failed_on_an_image_the_embedder_is_still_unfitted(task, tmp_path):
    # Catches: transform or get_feature_names_out checking for any fitted attribute instead of
    # the ones they read: a fit stopped by a damaged file has set some (the layers, the depth),
    # and they would then fail with an AttributeError instead of NotFittedError.
    paths = [write_png(tmp_path / f"r{i}.png", img) for i, img in enumerate(task.real_images[:4])]
    data = paths[2].read_bytes()
    paths[2].write_bytes(data[: len(data) // 2])  # its header (and size) still read
    emb = tiny_embedder()
    with pytest.raises(ImageLoadError, match="r2.png"):
        emb.fit([str(p) for p in paths])
    assert hasattr(emb, "layers_")  # what makes the case: a fit that stopped half-way
    with pytest.raises(NotFittedError):
        emb.transform(task.real_images[:2])
    with pytest.raises(NotFittedError):
        emb.get_feature_names_out()


class _MemoryLike:
    """Passes the parameter check (it has ``cache``) without being a usable joblib.Memory."""

    def __init__(self, **attrs):
        self.__dict__.update(attrs)

    def cache(self, func):
        return func


@pytest.mark.parametrize(
    ("cache_dir", "got"), [(_MemoryLike(location=3), "int"), (_MemoryLike(), "_MemoryLike")]
)
def test_a_cache_dir_without_a_folder_is_refused_saying_what_it_got(task, cache_dir, got):
    # Catches: a Memory-like object whose location is not a folder (or that has none) used as
    # one, or a message that does not say what was given.
    with pytest.raises(TypeError) as refused:
        tiny_embedder(cache_dir=cache_dir).fit(task.real_images)
    assert str(refused.value) == f"cache_dir must be a folder path or a joblib.Memory; got {got}"


def test_corrupt_cache_entry_is_recomputed_with_a_warning(task, tmp_path, vit_passes):
    clear_memory_cache()
    emb = tiny_embedder(cache_dir=tmp_path, fusion="mean").fit(task.X_pairs, task.y)
    ref = emb.transform(task.real_images)
    entry = sorted(tmp_path.rglob("*.npy"))[0]
    entry.write_bytes(b"garbage")
    clear_memory_cache()
    before = vit_passes.images
    with pytest.warns(RuntimeWarning, match="unreadable cache entry"):
        again = tiny_embedder(cache_dir=tmp_path, fusion="mean").fit(task.X_pairs, task.y)
    assert vit_passes.images - before == 1
    np.testing.assert_allclose(again.transform(task.real_images), ref, atol=1e-6)


def _tokens_with_signal_in_block(n_real, n_lib, depth, dim, signal_block, rng):
    """Every block random, except that used reals have a near-copy in the library at one block."""
    real = rng.normal(size=(n_real, depth, dim)).astype(np.float32)
    lib = rng.normal(size=(n_lib, depth, dim)).astype(np.float32)
    y = np.arange(n_real) % 2
    for i in np.flatnonzero(y):
        j = rng.integers(n_lib)
        lib[j, signal_block] = real[i, signal_block] + 0.6 * rng.normal(size=dim)
    return real, lib, y


def test_learned_gate_finds_the_block_that_carries_the_signal(monkeypatch):
    rng = np.random.default_rng(0)
    real, lib, y = _tokens_with_signal_in_block(80, 200, 4, 32, signal_block=2, rng=rng)
    # placeholder images of one grey (the tokens are faked; one grey: no intensity warning)
    X = make_pairs(np.full((80, 8, 8), 128, np.uint8), np.full((200, 8, 8), 128, np.uint8))

    def fake_tokens(self, images, backbone, **kwargs):
        tokens = real if len(images) == 80 else lib
        return tokens[:, [v - 1 for v in self.layers_]]

    monkeypatch.setattr("skfingerprint.embedding.vit_tokens", fake_tokens)

    def auc(fusion):
        emb = tiny_embedder(fusion=fusion, layers=(1, 2, 3), gate_epochs=200)
        out = emb.fit(X, y).transform(X)
        r = out.real / np.linalg.norm(out.real, axis=1, keepdims=True)
        g = out.library / np.linalg.norm(out.library, axis=1, keepdims=True)
        return roc_auc_score(y, (r @ g.T).max(axis=1)), emb.fusion_weights_

    auc_gated, weights = auc("gated")
    auc_mean, _ = auc("mean")
    # block 3 is index 2 of layers (1, 2, 3); the gate's weights are per image, these are means
    assert np.argmax(weights) == 2 and weights[2] > max(weights[:2]) + 0.03
    assert auc_gated > auc_mean + 0.2


def test_embeddings_say_whether_the_gate_learned_the_labels(task):
    """Only a gate trained on ``y`` marks its embeddings (the relation selector warns on them):
    not equal weights, not ``labels="ignore"``, not a self-supervised gate, not one block."""
    cases = [
        (dict(), True),
        (dict(fusion="mean"), False),
        (dict(labels="ignore"), False),
        (dict(layers=(3,)), False),
    ]
    for params, learned in cases:
        emb = tiny_embedder(gate_epochs=2, **params).fit(task.X_pairs, task.y)
        assert emb.learned_from_labels_ is learned, params
        assert emb.transform(task.X_pairs).learned_from_labels is learned, params
    unlabelled = tiny_embedder(gate_epochs=2).fit(task.X_pairs)
    assert unlabelled.learned_from_labels_ is False


def test_self_supervised_gate_moves_off_the_mean(task):
    emb = tiny_embedder(gate_epochs=30).fit(task.real_images)
    assert not np.allclose(emb.fusion_weights_, 1 / 3, atol=1e-3)
    assert np.isclose(emb.fusion_weights_.sum(), 1.0)


def test_bf16_agrees_with_fp32(task):
    a = tiny_embedder(fusion="mean", dtype="float32").fit(task.X_pairs, task.y)
    b = tiny_embedder(fusion="mean", dtype="bfloat16").fit(task.X_pairs, task.y)
    ea, eb = a.transform(task.real_images), b.transform(task.real_images)
    cos = (ea * eb).sum(1) / np.linalg.norm(ea, axis=1) / np.linalg.norm(eb, axis=1)
    # A random tiny ViT is the worst case: its CLS tokens are nearly the same for every image
    # (cosine ~0.999), so after centring only rounding-sized differences remain. The 0.99
    # target is measured on ViT-B in benchmarks/bench_embed.py.
    assert cos.min() > 0.98
    assert np.abs(ea - eb).max() > 1e-4  # and bf16 really ran: fp32 twice gives equal numbers


def test_position_code_is_a_no_op_until_trained(task):
    # one precision for both: "auto" probes each model (their digests differ) on its own, and
    # on CPUs where the tiny ViT is about as fast in bf16 the two probes can choose differently
    a = tiny_embedder(fusion="mean", dtype="float32").fit(task.real_images)
    b = tiny_embedder(fusion="mean", position_code=True, dtype="float32").fit(task.real_images)
    assert a.backbone_.digest != b.backbone_.digest  # a different model, really recomputed
    np.testing.assert_allclose(
        a.transform(task.real_images), b.transform(task.real_images), atol=1e-5
    )


def test_finetune_last_blocks_changes_only_those(task):
    base = tiny_embedder(fusion="mean").fit(task.X_pairs, task.y)
    tuned = tiny_embedder(fusion="mean", finetune="last", finetune_epochs=1, batch_size=16)
    tuned.fit(task.X_pairs, task.y)
    old, new = base.backbone_.module.vit, tuned.backbone_.module.vit
    assert tuned.layers_ == (1, 2, 3)  # so the last block that matters is blocks[2]
    assert torch.equal(old.blocks[0].mlp.fc1.weight, new.blocks[0].mlp.fc1.weight)
    assert not torch.equal(old.blocks[2].mlp.fc1.weight, new.blocks[2].mlp.fc1.weight)
    assert tuned.backbone_.digest != base.backbone_.digest
    assert not np.allclose(base.transform(task.real_images), tuned.transform(task.real_images))


def test_nt_xent_is_simclrs_loss_written_out():
    """NT-Xent (SimCLR) at the paper's temperature 0.07: for each of the 2n L2-normalised
    views, -log of its pair's share of exp(similarity / t) among all other views, averaged
    (catches the rows normalised on the wrong axis, t multiplying, the pairs' targets off)."""
    from skfingerprint._finetune import nt_xent

    gen = torch.Generator().manual_seed(0)
    z1 = torch.randn(4, 3, generator=gen, dtype=torch.float64) * 3
    z2 = z1 + torch.randn(4, 3, generator=gen, dtype=torch.float64)
    z = torch.cat([z1, z2])
    z = z / z.norm(dim=1, keepdim=True)
    t, n = 0.07, 4
    terms = []
    for i in range(2 * n):
        pair = (i + n) % (2 * n)
        others = sum(torch.exp(z[i] @ z[k] / t) for k in range(2 * n) if k != i)
        terms.append(-torch.log(torch.exp(z[i] @ z[pair] / t) / others))
    torch.testing.assert_close(nt_xent(z1, z2), torch.stack(terms).mean())


@pytest.mark.parametrize(
    ("depth", "deepest", "trained"),
    [
        (4, 3, [2]),  # the last quarter (one block) up to the deepest fused block
        (4, 1, [0]),
        (6, 5, [4]),  # a quarter of 6 rounds down to one block
        (12, 9, [6, 7, 8]),
        (12, 2, [0, 1]),  # no block before the first
    ],
)
def test_finetune_last_trains_the_last_quarter_of_the_blocks_up_to_the_deepest_fused(
    depth, deepest, trained
):
    from skfingerprint._finetune import _trainable

    class Stub(torch.nn.Module):  # what _trainable reads of a FingerprintViT
        def __init__(self):
            super().__init__()
            self.vit = torch.nn.Module()
            self.vit.blocks = torch.nn.ModuleList(torch.nn.Linear(2, 2) for _ in range(depth))
            self.vit.head = torch.nn.Linear(2, 2)
            self.position_code = None

    module = Stub()
    params = _trainable(module, "last", deepest)
    blocks = [i for i, b in enumerate(module.vit.blocks) if b.weight.requires_grad]
    assert blocks == trained and not module.vit.head.weight.requires_grad
    assert len(params) == 2 * len(trained)
    assert len(_trainable(Stub(), "all", deepest)) == 2 * depth + 2


@pytest.fixture
def fine_tuning_optimizers(monkeypatch):
    """Every AdamW fine-tuning makes, in order."""
    from skfingerprint import _finetune

    made = []

    class Recorded(torch.optim.AdamW):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(_finetune.torch.optim, "AdamW", Recorded)
    return made


def test_finetune_steps_adamw_at_weight_decay_1e4_annealed_to_5e6(task, fine_tuning_optimizers):
    """The paper's fine-tuning optimiser: AdamW, weight decay 1e-4, every parameter group (the
    ViT's and the projection head's) starting at finetune_lr, annealed by a cosine to 5e-6 at
    the last step."""
    tiny_embedder(
        fusion="mean", finetune="last", finetune_epochs=2, batch_size=8, finetune_lr=3e-4
    ).fit(task.real_images)
    (opt,) = fine_tuning_optimizers
    assert opt.defaults["weight_decay"] == 1e-4 and len(opt.param_groups) == 2
    assert opt.defaults["lr"] == 3e-4  # finetune_lr, for both groups
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([5e-6, 5e-6])


def test_finetuning_repeats_exactly_for_a_seed(task):
    """The batches' order and both views' augmentations are drawn from the seed: two fits give
    the same weights (catches either drawn from an unseeded source)."""
    params = dict(fusion="mean", finetune="last", finetune_epochs=1, batch_size=8)
    a = tiny_embedder(**params).fit(task.real_images)
    b = tiny_embedder(**params).fit(task.real_images)
    c = tiny_embedder(**params, random_state=1).fit(task.real_images)
    assert a.backbone_.digest == b.backbone_.digest != c.backbone_.digest


@pytest.mark.parametrize("fused", [1, 2])
def test_finetuning_reads_the_fused_blocks_only(task, fused):
    """The contrastive objective reads the CLS tokens of the fused blocks: with one block
    fused, fine-tuning every block changes it and leaves the deeper blocks untouched (they get
    no gradient) (catches another block's tokens read, one before or after)."""
    base = tiny_embedder(fusion="mean", layers=(fused,)).fit(task.real_images)
    tuned = tiny_embedder(
        fusion="mean", layers=(fused,), finetune="all", finetune_epochs=1, batch_size=8
    ).fit(task.real_images)
    old, new = base.backbone_.module.vit.blocks, tuned.backbone_.module.vit.blocks
    assert not torch.equal(old[fused - 1].mlp.fc1.weight, new[fused - 1].mlp.fc1.weight)
    for deeper in range(fused, len(old)):
        assert torch.equal(old[deeper].mlp.fc1.weight, new[deeper].mlp.fc1.weight)


def test_finetune_all_with_position_code_trains_the_code(task):
    tuned = tiny_embedder(finetune="all", position_code=True, finetune_epochs=1, batch_size=16)
    tuned.fit(task.real_images)
    assert tuned.backbone_.module.position_code.proj.weight.abs().sum() > 0


def test_checkpoint_loads_local_weights(task, tmp_path):
    path = tmp_path / "tiny.pth"
    src = write_checkpoint(task.real_images, path)
    other = tiny_embedder(fusion="mean", checkpoint=path, random_state=123).fit(task.real_images)
    assert other.backbone_.digest == src.backbone_.digest
    wrong = tmp_path / "wrong.pth"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3, 3)}, wrong)
    with pytest.raises(ValueError, match="does not fit this model"):
        tiny_embedder(checkpoint=wrong).fit(task.real_images)
    with pytest.raises(FileNotFoundError, match="checkpoint file not found"):
        tiny_embedder(checkpoint=tmp_path / "none.pth").fit(task.real_images)


def test_offline_pretrained_fails_fast_with_a_fix(task, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    emb = ViTLayerFusionEmbedder("vit_tiny_patch16_224.augreg_in21k", pretrained=True)
    start = time.perf_counter()
    with pytest.raises(WeightsUnavailableError, match="checkpoint=.*pretrained=False"):
        emb.fit(task.real_images)
    assert time.perf_counter() - start < 5


def test_unreachable_hub_fails_fast(task, monkeypatch):
    from skfingerprint import _vit

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(_vit, "_hub_reachable", lambda *a, **k: False)
    with pytest.raises(WeightsUnavailableError, match="cannot be reached"):
        ViTLayerFusionEmbedder("vit_small_patch16_224").fit(task.real_images)


@pytest.mark.parametrize(
    ("model", "kwargs", "error", "match"),
    [
        ("vit_tiny_patch16_22", None, ValueError, "Unknown timm model.*vit_tiny_patch16_224"),
        ("vit_tiny_patch16_224.in1k", None, ValueError, "Unknown tag 'in1k'.*augreg_in21k"),
        (
            "vit_tiny_patch16_224",
            {**TINY, "class_token": False, "global_pool": "avg"},
            ValueError,
            "no CLS token",
        ),
        (
            "resnet18",
            {},
            ValueError,
            r"^timm model 'resnet18' is not a Vision Transformer \(no patch_embed and no blocks\)$",
        ),
        (  # blocks, but no patch embedding (and no CLS token)
            "mixer_s16_224",
            {"img_size": 32},
            ValueError,
            r"^timm model 'mixer_s16_224' is not a Vision Transformer \(no patch_embed\)$",
        ),
        ("vit_tiny_patch16_224", {"no_such_arg": 1}, ValueError, "model_kwargs"),
    ],
)
def test_bad_models(task, model, kwargs, error, match):
    with pytest.raises(error, match=match):
        ViTLayerFusionEmbedder(model, pretrained=False, model_kwargs=kwargs).fit(task.real_images)


def test_corrupt_image_fails_before_the_vit_runs(tmp_path, rng, vit_passes):
    clear_memory_cache()
    for i in range(3):
        write_png(tmp_path / f"ok_{i}.png", rng.integers(0, 256, (32, 32), dtype=np.uint8))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    before = vit_passes.images
    with pytest.raises(ImageLoadError, match=r"bad\.png"):
        tiny_embedder().fit(tmp_path)
    assert vit_passes.images == before


@pytest.mark.parametrize(
    ("X", "error", "match"),
    [
        (np.zeros((0, 32, 32), np.uint8), ValueError, "empty"),
        (42, TypeError, "expected a folder"),
        (PairEmbeddings(np.zeros((2, 3)), np.zeros((2, 3)), "k"), TypeError, "already embedded"),
    ],
)
def test_bad_inputs(X, error, match):
    with pytest.raises(error, match=match):
        tiny_embedder().fit(X)


def test_bad_labels(task):
    with pytest.raises(ValueError, match="only 0"):
        tiny_embedder().fit(task.X_pairs, task.y * 2)
    with pytest.raises(ValueError, match="labels for 24 real images"):
        tiny_embedder().fit(task.X_pairs, task.y[:5])


def test_bad_params_are_named(monkeypatch):
    with pytest.raises(ValueError, match="fusion"):
        tiny_embedder(fusion="max").fit(np.zeros((2, 8, 8), np.uint8))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a CPU-only machine
    with pytest.raises(ValueError, match="CUDA is not available"):
        tiny_embedder(device="cuda").fit(np.zeros((2, 8, 8), np.uint8))


def test_transform_before_fit():
    with pytest.raises(NotFittedError):
        tiny_embedder().transform(np.zeros((2, 8, 8), np.uint8))


def test_repeatable_with_random_state(task):
    a = tiny_embedder().fit(task.X_pairs, task.y).transform(task.real_images)
    clear_memory_cache()
    b = tiny_embedder().fit(task.X_pairs, task.y).transform(task.real_images)
    np.testing.assert_array_equal(a, b)


def test_joblib_round_trip_in_a_fresh_process(task, tmp_path):
    emb = tiny_embedder().fit(task.X_pairs, task.y)
    joblib.dump(emb, tmp_path / "emb.joblib")
    np.save(tmp_path / "imgs.npy", task.real_images)
    np.save(tmp_path / "expected.npy", emb.transform(task.real_images))
    code = (
        "import joblib, numpy as np, sys;"
        f"emb = joblib.load(r'{tmp_path / 'emb.joblib'}');"
        f"out = emb.transform(np.load(r'{tmp_path / 'imgs.npy'}'));"
        f"np.testing.assert_array_equal(out, np.load(r'{tmp_path / 'expected.npy'}'));"
        "print('same')"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "same"


def test_verbose_prints_one_line_per_vit_pass_off_a_terminal(task, capsys):
    # Catches: the tqdm bar (carriage returns, erased when done) written into a log, or a pass
    # that prints nothing.
    clear_memory_cache()
    emb = tiny_embedder(verbose=1).fit(task.X_pairs, task.y)
    out, err = capsys.readouterr()
    assert out == "" and "\r" not in err
    probe, *lines = err.splitlines()
    assert probe.startswith("dtype='auto' on ") and f": {emb.dtype_} (probe " in probe
    assert [line.split(" in ")[0] for line in lines] == [
        "ViT embedding (real images): 24 images",
        "ViT embedding (generated images): 24 images",
    ]
    assert all(line.endswith("images/s)") for line in lines)
    emb.transform(task.real_images[:5] // 2)  # new images: one more pass
    assert capsys.readouterr().err.startswith("ViT embedding: 5 images in ")
    new_lib = task.generated_images[:7] // 2
    emb.transform(make_pairs(task.real_images, new_lib))  # a new library
    assert capsys.readouterr().err.startswith("ViT embedding (generated images): 7 images in ")
    emb.transform(make_pairs(task.real_images[:3] // 3, new_lib, reference=task.real_images // 4))
    assert [line.split(" in ")[0] for line in capsys.readouterr().err.splitlines()] == [
        "ViT embedding (reference real images): 24 images",
        "ViT embedding (real images): 3 images",
    ]


def test_verbose_0_prints_nothing(task, capsys):
    # Catches: progress shown whatever verbose says.
    clear_memory_cache()
    tiny_embedder().fit(task.X_pairs, task.y).transform(task.X_pairs)
    tiny_embedder(finetune="last", finetune_epochs=1, batch_size=16).fit(task.real_images)
    assert capsys.readouterr() == ("", "")


def test_verbose_fine_tuning_counts_batches(task, capsys):
    # Catches: a batch skipped by fine-tuning left uncounted (the pass reported as "stopped").
    emb = tiny_embedder(fusion="mean", finetune="last", finetune_epochs=1, batch_size=10)
    emb.set_params(verbose=1).fit(task.real_images[:21])  # batches of 10, 10 and 1 (skipped)
    err = capsys.readouterr().err.split("\n", 1)[1]  # after the dtype probe's line
    assert err.startswith("fine-tuning the ViT (1 epoch): 3 batches in "), err


def test_images_of_the_fitted_size_give_no_warning_even_if_the_vit_resizes_them(task):
    # Catches: comparing with the ViT's input size (32x32 here) instead of the fitted images'
    # (48x48): every transform would warn.
    emb = tiny_embedder().fit(task.X_pairs, task.y)
    assert emb.image_sizes_ == ((48, 48),)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        emb.transform(task.X_pairs)
        emb.transform(task.real_images)


def test_a_new_size_warns_once_per_call_with_how_many_images(task):
    # Catches: one warning per image set (real, then library) instead of one per call, or a
    # count of all images where only some are new.
    emb = tiny_embedder().fit(task.X_pairs, task.y)
    small = make_pairs(task.real_images[:, :40, :40], task.generated_images)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb.transform(small)
    assert [str(w.message) for w in caught] == [
        "the embedder was fitted on 48x48 images; these are 40x40 (24 of 48 images): they are "
        "resized to the ViT's 32x32 input, and their scores may not be comparable with those "
        "of the images it was fitted on. Fit on images of the size you audit."
    ]
    assert points_at(caught[0], __file__)


def _as_float(images) -> np.ndarray:
    """8-bit images as floats in [0, 1]."""
    assert images.dtype == np.uint8
    return images / 255.0


def test_reals_stored_as_12_bit_in_16_bit_files_against_8_bit_generated_images_warn(task):
    """Both sets are scaled by their type's range, so 12-bit reals in uint16 read 16x darker
    than 8-bit generated images: one warning per transform naming the darker set, both
    medians of the brightest pixel, the factor, and what to do. Catches: no check, the sets
    swapped in the message, a warning per image set, the ratio's direction."""
    emb = tiny_embedder(fusion="mean", pixel_size=16).fit(task.X_pairs, task.y)
    real12 = as_bits(task.real_images, 12)
    lib8 = as_bits(task.generated_images, 8)
    out = emb.transform(make_pairs(as_bits(task.real_images, 8), lib8))
    real_peak = float(np.median(out.spaces["pixels"][0].max(axis=1)))
    lib_peak = float(np.median(out.spaces["pixels"][1].max(axis=1)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb.transform(make_pairs(real12, lib8))
    scaled = real_peak * 4095 / 65535  # the same pixels, 16x darker (up to 8-bit rounding)
    message = str(caught[0].message) if caught else ""
    assert len(caught) == 1, [str(w.message) for w in caught]
    assert message.startswith(
        "the real images are 16x darker than the generated ones (their brightest pixel: "
    ), message
    low, high = (float(v) for v in re.findall(r"(\d\.\d{3}) against (\d\.\d{3})", message)[0])
    assert low == pytest.approx(scaled, abs=2e-3) and high == pytest.approx(lib_peak, abs=1e-3)
    assert message.endswith(
        ", medians over each set on a 0-1 scale): they are not on one intensity scale, and "
        "their similarities would compare brightness, not content. 12-bit data stored in "
        "16-bit files reads 16x darker than 8-bit images; rescale one set to the other's range "
        "before the audit."
    )
    assert points_at(caught[0], __file__)
    # the other way round: the generated images are the darker ones
    with pytest.warns(UserWarning, match="^the generated images are 16x darker than the real "):
        emb.transform(make_pairs(as_bits(task.real_images, 8), as_bits(task.generated_images, 12)))


def test_an_embedder_without_pixels_checks_the_intensities_on_a_sample(task, monkeypatch):
    """The paper's configuration (no ``pixel_size``) feeds the ViT alone, whose tokens may all
    come from the cache: the check reads up to 32 images of each set instead, and warns as the
    pixel path does. Catches: no check without pixels, the whole sets read."""
    from skfingerprint.images import ImageSet

    emb = tiny_embedder(fusion="mean").fit(task.X_pairs, task.y)
    assert emb.pixel_size_ is None
    library = as_bits(np.concatenate([task.generated_images] * 4), 8)  # 96 images
    reals = make_pairs(as_bits(task.real_images, 12), library)
    with pytest.warns(UserWarning, match="darker"):
        emb.transform(reals)  # the tokens of these images cached: the next call reads no image
    reads = []
    original = ImageSet.iter_batches

    def counting(self, *args, **kwargs):
        for idx, batch in original(self, *args, **kwargs):
            reads.append(len(batch))
            yield idx, batch

    monkeypatch.setattr(ImageSet, "iter_batches", counting)
    with pytest.warns(UserWarning, match="^the real images are 16x darker than the generated "):
        emb.transform(reals)
    assert sum(reads) == 24 + 32  # the 24 reals, 32 of the 96 generated images


def test_sampled_intensity_peak_reads_32_images_spread_over_the_set():
    from skfingerprint.images import as_image_set, sampled_intensity_peak

    # image i is uniform at i/99: 32 evenly spaced images have the median max of the whole set
    ramp = np.linspace(0, 1, 100, dtype=np.float32)
    images = as_image_set(np.repeat(ramp[:, None, None], 8, axis=1).repeat(8, axis=2))
    assert sampled_intensity_peak(images) == pytest.approx(0.5, abs=0.02)
    assert sampled_intensity_peak(images[:1]) == 0.0
    # the last 40 (0.61-1.0), from the top: their median, not the first 32's
    top = sampled_intensity_peak(images[::-1][:40])
    assert top == pytest.approx(np.median(ramp[60:]), abs=0.02)


def test_sets_on_one_intensity_scale_do_not_warn_whatever_their_type(task):
    """8-bit against 8-bit, 16-bit (full range) against 8-bit, floats against 8-bit, and a
    library at half the brightness (a dim generator: inside the 4x margin) all pass quietly."""
    emb = tiny_embedder(fusion="mean", pixel_size=16).fit(task.X_pairs, task.y)
    lib8 = as_bits(task.generated_images, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for real in (as_bits(task.real_images, 8), as_bits(task.real_images, 16),
                     _as_float(task.real_images)):  # fmt: skip
            emb.transform(make_pairs(real, lib8))
        emb.transform(make_pairs(task.real_images, _as_float(task.generated_images) * 0.5))
        emb.transform(_as_float(task.real_images) * 0.01)  # plain images: nothing to compare


@pytest.mark.parametrize(("margin", "warns"), [(1.01, False), (0.99, True), (0.0, True)])
def test_the_intensity_warning_starts_at_a_4x_difference(task, margin, warns):
    """The library dimmed to ``margin`` times the brightness at which the medians of the
    brightest pixel differ 4x (pixels scale linearly): 1% short of it is quiet, 1% past it
    warns, and a black library is infinitely darker. Catches: the margin's constant or
    comparison changed, the median for the mean or another statistic."""
    from skfingerprint.images import INTENSITY_MISMATCH_RATIO

    assert INTENSITY_MISMATCH_RATIO == 4.0
    emb = tiny_embedder(fusion="mean", pixel_size=16).fit(task.X_pairs, task.y)
    lib = _as_float(task.generated_images)
    spaces = emb.transform(make_pairs(task.real_images, lib)).spaces["pixels"]
    real_peak, lib_peak = (float(np.median(v.max(axis=1))) for v in spaces)
    factor = margin * real_peak / (4.0 * lib_peak)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb.transform(make_pairs(task.real_images, lib * factor))
    assert len(caught) == int(warns)
    if margin == 0.0:
        assert str(caught[0].message).startswith(
            "the generated images are infinitely darker than the real ones (their brightest "
            "pixel: 0.000 against "
        )


def test_an_embedder_fitted_before_sizes_were_recorded_transforms_without_a_warning(task):
    # Catches: a fitted embedder without image_sizes_ (saved by a version that did not record
    # them) failing with AttributeError, or warning about every image.
    emb = tiny_embedder().fit(task.X_pairs, task.y)
    with pytest.warns(UserWarning, match="fitted on 48x48 images; these are 40x40"):
        expected = emb.transform(task.real_images[:, :40, :40])
    del emb.image_sizes_
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(emb.transform(task.real_images[:, :40, :40]), expected)


@pytest.mark.parametrize(
    ("sizes", "text"),
    [
        ([(48, 64)], "64x48"),
        ([(48, 64), (32, 32)], "64x48 and 32x32"),
        ([(1, 2), (3, 4), (5, 6), (7, 8)], "2x1, 4x3, 6x5 and 8x7"),
        ([(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)], "2x1, 4x3, 6x5 and 2 other sizes"),
        ([(i, i + 1) for i in range(1, 7)], "2x1, 3x2, 4x3 and 3 other sizes"),
    ],
)
def test_sizes_in_messages_read_width_x_height_and_list_at_most_four(sizes, text):
    # Catches: height and width swapped, the cut at four sizes moved, the count of the others
    # off, or the list joined without its last "and".
    assert _format_sizes(sizes) == text


@pytest.mark.parametrize(
    ("real_side", "lib_side", "expected"),
    [(48, 48, 48), (80, 80, 64), (48, 40, 40), (40, 48, 40)],
)
def test_auto_pixel_size_is_the_smallest_fitted_side_capped_at_64(
    task, real_side, lib_side, expected
):
    # Catches: the cap or the minimum dropped (96 px upsampled images, or a library of smaller
    # images upsampled to the reals' size), only the reals' sizes read, or transform using the
    # sizes of the images it is given instead of the fitted size.
    def resized(images, side):
        return np.stack([np.resize(img, (side, side, *img.shape[2:])) for img in images])

    pairs = make_pairs(
        resized(task.real_images, real_side), resized(task.generated_images, lib_side)
    )
    emb = tiny_embedder(fusion="mean", pixel_size="auto").fit(pairs)
    assert emb.pixel_size_ == expected
    real_px, lib_px = emb.transform(pairs).spaces["pixels"]
    assert real_px.shape == (24, expected**2) and lib_px.shape == (24, expected**2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a new size warns; the pixels keep the fitted size
        other = emb.transform(make_pairs(task.real_images[:, :20, :20], task.generated_images))
    assert other.spaces["pixels"][0].shape == (24, expected**2)
    assert tiny_embedder(pixel_size=16).fit(pairs).pixel_size_ == 16  # an int is kept as given


@pytest.mark.parametrize("given_as", ["array", "folder", "paths"])
def test_labels_with_plain_images_are_refused_before_the_vit(task, tmp_path, given_as, vit_passes):
    # Catches: y silently dropped for plain images (the ViT then runs, and a pipeline's next
    # step refuses them only afterwards), or a message that does not say what was given.
    paths = [write_png(tmp_path / f"r{i}.png", img) for i, img in enumerate(task.real_images[:3])]
    X, given = {
        "array": (task.real_images, "an image array of shape (24, 48, 48)"),
        "folder": (tmp_path, f"the 3 images of '{tmp_path}'"),
        "paths": ([str(p) for p in paths], "3 image files"),
    }[given_as]
    before = vit_passes.images
    with pytest.raises(ValueError) as refused:
        tiny_embedder().fit(X, task.y[: 24 if given_as == "array" else 3])
    assert str(refused.value) == (
        f"fit got labels y with {given}, not X_pairs. y says which real images were used to "
        "train the generator, so the real images must come paired with the library of images "
        "it generated: X_pairs = make_pairs(real_images, generated_images) (folders, path "
        "lists or arrays), or load_imageclef_gans(folder).X_pairs, then fit(X_pairs, y). "
        "(For a later step that uses y on the embeddings of plain images, such as a "
        "classifier, set ViTLayerFusionEmbedder(labels='ignore').)"
    )
    assert vit_passes.images == before
    tiny_embedder(gate_epochs=2).fit(X)  # without y, plain images are fine


def test_sizes_cost_no_extra_reads_of_the_files(tmp_path, rng, monkeypatch):
    # Catches: the size check opening every header again beside check_files (3 opens a file
    # instead of 2: one header, one decode), or transform re-reading headers of known files.
    from skfingerprint import images

    clear_memory_cache()
    for i in range(4):
        write_png(tmp_path / f"x_{i}.png", rng.integers(0, 256, (40, 40), dtype=np.uint8))
    opened = []
    real_open = images._open_image

    def counting(path):
        opened.append(path.name)
        return real_open(path)

    monkeypatch.setattr(images, "_open_image", counting)
    emb = tiny_embedder(fusion="mean").fit(tmp_path)  # no augmented second pass
    assert sorted(opened) == sorted(2 * [f"x_{i}.png" for i in range(4)])
    assert emb.image_sizes_ == ((40, 40),)
    opened.clear()
    emb.transform(tmp_path)
    assert opened == []


# --- the gate memo: a grid over later steps trains each fold's gate once ----------------------


@pytest.fixture
def gate_trainings(monkeypatch):
    from skfingerprint import embedding

    calls = []
    for name in ("train_gate_supervised", "train_gate_views"):
        original = getattr(embedding, name)

        def counting(*args, _original=original, _name=name, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(embedding, name, counting)
    embedding._GATES.clear()
    yield calls
    embedding._GATES.clear()


def test_threshold_grid_trains_each_folds_gate_once_with_the_same_result(task, gate_trainings):
    """3 thresholds x 2 folds + the refit: 3 gate trainings, not 7, and the same scores as
    with the memo off (catches a key that ignores the data: folds would share one gate)."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    from skfingerprint import (
        FaissCandidateSelector,
        MaxSimilarityClassifier,
        embedding,
        kappa_scorer,
    )

    def grid():
        pipe = Pipeline(
            [
                ("embed", tiny_embedder()),
                ("select", FaissCandidateSelector(k=3, min_similarity=None)),
                ("clf", MaxSimilarityClassifier()),
            ]
        )
        cv = StratifiedKFold(2, shuffle=True, random_state=0)
        search = GridSearchCV(
            pipe, {"clf__threshold": [0.2, 0.5, 0.8]}, cv=cv, scoring=kappa_scorer
        )
        return search.fit(task.X_pairs, task.y)

    with_memo = grid()
    assert gate_trainings == ["train_gate_supervised"] * 3
    embedding._GATES.clear()
    embedding._GATES.resize(0)  # memo off: every cell trains
    try:
        without = grid()
    finally:
        embedding._GATES.resize(embedding.GATES_MEMORY_LIMIT)
    assert len(gate_trainings) == 3 + 7
    for key in ("split0_test_score", "split1_test_score"):
        np.testing.assert_array_equal(with_memo.cv_results_[key], without.cv_results_[key])


def test_a_grid_over_layer_sets_and_thresholds_trains_each_gate_once(task, gate_trainings):
    """GridSearchCV runs every layer set and fold before the next threshold: 5 layer sets x 2
    folds = 10 gates to keep between thresholds. A memo bounded at 8 entries (as it was) evicted
    each before its reuse and trained all 30 cells' gates; now 10 + the refit."""
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import Pipeline

    from skfingerprint import FaissCandidateSelector, MaxSimilarityClassifier, kappa_scorer

    pipe = Pipeline(
        [
            ("embed", tiny_embedder(gate_epochs=5)),
            ("select", FaissCandidateSelector(k=3, min_similarity=None)),
            ("clf", MaxSimilarityClassifier()),
        ]
    )
    grid = {
        "embed__layers": [(1, 2), (2, 3), (3, 4), (1, 4), (1, 2, 3)],
        "clf__threshold": [0.2, 0.5, 0.8],
    }
    cv = StratifiedKFold(2, shuffle=True, random_state=0)
    GridSearchCV(pipe, grid, cv=cv, scoring=kappa_scorer).fit(task.X_pairs, task.y)
    assert gate_trainings == ["train_gate_supervised"] * (5 * 2 + 1)


def test_a_single_block_trains_no_gate_and_embeds_as_the_mean(task, gate_trainings):
    """One block's weight is 1 whatever the gate: training it (or running the ViT on
    augmented views for it) would be wasted. The output is the plain fusion of that block."""
    gated = tiny_embedder(layers=(3,)).fit(task.X_pairs, task.y)
    unlabelled = tiny_embedder(layers=(3,)).fit(task.real_images)
    assert gate_trainings == []
    np.testing.assert_array_equal(gated.fusion_weights_, [1.0])
    # each against the mean fusion fitted on the same input (it sets the standardisation)
    for emb, fit_args in ((gated, (task.X_pairs, task.y)), (unlabelled, (task.real_images,))):
        mean = tiny_embedder(layers=(3,), fusion="mean").fit(*fit_args)
        np.testing.assert_allclose(
            emb.transform(task.real_images), mean.transform(task.real_images), atol=1e-6
        )
    tiny_embedder(layers=(2, 3)).fit(task.X_pairs, task.y)
    assert gate_trainings == ["train_gate_supervised"]


def test_gate_memo_key_holds_every_input_of_the_training(task, gate_trainings):
    """Another gate parameter, other labels or an unseeded fit train again; an identical
    seeded fit does not, and gives the same embeddings."""
    from skfingerprint import clear_memory_cache, embedding

    a = tiny_embedder().fit(task.X_pairs, task.y)
    b = tiny_embedder().fit(task.X_pairs, task.y)
    assert len(gate_trainings) == 1
    np.testing.assert_array_equal(a.transform(task.real_images), b.transform(task.real_images))
    tiny_embedder(gate_lr=0.02).fit(task.X_pairs, task.y)
    tiny_embedder().fit(task.X_pairs, 1 - task.y)
    tiny_embedder(random_state=None).fit(task.X_pairs, task.y)
    tiny_embedder(random_state=None).fit(task.X_pairs, task.y)
    assert len(gate_trainings) == 5
    clear_memory_cache()
    assert len(embedding._GATES) == 0
    tiny_embedder().fit(task.X_pairs, task.y)
    assert len(gate_trainings) == 6


def _adam_steps(make_opt, steps=5):
    torch.manual_seed(0)
    w = torch.nn.Parameter(torch.randn(4, 3))
    x = torch.randn(8, 4)
    opt = make_opt([w])
    for _ in range(steps):
        loss = ((x @ w).tanh() ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return w.detach()


def test_gate_optimiser_takes_plain_adams_steps():
    from skfingerprint._runtime import adam

    fused = _adam_steps(lambda p: adam(p, lr=0.1))
    plain = _adam_steps(lambda p: torch.optim.Adam(p, lr=0.1))
    start = _adam_steps(lambda p: torch.optim.Adam(p, lr=0.1), steps=0)
    assert not torch.allclose(fused, start)  # it moved
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)


def test_gate_optimiser_falls_back_where_adam_cannot_fuse(monkeypatch):
    from skfingerprint import _runtime

    real_adam = torch.optim.Adam

    def adam_without_fusion(params, lr, fused=None):
        if fused:
            raise RuntimeError("`fused=True` requires CUDA tensors")
        return real_adam(params, lr=lr)

    monkeypatch.setattr(torch.optim, "Adam", adam_without_fusion)
    weight = torch.nn.Parameter(torch.zeros(2))
    # a generator, as module.parameters() is: the failed fused attempt must not consume it
    opt = _runtime.adam((p for p in [weight]), lr=0.5)
    assert isinstance(opt, real_adam) and opt.defaults["lr"] == 0.5
    assert opt.param_groups[0]["params"] == [weight]
    assert not opt.defaults.get("fused")


def test_reference_reals_are_embedded_in_every_space_as_rows_would_be(task):
    """Catches the reference not embedded (dropped), embedded without its pixel space, or
    embedded as something other than what the same images give as rows."""
    emb = tiny_embedder(pixel_size=16).fit(task.X_pairs, task.y)
    X = make_pairs(task.real_images[:10], task.generated_images, reference=task.real_images[10:])
    out = emb.transform(X)
    as_rows = emb.transform(make_pairs(task.real_images[10:], task.generated_images))
    assert out.reference is not None and out.reference.ids == as_rows.ids
    np.testing.assert_allclose(out.reference.real, as_rows.real, atol=1e-6)
    np.testing.assert_allclose(out.reference.spaces["pixels"][0], as_rows.spaces["pixels"][0])
    rows_alone = emb.transform(make_pairs(task.real_images[:10], task.generated_images))
    np.testing.assert_allclose(out.real, rows_alone.real, atol=1e-6)
    assert len(out) == 10 and out.reference.library_key == out.library_key
    assert emb.transform(task.X_pairs).reference is None


def test_each_fine_tuning_step_trains_two_normalised_views_of_its_batch(
    task, monkeypatch, fine_tuning_optimizers
):
    """What one step of contrastive fine-tuning feeds where (catches: the views drawn without
    augment_p or the ViT's patch size, a third view drawn, the views normalised the wrong way
    round, the loss comparing a view with itself, the projection head without its hidden layer,
    its GELU or at another width, bf16 autocast not following the embedder's precision, the
    blocks past the deepest fused one run for nothing)."""
    from skfingerprint import _finetune, _vit

    seen = {"views": [], "inputs": [], "losses": [], "autocast": [], "blocks": []}

    def views(x, gen, **kwargs):  # two known views: the batch, then the batch dimmed
        view = x * (1.0 - 0.2 * (len(seen["views"]) % 2))
        seen["views"].append((view, kwargs))
        return view

    nt_xent = _finetune.nt_xent

    def loss(z1, z2):
        seen["losses"].append((z1, z2))
        return nt_xent(z1, z2)

    forward = _vit.FingerprintViT.forward

    def spied(self, x, *args, **kwargs):
        if self.training:
            seen["inputs"].append(x.clone())
            seen["blocks"].append(args[0] if args else kwargs.get("blocks"))
            autocast = torch.is_autocast_enabled("cpu")
            seen["autocast"].append(torch.get_autocast_dtype("cpu") if autocast else None)
        return forward(self, x, *args, **kwargs)

    monkeypatch.setattr(_finetune, "augment_batch", views)
    monkeypatch.setattr(_finetune, "nt_xent", loss)
    sequences = []

    class Sequential(torch.nn.Sequential):  # the projection head is one
        def __init__(self, *modules):
            super().__init__(*modules)
            sequences.append(self)

    monkeypatch.setattr(_finetune.nn, "Sequential", Sequential)
    monkeypatch.setattr(_vit.FingerprintViT, "forward", spied)
    for dtype in ("float32", "bfloat16"):
        for key in ("views", "inputs", "losses", "autocast", "blocks"):
            seen[key].clear()
        emb = tiny_embedder(
            fusion="mean", finetune="last", finetune_epochs=1, batch_size=4, augment_p=0.3
        )
        emb.set_params(dtype=dtype).fit(task.real_images[:4])  # one batch of 4
        assert [kwargs for _, kwargs in seen["views"]] == [{"p": 0.3, "patch_size": 8}] * 2
        backbone = emb.backbone_
        mean = torch.tensor(backbone.mean).view(1, 3, 1, 1)
        std = torch.tensor(backbone.std).view(1, 3, 1, 1)
        assert len(seen["inputs"]) == 2
        assert emb.layers_ == (1, 2, 3) and seen["blocks"] == [3, 3]  # of 4: stops at the 3rd
        for (x, _), given in zip(seen["views"], seen["inputs"], strict=True):
            torch.testing.assert_close(given, (x - mean) / std)
        ((z1, z2),) = seen["losses"]
        assert z1.shape == (4, 128) and not torch.equal(z1, z2)
        assert seen["autocast"] == [torch.bfloat16 if dtype == "bfloat16" else None] * 2
    head_params = fine_tuning_optimizers[-1].param_groups[1]["params"]
    assert [tuple(p.shape) for p in head_params] == [(32, 32), (32,), (128, 32), (128,)]
    (head,) = [m for m in sequences if any(p is head_params[0] for p in m.parameters())]
    assert [type(m) for m in head] == [torch.nn.Linear, torch.nn.GELU, torch.nn.Linear]


def test_fine_tuning_steps_on_batches_of_two_and_names_its_epochs(task, monkeypatch):
    # Catches: batches smaller than 3 skipped or merged (a batch of two still has a negative
    # for NT-Xent), the progress line's total, plural or units wrong.
    from skfingerprint import _finetune

    shown, losses = [], []

    class Shown(_finetune.Progress):
        def __init__(self, total, verbose, desc, **kwargs):
            shown.append((total, desc, kwargs))
            super().__init__(total, verbose, desc, **kwargs)

    nt_xent = _finetune.nt_xent
    monkeypatch.setattr(_finetune, "Progress", Shown)
    monkeypatch.setattr(_finetune, "nt_xent", lambda *z: losses.append(1) or nt_xent(*z))
    for epochs in (1, 2):
        tiny_embedder(fusion="mean", finetune="last", finetune_epochs=epochs, batch_size=2).fit(
            task.real_images[:4]
        )
    assert len(losses) == 2 + 4  # every batch of two trained, in each epoch
    units = {"noun": "batches", "unit": "batch"}
    assert shown == [
        (2, "fine-tuning the ViT (1 epoch)", units),
        (4, "fine-tuning the ViT (2 epochs)", units),
    ]
