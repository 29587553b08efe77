"""
=======================================================
Persistence: save a fitted audit, reuse it on new data
=======================================================

A fitted pipeline is an ordinary scikit-learn object: :func:`~skfingerprint.save_model` saves
it (the ViT weights, the learned gate, the classifier) and :func:`~skfingerprint.load_model`
brings it back in another process. It then judges real images against a *new* library of
generated images, for instance the output of the next version of the generator, without
refitting.

The file is a `skops <https://skops.readthedocs.io>`_ file: loading it builds only types on an
allow-list and cannot run code hidden in the file, which matters to an auditor who receives
models from others. (``joblib.dump`` works too, but a pickle runs whatever it holds when it is
loaded.)
"""

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from skfingerprint import load_model, make_fingerprint_pipeline, membership_report, save_model
from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.pipeline import TINY_VIT

SIZES = dict(n_used=40, n_not_used=40, n_generated=160, image_size=64, distortion=0.5)
train = make_synthetic_leak(**SIZES, random_state=0)
pipe = make_fingerprint_pipeline(**TINY_VIT, k=20, random_state=0)
pipe.fit(train.X_pairs, train.y)

folder = Path(tempfile.mkdtemp())
path = folder / "audit.skops"
save_model(pipe, path, note="fitted in the persistence example")
print(f"saved {path.name}: {path.stat().st_size / 1e6:.1f} MB")

# %%
# Load it and judge a new task: other real images and a new library. The file also keeps the
# metadata passed to ``save_model``; the command line's ``fit`` writes the same kind of file.
model = load_model(path)
print(model["note"], "with skfingerprint", model["skfingerprint_version"])
loaded = model["estimator"]
new = make_synthetic_leak(**SIZES, random_state=7)
proba_loaded = loaded.predict_proba(new.X_pairs)[:, 1]
proba_original = pipe.predict_proba(new.X_pairs)[:, 1]
print(
    "largest difference in P(used), loaded vs original:",
    float(np.abs(proba_loaded - proba_original).max()),
)
print(membership_report(new.y, loaded.predict(new.X_pairs)))

# %%
# Left: the loaded model gives the same P(used) as the one in memory. Right: its P(used) on the
# new library, by true label; the dashed line is the decision threshold (the default classifier
# says "used" where its P(used) exceeds 0.5).
fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
ax0.plot([0, 1], [0, 1], ":", color="gray")
ax0.plot(proba_original, proba_loaded, "o", ms=4)
ax0.set_xlabel("P(used), original pipeline")
ax0.set_ylabel("P(used), after load_model")
ax0.set_title("Same predictions after save and load")
bins = np.linspace(0, 1, 21)
ax1.hist(
    [proba_loaded[new.y == 0], proba_loaded[new.y == 1]],
    bins=bins,
    label=["not used", "used"],
    color=["tab:blue", "tab:red"],
)
ax1.yaxis.set_major_locator(MaxNLocator(integer=True))
ax1.axvline(0.5, ls="--", color="black", label="threshold")
ax1.set_xlabel("P(used) on the new task")
ax1.set_ylabel("real images")
ax1.set_title("The loaded model on a new library")
ax1.legend(loc="upper left")
plt.show()

# %%
# Clean up the temporary folder.
import shutil

shutil.rmtree(folder)
