import json
import pickle

import faiss
import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils._param_validation import InvalidParameterError

from skfingerprint import _faiss_index, selection
from skfingerprint.pairs import PairedImages, PairEmbeddings, make_pairs
from skfingerprint.selection import MASKED_COSINE, FaissCandidateSelector


def unit(a):
    a = np.asarray(a, dtype=np.float64)
    return a / np.linalg.norm(a, axis=-1, keepdims=True)


def exact_topk(real, library, k):
    """Brute-force cosine top-k (numpy, float64): the reference."""
    sims = unit(real) @ unit(library).T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order


def clustered(n, d, n_centres, spread, rng):
    """Vectors around random centres: neighbourhoods like those of image embeddings."""
    centres = rng.normal(size=(n_centres, d))
    return (centres[rng.integers(0, n_centres, n)] + spread * rng.normal(size=(n, d))).astype(
        np.float32
    )


@pytest.fixture
def planted():
    """20 real rows, each a scaled, slightly noisy copy of a known library row."""
    rng = np.random.default_rng(0)
    library = rng.normal(size=(500, 16)).astype(np.float32)
    source = rng.choice(500, size=20, replace=False)
    real = 3.0 * library[source] + 0.01 * rng.normal(size=(20, 16)).astype(np.float32)
    return PairEmbeddings(real, library, "planted"), source


@pytest.fixture
def count_builds(monkeypatch):
    calls = []
    original = selection._build_index

    def counting(library, *args, **kwargs):
        calls.append(len(library))
        return original(library, *args, **kwargs)

    monkeypatch.setattr(selection, "_build_index", counting)
    return calls


# --- neighbours ----------------------------------------------------------------------------


def test_planted_neighbours_are_found_exactly(planted):
    E, source = planted
    sel = FaissCandidateSelector(k=10, min_similarity=None).fit(E)
    sims, idx = sel.kneighbors(E)
    assert idx.shape == sims.shape == (20, 10)
    np.testing.assert_array_equal(idx[:, 0], source)
    assert (sims[:, 0] > 0.999).all()
    ref_sims, ref_idx = exact_topk(E.real, E.library, 10)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(sims, ref_sims, atol=1e-5)


def test_transform_layout_real_candidate_cosine(planted):
    E, _ = planted
    d = E.real.shape[1]
    X = FaissCandidateSelector(k=7, min_similarity=None).fit(E).transform(E)
    assert X.shape == (20, 7, 2 * d + 1)
    assert X.dtype == np.float32
    _, ref_idx = exact_topk(E.real, E.library, 7)
    real, cand, cos = X[..., :d], X[..., d : 2 * d], X[..., -1]
    np.testing.assert_allclose(real, np.broadcast_to(unit(E.real)[:, None], real.shape), atol=1e-6)
    np.testing.assert_allclose(cand, unit(E.library[ref_idx]), atol=1e-6)
    np.testing.assert_allclose(cos, np.einsum("nkd,nkd->nk", real, cand), atol=1e-5)
    assert (np.diff(cos, axis=1) <= 0).all(), "cosines must be sorted best first"


def test_mask_convention():
    rng = np.random.default_rng(1)
    library = rng.normal(size=(200, 8)).astype(np.float32)
    real = library[:10] + 0.3 * rng.normal(size=(10, 8)).astype(np.float32)
    E = PairEmbeddings(real, library, "lib")
    d = 8
    raw = FaissCandidateSelector(k=20, min_similarity=None).fit_transform(E)
    X = FaissCandidateSelector(k=20, min_similarity=0.5).fit_transform(E)
    assert MASKED_COSINE == -2.0
    mask = X[..., -1] < -1
    np.testing.assert_array_equal(mask, raw[..., -1] < 0.5)
    assert mask.any() and (~mask).sum() > 10
    assert (X[mask][:, d : 2 * d] == 0).all()
    assert (X[mask][:, -1] == MASKED_COSINE).all()
    np.testing.assert_array_equal(X[..., :d], raw[..., :d])  # real vector stays
    np.testing.assert_array_equal(X[~mask], raw[~mask])
    assert (np.abs(raw[..., -1]) <= 1).all()


def test_best_candidate_is_never_masked():
    rng = np.random.default_rng(2)
    library = rng.normal(size=(100, 32)).astype(np.float32)
    E = PairEmbeddings(rng.normal(size=(5, 32)), library, "lib")  # no close match anywhere
    X = FaissCandidateSelector(k=5, min_similarity=0.99).fit_transform(E)
    assert (X[:, 0, -1] >= -1).all() and (X[:, 0, -1] < 0.99).all()
    assert (X[:, 1:, -1] == MASKED_COSINE).all()
    # the kept one is each row's true nearest library vector, its cosine and vector intact
    # (catches the first candidate unmasked with a placeholder cosine or a zeroed vector)
    ref_sims, ref_idx = exact_topk(E.real, library, 1)
    np.testing.assert_allclose(X[:, 0, -1], ref_sims[:, 0], atol=1e-5)
    np.testing.assert_allclose(X[:, 0, 32:64], unit(library[ref_idx[:, 0]]), atol=1e-6)


def test_k_larger_than_library_warns_and_is_cut():
    rng = np.random.default_rng(3)
    E = PairEmbeddings(rng.normal(size=(4, 6)), rng.normal(size=(7, 6)), "small")
    sel = FaissCandidateSelector(k=100, min_similarity=None)
    with pytest.warns(UserWarning, match=r"k=100 .*7 generated"):
        sel.fit(E)
    assert sel.k_ == 7
    with pytest.warns(UserWarning, match="k=100"):
        X = sel.transform(E)
    assert X.shape == (4, 7, 13)
    assert set(np.argsort(-X[0, :, -1])) == set(range(7))


def test_other_library_at_transform_gets_its_own_k_and_neighbours(planted):
    E, _ = planted
    rng = np.random.default_rng(4)
    other = PairEmbeddings(E.real[:5], rng.normal(size=(30, 16)), "other")
    sel = FaissCandidateSelector(k=10, min_similarity=None).fit(E)
    X = sel.transform(other)
    ref = FaissCandidateSelector(k=10, min_similarity=None).fit(other).transform(other)
    np.testing.assert_array_equal(X, ref)
    with pytest.warns(UserWarning, match="k=40"):
        assert sel.set_params(k=40).transform(other).shape == (5, 30, 33)


# --- approximate indexes -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("index", "params", "min_recall"),
    [
        ("hnsw", {}, 0.95),
        ("ivf", {"nprobe": 8}, 0.9),
        ("HNSW16", {"ef_search": 64}, 0.9),
        ("IVF32,Flat", {"nprobe": 8}, 0.9),
    ],
)
def test_approximate_index_recall_vs_flat(index, params, min_recall):
    rng = np.random.default_rng(5)
    library = clustered(3000, 32, 60, 0.6, rng)
    real = clustered(200, 32, 60, 0.6, np.random.default_rng(6))
    E = PairEmbeddings(real, library, "clustered")
    _, exact = FaissCandidateSelector(k=10).fit(E).kneighbors(E)
    approx = FaissCandidateSelector(k=10, index=index, random_state=0, **params).fit(E)
    sims, idx = approx.kneighbors(E)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(idx, exact, strict=True)])
    assert recall >= min_recall, f"{index}: recall@10 {recall:.3f}"
    assert (np.diff(sims, axis=1) <= 0).all()
    assert (idx[:, 0] >= 0).all()


def test_hnsw_parameters_reach_the_index(planted):
    E, _ = planted
    sel = FaissCandidateSelector(
        k=5, index="hnsw", hnsw_m=12, ef_construction=50, ef_search=77
    ).fit(E)
    sel.transform(E)
    assert isinstance(sel.index_, faiss.IndexHNSWFlat)
    assert sel.index_.hnsw.efConstruction == 50
    assert sel.index_.hnsw.efSearch == 77
    assert sel.index_.metric_type == faiss.METRIC_INNER_PRODUCT
    sel.set_params(k=100, min_similarity=None)
    sel.transform(E)
    assert sel.index_.hnsw.efSearch == 100  # raised to k


def test_bad_factory_string_is_a_clear_error(planted):
    E, _ = planted
    with pytest.raises(ValueError, match="neither 'flat', 'hnsw', 'ivf' nor a FAISS factory"):
        FaissCandidateSelector(index="NoSuchIndex,Flat").fit(E)
    with pytest.raises(ValueError, match="Cannot train the FAISS index"):
        FaissCandidateSelector(index="IVF4096,Flat").fit(E)  # 500 points for 4096 lists


# --- index reuse and pickling --------------------------------------------------------------


def test_index_built_once_per_library(planted, count_builds):
    E, _ = planted
    sel = FaissCandidateSelector(k=5).fit(E)
    assert count_builds == [500]
    for rows in ([0, 1], slice(3, 9), [5]):
        sel.transform(E[rows])  # CV folds: slices keep the library (and its key)
    sel.kneighbors(E)
    assert count_builds == [500]
    rng = np.random.default_rng(7)
    other = PairEmbeddings(E.real[:3], rng.normal(size=(40, 16)), "other")
    sel.transform(other)
    sel.transform(other)
    sel.transform(E)
    assert count_builds == [500, 40]
    sel.fit(E)  # refit rebuilds (the parameters may have changed)
    assert count_builds == [500, 40, 500]


def test_kneighbors_before_fit_raises_and_builds_nothing(planted, count_builds):
    # kneighbors used to build and keep an index before fit, while transform refused to run
    E, source = planted
    sel = FaissCandidateSelector(k=3)
    before = dict(sel.__dict__)
    with pytest.raises(NotFittedError):
        sel.kneighbors(E)
    assert count_builds == []
    assert sel.__dict__ == before  # no index cache, no fitted attribute
    _, idx = sel.fit(E).kneighbors(E)
    np.testing.assert_array_equal(idx[:, 0], source)
    assert count_builds == [500]


@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
def test_pickle_and_joblib_round_trip(planted, tmp_path, index, count_builds):
    E, _ = planted
    sel = FaissCandidateSelector(k=8, index=index, random_state=0).fit(E)
    expected = sel.transform(E)
    restored = pickle.loads(pickle.dumps(sel))
    np.testing.assert_array_equal(restored.transform(E), expected)
    joblib.dump(sel, tmp_path / "sel.joblib")
    loaded = joblib.load(tmp_path / "sel.joblib")
    np.testing.assert_array_equal(loaded.transform(E), expected)
    assert len(count_builds) == 1, "the fit-time index travels with the pickle"
    assert loaded.index_.ntotal == 500
    assert "index_" in sel.__dict__  # pickling did not strip the original


def test_clone_is_unfitted(planted):
    E, _ = planted
    sel = FaissCandidateSelector(k=3, index="hnsw").fit(E)
    fresh = clone(sel)
    assert fresh.get_params() == sel.get_params()
    assert not hasattr(fresh, "index_")


# --- spectral refinement -------------------------------------------------------------------


def test_spectral_refine_masks_a_separate_outlier_cluster():
    rng = np.random.default_rng(8)
    d = 16
    a, b = np.eye(d)[0], np.eye(d)[1]
    near = a + 0.05 * rng.normal(size=(30, d))  # the real image's own neighbourhood
    far = 0.7 * a + 0.7 * b + 0.05 * rng.normal(size=(10, d))  # cos ~0.7 to the real
    noise = rng.normal(size=(200, d)) * np.r_[0, 0, np.ones(d - 2)]  # orthogonal filler
    library = np.vstack([near, far, noise]).astype(np.float32)
    E = PairEmbeddings(a[None], library, "outliers")
    plain = FaissCandidateSelector(k=40, min_similarity=0.5).fit_transform(E)
    assert (plain[0, :, -1] >= -1).all()  # the threshold alone keeps both groups
    sel = FaissCandidateSelector(k=40, min_similarity=0.5, refine="spectral", random_state=0)
    X = sel.fit_transform(E)
    _, idx = sel.kneighbors(E)
    kept = X[0, :, -1] >= -1
    assert set(idx[0, kept]) == set(range(30)), "keeps exactly the real image's neighbourhood"
    assert (X[0, ~kept, d : 2 * d] == 0).all()
    np.testing.assert_array_equal(X, sel.fit_transform(E))  # repeatable


def test_spectral_refine_limits_pool_to_refine_top(planted):
    E, _ = planted
    X = FaissCandidateSelector(
        k=30, min_similarity=None, refine="spectral", refine_top=10, random_state=0
    ).fit_transform(E)
    kept = X[..., -1] >= -1
    assert not kept[:, 10:].any()
    assert kept[:, 0].all()


def test_spectral_refine_skips_identical_candidates():
    library = np.tile(np.eye(4, dtype=np.float32)[:1], (6, 1))
    E = PairEmbeddings(np.eye(4)[:1], library, "same")
    X = FaissCandidateSelector(k=6, min_similarity=None, refine="spectral").fit_transform(E)
    assert (X[..., -1] > 0.999).all()


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((3, 4), np.float32),
        make_pairs(np.zeros((2, 8, 8), np.uint8), np.zeros((3, 8, 8), np.uint8)),
        [[0.0, 1.0]],
    ],
)
def test_wrong_input_type_says_what_it_expects(bad):
    with pytest.raises(TypeError, match="ViTLayerFusionEmbedder"):
        FaissCandidateSelector().fit(bad)
    assert isinstance(bad, (np.ndarray, PairedImages, list))


def test_wrong_input_type_at_transform(planted):
    E, _ = planted
    sel = FaissCandidateSelector(k=3).fit(E)
    with pytest.raises(TypeError, match="PairEmbeddings"):
        sel.transform(E.real)


def test_mismatched_dimension_between_fit_and_transform(planted):
    E, _ = planted
    sel = FaissCandidateSelector(k=3).fit(E)
    rng = np.random.default_rng(9)
    other = PairEmbeddings(rng.normal(size=(2, 8)), rng.normal(size=(10, 8)), "d8")
    with pytest.raises(ValueError, match="size 8.*size 16"):
        sel.transform(other)
    with pytest.raises(ValueError, match="size 8.*size 16"):
        sel.kneighbors(other)


def test_empty_library_and_zero_features():
    with pytest.raises(ValueError, match="library is empty"):
        FaissCandidateSelector().fit(PairEmbeddings(np.ones((2, 4)), np.ones((0, 4)), "e"))
    with pytest.raises(ValueError, match="0 features"):
        FaissCandidateSelector().fit(PairEmbeddings(np.ones((2, 0)), np.ones((3, 0)), "e"))


@pytest.mark.parametrize("part", ["real", "library"])
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_embeddings(planted, part, value):
    E, _ = planted
    real, library = E.real.copy(), E.library.copy()
    (real if part == "real" else library)[1, 3] = value
    bad = PairEmbeddings(real, library, "bad")
    with pytest.raises(ValueError, match=rf"X\.{part} contains NaN or infinite .*rows \[1\]"):
        FaissCandidateSelector().fit(bad)
    sel = FaissCandidateSelector(k=3).fit(E)
    with pytest.raises(ValueError, match="NaN"):
        sel.transform(bad)


@pytest.mark.parametrize(
    "params",
    [
        {"k": 0},
        {"min_similarity": 1.5},
        {"refine": "kmeans"},
        {"hnsw_m": 1},
        {"ef_construction": 0},
        {"index": 3},
        {"refine_top": 1},
    ],
)
def test_invalid_parameters(planted, params):
    E, _ = planted
    with pytest.raises(InvalidParameterError):
        FaissCandidateSelector(**params).fit(E)


def test_n_jobs_leaves_faiss_threads_as_they_were(planted):
    E, _ = planted
    before = faiss.omp_get_max_threads()
    X1 = FaissCandidateSelector(k=5, n_jobs=1).fit_transform(E)
    assert faiss.omp_get_max_threads() == before
    np.testing.assert_array_equal(X1, FaissCandidateSelector(k=5).fit_transform(E))


def test_zero_vectors_do_not_produce_nan():
    library = np.vstack([np.zeros((1, 4)), np.eye(4)]).astype(np.float32)
    E = PairEmbeddings(np.zeros((1, 4)), library, "zeros")
    X = FaissCandidateSelector(k=3, min_similarity=None).fit_transform(E)
    assert np.isfinite(X).all()
    # a zero vector stays zero and has cosine 0 with everything; so does the zero library row
    # (catches a zero row normalised to NaN and then replaced by another value than 0)
    np.testing.assert_array_equal(X[0, :, :4], 0.0)
    np.testing.assert_array_equal(X[0, :, -1], 0.0)
    library_rows = [r for r in X[0, :, 4:8] if r.any()]
    for row in library_rows:
        np.testing.assert_allclose(np.sort(np.abs(row)), [0, 0, 0, 1])


@pytest.mark.slow
def test_joblib_file_loads_in_a_fresh_process(planted, tmp_path):
    import subprocess
    import sys

    E, _ = planted
    sel = FaissCandidateSelector(k=6, index="hnsw", random_state=0).fit(E)
    joblib.dump((sel, E), tmp_path / "sel.joblib")
    np.save(tmp_path / "expected.npy", sel.transform(E))
    code = (
        "import joblib, numpy as np, sys; "
        "sel, E = joblib.load(sys.argv[1]); "
        "np.testing.assert_array_equal(sel.transform(E), np.load(sys.argv[2]))"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "sel.joblib"), str(tmp_path / "expected.npy")],
        check=True,
        timeout=120,
    )


# --- a saved, memory-mapped index (index_path) ----------------------------------------------


@pytest.mark.parametrize("index", ["flat", "hnsw", "ivf"])
@pytest.mark.parametrize("mmap", [True, False])
def test_index_path_builds_once_then_loads(planted, tmp_path, index, mmap, count_builds):
    E, source = planted
    path = tmp_path / "lib" / "planted.faiss"
    first = FaissCandidateSelector(k=8, index=index, index_path=path, mmap=mmap, random_state=0)
    expected = first.fit(E).transform(E)
    assert count_builds == [500] and path.is_file()
    assert json.loads(path.with_name("planted.faiss.json").read_text())["library_key"] == "planted"

    again = FaissCandidateSelector(k=8, index=index, index_path=path, mmap=mmap, random_state=0)
    again.fit(E)
    assert count_builds == [500], "the saved index is loaded, not rebuilt"
    assert again.index_.ntotal == 500
    np.testing.assert_array_equal(again.transform(E), expected)
    np.testing.assert_array_equal(again.kneighbors(E, k=1)[1][:, 0], source)


def test_index_path_is_shared_by_clones_of_a_grid_search(planted, tmp_path, count_builds):
    E, _ = planted
    sel = FaissCandidateSelector(k=5, index="ivf", index_path=tmp_path / "p.faiss", random_state=0)
    fitted = [clone(sel).set_params(k=k).fit(E[rows]) for k in (3, 5) for rows in ([0, 1], [2])]
    assert count_builds == [500], "one build; every other clone loads the saved index"
    assert all(f.index_.ntotal == 500 for f in fitted)


def test_index_path_pickle_stores_the_path_not_the_index(planted, tmp_path):
    E, _ = planted
    path = tmp_path / "planted.faiss"
    sel = FaissCandidateSelector(k=5, index="ivf", index_path=path, random_state=0).fit(E)
    with_path = pickle.dumps(sel)
    in_memory = pickle.dumps(FaissCandidateSelector(k=5, index="ivf", random_state=0).fit(E))
    assert len(with_path) < len(in_memory) - 500 * 16 * 4  # the vectors stayed in the file
    np.testing.assert_array_equal(pickle.loads(with_path).transform(E), sel.transform(E))
    path.unlink()
    with pytest.raises(FileNotFoundError, match="does not exist any more"):
        pickle.loads(with_path)


def test_index_path_for_another_library_is_refused(planted, tmp_path):
    E, _ = planted
    path = tmp_path / "planted.faiss"
    FaissCandidateSelector(k=5, index_path=path).fit(E)
    other = PairEmbeddings(E.real, E.library[:400], "other")
    with pytest.raises(ValueError, match=r"planted\.faiss.*another library.*library_key='planted'"):
        FaissCandidateSelector(k=5, index_path=path).fit(other)
    with pytest.raises(ValueError, match=r"index='flat' \(now 'hnsw'\)"):
        FaissCandidateSelector(k=5, index="hnsw", index_path=path).fit(E)


def test_index_path_without_metadata_or_unreadable(planted, tmp_path):
    E, _ = planted
    path = tmp_path / "planted.faiss"
    FaissCandidateSelector(k=5, index_path=path).fit(E)
    path.write_bytes(b"not an index")
    with pytest.raises(ValueError, match=r"Cannot read the FAISS index file '.*planted\.faiss'"):
        FaissCandidateSelector(k=5, index_path=path).fit(E)
    path.with_name("planted.faiss.json").unlink()
    with pytest.raises(ValueError, match="no readable metadata"):
        FaissCandidateSelector(k=5, index_path=path).fit(E)


# --- exact contracts found unpinned by mutation testing ------------------------------------------


def test_kneighbors_takes_its_own_k_and_checks_it(planted):
    E, source = planted
    sel = FaissCandidateSelector(k=5).fit(E)
    _, ids = sel.kneighbors(E, k=2)
    assert ids.shape == (20, 2) and ids[:, 0].tolist() == source.tolist()
    assert sel.kneighbors(E)[1].shape == (20, 5)  # None: the selector's k
    for bad in (0, -1, 2.5, "2"):
        with pytest.raises(ValueError) as info:
            sel.kneighbors(E, k=bad)
        assert str(info.value) == f"k must be a positive integer; got {bad!r}"


def test_relation_selector_kneighbors_searches_its_first_space_with_the_given_k():
    from skfingerprint import relations

    rng = np.random.default_rng(3)
    E = PairEmbeddings(
        rng.normal(size=(25, 6)),
        rng.normal(size=(60, 6)),
        "lib",
        spaces={"pixels": (rng.normal(size=(25, 9)), rng.normal(size=(60, 9)))},
    )
    for spaces in [("pixels", "vit"), ("vit", "pixels")]:
        sel = FaissCandidateSelector(k=4, features="relations", relation_spaces=spaces).fit(E)
        sims, ids = sel.kneighbors(E, k=3)
        ref_sims, ref_ids = relations.top_k(*relations.space_vectors(E, spaces[0]), 3)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_allclose(sims, ref_sims)


def test_relation_fit_warns_when_a_vit_space_learned_the_labels():
    """An embedding whose gate was trained on the fit's labels (``learned_from_labels``) makes
    the ViT's relation scores separate the fit's own used images (-0.12 kappa measured): the
    selector warns when it scores such a space, plain or whitened, and only then. The flag
    survives the slicing a cross-validation does and the joining of the reference reals."""
    import warnings

    rng = np.random.default_rng(5)

    def embeddings(learned):
        reference = PairEmbeddings(
            rng.normal(size=(10, 6)),
            lib,
            "lib",
            spaces={"pixels": (rng.normal(size=(10, 9)), pix)},
            learned_from_labels=learned,
        )
        return PairEmbeddings(
            rng.normal(size=(30, 6)),
            lib,
            "lib",
            spaces={"pixels": (rng.normal(size=(30, 9)), pix)},
            reference=reference,
            learned_from_labels=learned,
        )

    lib, pix = rng.normal(size=(60, 6)), rng.normal(size=(60, 9))
    learned = embeddings(True)[np.arange(20)]  # a fold's rows
    assert learned.learned_from_labels and learned.with_reference_rows().learned_from_labels
    message = r"\['vit_whitened'\] read the ViT embedding, whose gate was trained on the membership"
    for spaces, named in [(None, "'vit'"), (("pixels", "vit_whitened"), "'vit_whitened'")]:
        sel = FaissCandidateSelector(k=4, features="relations", relation_spaces=spaces)
        with pytest.warns(UserWarning, match=message.replace("'vit_whitened'", named)) as seen:
            sel.fit_transform(learned)
    # the whole message: the measured cost, where it was measured and the ways out
    assert str(seen[0].message) == (
        "relation space(s) ['vit_whitened'] read the ViT embedding, whose gate was "
        "trained on the membership labels this fit's head is fitted on: its scores then "
        "separate the fit's own used images, not the generator's (measured: -0.08 to -0.12 "
        "kappa over the benchmark's tasks, benchmarks/RESULTS_vit_space.md). Fuse without "
        "labels (ViTLayerFusionEmbedder(fusion='mean') or labels='ignore'), or drop 'vit' from "
        "relation_spaces"
    )
    quiet = [
        (("pixels", "pixels_whitened"), learned),  # no ViT space
        (None, embeddings(False)),  # a ViT space fused without the labels
    ]
    for spaces, E in quiet:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            FaissCandidateSelector(k=4, features="relations", relation_spaces=spaces).fit(E)
    assert not PairEmbeddings(np.ones((2, 3)), np.ones((4, 3)), "x").learned_from_labels


def test_min_similarity_keeps_a_candidate_exactly_at_it_and_adds_to_missing_ones():
    real = np.array([[1.0, 0.0]], np.float32)
    lib = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], np.float32)  # cosines 1, 0.6, 0
    E = PairEmbeddings(real, lib, "three")
    X = FaissCandidateSelector(k=3, min_similarity=0.6).fit(E).transform(E)
    np.testing.assert_allclose(X[0, :, -1], [1.0, 0.6, MASKED_COSINE], atol=1e-6)


def test_exactly_min_split_reals_are_standardised_with_their_own_statistics():
    from skfingerprint import relations

    rng = np.random.default_rng(4)
    fit_E = PairEmbeddings(rng.normal(size=(50, 5)) + 3.0, rng.normal(size=(80, 5)), "a")
    sel = FaissCandidateSelector(k=3, features="relations", relation_spaces=("vit",)).fit(fit_E)
    E = PairEmbeddings(rng.normal(size=(relations.MIN_SPLIT, 5)), rng.normal(size=(80, 5)), "b")
    X = sel.transform(E)
    top1 = X[:, 0, relations.relation_feature_names(("vit",)).index("vit:top1")]
    assert abs(top1.mean()) < 1e-5 and abs(top1.std() - 1.0) < 1e-4  # its own z-scores


def test_pickles_without_index_or_cache_and_saved_meta_names_the_library(planted, tmp_path):
    E, _ = planted
    assert pickle.loads(pickle.dumps(FaissCandidateSelector(k=3))).k == 3  # unfitted
    sel = FaissCandidateSelector(k=3).fit(E)
    other = PairEmbeddings(E.real, E.library[::-1].copy(), "reversed")
    sel.transform(other)  # an index for another library, cached
    np.testing.assert_array_equal(
        pickle.loads(pickle.dumps(sel)).transform(other), sel.transform(other)
    )
    path = tmp_path / "lib.index"
    FaissCandidateSelector(k=3, index_path=path).fit(E)
    meta = json.loads(path.with_name("lib.index.json").read_text())
    assert meta == {"library_key": "planted", "n_library": 500, "n_features": 16, "index": "flat"}


# --- survivors of the second mutation run (issue 18); each test names the bug it catches ------


def test_input_messages_are_exact():
    """Catches a message emptied, re-cased or naming the wrong type, and the "..." rule."""
    with pytest.raises(TypeError) as info:
        FaissCandidateSelector().fit(np.zeros((2, 3)))
    assert str(info.value) == (
        "X must be a PairEmbeddings: the output of ViTLayerFusionEmbedder.transform on X_pairs "
        "(from make_pairs or load_imageclef_gans), or one built by hand as "
        "PairEmbeddings(real, library, library_key); got ndarray"
    )
    with pytest.raises(ValueError) as info:
        FaissCandidateSelector().fit(PairEmbeddings(np.zeros((0, 3)), np.ones((4, 3)), "k"))
    assert str(info.value) == "X: there are no real rows (0 real embeddings)"
    with pytest.raises(TypeError) as info:
        FaissCandidateSelector().fit(PairEmbeddings(np.ones((2, 3)), np.ones((4, 3)), 5))
    assert str(info.value) == "X.library_key must be a str; got int"
    for n_bad, rows in [
        (10, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"),
        (11, "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]..."),
    ]:
        real = np.ones((12, 3))
        real[:n_bad] = np.nan
        with pytest.raises(ValueError) as info:
            FaissCandidateSelector().fit(PairEmbeddings(real, np.ones((4, 3)), "k"))
        assert str(info.value) == f"X.real contains NaN or infinite values (rows {rows})"


def test_ivf_list_count_follows_its_rule():
    """About 4 sqrt(m) lists with >= 39 training points each, at least 1 (catches each
    constant and operator of the rule)."""
    assert _faiss_index._ivf_nlist(10) == 1
    assert _faiss_index._ivf_nlist(1014) == 26  # 1014 // 39; 1014 // 40 would be 25
    assert _faiss_index._ivf_nlist(100_000) == 1265  # round(4 * 316.2)


def test_ivf_index_is_spherical_inner_product_and_seeded(planted):
    from skfingerprint._contracts import derive_seed

    E, _ = planted
    idx = FaissCandidateSelector(index="ivf", random_state=7).fit(E).index_
    assert isinstance(idx, faiss.IndexIVFFlat)
    assert idx.nlist == _faiss_index._ivf_nlist(500)
    assert idx.metric_type == faiss.METRIC_INNER_PRODUCT
    assert idx.cp.spherical is True and idx.cp.seed == derive_seed(7)
    assert faiss.downcast_index(idx.quantizer).metric_type == faiss.METRIC_INNER_PRODUCT


def test_hnsw_links_per_node_is_hnsw_m(planted):
    E, _ = planted
    idx = FaissCandidateSelector(index="hnsw", hnsw_m=12).fit(E).index_
    assert idx.hnsw.nb_neighbors(1) == 12 and idx.hnsw.nb_neighbors(0) == 24


def test_factory_indexes_are_inner_product_seeded_and_get_search_parameters(planted):
    """A factory string gets the inner-product metric and the seed; nprobe and efSearch reach
    an IVF or HNSW index wrapped in a transform (catches misspelled parameter names)."""
    from skfingerprint._contracts import derive_seed

    E, _ = planted
    sel = FaissCandidateSelector(k=5, index="IVF8,Flat", random_state=3).fit(E)
    assert sel.index_.metric_type == faiss.METRIC_INNER_PRODUCT
    assert faiss.extract_index_ivf(sel.index_).cp.seed == derive_seed(3)
    sel = FaissCandidateSelector(k=5, index="PCA8,IVF8,Flat", nprobe=3).fit(E)
    sel.transform(E)
    assert faiss.extract_index_ivf(sel.index_).nprobe == 3
    sel = FaissCandidateSelector(k=5, index="PCA8,HNSW16", ef_search=40).fit(E)
    sel.transform(E)
    inner = faiss.downcast_index(faiss.downcast_index(sel.index_).index)
    assert inner.hnsw.efSearch == 40
    FaissCandidateSelector(k=5, index="Flat").fit(E).transform(E)  # no IVF inside: no seed to set


def test_factory_errors_end_with_faiss_own_reason(planted):
    E, _ = planted
    with pytest.raises(ValueError) as info:
        FaissCandidateSelector(index="NoSuchIndex,Flat").fit(E)
    assert str(info.value).endswith("could not parse index string NoSuchIndex,Flat")
    with pytest.raises(ValueError) as info:
        FaissCandidateSelector(index="IVF4096,Flat").fit(E)
    assert str(info.value).startswith(
        "Cannot train the FAISS index 'IVF4096,Flat' on a library of 500 vectors: "
    )
    assert not str(info.value).endswith("None")


def test_index_path_in_missing_folders_is_created(planted, tmp_path):
    E, _ = planted
    path = tmp_path / "a" / "b" / "lib.faiss"
    FaissCandidateSelector(k=3, index_path=path).fit(E)
    assert faiss.read_index(str(path)).ntotal == 500
    assert json.loads(path.with_name("lib.faiss.json").read_text())["n_library"] == 500


@pytest.mark.parametrize("mmap", [True, False])
def test_saved_index_is_memory_mapped_only_when_asked(planted, tmp_path, monkeypatch, mmap):
    E, _ = planted
    path = tmp_path / "lib.faiss"
    FaissCandidateSelector(k=3, index_path=path).fit(E)
    calls = []
    real_read = faiss.read_index

    def spy(name, flags=0):
        calls.append((name, flags))
        return real_read(name, flags)

    monkeypatch.setattr(faiss, "read_index", spy)
    FaissCandidateSelector(k=3, index_path=path, mmap=mmap).fit(E)
    assert calls == [(str(path), faiss.IO_FLAG_MMAP_IFC if mmap else 0)]


def test_unreadable_index_message_ends_with_faiss_reason(planted, tmp_path):
    E, _ = planted
    path = tmp_path / "lib.faiss"
    FaissCandidateSelector(k=3, index_path=path).fit(E)
    path.write_bytes(b"not an index")
    with pytest.raises(ValueError) as info:
        FaissCandidateSelector(k=3, index_path=path).fit(E)
    message = str(info.value)
    assert message.startswith(f"Cannot read the FAISS index file '{path}': ")
    assert not message.endswith("None") and len(message) > len(f"... '{path}': ") + 10


def test_saved_index_of_another_size_than_its_metadata_is_refused(planted, tmp_path):
    E, _ = planted
    path = tmp_path / "lib.faiss"
    FaissCandidateSelector(k=3, index_path=path).fit(E)
    small = faiss.IndexFlatIP(16)
    small.add(np.ascontiguousarray(unit(E.library[:400]), dtype=np.float32))
    faiss.write_index(small, str(path))  # metadata still says 500
    with pytest.raises(ValueError) as info:
        FaissCandidateSelector(k=3, index_path=path).fit(E)
    assert str(info.value) == (
        f"The FAISS index file '{path}' holds 400 vectors of size 16; its metadata and the "
        "library say 500 of size 16. Delete it to rebuild"
    )


def test_metadata_mismatch_lists_every_wrong_key(planted, tmp_path):
    E, _ = planted
    path = tmp_path / "lib.faiss"
    FaissCandidateSelector(k=3, index_path=path).fit(E)
    other = PairEmbeddings(E.real, E.library[:400], "other")
    with pytest.raises(ValueError) as info:
        FaissCandidateSelector(k=3, index_path=path).fit(other)
    assert "library_key='planted' (now 'other'), n_library=500 (now 400). Delete it" in str(
        info.value
    )


def test_defaults_and_every_parameter_are_kept():
    assert FaissCandidateSelector().get_params() == {
        "k": 100,
        "min_similarity": 0.6,
        "index": "flat",
        "hnsw_m": 32,
        "ef_construction": 100,
        "ef_search": 128,
        "nprobe": 16,
        "features": "paper",
        "relation_spaces": None,
        "refine": None,
        "refine_top": 50,
        "index_path": None,
        "mmap": True,
        "n_jobs": None,
        "random_state": None,
    }
    params = {"n_jobs": 2, "random_state": 5, "refine_top": 7, "mmap": False}
    assert FaissCandidateSelector(**params).get_params() | params == (
        FaissCandidateSelector(**params).get_params()
    )
    tags = FaissCandidateSelector().__sklearn_tags__()
    assert tags.input_tags.two_d_array is False and tags.requires_fit is True
    assert tags.transformer_tags.preserves_dtype == ["float32"]


def test_k_equal_to_the_library_size_does_not_warn(planted):
    import warnings

    E, _ = planted
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X = FaissCandidateSelector(k=500, min_similarity=None).fit(E).transform(E)
    assert X.shape[1] == 500


def test_libraries_of_the_same_shape_get_their_own_index(planted):
    """The cache is keyed by library: two libraries of one shape never share an index."""
    E, _ = planted
    rng = np.random.default_rng(1)
    a = PairEmbeddings(E.real, rng.normal(size=(500, 16)).astype(np.float32), "a")
    b = PairEmbeddings(E.real, rng.normal(size=(500, 16)).astype(np.float32), "b")
    sel = FaissCandidateSelector(k=4, min_similarity=None).fit(E)
    for other in (a, b, a, b):
        np.testing.assert_array_equal(
            sel.kneighbors(other)[1], exact_topk(other.real, other.library, 4)[1]
        )


def test_index_cache_keeps_the_four_most_recent_libraries(planted, count_builds):
    E, _ = planted
    sel = FaissCandidateSelector(k=2).fit(E)
    libraries = [PairEmbeddings(E.real, E.library[: 100 + i], f"lib{i}") for i in range(5)]
    for other in libraries[:4]:
        sel.transform(other)
    assert len(count_builds) == 1 + 4
    for other in libraries[:4]:  # all four still cached
        sel.transform(other)
    assert len(count_builds) == 1 + 4
    sel.transform(libraries[4])  # a fifth evicts the least recently used (lib0)
    sel.transform(libraries[3])
    assert len(count_builds) == 1 + 5
    sel.transform(libraries[0])
    assert count_builds[-1] == 100 and len(count_builds) == 1 + 6


def test_pickled_state_holds_no_faiss_object(planted):
    """The index cache never reaches the pickle (catches the cache stored or popped under
    another name): only the fit-time index, as bytes."""
    E, _ = planted
    sel = FaissCandidateSelector(k=3).fit(E)
    sel.transform(PairEmbeddings(E.real, E.library[:300], "other"))
    state = sel.__getstate__()
    assert not [key for key, value in state.items() if isinstance(value, (faiss.Index, dict))]
    assert isinstance(state["_index_bytes"], np.ndarray)


class _HolesIndex(faiss.IndexFlatIP):
    """An exact index that, like an approximate one, fails to return some results: all of row
    0's and the last two of row 1's."""

    def search(self, x, k, **kwargs):
        sims, ids = super().search(x, k)
        sims[0], ids[0] = -3.4e38, -1
        sims[1, -2:], ids[1, -2:] = -3.4e38, -1
        return sims, ids


def test_results_an_index_missed_are_searched_again_or_masked(planted):
    E, _ = planted
    sel = FaissCandidateSelector(k=6, min_similarity=None).fit(E)
    holes = _HolesIndex(16)
    holes.add(np.ascontiguousarray(unit(E.library), dtype=np.float32))
    sel.index_ = holes
    sims, ids = sel.kneighbors(E)
    ref_sims, ref_ids = exact_topk(E.real, E.library, 6)
    np.testing.assert_array_equal(ids[0], ref_ids[0])  # row 0: searched exactly instead
    np.testing.assert_allclose(sims[0], ref_sims[0], atol=1e-5)
    np.testing.assert_array_equal(ids[1], np.r_[ref_ids[1, :4], -1, -1])
    np.testing.assert_array_equal(sims[1, 4:], [MASKED_COSINE, MASKED_COSINE])
    assert sims.dtype == np.float32
    X = sel.transform(E)
    np.testing.assert_array_equal(X[1, 4:, -1], MASKED_COSINE)
    assert not X[1, 4:, 16:32].any()


def test_cosines_of_copies_and_opposites_stay_inside_minus_one_one():
    """float32 inner products of unit vectors overshoot 1 and -1 by an ulp: clipped, so an
    opposite vector is a cosine of -1 and never reads as masked (< -1)."""
    rng = np.random.default_rng(0)
    real = rng.normal(size=(30, 16)).astype(np.float32)
    E = PairEmbeddings(real, np.r_[real, -real], "copies")
    X = FaissCandidateSelector(k=60, min_similarity=None).fit(E).transform(E)
    assert X[..., -1].max() == 1.0 and X[..., -1].min() == -1.0
    last = X[:, -1, -1]  # the opposite copy: last, -1 within float32 rounding, not masked
    assert ((last >= -1.0) & (last < -0.9999)).all()


def test_ties_keep_the_exact_index_order():
    """Re-sorting is stable: equal cosines keep the order FAISS returned (catches an unstable
    sort, which reorders ties among more than 16 candidates)."""
    rng = np.random.default_rng(0)
    tied = rng.normal(size=(1, 8))
    lib = np.r_[np.tile(tied, (30, 1)), rng.normal(size=(20, 8))]
    lib = lib[rng.permutation(50)].astype(np.float32)
    E = PairEmbeddings(tied, lib, "t")
    idx = faiss.IndexFlatIP(8)
    idx.add(np.ascontiguousarray(unit(lib), dtype=np.float32))
    _, raw_ids = idx.search(np.ascontiguousarray(unit(E.real), dtype=np.float32), 40)
    _, ids = FaissCandidateSelector(k=40, min_similarity=None).fit(E).kneighbors(E)
    np.testing.assert_array_equal(ids, raw_ids)


def test_refit_forgets_the_earlier_fit(planted):
    """A refit in the paper's mode drops the relation mode's spaces and statistics, and the
    indexes of earlier libraries (catches the stale names misspelled)."""
    E, _ = planted
    rng = np.random.default_rng(2)
    R = PairEmbeddings(
        E.real,
        E.library,
        "planted",
        spaces={"pixels": (rng.normal(size=(20, 9)), rng.normal(size=(500, 9)))},
    )
    sel = FaissCandidateSelector(k=3, features="relations", relation_spaces=("pixels",)).fit(R)
    sel.set_params(features="paper").fit(E)
    assert not hasattr(sel, "spaces_") and not hasattr(sel, "relation_stats_")
    np.testing.assert_array_equal(sel.kneighbors(E)[1], exact_topk(E.real, E.library, 3)[1])
    sel.transform(PairEmbeddings(E.real, E.library[:300], "other"))
    sel.fit(E)
    assert "_index_cache" not in sel.__dict__


def test_relation_mode_messages_are_exact(planted):
    E, _ = planted
    with pytest.raises(ValueError) as info:
        FaissCandidateSelector(features="relations", refine="spectral").fit(E)
    assert str(info.value) == (
        "refine='spectral' prunes the paper's candidates; features='relations' scores every "
        "candidate. Use one or the other"
    )
    with pytest.raises(ValueError) as info:
        FaissCandidateSelector(features="relations", relation_spaces=()).fit(E)
    assert str(info.value) == "relation_spaces is empty; name at least one space"


def test_unpickled_selector_reads_its_index_file_and_builds_nothing(
    planted, tmp_path, count_builds
):
    E, _ = planted
    path = tmp_path / "lib.faiss"
    sel = FaissCandidateSelector(k=3, index_path=path).fit(E)
    blob = pickle.dumps(sel)
    del count_builds[:]
    again = pickle.loads(blob)
    assert again.index_.ntotal == 500
    np.testing.assert_array_equal(again.transform(E), sel.transform(E))
    assert count_builds == []
    path.unlink()
    with pytest.raises(FileNotFoundError) as info:
        pickle.loads(blob)
    assert str(info.value) == (
        f"This FaissCandidateSelector reads its index from '{path}', which does not exist any "
        "more; refit it, or restore the file"
    )


def test_spectral_refinement_splits_three_candidates_and_tolerates_opposites():
    """Three candidates are enough to split (catches ``< 3`` moved); negative cosines count as
    no affinity, and a disconnected graph raises no warning."""
    import warnings

    a, b = np.eye(4, dtype=np.float32)[:2]
    keep = selection._spectral_keep(np.stack([a, a * 0.99 + b * 0.01, b]), seed=0)
    assert keep.tolist() == [True, True, False]
    cands = unit(np.stack([a, a + 0.05 * b, -a, -a - 0.05 * b])).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        keep = selection._spectral_keep(cands, seed=0)
    assert keep.tolist() == [True, True, False, False]


class _WorstFirstIndex(faiss.IndexFlatIP):
    """An exact index that returns its results worst first, as an approximate one may."""

    def search(self, x, k, **kwargs):
        sims, ids = super().search(x, k)
        return sims[:, ::-1].copy(), ids[:, ::-1].copy()


def test_results_are_sorted_best_first_and_ties_keep_the_index_order():
    """Catches an unstable sort: ties (many copies of two vectors) come in the order the index
    returned them."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 8))
    lib = np.r_[np.tile(a, (40, 1)), np.tile(0.3 * a + b, (40, 1))][rng.permutation(80)]
    E = PairEmbeddings(a[None], lib.astype(np.float32), "ties")
    sel = FaissCandidateSelector(k=80, min_similarity=None).fit(E)
    index = _WorstFirstIndex(8)
    index.add(np.ascontiguousarray(unit(lib), dtype=np.float32))
    sel.index_ = index
    returned = index.search(np.ascontiguousarray(unit(E.real), dtype=np.float32), 80)[1][0]
    sims, ids = sel.kneighbors(E)
    assert (np.diff(sims[0]) <= 0).all()
    for group in (np.flatnonzero((lib == a).all(1)), np.flatnonzero((lib != a).any(1))):
        in_index_order = [i for i in returned if i in set(group)]
        assert [i for i in ids[0] if i in set(group)] == in_index_order


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")  # the reference's
def test_spectral_keep_is_sklearn_spectral_clustering_on_the_clipped_cosines():
    """Against the documented recipe computed here: SpectralClustering(2, precomputed affinity
    max(cos, 0) with a unit diagonal, cluster_qr), keeping row 0's cluster (catches another
    affinity, label assignment or clipping)."""
    from sklearn.cluster import SpectralClustering

    rng = np.random.default_rng(5)
    for trial in range(6):
        centres = rng.normal(size=(3, 6))
        cands = unit(centres[rng.integers(0, 3, 12)] + 0.6 * rng.normal(size=(12, 6)))
        affinity = np.clip(cands @ cands.T, 0.0, 1.0)
        np.fill_diagonal(affinity, 1.0)
        labels = SpectralClustering(
            n_clusters=2, affinity="precomputed", assign_labels="cluster_qr", random_state=0
        ).fit_predict(affinity)
        keep = selection._spectral_keep(cands.astype(np.float32), seed=trial)
        np.testing.assert_array_equal(keep, labels == labels[0])


def test_a_cached_index_of_another_size_is_rebuilt():
    """A library whose key was seen before with another size gets a new index (catches the
    staleness check needing both the size and the width to differ)."""
    rng = np.random.default_rng(6)
    real = rng.normal(size=(5, 8)).astype(np.float32)
    library = rng.normal(size=(60, 8)).astype(np.float32)
    sel = FaissCandidateSelector(k=3, min_similarity=None).fit(PairEmbeddings(real, library, "a"))
    sel.kneighbors(PairEmbeddings(real, library, "b"))
    smaller = PairEmbeddings(real, library[:30], "b")
    np.testing.assert_array_equal(sel.kneighbors(smaller)[1], exact_topk(real, library[:30], 3)[1])


def test_exact_fallback_runs_only_for_rows_the_index_left_empty(monkeypatch):
    """A row whose best candidate is library image 0 is found, not "missing" (id -1 marks a
    missing one): the exact search fallback is not run for it."""
    from skfingerprint import relations

    rng = np.random.default_rng(0)
    library = rng.normal(size=(50, 8)).astype(np.float32)
    E = PairEmbeddings(2.0 * library[[0, 3]], library, "zero")
    calls = []
    exact = relations.top_k
    monkeypatch.setattr(
        relations, "top_k", lambda q, lib, k: calls.append(len(q)) or exact(q, lib, k)
    )
    _, ids = FaissCandidateSelector(k=5, min_similarity=None).fit(E).kneighbors(E)
    assert ids[:, 0].tolist() == [0, 3] and calls == []


def test_relation_scores_of_rows_with_a_reference_are_those_of_rows_and_reference_together():
    """The reference reals join every score and its statistics and are dropped from the
    output. Catches the reference ignored, the statistics taken over the rows alone, and the
    reference's rows returned."""
    rng = np.random.default_rng(1)
    library = rng.normal(size=(120, 8)).astype(np.float32)
    reals = np.vstack([library[:30] + 0.3 * rng.normal(size=(30, 8)), rng.normal(size=(30, 8))])
    reals = reals.astype(np.float32)
    rows, other = rng.permutation(60)[:25], rng.permutation(60)[25:]
    spaces = lambda r: {"pixels": (r + 1.0, library + 1.0)}  # noqa: E731
    reference = PairEmbeddings(reals[other], library, "lib", spaces=spaces(reals[other]))
    E = PairEmbeddings(reals[rows], library, "lib", spaces=spaces(reals[rows]), reference=reference)
    selector = FaissCandidateSelector(k=5, features="relations")
    with_ref = selector.fit_transform(E)
    together = clone(selector).fit_transform(E.with_reference_rows())
    np.testing.assert_allclose(with_ref, together[:25], atol=1e-5)
    assert with_ref.shape[0] == 25
    alone = clone(selector).fit_transform(PairEmbeddings(E.real, library, "lib", spaces=E.spaces))
    assert np.abs(alone - with_ref).max() > 0.1  # the reference changes the scores
    np.testing.assert_allclose(selector.transform(E), with_ref, atol=1e-6)


def test_a_reference_with_nan_rows_is_refused_like_the_rows():
    """Catches the reference's rows left unchecked: a NaN there would become 0 features."""
    library = np.eye(4, dtype=np.float32)
    reference = PairEmbeddings([[np.nan, 0, 0, 0], [0, 1, 0, 0]], library, "lib")
    E = PairEmbeddings(np.ones((3, 4)), library, "lib", reference=reference)
    with pytest.raises(
        ValueError, match=r"X\.reference\.real contains NaN or infinite values \(rows \[0\]"
    ):
        FaissCandidateSelector(k=2, features="relations").fit(E)
