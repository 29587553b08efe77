import pickle

import numpy as np
import pytest
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils import _safe_indexing

from skfingerprint import PairedImages, make_pairs


@pytest.fixture
def pairs():
    real = np.arange(6 * 8 * 8, dtype=np.uint16).reshape(6, 8, 8)
    library = np.zeros((50, 64, 64), np.uint8)
    return make_pairs(real, library)


def test_rows_share_one_library(pairs):
    sub = pairs[np.array([0, 3, 5])]
    assert isinstance(sub, PairedImages) and len(sub) == 3
    assert sub.library is pairs.library
    assert sub.ids == ["0", "3", "5"]
    assert _safe_indexing(pairs, [1, 2]).library is pairs.library
    real, library = pairs[2]
    assert library is pairs.library and np.array_equal(real, pairs.real.array[2])


def test_cv_folds_split_reals_and_keep_the_library(pairs):
    y = np.array([0, 1, 0, 1, 0, 1])
    for train, test in StratifiedKFold(3).split(np.zeros(6), y):
        tr, te = _safe_indexing(pairs, train), _safe_indexing(pairs, test)
        assert sorted(tr.ids + te.ids) == sorted(pairs.ids)
        assert tr.library is te.library is pairs.library
    assert pairs.shape == (6, 2)
    assert len(list(KFold(2).split(pairs))) == 2


def test_pickle_holds_the_library_once(pairs):
    one_row = len(pickle.dumps(pairs[[0]]))
    folds = [pairs[[i]] for i in range(6)]
    assert len(pickle.dumps(folds)) < 1.5 * one_row  # shared library is memoised
    back = pickle.loads(pickle.dumps(folds))
    assert all(f.library is back[0].library for f in back)


def test_repr_says_rows_and_library_size(pairs):
    assert repr(pairs) == "PairedImages(n_rows=6, library=50 generated images)"


def test_make_pairs_validates_both_sides():
    with pytest.raises(ValueError, match="real: the image array is empty"):
        make_pairs(np.zeros((0, 8, 8), np.uint8), np.zeros((3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="generated: the list of images is empty"):
        make_pairs(np.zeros((1, 8, 8), np.uint8), [])
    with pytest.raises(TypeError, match="make_pairs"):
        PairedImages(np.zeros((1, 8, 8)), np.zeros((1, 8, 8)))


# --- the containers' contracts, exactly (mutation testing found these unpinned) -----------------


def test_paired_images_needs_two_image_sets(pairs):
    message = "^PairedImages takes two ImageSet objects; use make_pairs\\(real, generated\\)$"
    for real, library in [(pairs.real, "lib"), ("real", pairs.library)]:
        with pytest.raises(TypeError, match=message):
            PairedImages(real, library)


def test_only_row_indexing_and_iteration_by_row(pairs):
    assert pairs[1:3, ...].real.ids == pairs.real.ids[1:3]
    for key in [(slice(0, 2), 1), (0, 1, 2)]:
        with pytest.raises(IndexError) as info:
            pairs[key]
        assert str(info.value) == f"PairedImages supports row indexing only; got {key!r}"
    rows = list(pairs)
    assert len(rows) == 6
    np.testing.assert_array_equal(rows[2][0], pairs.real[2])
    assert all(lib is pairs.library for _, lib in rows)


def test_make_pairs_applies_given_ids_and_keeps_file_paths(tmp_path):
    from .conftest import write_png

    paths = [write_png(tmp_path / f"f{i}.png", np.full((8, 8), i, np.uint8)) for i in range(3)]
    X = make_pairs(paths, paths[:2], real_ids=["a", "b", "c"], generated_ids=["g", "h"])
    assert X.real.ids == ["a", "b", "c"] and X.library.ids == ["g", "h"]
    assert list(X.real.paths) == paths and list(X.library.paths) == paths[:2]
    default = make_pairs(paths, paths[:2])
    assert default.real.ids == ["f0", "f1", "f2"] and default.library.ids == ["f0", "f1"]


def test_l2_normalize_scales_every_row_to_one_and_leaves_zero_rows():
    from skfingerprint.pairs import _l2_normalize

    a = np.array([[0.3, 0.4], [0.0, 0.0], [6.0, 8.0]], dtype=np.float64)  # norms 0.5, 0, 10
    out = _l2_normalize(a)
    assert out.dtype == np.float32 and out.shape == (3, 2)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0], [0.6, 0.8]], atol=1e-7)
    np.testing.assert_allclose(_l2_normalize([3.0, 4.0]), [0.6, 0.8], atol=1e-7)  # one vector
    np.testing.assert_allclose(_l2_normalize(np.ones((2, 3, 4))), np.full((2, 3, 4), 0.5))


def test_pair_embeddings_check_their_arrays():
    from skfingerprint import PairEmbeddings

    E = PairEmbeddings(np.ones((3, 4), np.float64), np.ones((5, 4), np.float64), "k")
    assert E.real.dtype == E.library.dtype == np.float32
    for real, lib in [(np.ones(4), np.ones((5, 4))), (np.ones((3, 4)), np.ones(4))]:
        with pytest.raises(ValueError, match="^PairEmbeddings needs 2-d real and library"):
            PairEmbeddings(real, lib, "k")
    with pytest.raises(ValueError, match="^real and library embeddings differ in size: 4 != 3$"):
        PairEmbeddings(np.ones((3, 4)), np.ones((5, 3)), "k")
    assert repr(E) == "PairEmbeddings(n_rows=3, library=5, dim=4)"


def test_l2_normalize_writes_zero_rows_whatever_the_memory_held():
    """Zero rows come out 0 even where a fresh array would hold old values (catches the output
    array left uninitialised)."""
    from skfingerprint.pairs import _l2_normalize

    for _ in range(20):
        junk = np.full((64, 16), 7.0, np.float32)
        del junk
        out = _l2_normalize(np.zeros((64, 16), np.float32))
        assert not out.any()


def test_pair_embeddings_keep_ids_and_spaces_and_slice_them_together():
    """ids and every space follow the rows (catches ids dropped or not sliced, spaces kept in
    their input dtype, and the ``E[rows, ...]`` form mishandled)."""
    from skfingerprint import PairEmbeddings

    rng = np.random.default_rng(0)
    spaces = {"pixels": (rng.normal(size=(4, 3)), rng.normal(size=(5, 3)))}
    E = PairEmbeddings(rng.normal(size=(4, 2)), rng.normal(size=(5, 2)), "k", list("abcd"), spaces)
    assert E.ids == list("abcd")
    assert {a.dtype for a in E.spaces["pixels"]} == {np.dtype(np.float32)}
    for sub in (E[[2, 0]], E[[2, 0], ...]):
        assert sub.ids == ["c", "a"]
        np.testing.assert_array_equal(sub.real, E.real[[2, 0]])
        np.testing.assert_array_equal(sub.spaces["pixels"][0], E.spaces["pixels"][0][[2, 0]])
        assert sub.spaces["pixels"][1] is E.spaces["pixels"][1] and sub.library is E.library
    assert E[1].ids == ["b"] and len(E[1]) == 1
    with pytest.raises(IndexError):
        E[[0, 1], 0]  # a column index is not a row selection


@pytest.mark.parametrize(
    ("real", "lib"),
    [
        ((4, 3), (6, 3)),  # library rows differ, widths agree
        ((3, 3), (5, 3)),  # real rows differ
        ((4, 3), (5, 2)),  # widths differ, rows agree
        ((4,), (5, 3)),  # a 1-d real side only
        ((4, 3), (5,)),  # a 1-d library side only
    ],
)
def test_every_space_mismatch_is_refused_with_its_shapes(real, lib):
    from skfingerprint import PairEmbeddings

    spaces = {"pixels": (np.zeros(real), np.zeros(lib))}
    with pytest.raises(ValueError) as info:
        PairEmbeddings(np.zeros((4, 2)), np.zeros((5, 2)), "k", spaces=spaces)
    assert str(info.value) == (
        f"space 'pixels': real {real} and library {lib} do not match the main embeddings "
        "(4 real, 5 library rows, one width)"
    )


def test_check_pairs_message_is_exact():
    from skfingerprint.pairs import check_pairs

    with pytest.raises(TypeError) as info:
        check_pairs(np.zeros(3))
    assert str(info.value) == (
        "X must be X_pairs built by skfingerprint.make_pairs(real, generated) or "
        "load_imageclef_gans(path); got ndarray"
    )


def test_a_reference_is_shared_by_every_slice_like_the_library(pairs):
    """Catches the reference dropped by slicing (a CV fold would lose the other reals), by
    make_pairs, or by the sklearn row indexing that folds use."""
    ref = make_pairs(
        np.ones((4, 8, 8)), np.zeros((50, 64, 64), np.uint8), reference=np.ones((3, 8, 8))
    )
    assert len(ref.reference) == 3 and ref.reference.ids == ["0", "1", "2"]
    assert ref[[0, 2]].reference is ref.reference
    assert _safe_indexing(ref, [1, 3]).reference is ref.reference
    assert (
        repr(ref) == "PairedImages(n_rows=4, library=50 generated images, reference=3 real images)"
    )
    assert pairs.reference is None and pairs[[0]].reference is None
    with pytest.raises(TypeError, match="reference must be an ImageSet or None; got ndarray"):
        PairedImages(pairs.real, pairs.library, np.ones((3, 8, 8)))
    # a bad reference is named as the reference, not as "images"
    with pytest.raises(ValueError, match=r"^reference: an image array must have shape"):
        make_pairs(np.ones((4, 8, 8)), np.zeros((5, 8, 8)), reference=np.ones((3, 8)))


def test_pair_embeddings_with_reference_rows_stack_rows_then_reference():
    """Catches the reference lost by slicing, its rows or spaces not stacked (or stacked in the
    other order), and a reference against another library accepted."""
    from skfingerprint import PairEmbeddings

    rng = np.random.default_rng(0)
    lib, lib_px = rng.normal(size=(5, 2)), rng.normal(size=(5, 3))
    ref = PairEmbeddings(
        rng.normal(size=(2, 2)),
        lib,
        "k",
        ["r0", "r1"],
        {"pixels": (rng.normal(size=(2, 3)), lib_px)},
    )
    E = PairEmbeddings(
        rng.normal(size=(4, 2)),
        lib,
        "k",
        list("abcd"),
        {"pixels": (rng.normal(size=(4, 3)), lib_px)},
        ref,
    )
    assert E[[3, 1]].reference is ref
    both = E[[3, 1]].with_reference_rows()
    assert both.ids == ["d", "b", "r0", "r1"] and both.reference is None
    np.testing.assert_array_equal(both.real, np.vstack([E.real[[3, 1]], ref.real]))
    np.testing.assert_array_equal(
        both.spaces["pixels"][0],
        np.vstack([E.spaces["pixels"][0][[3, 1]], ref.spaces["pixels"][0]]),
    )
    assert both.library is E.library and ref.with_reference_rows() is ref
    for bad in (
        PairEmbeddings(ref.real, lib, "other key", spaces=ref.spaces),
        PairEmbeddings(ref.real, lib, "k"),  # no pixel space
        PairEmbeddings(
            ref.real, lib[:4], "k", spaces={"pixels": (ref.spaces["pixels"][0], lib_px[:4])}
        ),
    ):
        with pytest.raises(ValueError) as refused:
            PairEmbeddings(E.real, lib, "k", spaces=E.spaces, reference=bad)
        assert str(refused.value) == (
            "PairEmbeddings' reference must be a PairEmbeddings of other real images against "
            "the same library (same library_key and shape), in the same spaces, without a "
            "reference of its own"
        )
    # rows or reference without ids: the stacked rows have none (not a crash)
    unnamed_ref = PairEmbeddings(ref.real, lib, "k", None, ref.spaces)
    for ids, reference in ((None, ref), (E.ids, unnamed_ref)):
        one_side = PairEmbeddings(E.real, lib, "k", ids, E.spaces, reference)
        assert one_side.with_reference_rows().ids is None
