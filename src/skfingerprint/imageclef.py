"""ImageCLEFmed GANs ("Detect Training Data Usage") folders in and out, submission files out.

Layouts::

    <train>/generated/*.png   <train>/real_used/*.png   <train>/real_not_used/*.png
    <test>/generated/*.png    <test>/real_unknown/*.png

A submission is one line per test real image, ``<image id>,<0|1>`` (id = file stem, 1 = used).
The layout's writer (:func:`write_imageclef_layout`, for synthetic tasks) sits beside its reader.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.utils import Bunch

from ._contracts import check_binary_labels
from ._io import atomic_path
from .images import ImageSet, list_image_files
from .pairs import PairedImages

__all__ = [
    "load_imageclef_gans",
    "read_submission",
    "write_imageclef_layout",
    "write_scores",
    "write_submission",
]

TRAIN_FOLDERS = ("generated", "real_used", "real_not_used")
TEST_FOLDERS = ("generated", "real_unknown")


def _check_unique_stems(paths: list[Path], what: str) -> None:
    counts = Counter(p.stem for p in paths)
    dups = sorted(stem for stem, c in counts.items() if c > 1)
    if dups:
        clash = [str(p) for p in paths if p.stem == dups[0]]
        raise ValueError(
            f"Duplicate image ids among the {what} images: {len(dups)} ids occur more than once "
            f"(first: '{dups[0]}' in {clash}). Each id (file name without extension) must be "
            "unique."
        )


def _check_one_size(paths: list[Path], root: Path) -> None:
    sizes = ImageSet(paths=paths).sizes()
    first = sizes[0]
    for path, size in zip(paths, sizes, strict=True):
        if size != first:
            raise ValueError(
                f"Images in '{root}' have mixed sizes: '{paths[0]}' is {first[1]}x{first[0]} but "
                f"'{path}' is {size[1]}x{size[0]} (width x height). ImageCLEF images share one "
                "size."
            )


def load_imageclef_gans(path: str | os.PathLike, *, check_sizes: bool = True) -> Bunch:
    """Read an ImageCLEFmed GANs training or test folder.

    Parameters
    ----------
    path : str or Path
        A folder with ``generated/``, ``real_used/`` and ``real_not_used/`` (training split) or
        ``generated/`` and ``real_unknown/`` (test split).
    check_sizes : bool, default=True
        Check that every image has the same size (reads each file's header).

    Returns
    -------
    Bunch
        ``X_pairs`` (:class:`PairedImages`, one row per real image, sorted by id), ``y`` (0/1
        array, or None for the test split), ``ids`` (real images' file stems), ``split``
        (``"train"`` or ``"test"``), ``real_paths`` and ``generated_paths``.

    Raises
    ------
    FileNotFoundError
        The folder or one of the layout's sub-folders is missing.
    ValueError
        An empty sub-folder, duplicate ids, a real image in both ``real_used`` and
        ``real_not_used``, or mixed image sizes.

    Examples
    --------
    >>> from skfingerprint import load_imageclef_gans  # doctest: +SKIP
    >>> train = load_imageclef_gans("ImageCLEF2025/train")  # doctest: +SKIP
    >>> pipe.fit(train.X_pairs, train.y)  # doctest: +SKIP
    """
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"No such ImageCLEF folder: '{root}'")
    present = {p.name for p in root.iterdir() if p.is_dir()}
    if "real_unknown" in present:
        split = "test"
        if {"real_used", "real_not_used"} & present:
            raise ValueError(
                f"'{root}' mixes the test layout (real_unknown/) with the training layout "
                "(real_used/, real_not_used/); keep the splits in separate folders"
            )
    elif {"real_used", "real_not_used"} & present:
        split = "train"
    else:
        raise FileNotFoundError(
            f"'{root}' is not an ImageCLEF GANs folder: expected sub-folders "
            f"{'/, '.join(TRAIN_FOLDERS)}/ (training) or {'/, '.join(TEST_FOLDERS)}/ (test); "
            f"found {sorted(present) or 'no sub-folders'}"
        )
    for name in TRAIN_FOLDERS if split == "train" else TEST_FOLDERS:
        if name not in present:
            raise FileNotFoundError(f"Missing folder '{root / name}' ({split} layout)")

    generated = list_image_files(root / "generated")
    _check_unique_stems(generated, "generated")
    if split == "train":
        used, not_used = (
            list_image_files(root / "real_used"),
            list_image_files(root / "real_not_used"),
        )
        both = sorted({p.stem for p in used} & {p.stem for p in not_used})
        if both:
            raise ValueError(
                f"{len(both)} real image ids are both in real_used/ and real_not_used/ of "
                f"'{root}' (first: '{both[0]}'); each real image has one label"
            )
        real = used + not_used
        labels = np.r_[np.ones(len(used), np.int64), np.zeros(len(not_used), np.int64)]
    else:
        real = list_image_files(root / "real_unknown")
        labels = None
    _check_unique_stems(real, "real")
    order = np.argsort([p.stem for p in real], kind="stable")
    real = [real[i] for i in order]
    if check_sizes:
        _check_one_size(real + generated, root)
    real_set, library = ImageSet(paths=real), ImageSet(paths=generated)
    return Bunch(
        X_pairs=PairedImages(real_set, library),
        y=None if labels is None else labels[order],
        ids=real_set.ids,
        split=split,
        real_paths=real,
        generated_paths=generated,
    )


def _check_ids(ids: Sequence[str]) -> list[str]:
    ids = [str(i) for i in ids]
    for i in ids:
        if not i or i != i.strip() or any(c in i for c in ',\n\r\t"'):
            raise ValueError(
                f"Invalid image id {i!r} for a submission: ids must be non-empty, without commas, "
                "quotes, tabs, line breaks or surrounding spaces"
            )
    counts = Counter(ids)
    dups = [i for i, c in counts.items() if c > 1]
    if dups:
        raise ValueError(f"Each id must appear once in a submission; duplicated: {dups[:5]}")
    return ids


def write_submission(ids: Sequence[str], labels, path: str | os.PathLike) -> Path:
    """Write an ImageCLEFmed GANs submission: ``<id>,<0|1>`` per line, no header.

    The file is written atomically: an existing file is replaced only by a complete one.

    Parameters
    ----------
    ids : sequence of str
        Real test image ids (file stems), each once.
    labels : array-like of 0/1
        One prediction per id (1 = used in training).
    path : str or Path
        Where to write.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        Empty input, lengths that differ, duplicate or malformed ids, labels other than 0/1.

    Examples
    --------
    >>> from skfingerprint import write_submission
    >>> write_submission(["img_001", "img_002"], [1, 0], "submission.csv")  # doctest: +SKIP
    """
    ids = _check_ids(ids)
    labels = check_binary_labels(labels, "labels")
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} ids but {len(labels)} labels; give one label per id")
    path = Path(path)
    text = "".join(f"{i},{int(v)}\n" for i, v in zip(ids, labels, strict=True))
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return path


def write_scores(ids: Sequence[str], scores, path: str | os.PathLike) -> Path:
    """Write every real image's score, ranked: ``rank,id,p_used`` with a header, highest first.

    The ranking is what an auditor reads: the real images the model thinks most likely used,
    first. Ties keep the order of ``ids``. Written atomically, like :func:`write_submission`.

    Parameters
    ----------
    ids : sequence of str
        Real image ids (file stems), each once.
    scores : array-like of float
        One score per id, higher = more likely used (``predict_proba(X)[:, 1]``).
    path : str or Path
        Where to write.

    Returns
    -------
    Path

    Raises
    ------
    ValueError
        Empty input, lengths that differ, duplicate or malformed ids, scores that are not
        finite numbers.

    Examples
    --------
    >>> from skfingerprint.imageclef import write_scores
    >>> write_scores(["img_001", "img_002"], [0.2, 0.9], "scores.csv")  # doctest: +SKIP
    """
    ids = _check_ids(ids)
    if not ids:
        raise ValueError("no scores to write: ids is empty")
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(ids) != len(scores):
        raise ValueError(f"{len(ids)} ids but scores of shape {scores.shape}; give one per id")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite numbers (NaN or infinity found)")
    order = np.argsort(-scores, kind="stable")
    lines = ["rank,id,p_used\n"]
    lines += [f"{r},{ids[i]},{scores[i]:.6f}\n" for r, i in enumerate(order, start=1)]
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines), encoding="utf-8", newline="\n")
    return path


def read_submission(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read and check a submission file written by :func:`write_submission`.

    Parameters
    ----------
    path : str or Path
        The submission file (``<id>,<0|1>`` per line).

    Returns
    -------
    ids : list of str
    labels : ndarray of int64

    Raises
    ------
    ValueError
        A malformed line (named by its number), a duplicate id, or an empty file.

    Examples
    --------
    >>> from skfingerprint import read_submission, write_submission
    >>> path = write_submission(["img_1", "img_2"], [1, 0], "submission.csv")  # doctest: +SKIP
    >>> read_submission(path)  # doctest: +SKIP
    (['img_1', 'img_2'], array([1, 0]))
    """
    path = Path(path)
    ids, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split(",")
            if len(parts) != 2 or parts[1] not in ("0", "1"):
                raise ValueError(f"{path}:{n}: expected '<id>,<0|1>', got {line.rstrip()!r}")
            ids.append(parts[0])
            labels.append(int(parts[1]))
    if not ids:
        raise ValueError(f"Submission file '{path}' is empty")
    return _check_ids(ids), np.asarray(labels, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# Writing the ImageCLEF folder layout (of a task from skfingerprint.datasets)
# --------------------------------------------------------------------------------------------


def _write_pngs(folder: Path, images: np.ndarray, ids: list[str]) -> None:
    from PIL import Image

    folder.mkdir()
    for img, name in zip(images, ids, strict=True):
        Image.fromarray(np.ascontiguousarray(img)).save(folder / f"{name}.png")


def write_imageclef_layout(
    task: Mapping[str, Any], path: str | os.PathLike, *, split: str = "train"
) -> Path:
    """Write a task as the ImageCLEFmed GANs folder layout of 8-bit grayscale PNG files.

    For ``split="train"``::

        <path>/generated/<generated id>.png
        <path>/real_used/<real id>.png
        <path>/real_not_used/<real id>.png

    For ``split="test"`` the labels are withheld::

        <path>/generated/<generated id>.png
        <path>/real_unknown/<real id>.png

    Parameters
    ----------
    task : Bunch or mapping
        A task as returned by :func:`~skfingerprint.datasets.make_synthetic_leak`: needs
        ``real_images``, ``ids``, ``generated_images``, ``generated_ids`` and, for the train
        split, ``y``.
    path : str or path-like
        Folder to write into. It is created if missing; an existing folder must be empty.
    split : {"train", "test"}, default="train"
        Which layout to write.

    Returns
    -------
    path : pathlib.Path
        The folder written.

    Raises
    ------
    FileExistsError
        If ``path`` exists and is not an empty folder.
    ValueError
        If ``split`` is unknown or ``task`` lacks a field or holds inconsistent arrays.

    Examples
    --------
    >>> from skfingerprint import load_imageclef_gans
    >>> from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout
    >>> task = make_synthetic_leak(10, 10, 30, image_size=32, random_state=0)
    >>> folder = write_imageclef_layout(task, "train")  # doctest: +SKIP
    >>> sorted(p.name for p in folder.iterdir())  # doctest: +SKIP
    ['generated', 'real_not_used', 'real_used']
    >>> load_imageclef_gans(folder).X_pairs  # doctest: +SKIP
    PairedImages(n_rows=20, library=30 generated images)
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    need = ["real_images", "ids", "generated_images", "generated_ids"]
    if split == "train":
        need.append("y")
    missing = [key for key in need if key not in task]
    if missing:
        raise ValueError(f"task lacks the field(s) {missing} needed for split={split!r}.")

    real = np.asarray(task["real_images"])
    generated = np.asarray(task["generated_images"])
    ids, gen_ids = [str(i) for i in task["ids"]], [str(i) for i in task["generated_ids"]]
    for name, arr, names in (("real_images", real, ids), ("generated_images", generated, gen_ids)):
        if arr.dtype != np.uint8 or arr.ndim != 3:
            raise ValueError(
                f"task['{name}'] must be a uint8 array of shape (n, H, W), "
                f"got dtype {arr.dtype} and shape {arr.shape}."
            )
        if len(names) != len(arr):
            raise ValueError(f"task['{name}'] has {len(arr)} images but {len(names)} ids.")
        if len(set(names)) != len(names):
            raise ValueError(f"the ids of task['{name}'] are not unique.")
    if split == "train":
        y = np.asarray(task["y"])
        if y.shape != (len(real),) or not np.isin(y, (0, 1)).all():
            raise ValueError(f"task['y'] must hold one 0/1 label per real image, got {y!r}.")

    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a folder.")
        if any(path.iterdir()):
            raise FileExistsError(f"{path} is not empty; refusing to write into it.")
    path.mkdir(parents=True, exist_ok=True)

    _write_pngs(path / "generated", generated, gen_ids)
    if split == "train":
        used = y == 1
        names = np.asarray(ids, dtype=object)
        _write_pngs(path / "real_used", real[used], list(names[used]))
        _write_pngs(path / "real_not_used", real[~used], list(names[~used]))
    else:
        _write_pngs(path / "real_unknown", real, ids)
    return path
