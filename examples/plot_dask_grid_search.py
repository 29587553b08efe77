"""
Grid search over the pipeline on a Dask cluster
===============================================

Tuning the audit pipeline means refitting it for every grid point and every cross-validation
fold. :class:`~sklearn.model_selection.GridSearchCV` hands those fits to joblib, and joblib's
Dask backend spreads them over the workers of a ``dask.distributed`` cluster: a local one
here, a multi-machine one in the same way.

Two things make this cheap:

* the embedder keeps one ViT pass per unique image in a token cache, whatever layers, ``k`` or
  thresholds the grid tries;
* that cache lives in each process's memory. Threads of one worker share it; separate worker
  processes (or machines) share it only through ``cache_dir`` on a folder they can all read,
  which is what this example sets. ``tests/test_dask.py`` checks that worker processes then
  run no image through the ViT, and that the search gives the same results as joblib's
  default backend.

A tiny randomly initialised ViT keeps this example fast; use real weights for a real audit.
"""

# %%
# A synthetic task: 48 real CT-like slices (half used to train the "generator") and a
# library of 160 generated images, some of them distorted copies of the used slices.
import shutil
import tempfile

import joblib
import matplotlib.pyplot as plt
import numpy as np
from distributed import Client, LocalCluster
from sklearn.model_selection import GridSearchCV, StratifiedKFold

from skfingerprint import TINY_VIT, kappa_scorer, make_fingerprint_pipeline
from skfingerprint.datasets import make_synthetic_leak

task = make_synthetic_leak(
    24, 24, 160, image_size=64, leak_fraction=0.3, distortion=0.8, random_state=0
)
print(f"{len(task.y)} real images ({task.y.sum()} used), {len(task.generated_images)} generated")

# %%
# The pipeline: ViT embedding, FAISS candidate selection, and the max-similarity classifier
# (its kappa-maximising threshold is learned in each fit). The grid crosses the ViT blocks
# whose CLS tokens are fused with how many top candidates the classifier averages.
cache_dir = tempfile.mkdtemp(prefix="skfingerprint-tokens-")
pipe = make_fingerprint_pipeline(
    "maxsim",
    **TINY_VIT,
    fusion="mean",
    k=10,
    min_similarity=None,
    random_state=0,
    cache_dir=cache_dir,
    embedder_params={"gate_epochs": 0, "batch_size": 64},
)
grid = {
    "embed__layers": ["L1", "L2", "L3", "L4", "L1+2+3+4"],
    "clf__top_m": [1, 3],
}
search = GridSearchCV(
    pipe,
    grid,
    scoring=kappa_scorer,
    cv=StratifiedKFold(4, shuffle=True, random_state=0),
    n_jobs=-1,
)

# %%
# Run the search on a local cluster. ``processes=False`` keeps the workers as threads of
# this process (they share the in-memory token cache); with worker processes or remote
# machines, the shared ``cache_dir`` is what lets them reuse one ViT pass.
with (
    LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster,
    Client(cluster) as client,
    joblib.parallel_backend("dask"),
):
    search.fit(task.X_pairs, task.y)

print("best:", search.best_params_, f"mean test kappa {search.best_score_:.3f}")
shutil.rmtree(cache_dir)  # the token cache of this example is not needed any more

# %%
# Mean test kappa (and its spread over the 4 folds) at every grid point.
res = search.cv_results_
fig, ax = plt.subplots(figsize=(7, 3.8))
width = 0.38
x = np.arange(len(grid["embed__layers"]))
for shift, top_m in zip((-width / 2, width / 2), grid["clf__top_m"], strict=True):
    at = [
        next(
            i
            for i, p in enumerate(res["params"])
            if p == {"clf__top_m": top_m, "embed__layers": layers}
        )
        for layers in grid["embed__layers"]
    ]
    ax.bar(
        x + shift,
        res["mean_test_score"][at],
        width,
        yerr=res["std_test_score"][at],
        capsize=3,
        label=f"mean of top {top_m} cosine{'s' if top_m > 1 else ''}",
    )
ax.set_xticks(x, grid["embed__layers"])
ax.set_xlabel("fused ViT blocks (embed__layers)")
ax.set_ylabel("Cohen's kappa (4-fold CV)")
ax.set_title("GridSearchCV on a Dask cluster: test kappa per grid point")
ax.axhline(0, color="grey", lw=0.8)
ax.set_ylim(top=1.0)
ax.legend(loc="upper left", ncols=2)
fig.tight_layout()
plt.show()
