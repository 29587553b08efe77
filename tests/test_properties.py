"""Property-based tests (hypothesis): X_pairs slicing, the submission file, input validation."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.utils import _safe_indexing

from skfingerprint import make_pairs, read_submission, write_submission
from skfingerprint.images import as_image_set
from skfingerprint.metrics import check_binary_labels

SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def numbered_pairs(n: int, m: int = 3):
    """``n`` real 4x4 images whose pixels all equal their row number, and ``m`` generated."""
    real = np.repeat(np.arange(n, dtype=np.uint8), 16).reshape(n, 4, 4)
    return make_pairs(real, np.zeros((m, 4, 4), np.uint8), real_ids=[f"r{i}" for i in range(n)])


@st.composite
def row_index(draw, n: int):
    """Any row index sklearn may use: an int array (repeats allowed), a bool mask, a slice."""
    kind = draw(st.sampled_from(["ints", "mask", "slice"]))
    if kind == "ints":
        return np.asarray(draw(st.lists(st.integers(-n, n - 1), max_size=2 * n)), dtype=np.intp)
    if kind == "mask":
        return np.asarray(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    bound = st.none() | st.integers(-n - 2, n + 2)
    return slice(draw(bound), draw(bound), draw(st.none() | st.integers(-3, 3).filter(bool)))


@SETTINGS
@given(data=st.data(), n=st.integers(1, 12))
def test_x_pairs_slice_like_the_row_numbers(data, n):
    X = numbered_pairs(n)
    rows = np.arange(n)
    a = data.draw(row_index(n), label="a")
    sub = X[a]
    expected = rows[a]
    assert len(sub) == len(expected) and sub.shape == (len(expected), 2)
    assert sub.ids == [f"r{i}" for i in expected]
    assert sub.library is X.library  # rows share the one library, never copy it
    for j, i in enumerate(expected[:3]):
        assert np.all(sub.real.read(j) * 255 == np.float32(i))  # the pixels follow the ids
    assert _safe_indexing(X, a if not isinstance(a, slice) else rows[a]).ids == sub.ids
    if len(expected):
        b = data.draw(row_index(len(expected)), label="b")
        assert sub[b].ids == X[expected[b]].ids  # slicing composes like on an array


# Characters a submission id may not hold; anything else (unicode, inner spaces) is fine.
FORBIDDEN = ',\n\r\t"'


def valid_id(text: str) -> bool:
    return bool(text) and text == text.strip() and not any(c in text for c in FORBIDDEN)


@SETTINGS
@given(
    ids=st.lists(st.text(max_size=8), min_size=1, max_size=8),
    labels=st.data(),
    as_bool=st.booleans(),
)
def test_submission_round_trip_or_a_clear_refusal(tmp_path, ids, labels, as_bool):
    y = labels.draw(st.lists(st.integers(0, 1), min_size=len(ids), max_size=len(ids)))
    y = np.asarray(y, dtype=bool if as_bool else np.int64)
    path = tmp_path / "submission.csv"
    path.write_text("previous,1\n")
    ok = all(valid_id(i) for i in ids) and len(set(ids)) == len(ids)
    if not ok:
        with pytest.raises(ValueError, match="id"):
            write_submission(ids, y, path)
        assert path.read_text() == "previous,1\n"  # untouched
        return
    write_submission(ids, y, path)
    got_ids, got_labels = read_submission(path)
    assert got_ids == ids
    np.testing.assert_array_equal(got_labels, y.astype(np.int64))
    assert got_labels.dtype == np.int64


LABEL_VALUES = [0, 1, 0.0, 1.0, 2, -1, 0.5, np.nan, np.inf]


@SETTINGS
@given(values=st.lists(st.sampled_from(LABEL_VALUES), min_size=1, max_size=10))
def test_labels_are_accepted_exactly_when_all_are_0_or_1(values):
    y = np.asarray(values)
    if np.isin(y, (0, 1)).all():
        got = check_binary_labels(y, "y")
        assert got.dtype == np.int64 and got.tolist() == [int(v) for v in values]
    else:
        with pytest.raises(ValueError, match=r"y must hold only 0 \(not used\) and 1 \(used\)"):
            check_binary_labels(y, "y")


@SETTINGS
@given(
    values=st.lists(
        st.sampled_from([0.0, 0.25, 1.0, -0.1, 1.5, np.nan, np.inf, -np.inf]),
        min_size=2,
        max_size=2,
    ),
    where=st.integers(0, 2),
)
def test_float_images_are_accepted_exactly_when_finite_and_in_0_1(values, where):
    images = np.full((3, 4, 4), 0.5, np.float32)
    images[where, 1, 2], images[where, 3, 0] = values
    finite = np.isfinite(values).all()
    if finite and all(0 <= v <= 1 for v in values):
        assert as_image_set(images, name="real").read(where)[1, 2, 0] == np.float32(values[0])
    elif not finite:
        with pytest.raises(ValueError, match=rf"real: images contain NaN or infinite.*\[{where}\]"):
            as_image_set(images, name="real")
    else:
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            as_image_set(images, name="real")


@SETTINGS
@given(
    dtype=st.sampled_from([np.uint8, np.uint16]),
    shape=st.tuples(st.integers(1, 3), st.integers(2, 6), st.integers(2, 6)),  # 2x2 at least
    channels=st.sampled_from([None, 1, 3, 4]),
    seed=st.integers(0, 2**16),
)
def test_integer_images_of_any_shape_read_into_0_1(dtype, shape, channels, seed):
    full = shape if channels is None else (*shape, channels)
    info = np.iinfo(dtype)
    arr = np.random.default_rng(seed).integers(0, info.max, size=full, endpoint=True, dtype=dtype)
    images = as_image_set(arr)
    assert len(images) == shape[0]
    for i in range(shape[0]):
        img = images.read(i)
        assert img.dtype == np.float32 and img.shape[:2] == shape[1:]
        assert img.shape[2] == (3 if channels in (3, 4) else 1)
        assert 0.0 <= img.min() and img.max() <= 1.0
        np.testing.assert_allclose(
            img, (arr[i] if channels else arr[i][..., None])[..., :3] / info.max, atol=1e-6
        )
