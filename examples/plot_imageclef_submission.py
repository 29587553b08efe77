"""
=====================================================
From ImageCLEF folders to a submission file
=====================================================

The ImageCLEFmed GANs task ships one folder per split::

    train/generated/*.png       images the generative model produced
    train/real_used/*.png       real images that were in its training set (label 1)
    train/real_not_used/*.png   real images that were not (label 0)
    test/generated/*.png
    test/real_unknown/*.png     real images to decide about

and expects a submission file with one ``<id>,<0|1>`` line per ``real_unknown`` image. We
write a small synthetic task in this layout, then go from folders to a submission twice: with
the ``skfingerprint`` command line and with the Python API. Both fit the same pipeline with the
same seed, so they write the same file.
"""

# %%
# Folders in the ImageCLEF layout
# -------------------------------
# :func:`~skfingerprint.datasets.write_imageclef_layout` writes a task as 8-bit PNG files. With
# the real data, skip this step and point at the unpacked folders.
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from skfingerprint import (
    load_imageclef_gans,
    make_fingerprint_pipeline,
    membership_report,
    read_submission,
    write_submission,
)
from skfingerprint.cli import main
from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout
from skfingerprint.pipeline import TINY_VIT

SIZES = dict(n_used=40, n_not_used=40, n_generated=160, image_size=64, distortion=0.5)
work = Path(tempfile.mkdtemp())
train_task = make_synthetic_leak(**SIZES, random_state=0)
test_task = make_synthetic_leak(**SIZES, random_state=1)
write_imageclef_layout(train_task, work / "train", split="train")
write_imageclef_layout(test_task, work / "test", split="test")
for folder in sorted((work / "train").iterdir()) + sorted((work / "test").iterdir()):
    print(f"{folder.parent.name}/{folder.name}/: {len(list(folder.glob('*.png')))} PNG files")

# %%
# With the command line
# ---------------------
# In a shell this is::
#
#     skfingerprint fit train/ -o model.skops --tiny --k 20 --seed 0
#     skfingerprint predict model.skops test/ -o submission_cli.csv
#
# :func:`skfingerprint.cli.main` runs the same commands from Python and returns the exit
# status. ``--tiny`` picks the small random ViT; without it the command loads the pretrained
# ViT-B/16 (``--checkpoint FILE`` for a local weights file).
status = main(
    [
        "fit",
        str(work / "train"),
        "-o",
        str(work / "model.skops"),
        "--tiny",
        "--k",
        "20",
        "--seed",
        "0",
    ]
)
assert status == 0
status = main(
    [
        "predict",
        str(work / "model.skops"),
        str(work / "test"),
        "-o",
        str(work / "submission_cli.csv"),
    ]
)
assert status == 0

# %%
# With Python
# -----------
# :func:`~skfingerprint.load_imageclef_gans` reads a split into ``X_pairs`` (one row per real
# image, sorted by id), ``y`` (None for a test split) and ``ids``;
# :func:`~skfingerprint.write_submission` writes the file atomically.
train = load_imageclef_gans(work / "train")
test = load_imageclef_gans(work / "test")
print(train.split, len(train.ids), "real images;", test.split, len(test.ids), "real images")
pipe = make_fingerprint_pipeline(**TINY_VIT, k=20, random_state=0)
pipe.fit(train.X_pairs, train.y)
write_submission(test.ids, pipe.predict(test.X_pairs), work / "submission_py.csv")

ids_cli, labels_cli = read_submission(work / "submission_cli.csv")
ids_py, labels_py = read_submission(work / "submission_py.csv")
print((work / "submission_py.csv").read_text().splitlines()[:3], "...")
print("same ids:", ids_cli == ids_py, "| same labels:", bool(np.all(labels_cli == labels_py)))

# %%
# Scoring the submission
# ----------------------
# The organisers score the file against labels we do not have; here the synthetic truth is
# known (``test_task.ids`` matches the file names).
truth = dict(zip(test_task.ids, test_task.y, strict=True))
y_true = np.array([truth[i] for i in ids_py])
print(membership_report(y_true, labels_py))

# %%
# A look at the folders and at what was submitted: one image from each training folder, and the
# submitted labels against the truth.
fig = plt.figure(figsize=(10, 3.6), layout="constrained")
left, right = fig.subfigures(1, 2, width_ratios=[3, 1.4])
axes = left.subplots(1, 3)
for ax, name in zip(axes, ["real_used", "real_not_used", "generated"], strict=True):
    first = sorted((work / "train" / name).glob("*.png"))[0]
    ax.imshow(plt.imread(first), cmap="gray", vmin=0, vmax=1)
    ax.set_title(f"train/{name}/\n{first.name}", fontsize=9)
    ax.axis("off")
left.suptitle("The ImageCLEF training layout")
ax = right.subplots()
counts = np.array([[np.sum((y_true == t) & (labels_py == p)) for p in (0, 1)] for t in (0, 1)])
ax.imshow(counts, cmap="Blues")
for t in (0, 1):
    for p in (0, 1):
        ax.text(
            p,
            t,
            str(counts[t, p]),
            ha="center",
            va="center",
            color="white" if counts[t, p] > counts.max() / 2 else "black",
        )
ax.set_xticks([0, 1], ["0", "1"])
ax.set_yticks([0, 1], ["not used", "used"])
ax.set_xlabel("submitted label")
ax.set_ylabel("truth")
ax.set_title("submission vs truth", fontsize=10)
plt.show()

# %%
# Clean up the temporary folder.
import shutil

shutil.rmtree(work)
