"""The FAISS indexes of a library: build, save, read back (memory-mapped), search settings.

Every index holds the L2-normalised library with the inner-product metric, so a search returns
cosines. :class:`~skfingerprint.FaissCandidateSelector` decides when to build, keep or reuse one.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import faiss
import numpy as np

from ._io import atomic_path
from .pairs import _l2_normalize


@contextlib.contextmanager
def _faiss_threads(n_jobs: int | None):
    """Run FAISS with ``n_jobs`` OpenMP threads (joblib convention), then restore the setting."""
    if n_jobs is None:
        yield
        return
    from joblib import effective_n_jobs

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, int(effective_n_jobs(n_jobs))))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _ivf_nlist(m: int) -> int:
    """Inverted lists of the ``"ivf"`` index: about ``4 sqrt(m)``, >= 39 training points each."""
    return int(max(1, min(round(4 * np.sqrt(m)), m // 39)))


def _build_index(
    library: np.ndarray, index: str, hnsw_m: int, ef_construction: int, seed: int
) -> faiss.Index:
    """A FAISS inner-product index holding the L2-normalised ``library`` (row order kept)."""
    m, d = library.shape
    vectors = np.ascontiguousarray(_l2_normalize(library))
    if index == "flat":
        idx = faiss.IndexFlatIP(d)
    elif index == "hnsw":
        idx = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = ef_construction
    elif index == "ivf":
        nlist = _ivf_nlist(m)
        idx = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        idx.cp.seed = seed
        idx.cp.spherical = True
    else:
        try:
            idx = faiss.index_factory(d, index, faiss.METRIC_INNER_PRODUCT)
        except RuntimeError as exc:
            raise ValueError(
                f"index={index!r} is neither 'flat', 'hnsw', 'ivf' nor a FAISS factory string "
                f"FAISS understands for dimension {d}: {str(exc).strip().splitlines()[-1]}"
            ) from None
        with contextlib.suppress(AttributeError, RuntimeError):
            faiss.extract_index_ivf(idx).cp.seed = seed
    if not idx.is_trained:
        try:
            idx.train(vectors)
        except RuntimeError as exc:
            raise ValueError(
                f"Cannot train the FAISS index {index!r} on a library of {m} vectors: "
                f"{str(exc).strip().splitlines()[-1]}"
            ) from None
    idx.add(vectors)
    return idx


def _meta_path(path: Path) -> Path:
    """The JSON file beside a saved index that says which library it holds."""
    return path.with_name(path.name + ".json")


def _save_index(idx: faiss.Index, path: Path, meta: dict) -> None:
    """Write ``idx`` and its metadata atomically (readers never see a half-written index)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(_meta_path(path)) as tmp:  # first: the index file's presence means "ready"
        tmp.write_text(json.dumps(meta, indent=1))
    with atomic_path(path) as tmp:
        faiss.write_index(idx, str(tmp))


def _read_index(path: Path, mmap: bool) -> faiss.Index:
    """Read a saved index; with ``mmap`` its vectors stay in the file, paged in on demand.

    ``IO_FLAG_MMAP_IFC`` maps the codes of flat indexes (``flat``, the storage of ``hnsw``) and
    the inverted lists of IVF indexes (measured with FAISS 1.15: loading a 1M-vector IVF index
    takes milliseconds); a FAISS without it falls back to ``IO_FLAG_MMAP``, which maps IVF lists
    only. A memory-mapped index is read-only.
    """
    flags = 0
    if mmap:
        flags = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP)
    try:
        return faiss.read_index(str(path), flags)
    except RuntimeError as exc:
        raise ValueError(
            f"Cannot read the FAISS index file '{path}': {str(exc).strip().splitlines()[-1]}"
        ) from None


def _set_search_params(idx: faiss.Index, k: int, ef_search: int, nprobe: int) -> None:
    """Set efSearch / nprobe on ``idx`` (or the HNSW / IVF index inside it) when it has them."""
    if isinstance(idx, faiss.IndexHNSW):
        idx.hnsw.efSearch = max(ef_search, k)
        return
    if isinstance(idx, faiss.IndexIVF):
        idx.nprobe = min(nprobe, idx.nlist)
        return
    space = faiss.ParameterSpace()
    for name, value in (("efSearch", max(ef_search, k)), ("nprobe", nprobe)):
        with contextlib.suppress(RuntimeError):
            space.set_index_parameter(idx, name, value)
