"""Tests of the synthetic leak task and of the ImageCLEF layout writer."""

import numpy as np
import pytest
from PIL import Image

from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout

SIZE = 64


def _task(**kwargs):
    params = {
        "n_used": 24,
        "n_not_used": 20,
        "n_generated": 40,
        "image_size": SIZE,
        "random_state": 0,
    }
    params.update(kwargs)
    return make_synthetic_leak(**params)


def _mse(a, b):
    """Pixel MSE between every image of ``a`` and every image of ``b``: (len(a), len(b))."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return ((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T) / a.shape[1]


@pytest.fixture(scope="module")
def task():
    return _task()


def test_shapes_dtypes_and_fields(task):
    n, m = 44, 40
    assert task.real_images.shape == (n, SIZE, SIZE)
    assert task.real_images.dtype == np.uint8
    assert task.generated_images.shape == (m, SIZE, SIZE)
    assert task.generated_images.dtype == np.uint8
    for name, length in (("y", n), ("patient", n), ("generated_source", m)):
        arr = getattr(task, name)
        assert arr.dtype == np.int64, name
        assert arr.shape == (length,), name
    assert task.ids == [f"real_{i:04d}" for i in range(n)]
    assert task.generated_ids == [f"gen_{i:04d}" for i in range(m)]
    assert len(task.X_pairs) == n
    assert len(task.X_pairs.real) == n
    assert len(task.X_pairs.library) == m
    assert isinstance(task.DESCR, str)
    assert task.DESCR
    # images use the 8-bit range: dark air, bright bone
    assert task.real_images.min() < 30
    assert task.real_images.max() > 180


def test_same_seed_same_task_other_seed_other_task():
    a, b, c = _task(random_state=3), _task(random_state=3), _task(random_state=4)
    for name in ("real_images", "generated_images", "y", "patient", "generated_source"):
        np.testing.assert_array_equal(a[name], b[name])
    assert not np.array_equal(a.real_images, c.real_images)
    assert not np.array_equal(a.generated_images, c.generated_images)


def test_random_state_instances_are_accepted():
    """A RandomState or Generator instance drives the draw: the same seed gives the same task,
    another seed another one, and a RandomState(s) gives what the int s gives, as in sklearn
    (catches an instance ignored or replaced by fresh entropy)."""
    a = _task(random_state=np.random.RandomState(0))
    assert a.real_images.shape[0] == 44
    np.testing.assert_array_equal(a.real_images, _task(random_state=0).real_images)
    np.testing.assert_array_equal(a.y, _task(random_state=np.random.RandomState(0)).y)
    assert not np.array_equal(
        a.real_images, _task(random_state=np.random.RandomState(1)).real_images
    )
    g = _task(random_state=np.random.default_rng(0))
    assert g.real_images.shape[0] == 44
    again = _task(random_state=np.random.default_rng(0))
    for name in ("real_images", "generated_images", "y", "generated_source"):
        np.testing.assert_array_equal(g[name], again[name])
    other = _task(random_state=np.random.default_rng(1))
    assert not np.array_equal(g.real_images, other.real_images)
    # a Generator is used as given: a second task from the same object continues its stream
    shared = np.random.default_rng(0)
    _task(random_state=shared)
    assert not np.array_equal(_task(random_state=shared).real_images, g.real_images)


def test_label_counts_and_rows_are_shuffled(task):
    assert int((task.y == 1).sum()) == 24
    assert int((task.y == 0).sum()) == 20
    assert set(np.unique(task.y)) == {0, 1}
    # not blocked: the labels change more than once along the rows
    assert np.count_nonzero(np.diff(task.y)) > 2


def test_split_is_by_patient(task):
    used = set(task.patient[task.y == 1].tolist())
    not_used = set(task.patient[task.y == 0].tolist())
    assert used
    assert not_used
    assert not used & not_used
    # default: about four slices per patient
    assert len(used) == 6
    assert len(not_used) == 5


def test_patients_per_split():
    task = _task(patients_per_split=2)
    assert len(np.unique(task.patient[task.y == 1])) == 2
    assert len(np.unique(task.patient[task.y == 0])) == 2
    task = _task(n_used=5, n_not_used=5, patients_per_split=5)
    assert len(np.unique(task.patient)) == 10
    # one patient per split, many slices each
    task = _task(n_used=40, n_not_used=3, n_generated=2, patients_per_split=1, image_size=32)
    assert np.bincount(task.patient).tolist() in ([40, 3], [3, 40])


def test_patients_differ_more_than_slices_of_one_patient(task):
    dist = _mse(task.real_images, task.real_images)
    same = task.patient[:, None] == task.patient[None, :]
    off_diagonal = ~np.eye(len(dist), dtype=bool)
    within = dist[same & off_diagonal]
    between = dist[~same]
    assert within.min() > 0  # similar, not equal
    assert within.mean() * 2 < between.mean()
    # every slice's nearest other real image comes from its own patient
    np.fill_diagonal(dist, np.inf)
    nearest = dist.argmin(1)
    assert np.mean(task.patient[nearest] == task.patient) > 0.9


def test_generated_source_points_to_used_rows(task):
    source = task.generated_source
    leaked = source >= 0
    assert leaked.sum() == round(0.3 * 40)
    assert np.all(source[~leaked] == -1)
    assert np.all(task.y[source[leaked]] == 1)
    # the library is shuffled: copies and novel images are interleaved
    assert np.count_nonzero(np.diff(leaked.astype(int))) > 2


def test_copies_are_drawn_with_replacement():
    task = _task(n_used=6, n_not_used=6, n_generated=40, leak_fraction=1.0)
    source = task.generated_source
    assert np.all(source >= 0)
    assert len(np.unique(source)) < len(source)


def test_leaked_copies_are_closest_to_their_source(task):
    dist = _mse(task.generated_images, task.real_images)
    leaked = np.flatnonzero(task.generated_source >= 0)
    to_source = dist[leaked, task.generated_source[leaked]]
    to_not_used = dist[leaked][:, task.y == 0].min(axis=1)
    assert to_source.mean() < to_not_used.mean()
    # novel images come from fresh patients: no real image is as close as a leaked copy's source
    novel = np.flatnonzero(task.generated_source < 0)
    assert dist[novel].min(axis=1).mean() > to_source.mean()


def test_distortion_scales_the_perturbation():
    def mean_mse_to_source(distortion):
        task = _task(distortion=distortion, leak_fraction=0.5, random_state=7)
        leaked = np.flatnonzero(task.generated_source >= 0)
        src = task.real_images[task.generated_source[leaked]].astype(np.float64)
        return np.mean((task.generated_images[leaked] - src) ** 2)

    exact, medium, heavy = (mean_mse_to_source(d) for d in (0.0, 0.5, 1.0))
    assert exact < 5.0  # near-exact copies: only the generator's faint noise
    assert exact < medium < heavy


def test_leak_signal_survives_full_distortion():
    task = _task(n_generated=60, distortion=1.0, random_state=2)
    dist = _mse(task.generated_images, task.real_images)
    leaked = np.flatnonzero(task.generated_source >= 0)
    to_source = dist[leaked, task.generated_source[leaked]]
    to_not_used = dist[leaked][:, task.y == 0].min(axis=1)
    assert to_source.mean() < to_not_used.mean()


def test_no_leak():
    task = _task(leak_fraction=0.0)
    assert np.all(task.generated_source == -1)
    assert task.generated_images.shape == (40, SIZE, SIZE)


def test_full_leak():
    """Every generated image is a copy of a used real image, and nearest to it in pixels
    (catches sources drawn from every real row, or novel images left in the library)."""
    task = _task(leak_fraction=1.0)
    assert np.all(task.generated_source >= 0)
    assert np.all(task.y[task.generated_source] == 1)
    dist = _mse(task.generated_images, task.real_images)
    nearest = dist.argmin(axis=1)
    assert np.mean(nearest == task.generated_source) > 0.9


def test_image_size_32_works():
    """The smallest size still gives a task: the leaked copies are nearest their source
    (catches a size-dependent blur or noise that washes the leak out at 32 px)."""
    task = make_synthetic_leak(3, 3, 4, image_size=32, random_state=0)
    assert task.real_images.shape == (6, 32, 32)
    assert task.generated_images.shape == (4, 32, 32)
    assert task.real_images.min() < 30 and task.real_images.max() > 180  # not a blank image
    task = make_synthetic_leak(6, 6, 20, image_size=32, leak_fraction=0.5, random_state=0)
    leaked = np.flatnonzero(task.generated_source >= 0)
    assert leaked.size == 10
    dist = _mse(task.generated_images[leaked], task.real_images)
    assert np.mean(dist.argmin(axis=1) == task.generated_source[leaked]) >= 0.9


@pytest.mark.parametrize(
    "param, value",
    [
        ("n_used", 0),
        ("n_not_used", 0),
        ("n_generated", 0),
        ("n_used", 2.5),
        ("image_size", 31),
        ("leak_fraction", -0.1),
        ("leak_fraction", 1.5),
        ("leak_fraction", float("nan")),
        ("distortion", 1.01),
        ("distortion", -1),
        ("patients_per_split", 0),
        ("random_state", "seed"),
    ],
)
def test_invalid_parameters_raise(param, value):
    with pytest.raises(ValueError, match=param):
        _task(**{param: value})


def test_too_many_patients_per_split_raises():
    with pytest.raises(ValueError, match="patients_per_split"):
        _task(n_used=3, n_not_used=10, patients_per_split=4)


def _read_folder(folder):
    files = sorted(folder.glob("*.png"))
    return [f.stem for f in files], [np.asarray(Image.open(f)) for f in files]


def test_write_train_layout(task, tmp_path):
    out = write_imageclef_layout(task, tmp_path / "train")
    assert out == tmp_path / "train"
    assert sorted(p.name for p in out.iterdir()) == ["generated", "real_not_used", "real_used"]

    names, images = _read_folder(out / "generated")
    assert names == task.generated_ids
    np.testing.assert_array_equal(np.stack(images), task.generated_images)

    index = {name: i for i, name in enumerate(task.ids)}
    for folder, label in (("real_used", 1), ("real_not_used", 0)):
        names, images = _read_folder(out / folder)
        assert len(names) == int((task.y == label).sum())
        rows = [index[name] for name in names]
        assert np.all(task.y[rows] == label)
        for row, img in zip(rows, images, strict=True):
            assert img.dtype == np.uint8
            assert img.ndim == 2
            np.testing.assert_array_equal(img, task.real_images[row])
        with Image.open(out / folder / f"{names[0]}.png") as im:
            assert im.mode == "L"


def test_write_test_layout(task, tmp_path):
    out = write_imageclef_layout(task, str(tmp_path / "nested" / "test"), split="test")
    assert sorted(p.name for p in out.iterdir()) == ["generated", "real_unknown"]
    names, images = _read_folder(out / "real_unknown")
    assert names == task.ids
    np.testing.assert_array_equal(np.stack(images), task.real_images)
    names, _ = _read_folder(out / "generated")
    assert len(names) == len(task.generated_ids)


def test_write_into_empty_existing_folder(task, tmp_path):
    out = write_imageclef_layout(task, tmp_path, split="test")
    assert (out / "real_unknown").is_dir()


def test_write_refuses_non_empty_folder(task, tmp_path):
    (tmp_path / "something.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not empty"):
        write_imageclef_layout(task, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something.txt"]


def test_write_refuses_a_file_path(task, tmp_path):
    target = tmp_path / "file.png"
    target.write_bytes(b"")
    with pytest.raises(FileExistsError):
        write_imageclef_layout(task, target)


def test_write_rejects_unknown_split_and_missing_fields(task, tmp_path):
    with pytest.raises(ValueError, match="split"):
        write_imageclef_layout(task, tmp_path / "a", split="valid")
    partial = {k: task[k] for k in ("real_images", "ids", "generated_images", "generated_ids")}
    with pytest.raises(ValueError, match="'y'"):
        write_imageclef_layout(partial, tmp_path / "b")
    # the test split needs no labels
    write_imageclef_layout(partial, tmp_path / "c", split="test")
    assert not (tmp_path / "a").exists()
    assert not (tmp_path / "b").exists()


def test_written_layout_loads_with_imageclef_reader(task, tmp_path):
    imageclef = pytest.importorskip("skfingerprint.imageclef")
    out = write_imageclef_layout(task, tmp_path / "train")
    loaded = imageclef.load_imageclef_gans(out)
    assert list(loaded.ids) == task.ids  # the reader sorts by id, our ids are in row order
    np.testing.assert_array_equal(loaded.y, task.y)
    assert len(loaded.X_pairs) == len(task.ids)
    assert len(loaded.X_pairs.library) == len(task.generated_ids)


def _small_task():
    from skfingerprint.datasets import make_synthetic_leak

    task = make_synthetic_leak(4, 4, 6, image_size=32, random_state=0)
    return {k: task[k] for k in ("real_images", "ids", "generated_images", "generated_ids", "y")}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"real_images": lambda t: t["real_images"].astype(float)},
            "task['real_images'] must be a uint8 array of shape (n, H, W), got dtype float64 and "
            "shape (8, 32, 32).",
        ),
        (
            {"generated_images": lambda t: t["generated_images"].reshape(6, -1)},
            "task['generated_images'] must be a uint8 array of shape (n, H, W), got dtype uint8 "
            "and shape (6, 1024).",
        ),
        ({"ids": lambda t: t["ids"][:7]}, "task['real_images'] has 8 images but 7 ids."),
        (
            {"generated_ids": lambda t: ["g"] * 6},
            "the ids of task['generated_images'] are not unique.",
        ),
        (
            {"y": lambda t: np.r_[t["y"], 1]},
            "task['y'] must hold one 0/1 label per real image, got {y!r}.",
        ),
    ],
)
def test_layout_writer_names_the_bad_field_exactly(tmp_path, change, message):
    """Each check fires on its own (catches ``or`` turned into ``and``) with its exact message."""
    from skfingerprint.datasets import write_imageclef_layout

    task = _small_task()
    task.update({key: fn(task) for key, fn in change.items()})
    with pytest.raises(ValueError) as info:
        write_imageclef_layout(task, tmp_path / "out")
    assert str(info.value) == message.format(y=task["y"])
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_layout_writer_refuses_a_file_in_the_way(tmp_path):
    from skfingerprint.datasets import write_imageclef_layout

    (tmp_path / "out").write_text("x")
    with pytest.raises(FileExistsError) as info:
        write_imageclef_layout(_small_task(), tmp_path / "out")
    assert str(info.value) == f"{tmp_path / 'out'} exists and is not a folder."
