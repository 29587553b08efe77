"""The per-block CLS token cache: one ViT pass per unique image, whatever is tuned downstream.

Entries are keyed by image content and by the model (architecture, weights digest, input size,
dtype). In memory they live in a process-wide store (so clones made by GridSearchCV share
them), bounded by bytes with the least recently used evicted first (see
:func:`set_memory_cache_limit`); with ``cache_dir`` each entry is also one ``.npy`` file,
written to a temporary name and renamed into place, so an interrupted run or two processes
sharing the folder never leave a corrupt entry (``atomic_path`` also removes the temporary file
a killed writer left, the next time the entry is written).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ._io import atomic_path
from ._lru import LRUCache
from ._warnings import warn_at_caller

__all__ = ["TokenCache", "clear_memory_cache", "set_memory_cache_limit"]

#: Default bound of the in-memory tokens, in bytes. A ViT-B entry is 12 blocks x 768 float16 =
#: 18,432 bytes, so 2 GiB keeps about 116,000 images (ViT-L, 24 x 1024: about 43,000): a large
#: library, yet a small share of a workstation's memory.
DEFAULT_MEMORY_LIMIT = 2 * 1024**3

# Tokens by (model key, image key), all models together, bounded by their bytes.
_MEMORY: LRUCache[tuple[str, str], np.ndarray] = LRUCache(
    DEFAULT_MEMORY_LIMIT, size=lambda arr: arr.nbytes
)


#: Bound of the kept ViT states, in bytes. A pass that stops early (``stop_early``) keeps, per
#: image, every token after its last block (ViT-B at 224 px: 197 x 768 float32 = 605 KB), so
#: that a later fit with deeper layers runs only the missing blocks; 256 MiB holds ~440 ViT-B
#: images. A call with more images than that keeps none (they would evict one another), and
#: its deeper fits run every block again.
DEFAULT_STATE_LIMIT = 256 * 1024**2

# (depth, tokens after block ``depth``) by (model key, image key); memory only.
_STATES: LRUCache[tuple[str, str], tuple[int, np.ndarray]] = LRUCache(
    DEFAULT_STATE_LIMIT, size=lambda entry: entry[1].nbytes
)


def clear_memory_cache() -> None:
    """Forget every in-memory embedding, file digest and kept CANet fit (not the disk cache).

    The embedder keeps images' per-block tokens in memory for the life of the process (up to
    :func:`set_memory_cache_limit` bytes), the image loader the digests and sizes of the files
    it read, and the embedder's gates and CANet's nets of their recent seeded fits (so a grid
    over later parameters trains them once per fold); call this to free that memory, or to
    time a cold start.

    Examples
    --------
    >>> from skfingerprint import clear_memory_cache
    >>> clear_memory_cache()
    """
    _MEMORY.clear()
    _STATES.clear()
    images = sys.modules.get("skfingerprint.images")  # loaded only if images were read
    if images is not None:
        images._FILE_KEYS.clear()
        images._FILE_SIZES.clear()
    embedding = sys.modules.get("skfingerprint.embedding")  # its kept gates
    if embedding is not None:
        embedding._GATES.clear()
    canet = sys.modules.get("skfingerprint.canet")  # loaded only if CANet was used
    if canet is not None:
        canet._FITTED.clear()


def set_memory_cache_limit(nbytes: int) -> None:
    """Bound the bytes of per-image tokens kept in memory (default 2 GiB).

    The in-memory token cache is shared by every embedder of the process, all models together.
    Past the bound the least recently used images are evicted first, at once if the bound
    shrinks; an evicted image is read back from ``cache_dir`` when the embedder has one, else
    it goes through the ViT again. ``0`` keeps nothing in memory.

    Parameters
    ----------
    nbytes : int
        The bound in bytes, >= 0. One ViT-B image takes 12 blocks x 768 float16 = 18,432
        bytes, so the default keeps about 116,000 ViT-B images.

    Raises
    ------
    ValueError
        ``nbytes`` is not an int >= 0.

    Examples
    --------
    >>> from skfingerprint import set_memory_cache_limit
    >>> set_memory_cache_limit(512 * 1024**2)  # 512 MiB
    >>> set_memory_cache_limit(2 * 1024**3)  # the default
    """
    _MEMORY.resize(nbytes)


class TokenCache:
    """Per-image ``(blocks, D)`` float16 CLS tokens of a model's first blocks (all of them, or
    up to the deepest block a fit needed).

    Parameters
    ----------
    model_key : str
        Identifies the model, its weights, input size and dtype.
    cache_dir : str or Path, optional
        Folder for the on-disk copy; memory only when None.
    """

    def __init__(self, model_key: str, cache_dir: str | os.PathLike | None = None) -> None:
        self.model_key = model_key
        self.folder = None if cache_dir is None else Path(cache_dir) / model_key

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        hit = _MEMORY.get((self.model_key, key))
        if hit is not None or self.folder is None:
            return hit
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            warn_at_caller(
                f"Ignoring unreadable cache entry '{path}' ({exc}); it will be recomputed",
                RuntimeWarning,
            )
            return None
        _MEMORY.put((self.model_key, key), arr)
        return arr

    def room_for_states(self, n: int, nbytes: int) -> bool:
        """Whether ``n`` states of ``nbytes`` each fit in the state store at once."""
        return n <= self.state_capacity(nbytes)

    def state_capacity(self, nbytes: int) -> int:
        """How many states of ``nbytes`` each the state store holds at once."""
        return _STATES.max_size // nbytes

    def get_state(self, key: str, depth: int) -> np.ndarray | None:
        """The tokens after block ``depth`` kept for ``key``, or None."""
        entry = _STATES.get((self.model_key, key))
        return entry[1] if entry is not None and entry[0] == depth else None

    def put_state(self, key: str, depth: int, state: np.ndarray | None) -> None:
        """Keep ``key``'s tokens after block ``depth`` (memory only; replaces an earlier one);
        None forgets it."""
        if state is None:
            _STATES.discard((self.model_key, key))
        else:
            _STATES.put((self.model_key, key), (depth, np.ascontiguousarray(state)))

    def put(self, key: str, tokens: np.ndarray) -> None:
        arr = np.ascontiguousarray(tokens, dtype=np.float16)
        _MEMORY.put((self.model_key, key), arr)  # not kept if larger than the whole bound
        if self.folder is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # readers see no entry or the whole entry
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
