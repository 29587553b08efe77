"""The ViT's CLS tokens for a set of images, through the token cache.

Each image's tokens are looked up by its content key; the ViT runs only on the images missing,
caching every block it runs, and an entry with too few blocks goes on from the ViT state its pass
kept, running only the missing blocks. Used by :class:`~skfingerprint.ViTLayerFusionEmbedder`,
whose parameters (``layers_``, ``stop_early``, ``batch_size``, ``augment_p``, ``verbose``, the
cache folder, the device and precision) these functions read from ``embedder``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from ._cache import TokenCache
from ._progress import Progress
from ._runtime import prepared_for
from ._warnings import warn_at_caller
from .augment import VERSION as AUGMENT_VERSION
from .images import ImageSet

__all__ = ["vit_tokens"]


def token_cache(embedder, backbone, dtype, tag: str = "") -> TokenCache:
    """The cache of ``backbone``'s tokens in ``dtype`` (``tag``: augmented views' seed)."""
    key = hashlib.blake2b(
        f"cls-v1|{embedder.model}|{backbone.digest}|{backbone.img_size}|{dtype}|{tag}".encode(),
        digest_size=12,
    ).hexdigest()
    return TokenCache(key, embedder._cache_folder())


def vit_tokens(
    embedder, images: ImageSet, backbone, *, augment_seed: int | None = None, what: str = ""
) -> np.ndarray:
    """The fused blocks' CLS tokens ``(n, len(layers_), D)`` float16, from the cache or one ViT
    pass (which caches every block it runs: up to the deepest of ``layers_``, or all of them
    without ``stop_early``). An entry with too few blocks goes on from the ViT state its pass
    kept, running only the missing blocks; without one (evicted, or never kept) it is computed
    again. ``what`` names the images in the progress line."""
    device, dtype = embedder._runtime()
    tag = (
        "" if augment_seed is None else f"aug{augment_seed}|{embedder.augment_p}|v{AUGMENT_VERSION}"
    )
    cache = token_cache(embedder, backbone, dtype, tag)
    keys = [images.content_key(i) for i in range(len(images))]
    needed = max(embedder.layers_)
    stop = needed if embedder.stop_early else backbone.depth
    first_index, resume, n_too_shallow = {}, {}, 0
    for i, k in enumerate(keys):
        if k in first_index or k in resume:
            continue
        entry = cache.get(k)
        if entry is not None and len(entry) >= needed:
            continue
        state = None if entry is None else cache.get_state(k, len(entry))
        if state is not None:
            resume[k] = (entry, state)
        else:
            first_index[k] = i
            n_too_shallow += entry is not None
    if resume:
        _resume_vit(embedder.batch_size, resume, cache, backbone, device, dtype, stop)
    todo = list(first_index.values())
    if n_too_shallow:
        warn_at_caller(
            f"{n_too_shallow} images were embedded by a pass that stopped before block "
            f"{needed} and kept no ViT state to go on from (the store holds "
            f"{cache.state_capacity(backbone.state_nbytes())} images' states): the ViT "
            "runs over them again, every block this time. In a search over `layers`, "
            "stop_early=False embeds each image once."
        )
    if todo:
        images.check_files()  # fail on a bad file before the long pass, not in the middle
        desc = f"ViT embedding ({what})" if what else "ViT embedding"
        # cached, but too shallow and no state kept: other layer sets are being tried, so
        # run every block this time and never again (a grid costs at most two passes)
        run = stop if not n_too_shallow else backbone.depth
        gen = None if augment_seed is None else torch.Generator().manual_seed(augment_seed)
        _run_vit(embedder, images, todo, keys, cache, backbone, device, dtype, gen, desc, run)
    blocks = [v - 1 for v in embedder.layers_]
    return np.stack([cache.get(k)[blocks] for k in keys])


def _run_vit(embedder, images, todo, keys, cache, backbone, device, dtype, gen, desc, blocks):
    """Run the first ``blocks`` blocks over the images ``todo`` (indices into ``images``,
    augmented by ``gen`` when given) and cache their tokens under ``keys``."""
    # a pass that stops early keeps its state, if all of this call's fit, so that deeper
    # layers later run only the missing blocks
    keep_state = blocks < backbone.depth and cache.room_for_states(
        len(todo), backbone.state_nbytes()
    )

    def inputs():
        for idx, batch in images.iter_batches(embedder.batch_size, indices=todo):
            yield idx, embedder._model_input(batch, backbone, gen, embedder.augment_p)

    batches = prepared_for(device, inputs())
    try:
        with Progress(len(todo), embedder.verbose, desc) as progress:
            for idx, x in batches:
                out = backbone.embed_batch(x, device, dtype, blocks, keep_state=keep_state)
                tokens, state = out if keep_state else (out, None)
                for j, i in enumerate(idx):
                    cache.put(keys[i], tokens[j])
                    if keep_state:
                        cache.put_state(keys[i], blocks, state[j].copy())
                progress.update(len(idx))
    finally:
        batches.close()


def _resume_vit(batch_size, entries: dict, cache, backbone, device, dtype, stop: int) -> None:
    """Run the blocks that ``entries`` (``(cached tokens, kept state)`` by image key) lack, up
    to block ``stop``, from their states; cache the longer tokens, and the new state unless
    every block has run."""
    by_depth = {}
    for k, (tokens, _) in entries.items():
        by_depth.setdefault(len(tokens), []).append(k)
    for start, group in by_depth.items():
        for b in range(0, len(group), batch_size):
            batch = group[b : b + batch_size]
            state = np.stack([entries[k][1] for k in batch])
            cls, after = backbone.resume_batch(state, device, dtype, start, stop)
            for j, k in enumerate(batch):
                cache.put(k, np.concatenate([entries[k][0], cls[j].astype(np.float16)]))
                cache.put_state(k, stop, after[j].copy() if stop < backbone.depth else None)
