import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.utils import _safe_indexing

from skfingerprint.images import (
    ImageLoadError,
    ImageSet,
    as_image_set,
    pixel_vectors,
    to_model_input,
)

from .conftest import write_png


def test_folder_is_sorted_and_read_lazily(png_folder):
    folder, arrays = png_folder
    (folder / "notes.txt").write_text("not an image")
    (folder / ".hidden.png").write_bytes(b"")
    images = as_image_set(folder)
    assert images.ids == [f"img_{i}" for i in range(5)]
    np.testing.assert_allclose(images.read(3)[:, :, 0], arrays[3] / 255.0, atol=1e-6)
    assert images.read(0).dtype == np.float32


def test_list_of_paths_and_array_give_the_same_pixels(png_folder):
    folder, arrays = png_folder
    from_paths = as_image_set(sorted(str(p) for p in folder.glob("*.png")))
    from_array = as_image_set(arrays)
    for i in range(5):
        np.testing.assert_allclose(from_paths.read(i), from_array.read(i), atol=1e-6)


def test_16bit_rgb_rgba_and_channels_last(tmp_path, rng):
    a16 = rng.integers(0, 65536, size=(16, 16), dtype=np.uint16)
    rgb = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((16, 16), 7, np.uint8)])
    paths = [
        write_png(tmp_path / "a16.png", a16),
        write_png(tmp_path / "rgb.png", rgb),
        write_png(tmp_path / "rgba.png", rgba),
    ]
    images = as_image_set(paths)
    np.testing.assert_allclose(images.read(0)[:, :, 0], a16 / 65535.0, atol=1e-6)
    np.testing.assert_allclose(images.read(1), rgb / 255.0, atol=1e-6)
    np.testing.assert_allclose(images.read(2), rgb / 255.0, atol=1e-6)  # alpha dropped
    arr = as_image_set(rng.integers(0, 65536, size=(2, 8, 8, 4), dtype=np.uint16))
    assert arr.read(1).shape == (8, 8, 3)
    assert as_image_set(np.zeros((2, 8, 8, 1), np.float32)).read(0).shape == (8, 8, 1)


def test_iter_batches_streams_in_order(png_folder):
    images = as_image_set(png_folder[0])
    batches = list(images.iter_batches(batch_size=2))
    assert [b[0].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert all(len(idx) == len(imgs) for idx, imgs in batches)


def test_slicing_and_safe_indexing(png_folder):
    images = as_image_set(png_folder[0])
    sub = _safe_indexing(images, np.array([4, 1]))
    assert isinstance(sub, ImageSet) and sub.ids == ["img_4", "img_1"]
    assert images[[True, False, True, False, False]].ids == ["img_0", "img_2"]
    assert images[1:3].ids == ["img_1", "img_2"]
    assert images[0] == png_folder[0] / "img_0.png"
    assert list(images) == [images[i] for i in range(5)]
    for key in (np.zeros((2, 2), int), (0, 1)):  # 2-d rows; a tuple not sklearn's (rows, ...)
        with pytest.raises(IndexError, match=r"^ImageSet supports 1-d indexing only; got"):
            images[key]
    assert images[[1, 2], ...].ids == ["img_1", "img_2"]  # sklearn's _array_indexing form
    # ids given by the caller (not the files' stems) travel with the rows they name
    named = ImageSet(paths=images.paths, ids=list("abcde"))
    assert named[[4, 1]].ids == ["e", "b"] and named[1:3].ids == ["b", "c"]
    assert repr(named) == "ImageSet(5 image files)"
    assert repr(as_image_set(np.zeros((2, 8, 8), np.uint8))) == (
        "ImageSet(2 images in a uint8 array (2, 8, 8))"
    )


def test_content_key_follows_content_not_location(tmp_path, png_folder):
    folder, arrays = png_folder
    copy = write_png(tmp_path / "elsewhere" / "copy.png", arrays[2])
    a, b = as_image_set(folder), as_image_set([copy])
    assert a.content_key(2) == b.content_key(0)
    assert a.content_key(2) != a.content_key(3)
    arr = as_image_set(arrays)
    assert arr.content_key(0) == as_image_set(arrays[:1].copy()).content_key(0)
    assert arr.content_key(0) != as_image_set(arrays[:1].astype(np.uint16)).content_key(0)


def test_to_model_input_repeats_gray_resizes_and_normalises():
    gray = np.full((10, 12, 1), 0.5, np.float32)
    rgb = np.zeros((20, 20, 3), np.float32)
    x = to_model_input([gray, rgb], 16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert x.shape == (2, 3, 16, 16) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], torch.zeros(3, 16, 16))
    torch.testing.assert_close(x[1], torch.full((3, 16, 16), -2.0))


def test_resizing_is_pils_bilinear_filter_which_antialiases():
    # Catches: downscaling without antialiasing (each output pixel would read the 2x2 input
    # pixels nearest it, aliasing fine texture into the ViT input and the pixel space) and
    # align_corners=True (a shifted sampling grid). PIL's BILINEAR widens its kernel by the
    # reduction factor, as timm's and torchvision's PIL transforms do.
    rng = np.random.default_rng(0)
    for (H, W), (h, w) in [((64, 48), (16, 16)), ((50, 70), (32, 32)), ((20, 20), (40, 40))]:
        img = rng.random((H, W), dtype=np.float32)
        ours = to_model_input([img[:, :, None]], (h, w))[0, 0].numpy()
        pil = np.asarray(Image.fromarray(img).resize((w, h), Image.Resampling.BILINEAR))
        np.testing.assert_allclose(ours, pil, atol=1e-5, err_msg=f"{(H, W)} -> {(h, w)}")


def test_pixel_vectors_of_a_colour_image_are_those_of_its_channel_mean():
    # Catches: a colour image's pixel vector read from one channel (the first) instead of the
    # mean of the three, which every test on grayscale images passes. Resizing is linear, so
    # averaging before or after it gives the same vectors.
    rng = np.random.default_rng(1)
    rgb = rng.random((3, 40, 40, 3), dtype=np.float32)
    rgb[..., 0] = 0.0  # a red channel unlike the others, so that no one channel is the mean
    for size in (40, 32):
        np.testing.assert_allclose(
            pixel_vectors(as_image_set(rgb), size),
            pixel_vectors(as_image_set(rgb.mean(axis=3)), size),
            atol=1e-6,
        )
    rgba = np.concatenate([rgb, np.ones((3, 40, 40, 1), np.float32)], axis=3)
    np.testing.assert_allclose(  # the alpha channel is dropped, not averaged in
        pixel_vectors(as_image_set(rgba), 32), pixel_vectors(as_image_set(rgb), 32), atol=1e-6
    )


def test_pickle_of_a_file_set_holds_paths_not_pixels(png_folder):
    images = as_image_set(png_folder[0])
    assert len(pickle.dumps(images)) < 2000
    assert pickle.loads(pickle.dumps(images)).ids == images.ids


# --- bad input: each with a clear error that names the problem (and the file) -------------------


def _nan_in_the_first(n_bad: int) -> np.ndarray:
    """Twelve 4x4 float images, the first ``n_bad`` of them NaN."""
    images = np.zeros((12, 4, 4))
    images[:n_bad] = np.nan
    return images


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        ([], ValueError, "empty"),
        (np.zeros((0, 8, 8), np.uint8), ValueError, "empty"),
        (np.zeros((8, 8), np.uint8), ValueError, r"shape \(n, H, W\)"),
        (np.zeros((2, 8, 8, 2), np.uint8), ValueError, "1, 3 or 4 channels"),
        (np.zeros((2, 8, 8), np.int32), ValueError, "uint8 or uint16"),
        (np.zeros((2, 1, 8), np.uint8), ValueError, r"^real: images must be at least 2x2 pixels"),
        (np.zeros((2, 8, 1), np.uint8), ValueError, r"^real: images must be at least 2x2 pixels"),
        (
            np.zeros((2, 8, 8), bool),
            ValueError,
            r"^real: integer image arrays must be uint8 or uint16; got bool\. Convert with "
            r"arr\.astype\(np\.uint8\) \(0-255\)",
        ),
        (np.zeros((2, 8, 8), complex), ValueError, r"^real: unsupported image array dtype complex"),
        (  # the first ten bad images are named, and that there are more
            _nan_in_the_first(11),
            ValueError,
            r"\(image indices \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]\.\.\.\)$",
        ),
        (_nan_in_the_first(10), ValueError, r"\(image indices \[0, 1, 2, 3, 4, 5, 6, 7, 8, 9\]\)$"),
        (np.full((2, 8, 8), 255.0), ValueError, r"\[0, 1\]"),
        (np.array([np.zeros((4, 4)), np.full((4, 4), np.nan)]), ValueError, r"NaN.*\[1\]"),
        (np.array([np.zeros((4, 4)), np.full((4, 4), np.inf)]), ValueError, "infinite"),
        ([np.zeros((4, 4))], TypeError, "file paths"),
        (42, TypeError, "expected a folder"),
    ],
)
def test_bad_inputs_get_clear_errors(value, error, match):
    with pytest.raises(error, match=match):
        as_image_set(value, name="real")


def test_missing_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.png"):
        as_image_set([tmp_path / "nope.png"])
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        as_image_set(tmp_path / "missing_dir")


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        as_image_set(tmp_path / "empty")


def test_file_errors_name_the_file(tmp_path, png_folder):
    good = png_folder[0] / "img_0.png"
    data = good.read_bytes()
    (tmp_path / "zero.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, I am not a PNG")
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    images = as_image_set([tmp_path / "zero.png", tmp_path / "text.png", tmp_path / "trunc.png"])
    with pytest.raises(ImageLoadError, match=r"zero\.png.*empty"):
        images.read(0)
    with pytest.raises(ImageLoadError, match=r"text\.png.*not an image"):
        images.read(1)
    with pytest.raises(ImageLoadError, match=r"trunc\.png"):
        images.read(2)
    with pytest.raises(ImageLoadError, match=r"zero\.png"):
        images.check_files()
    with pytest.raises(ImageLoadError, match=r"text\.png"):
        images[1:].check_files()
    (tmp_path / "text.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"text\.png"):
        images.read(1)


def test_unicode_and_spaces_in_paths(tmp_path, rng):
    a = rng.integers(0, 256, size=(8, 8), dtype=np.uint8)
    path = write_png(tmp_path / "dossier é 中" / "scan 01 ü.png", a)
    images = as_image_set(path.parent)
    assert images.ids == ["scan 01 ü"]
    np.testing.assert_allclose(images.read(0)[:, :, 0], a / 255.0, atol=1e-6)


def test_a_grayscale_image_gives_the_input_of_its_rgb_copy():
    # Catches: resizing grayscale once and repeating it giving other values than resizing
    # the three repeated channels (the input the ViT was always given).

    gray = np.random.default_rng(0).random((50, 70, 1), dtype=np.float32)
    rgb = np.repeat(gray, 3, axis=2)
    for size in (32, (40, 56)):
        a = to_model_input([gray], size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        b = to_model_input([rgb], size, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
        assert a.shape == b.shape == (1, 3, *((size, size) if isinstance(size, int) else size))
        assert torch.equal(a, b)


# --- the intensity check (real and generated images on one scale) --------------------------


def test_intensity_peak_is_the_median_of_each_images_brightest_pixel():
    from skfingerprint.images import intensity_peak

    vectors = np.array([[0.1, 0.9, 0.2], [0.3, 0.2, 0.1], [0.5, 0.4, 0.6], [1.0, 0.0, 0.0]])
    assert intensity_peak(vectors) == pytest.approx(np.median([0.9, 0.3, 0.6, 1.0]))  # 0.75


@pytest.mark.parametrize(
    ("real", "library", "message"),
    [
        (0.25, 1.0, "the real images are 4x darker than the generated ones (their brightest "
         "pixel: 0.250 against 1.000"),  # exactly 4x: warns
        (1.0, 0.0625, "the generated images are 16x darker than the real ones (their brightest "
         "pixel: 0.062 against 1.000"),
        (0.0, 0.5, "the real images are infinitely darker than the generated ones (their "
         "brightest pixel: 0.000 against 0.500"),
        (0.2501, 1.0, None),  # inside the margin
        (1.0, 0.2501, None),
        (0.0, 0.0, None),  # both black: nothing to compare, no "infinitely"
        (0.5, 0.5, None),
    ],
)  # fmt: skip
def test_warn_on_intensity_mismatch_at_and_around_4x(real, library, message):
    """The whole message, the darker set and the factor, at exactly 4x (warns), just inside
    it either way (quiet), and with black sets. Catches: ``<`` / ``<=`` at the margin, the
    sets swapped, a warning for two black sets, a changed or lost part of the message."""
    import warnings

    from skfingerprint.images import warn_on_intensity_mismatch

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_on_intensity_mismatch(real, library)
    if message is None:
        assert caught == []
        return
    assert [str(w.message) for w in caught] == [
        message + ", medians over each set on a 0-1 scale): they are not on one intensity "
        "scale, and their similarities would compare brightness, not content. 12-bit data "
        "stored in 16-bit files reads 16x darker than 8-bit images; rescale one set to the "
        "other's range before the audit."
    ]
    assert caught[0].category is UserWarning
