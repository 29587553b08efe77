"""
===============================================
Seeing the leak: candidates, similarities, ROC
===============================================

An audit's verdict is worth more when you can look at its evidence. For each real image the
pipeline keeps its most similar generated images; when the generator memorised a training
image, one of them is a (distorted) copy of it.

We fit the pipeline on a training task, then on an independent test task

1. show the real images the model flags most confidently beside their top generated
   candidates, with cosine similarities (copies marked, since the synthetic truth is known);
2. compare the best-candidate similarity of used and not used images;
3. draw the ROC curves of the pipeline's P(used) and of the best similarity alone.
"""

# %%
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
from sklearn.metrics import roc_auc_score, roc_curve

from skfingerprint import MaxSimilarityClassifier, make_fingerprint_pipeline, plot_leak_candidates
from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.pipeline import TINY_VIT

SIZES = dict(n_used=40, n_not_used=40, n_generated=160, image_size=64, distortion=0.5)
train = make_synthetic_leak(**SIZES, random_state=0)
test = make_synthetic_leak(**SIZES, random_state=1)
pipe = make_fingerprint_pipeline(**TINY_VIT, k=20, random_state=0)
pipe.fit(train.X_pairs, train.y)
proba = pipe.predict_proba(test.X_pairs)[:, 1]

# %%
# The flagged images and their evidence
# -------------------------------------
# Each row: a real test image (its id, P(used) and true label in the title), then its four
# most similar generated images in the pipeline's candidate space (pixels, by default) with
# their cosines. ``library_source``
# tells the plot which generated images copy which real image, so true copies are marked.
source = [test.ids[s] if s >= 0 else "" for s in test.generated_source]
fig = plt.figure(figsize=(10, 10), layout="constrained")
plot_leak_candidates(
    test.X_pairs,
    pipe,
    y=test.y,
    proba=proba,
    library_source=source,
    n_rows=4,
    n_candidates=4,
    fig=fig,
)

# %%
# Best-candidate similarity, used vs not used
# -------------------------------------------
# The simplest membership signal is how close a real image's nearest generated image is. The
# selector's output holds the candidates' cosines; the max-similarity baseline reads the best.
candidates = pipe[:-1].transform(test.X_pairs)
best = MaxSimilarityClassifier().score_samples(candidates)
fig, ax = plt.subplots(figsize=(6, 3.8), layout="constrained")
bins = np.linspace(best.min(), best.max(), 20)
ax.hist(
    [best[test.y == 0], best[test.y == 1]],
    bins=bins,
    label=["not used (y = 0)", "used (y = 1)"],
    color=["tab:blue", "tab:red"],
)
ax.set_xlabel("cosine similarity of the best generated candidate")
ax.set_ylabel("real images")
ax.yaxis.set_major_locator(MaxNLocator(integer=True))
ax.set_title("Used images have closer generated neighbours")
ax.legend(loc="upper center")

# %%
# ROC curves
# ----------
# The area under the curve summarises the ranking whatever the threshold; kappa (the official
# metric) judges one threshold. The dotted diagonal is guessing. Where the two curves lie on
# top of each other, the pipeline ranks the images no better than their best cosine alone.
fig, ax = plt.subplots(figsize=(4.8, 4.5), layout="constrained")
for score, name, style in [
    (proba, "pipeline P(used)", dict(lw=3, alpha=0.7)),
    (best, "best cosine", dict(ls="--", color="black")),
]:
    fpr, tpr, _ = roc_curve(test.y, score)
    ax.plot(fpr, tpr, label=f"{name} (AUC = {roc_auc_score(test.y, score):.2f})", **style)
ax.plot([0, 1], [0, 1], ":", color="gray")
ax.set_title("Test task: ROC of the membership scores")
ax.set_xlabel("false positive rate (unused flagged)")
ax.set_ylabel("true positive rate (used found)")
ax.legend(loc="lower right")
plt.show()
