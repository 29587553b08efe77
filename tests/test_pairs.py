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
