"""One bounded, thread-safe least-recently-used store for the package's process-wide caches.

The token cache (bounded by bytes), the file digests and header sizes of ``images`` (bounded by
entry count), the loaded backbones and the kept fits of CANet and of the embedder's gate all use
it, so no process-wide cache grows without bound; ``seeded_fit_key`` keys the two memos of fits.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from numbers import Integral
from typing import Generic, TypeVar

__all__ = ["LRUCache", "array_nbytes", "seeded_fit_key"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def _one(value: object) -> int:
    return 1


class LRUCache(Generic[K, V]):
    """Values by key; once their summed size passes ``max_size``, the least recently used go.

    Parameters
    ----------
    max_size : int
        Bound on the summed sizes of the kept values, >= 0.
    size : callable, optional
        ``size(value)``, an int >= 0. When None every value counts 1, so ``max_size`` bounds
        the number of entries.

    Notes
    -----
    ``get`` (a hit) and ``put`` make their key the most recently used. A value larger than
    ``max_size`` is not kept (it would evict everything else, then itself). Every method holds
    a lock, so threads, such as a threaded ``GridSearchCV``, can share one store.

    Examples
    --------
    >>> cache = LRUCache(2)
    >>> cache.put("a", 1); cache.put("b", 2); cache.get("a"); cache.put("c", 3)
    1
    >>> cache.keys()
    ['a', 'c']
    """

    def __init__(self, max_size: int, size: Callable[[V], int] | None = None) -> None:
        self._size = _one if size is None else size
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.total = 0  # summed sizes of the kept values
        self.max_size = 0
        self.resize(max_size)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is kept (does not refresh it)."""
        return key in self._entries

    def keys(self) -> list[K]:
        """The kept keys, least recently used first."""
        with self._lock:
            return list(self._entries)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value of ``key``, now the most recently used; ``default`` when not kept."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return default
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: K, value: V) -> None:
        """Keep ``value`` under ``key`` as the most recently used, evicting as the bound needs."""
        size = self._size(value)
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.total -= old[1]
            if size > self.max_size:  # kept, it would push out everything, then itself
                return
            self._entries[key] = (value, size)
            self.total += size
            self._evict()

    def discard(self, key: K) -> None:
        """Forget ``key``'s entry, if there is one."""
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.total -= old[1]

    def resize(self, max_size: int) -> None:
        """Set the bound, evicting the least recently used now until it holds.

        Raises
        ------
        ValueError
            ``max_size`` is not an int >= 0.
        """
        if isinstance(max_size, bool) or not isinstance(max_size, Integral) or max_size < 0:
            raise ValueError(f"The cache bound must be an int >= 0, got {max_size!r}")
        with self._lock:
            self.max_size = int(max_size)
            self._evict()

    def clear(self) -> None:
        """Forget every entry."""
        with self._lock:
            self._entries.clear()
            self.total = 0

    def _evict(self) -> None:
        while self.total > self.max_size:
            _, (_, size) = self._entries.popitem(last=False)
            self.total -= size


def array_nbytes(value: object) -> int:
    """Bytes of the numpy arrays in ``value`` (nested dicts, lists and tuples), at least 1 KiB:
    the size of a kept fit's state, so that a memo of fits is bounded by memory."""
    import numpy as np

    def walk(v) -> int:
        if isinstance(v, np.ndarray):
            return v.nbytes
        if isinstance(v, dict):
            return sum(walk(x) for x in v.values())
        if isinstance(v, (list, tuple)):
            return sum(walk(x) for x in v)
        return 0

    return max(1024, walk(value))


def seeded_fit_key(estimator, *data, context=(), exclude=()) -> str | None:
    """Key of a fit in a memo of seeded fits: a digest of everything the fit reads.

    The estimator's parameters (but ``exclude``), ``context`` (what else decides the result:
    device, model digest, precision) and each of ``data`` (arrays, shape and dtype included;
    None allowed). None when ``random_state`` is not an int: only seeded fits repeat exactly.
    """
    import hashlib

    import numpy as np

    if not isinstance(estimator.get_params().get("random_state"), Integral):
        return None
    params = sorted((k, repr(v)) for k, v in estimator.get_params().items() if k not in exclude)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((params, tuple(context))).encode())
    for arr in data:
        if arr is None:
            h.update(b"none")
            continue
        arr = np.ascontiguousarray(arr)
        h.update(repr((arr.shape, str(arr.dtype))).encode())
        h.update(arr.tobytes())
    return h.hexdigest()
