"""
==========================================
Quickstart: audit a generator that leaks
==========================================

A generative model *leaks* when some of the images it generates are (distorted) copies of its
training images. Given the images it generated, we decide which real images were in its
training set.

This example builds a small synthetic task where the truth is known, fits the audit pipeline
(embeddings and pixels -> candidates and relation scores -> a logistic regression) on one
task and reports the official ImageCLEFmed GANs metrics, Cohen's kappa first, on an
independent one.
"""

# %%
# A synthetic task with a known leak
# ----------------------------------
# :func:`~skfingerprint.datasets.make_synthetic_leak` draws CT-like slices of random patients,
# splits them by patient into images the "generator" was trained on (``y == 1``) and images it
# never saw (``y == 0``), and makes a library of generated images: 30% are perturbed copies of
# used images, the rest new slices of unseen patients. We draw a training task and an
# independent test task with another seed (other patients, another library).
import matplotlib.pyplot as plt
import numpy as np
from sklearn.metrics import ConfusionMatrixDisplay

from skfingerprint import make_fingerprint_pipeline, membership_report
from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.pipeline import TINY_VIT

SIZES = dict(n_used=40, n_not_used=40, n_generated=160, image_size=64, distortion=0.5)
train = make_synthetic_leak(**SIZES, random_state=0)
test = make_synthetic_leak(**SIZES, random_state=1)
print(f"{len(train.y)} real images ({train.y.sum()} used), {len(train.generated_ids)} generated")

# %%
# A used real image, a generated copy of it, and a real image the generator never saw:
copy = int(np.flatnonzero(train.generated_source >= 0)[0])
used = int(train.generated_source[copy])  # the row of the real image it copies
unseen = int(np.flatnonzero(train.y == 0)[0])
novel = int(np.flatnonzero(train.generated_source == -1)[0])
fig, axes = plt.subplots(1, 4, figsize=(9, 2.8), layout="constrained")
for ax, img, title in zip(
    axes,
    [
        train.real_images[used],
        train.generated_images[copy],
        train.real_images[unseen],
        train.generated_images[novel],
    ],
    ["real, used in training", "generated: copy of it", "real, not used", "generated: new patient"],
    strict=True,
):
    ax.imshow(img, cmap="gray", vmin=0, vmax=255)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
fig.suptitle("The synthetic task: the generator leaks distorted copies of its training images")

# %%
# The audit pipeline
# ------------------
# :func:`~skfingerprint.make_fingerprint_pipeline` builds the paper's method as a scikit-learn
# ``Pipeline``. ``TINY_VIT`` is a small, randomly initialised ViT (no download); with real data,
# use the default pretrained ViT-B/16 instead. Each real image is judged against its ``k`` most
# similar generated images.
pipe = make_fingerprint_pipeline(**TINY_VIT, k=20, random_state=0)
pipe.fit(train.X_pairs, train.y)
pipe

# %%
# Results on the independent test task
# ------------------------------------
# ``X_pairs`` holds the real images to judge and the library they are judged against; the test
# task has its own library, so nothing of the test task was seen in ``fit``. Given the scores
# too, the report adds ROC AUC (the ranking, whatever the threshold) and the true-positive rate
# at 1% false positives (how many used images an audit finds while wrongly flagging one unused
# image in a hundred).
y_pred = pipe.predict(test.X_pairs)
p_used = pipe.predict_proba(test.X_pairs)[:, 1]
print(membership_report(test.y, y_pred, y_score=p_used))

# %%
# Kappa corrects accuracy for chance: 0 is what guessing gives, 1 is a perfect audit.
fig, ax = plt.subplots(figsize=(4.2, 3.8), layout="constrained")
ConfusionMatrixDisplay.from_predictions(
    test.y, y_pred, display_labels=["not used", "used"], cmap="Blues", colorbar=False, ax=ax
)
kappa = membership_report(test.y, y_pred, output_dict=True)["kappa"]
ax.set_title(f"Test task: kappa = {kappa:.2f}")
ax.set_xlabel("predicted")
ax.set_ylabel("truth")
plt.show()
