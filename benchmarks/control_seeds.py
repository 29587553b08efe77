"""The real-only control over more seeds than the suite runs (it needs no generator).

The suite's control is a logistic regression on pixel PCA of the real image alone; its 95%
interval must contain 0. Fashion-MNIST's seeds 0-2 gave +0.046 [+0.005, +0.086]: is that a
leak in the split or chance? This refits the same control (PCA on the train reals) on the
splits of many seeds and prints the mean kappa over seeds with its standard error.

    .venv/bin/python benchmarks/control_seeds.py 0 12 fashion ct-phantom kanji
"""

import sys

import numpy as np

sys.path.insert(0, __import__("os").path.dirname(__file__))
from realgen.sources import load_source
from realgen.task import SIZES, _deal
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score

from skfingerprint.baselines import _gray_vectors

cells = ["n_train_used", "n_train_not_used", "n_test_used", "n_test_not_used"]
for source in sys.argv[3:]:
    ks = []
    for seed in range(int(sys.argv[1]), int(sys.argv[2])):
        real = load_source(source, sum(SIZES[c] for c in cells), seed=seed)
        tu, tn, su, sn = _deal(real.group, [SIZES[c] for c in cells], np.random.default_rng(seed))
        x = _gray_vectors(list(real.images[..., None].astype(np.float32) / 255), 32)
        tr, te = np.r_[tu, tn], np.r_[su, sn]
        ytr, yte = (
            np.r_[np.ones(len(tu)), np.zeros(len(tn))],
            np.r_[np.ones(len(su)), np.zeros(len(sn))],
        )
        pca = PCA(64, random_state=seed).fit(x[tr])
        clf = LogisticRegression(max_iter=2000).fit(pca.transform(x[tr]), ytr)
        ks.append(cohen_kappa_score(yte, clf.predict(pca.transform(x[te]))))
    ks = np.array(ks)
    print(
        source,
        "seeds",
        sys.argv[1:],
        "kappa per seed",
        "mean",
        round(ks.mean(), 3),
        "+-",
        round(ks.std(ddof=1) / np.sqrt(len(ks)), 3),
        flush=True,
    )
