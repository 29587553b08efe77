"""The process-wide caches are bounded: least recently used evicted first (issue 14).

Each test names the one-line bug it catches.
"""

import numpy as np
import pytest
from PIL import Image
from sklearn.base import BaseEstimator

import skfingerprint.canet as canet
import skfingerprint.embedding as embedding
import skfingerprint.images as images
from skfingerprint import clear_memory_cache, set_memory_cache_limit
from skfingerprint._cache import _MEMORY, _STATES, DEFAULT_MEMORY_LIMIT, TokenCache
from skfingerprint._lru import LRUCache, array_nbytes, seeded_fit_key
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
    ``clear_memory_cache`` forgetting the file caches, the ViT states, the embedder's kept gates
    or CANet's kept fits (a module looked up under another name: memory it promises to free
    stays held, and a "cold start" timing reuses a fit)."""
    set_memory_cache_limit(3 * NBYTES)
    cache = TokenCache("m")
    for key in "abc":
        cache.put(key, tokens(1))
    cache.put_state("a", 9, tokens(1))
    embedding._GATES.put("gate-key", {"w": np.zeros(3)})
    canet._FITTED.put("net-key", {"w": np.zeros(3)})
    path = tmp_path / "x.png"
    Image.fromarray(np.zeros((6, 5), dtype=np.uint8)).save(path)
    files = ImageSet(paths=[path])
    files.content_key(0)
    files.sizes()
    assert len(images._FILE_KEYS) == len(images._FILE_SIZES) == 1
    clear_memory_cache()
    assert len(_MEMORY) == 0 and _MEMORY.total == 0
    assert len(images._FILE_KEYS) == len(images._FILE_SIZES) == 0
    assert len(_STATES) == len(embedding._GATES) == len(canet._FITTED) == 0
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


def test_disk_entries_are_float16_npy_files_under_two_character_folders(tmp_path):
    """The on-disk layout a ``cache_dir`` already holds: ``<model>/<key[:2]>/<key>.npy``, float16.
    Bugs: another prefix length (every existing disk cache silently orphaned: each image goes
    through the ViT again), tokens kept in their own dtype (twice the memory and disk, and a
    hit would differ from the float16 a fresh entry is read back as), or ``mkdir`` without
    ``exist_ok`` (the second key of a prefix raises)."""
    cache = TokenCache("model-x", tmp_path)
    first = np.linspace(0, 1, 32, dtype=np.float32).reshape(4, 8)
    cache.put("ab01", first)
    cache.put("ab02", first + 1)  # the same two-character folder
    folder = tmp_path / "model-x" / "ab"
    assert sorted(p.name for p in folder.iterdir()) == ["ab01.npy", "ab02.npy"]
    on_disk = np.load(folder / "ab01.npy", allow_pickle=False)
    assert on_disk.dtype == np.float16
    np.testing.assert_array_equal(on_disk, first.astype(np.float16))
    in_memory = cache.get("ab01")
    assert in_memory.dtype == np.float16
    np.testing.assert_array_equal(in_memory, first.astype(np.float16))


UNPICKLED: list = []


def _record_unpickling():
    UNPICKLED.append("unpickled")


class _Unpickled:
    """Records being unpickled: a cache entry must never run code from the folder."""

    def __reduce__(self):
        return (_record_unpickling, ())


def test_a_pickled_or_corrupt_disk_entry_is_ignored_with_a_warning_and_never_unpickled(tmp_path):
    """Bugs: ``np.load(..., allow_pickle=True)`` (a planted entry in a shared cache folder runs
    its code, and an object array would be used as tokens), or the warning without its text or
    category (a silent recomputation, or one no filter can catch)."""
    cache = TokenCache("m", tmp_path)
    path = cache._path("cd01")
    path.parent.mkdir(parents=True)
    np.save(path, np.array([_Unpickled()], dtype=object), allow_pickle=True)
    UNPICKLED.clear()
    with pytest.warns(RuntimeWarning, match=r"Ignoring unreadable cache entry '.*cd01\.npy'"):
        assert cache.get("cd01") is None
    assert UNPICKLED == []
    path.write_bytes(b"\x93NUMPY truncated")
    with pytest.warns(RuntimeWarning, match="it will be recomputed"):
        assert cache.get("cd01") is None


def test_vit_states_are_kept_per_model_and_depth_and_bounded_by_their_bytes():
    """The state after a stop-early pass, from which a deeper fit resumes. Bugs: a state handed
    out for another depth (a fit would run its missing blocks from the wrong place: wrong
    tokens), one model's state given to another, ``None`` not forgetting, or capacity off by
    one (``<`` for ``<=``: a call that fits exactly would keep no states)."""
    a, b = TokenCache("model-a"), TokenCache("model-b")
    state = np.arange(6, dtype=np.float32).reshape(2, 3)
    a.put_state("img", 9, state)
    np.testing.assert_array_equal(a.get_state("img", 9), state)
    assert a.get_state("img", 6) is None and a.get_state("img", 12) is None
    assert b.get_state("img", 9) is None and a.get_state("other", 9) is None
    a.put_state("img", 6, state + 1)  # replaces the depth-9 one
    assert a.get_state("img", 9) is None
    np.testing.assert_array_equal(a.get_state("img", 6), state + 1)
    a.put_state("img", 6, None)
    assert a.get_state("img", 6) is None and len(_STATES) == 0
    fits = _STATES.max_size // 1000
    assert a.state_capacity(1000) == fits
    assert a.room_for_states(fits, 1000) and not a.room_for_states(fits + 1, 1000)


class _Seeded(BaseEstimator):
    def __init__(self, alpha=1.0, verbose=0, random_state=0):
        self.alpha = alpha
        self.verbose = verbose
        self.random_state = random_state


def test_seeded_fit_key_reads_everything_a_fit_reads():
    """The key under which a seeded gate or CANet fit is reused: two fits share it only if
    they would compute the same thing. Bugs, each a wrong reuse: a parameter, the context, an
    array's shape or dtype, or the order of the arrays left out of the key; an excluded
    parameter still in it (no reuse); the arrays after a None dropped; a key for an unseeded
    fit (which does not repeat)."""
    X = np.arange(12, dtype=np.float32).reshape(3, 4)
    y = np.array([0, 1, 1])
    key = seeded_fit_key(_Seeded(), X, y, context=("cpu",))
    assert isinstance(key, str) and key == seeded_fit_key(_Seeded(), X.copy(), y, context=("cpu",))
    different = [
        seeded_fit_key(_Seeded(alpha=2.0), X, y, context=("cpu",)),
        seeded_fit_key(_Seeded(random_state=1), X, y, context=("cpu",)),
        seeded_fit_key(_Seeded(), X, y, context=("cuda",)),
        seeded_fit_key(_Seeded(), X, y),
        seeded_fit_key(_Seeded(), X.reshape(4, 3), y, context=("cpu",)),  # same bytes
        seeded_fit_key(_Seeded(), X.view(np.int32), y, context=("cpu",)),  # same bytes
        seeded_fit_key(_Seeded(), X + 1, y, context=("cpu",)),
        seeded_fit_key(_Seeded(), X, 1 - y, context=("cpu",)),
        seeded_fit_key(_Seeded(), X, None, context=("cpu",)),
        seeded_fit_key(_Seeded(), y, X, context=("cpu",)),
        seeded_fit_key(_Seeded(), X, None, y, context=("cpu",)),  # an array after a None
        seeded_fit_key(_Seeded(), X, None, 1 - y, context=("cpu",)),
    ]
    assert len({key, *different}) == len(different) + 1
    # what does not change the fit does not change the key
    assert seeded_fit_key(_Seeded(verbose=2), X, y, context=("cpu",), exclude=("verbose",)) == (
        seeded_fit_key(_Seeded(), X, y, context=("cpu",), exclude=("verbose",))
    )
    wide = np.zeros((3, 8), dtype=np.float32)
    wide[:, ::2] = X
    assert seeded_fit_key(_Seeded(), wide[:, ::2], y) == seeded_fit_key(_Seeded(), X, y)
    for unseeded in (None, np.random.RandomState(0)):
        assert seeded_fit_key(_Seeded(random_state=unseeded), X, y) is None
