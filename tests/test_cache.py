"""The process-wide caches are bounded: least recently used evicted first (issue 14).

Each test names the one-line bug it catches.
"""

import numpy as np
import pytest
from PIL import Image

import skfingerprint.images as images
from skfingerprint import clear_memory_cache, set_memory_cache_limit
from skfingerprint._cache import _MEMORY, DEFAULT_MEMORY_LIMIT, TokenCache
from skfingerprint._lru import LRUCache, array_nbytes
from skfingerprint.images import ImageSet

ENTRY = np.zeros((4, 8), dtype=np.float16)  # 64 bytes
NBYTES = ENTRY.nbytes


def tokens(i: int, rows: int = 4) -> np.ndarray:
    return np.full((rows, 8), i, dtype=np.float16)


@pytest.fixture(autouse=True)
def fresh_caches():
    clear_memory_cache()
    yield
    set_memory_cache_limit(DEFAULT_MEMORY_LIMIT)
    images._FILE_KEYS.resize(images._MAX_FILE_ENTRIES)
    images._FILE_SIZES.resize(images._MAX_FILE_ENTRIES)
    clear_memory_cache()


def in_memory(model: str, key: str) -> bool:
    return (model, key) in _MEMORY


def test_documented_defaults():
    """Bug: a default bound that differs from the docs (2 GiB; 200,000 file entries)."""
    assert _MEMORY.max_size == DEFAULT_MEMORY_LIMIT == 2 * 1024**3
    assert images._FILE_KEYS.max_size == images._FILE_SIZES.max_size == 200_000


def test_least_recently_used_is_evicted_and_a_get_refreshes():
    """Bug: ``get`` without ``move_to_end`` (a hit does not refresh: 'a' would go), or
    ``popitem(last=True)`` (the newest would go)."""
    set_memory_cache_limit(3 * NBYTES)
    cache = TokenCache("m")
    for key in "abc":
        cache.put(key, tokens(ord(key)))
    np.testing.assert_array_equal(cache.get("a"), tokens(ord("a")))  # 'a' is now the newest
    cache.put("d", tokens(ord("d")))
    assert cache.get("b") is None  # the least recently used
    assert [k for _, k in _MEMORY.keys()] == ["c", "a", "d"]


def test_the_byte_bound_holds_after_many_puts_of_mixed_sizes():
    """Bug: ``if`` for ``while`` in ``_evict`` (one eviction per put: a large entry overshoots),
    or a lost ``self.total += size`` (nothing ever evicted)."""
    limit = 10 * NBYTES
    set_memory_cache_limit(limit)
    cache = TokenCache("m")
    rng = np.random.default_rng(0)
    for i in range(200):
        cache.put(str(i), tokens(i, rows=int(rng.integers(1, 16))))
        kept = [_MEMORY.get(k) for k in _MEMORY.keys()]
        assert _MEMORY.total == sum(a.nbytes for a in kept) <= limit
    assert in_memory("m", "199")  # the newest is kept


def test_entries_that_exactly_fill_the_bound_are_all_kept():
    """Bug: ``>=`` for ``>`` in ``_evict`` (a full cache evicts one entry too many)."""
    set_memory_cache_limit(3 * NBYTES)
    cache = TokenCache("m")
    for key in "abc":
        cache.put(key, tokens(1))
    assert len(_MEMORY) == 3 and _MEMORY.total == 3 * NBYTES


def test_an_entry_larger_than_the_bound_is_not_kept_but_is_written_to_disk(tmp_path):
    """Bug: dropping ``if size > self.max_size: return`` in ``put`` (the large entry flushes
    the small ones, then itself); the disk copy is written and read back regardless."""
    set_memory_cache_limit(2 * NBYTES)
    cache = TokenCache("m", tmp_path)
    cache.put("small", tokens(1))
    big = tokens(2, rows=13)
    cache.put("big", big)
    assert not in_memory("m", "big") and in_memory("m", "small")
    assert _MEMORY.total == NBYTES
    np.testing.assert_array_equal(cache.get("big"), big)  # from disk
    assert not in_memory("m", "big")  # read back, still not kept
    assert TokenCache("m").get("big") is None  # without cache_dir: gone


def test_replacing_a_value_with_one_too_large_drops_the_old_value():
    """Bug: ``put`` returning before popping the old entry (a stale value stays cached)."""
    set_memory_cache_limit(2 * NBYTES)
    cache = TokenCache("m")
    cache.put("a", tokens(1))
    cache.put("a", tokens(2, rows=13))
    assert cache.get("a") is None and _MEMORY.total == 0


def test_an_evicted_entry_is_read_back_from_disk(tmp_path):
    """Bug: an eviction that also deleted the disk copy, or a disk read not stored back in
    memory (every later get would re-read the file)."""
    set_memory_cache_limit(NBYTES)
    cache = TokenCache("m", tmp_path)
    cache.put("a", tokens(1))
    cache.put("b", tokens(2))  # evicts 'a' from memory
    assert not in_memory("m", "a")
    np.testing.assert_array_equal(cache.get("a"), tokens(1))
    assert in_memory("m", "a") and not in_memory("m", "b")


def test_one_bound_across_models_and_entries_keyed_by_model():
    """Bug: keying the store by image key only (model B would get model A's tokens), or one
    bound per model (two models would hold twice the bound)."""
    set_memory_cache_limit(2 * NBYTES)
    a, b = TokenCache("model-a"), TokenCache("model-b")
    a.put("img", tokens(1))
    assert b.get("img") is None
    b.put("img", tokens(2))
    np.testing.assert_array_equal(a.get("img"), tokens(1))
    b.put("other", tokens(3))  # the third entry: evicts model-b's 'img', the oldest
    assert _MEMORY.total == 2 * NBYTES and not in_memory("model-b", "img")


def test_a_smaller_limit_evicts_at_once_and_bad_limits_are_refused():
    """Bug: ``resize`` that sets the bound without evicting (the cache stays over it until the
    next put), or one that accepts a negative or non-int bound."""
    cache = TokenCache("m")
    for i in range(5):
        cache.put(str(i), tokens(i))
    set_memory_cache_limit(2 * NBYTES)
    assert [k for _, k in _MEMORY.keys()] == ["3", "4"] and _MEMORY.total == 2 * NBYTES
    set_memory_cache_limit(0)
    assert len(_MEMORY) == 0
    cache.put("x", tokens(1))
    assert len(_MEMORY) == 0  # 0 keeps nothing
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="int >= 0"):
            set_memory_cache_limit(bad)
    assert _MEMORY.max_size == 0  # unchanged by the refused calls


def test_clear_memory_cache_empties_every_process_wide_cache(tmp_path):
    """Bug: ``clear`` without ``self.total = 0`` (phantom bytes: later puts evict too soon), or
    ``clear_memory_cache`` forgetting the file caches."""
    set_memory_cache_limit(3 * NBYTES)
    cache = TokenCache("m")
    for key in "abc":
        cache.put(key, tokens(1))
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((6, 5), dtype=np.uint8)).save(path)
    files = ImageSet(paths=[path])
    files.content_key(0)
    files.sizes()
    assert len(images._FILE_KEYS) == len(images._FILE_SIZES) == 1
    clear_memory_cache()
    assert len(_MEMORY) == 0 and _MEMORY.total == 0
    assert len(images._FILE_KEYS) == len(images._FILE_SIZES) == 0
    for key in "def":
        cache.put(key, tokens(1))
    assert len(_MEMORY) == 3  # the bound counts from zero again


def test_file_key_and_size_caches_stay_bounded_and_still_spare_reads(tmp_path, monkeypatch):
    """Bug: ``_FILE_KEYS``/``_FILE_SIZES`` back to plain dicts (unbounded), or a lost ``put``
    after hashing (every content_key would re-read the file)."""
    images._FILE_KEYS.resize(3)
    images._FILE_SIZES.resize(3)
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(np.full((4 + i, 5), i, dtype=np.uint8)).save(paths[-1])
    files = ImageSet(paths=paths)
    keys = [files.content_key(i) for i in range(5)]
    assert files.sizes() == [(4 + i, 5) for i in range(5)]
    assert len(images._FILE_KEYS) == len(images._FILE_SIZES) == 3
    reads = []
    original = type(paths[0]).read_bytes
    monkeypatch.setattr(type(paths[0]), "read_bytes", lambda p: reads.append(p) or original(p))
    assert files.content_key(4) == keys[4] and reads == []  # kept: not read again
    assert files.content_key(0) == keys[0] and reads == [paths[0]]  # evicted: re-hashed, same
    assert len(images._FILE_KEYS) == 3


def test_lru_cache_counts_entries_without_a_size_function():
    """Bug: a default size other than 1 per value (``max_size`` would not count entries)."""
    cache = LRUCache(2)
    cache.put("a", 10)
    cache.put("b", 20)
    assert cache.get("a") == 10
    cache.put("c", 30)
    assert cache.keys() == ["a", "c"] and cache.total == 2
    assert cache.get("b", "missing") == "missing"


def test_array_nbytes_sums_nested_arrays_with_a_floor():
    """The size of a kept fit: every array in nested dicts, lists and tuples (catches a branch
    that skips one), at least 1 KiB, so that array-less states are still bounded in number."""
    a, b, c = np.zeros(1000), np.zeros((10, 30), np.float32), np.zeros(500, np.int16)
    assert array_nbytes({"x": a, "y": [b, (c, "text")], "z": 3}) == 8000 + 1200 + 1000
    assert array_nbytes({"weights": {"w": a}}) == 8000
    assert array_nbytes({"n": 1, "name": "x"}) == array_nbytes(np.zeros(3)) == 1024


def test_discard_forgets_one_entry_and_its_size():
    cache = LRUCache(100, size=len)
    cache.put("a", "xxx")
    cache.put("b", "yyyyy")
    cache.discard("a")
    cache.discard("missing")  # no error
    assert cache.keys() == ["b"] and cache.total == 5
