"""The per-block CLS token cache: one ViT pass per unique image, whatever is tuned downstream.

Entries are keyed by image content and by the model (architecture, weights digest, input size,
dtype). In memory they live in a process-wide store (so clones made by GridSearchCV share
them); with ``cache_dir`` each entry is also one ``.npy`` file, written to a temporary name and
renamed into place, so an interrupted run or two processes sharing the folder never leave a
corrupt entry (``atomic_path`` also removes the temporary file a killed writer left, the next
time the entry is written).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from ._io import atomic_path
from ._warnings import warn_at_caller

__all__ = ["TokenCache", "clear_memory_cache"]

_MEMORY: dict[str, dict[str, np.ndarray]] = {}


def clear_memory_cache() -> None:
    """Forget every in-memory embedding and kept CANet fit (the on-disk cache is left alone).

    The embedder keeps every image's per-block tokens in memory for the life of the process,
    and CANet keeps its last few seeded fits (so a grid over ``threshold`` trains once per
    fold); call this to free that memory, or to time a cold start.

    Examples
    --------
    >>> from skfingerprint import clear_memory_cache
    >>> clear_memory_cache()
    """
    _MEMORY.clear()
    canet = sys.modules.get("skfingerprint.canet")  # loaded only if CANet was used
    if canet is not None:
        canet._FITTED.clear()


class TokenCache:
    """Per-image ``(depth, D)`` float16 CLS tokens for one model.

    Parameters
    ----------
    model_key : str
        Identifies the model, its weights, input size and dtype.
    cache_dir : str or Path, optional
        Folder for the on-disk copy; memory only when None.
    """

    def __init__(self, model_key: str, cache_dir: str | os.PathLike | None = None) -> None:
        self.model_key = model_key
        self.memory = _MEMORY.setdefault(model_key, {})
        self.folder = None if cache_dir is None else Path(cache_dir) / model_key

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        hit = self.memory.get(key)
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
        self.memory[key] = arr
        return arr

    def put(self, key: str, tokens: np.ndarray) -> None:
        arr = np.ascontiguousarray(tokens, dtype=np.float16)
        self.memory[key] = arr
        if self.folder is None:
            return
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # readers see no entry or the whole entry
            with open(tmp, "wb") as fh:
                np.save(fh, arr, allow_pickle=False)
