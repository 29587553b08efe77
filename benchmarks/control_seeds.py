"""The real-only control over more seeds than the suite runs (it needs no generator).

The suite's control is a logistic regression on pixel PCA of the real image alone; its 95%
interval must contain 0. Fashion-MNIST's seeds 0-2 gave +0.046 [+0.005, +0.086]: is that a
leak in the split or chance? This refits the same control (PCA on the train reals) on the
splits of many seeds and prints the mean kappa over seeds with its standard error.

    .venv/bin/python benchmarks/control_seeds.py 0 12 fashion ct-phantom kanji
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import real_only_control
from realgen.sources import load_source
from realgen.task import SIZES, _deal
from sklearn.metrics import cohen_kappa_score

from skfingerprint.baselines import _gray_vectors

CELLS = ["n_train_used", "n_train_not_used", "n_test_used", "n_test_not_used"]


def control_kappa(source: str, seed: int) -> float:
    """Test kappa of the suite's control on ``source``'s split of ``seed``."""
    real = load_source(source, sum(SIZES[c] for c in CELLS), seed=seed)
    cells = _deal(real.group, [SIZES[c] for c in CELLS], np.random.default_rng(seed))
    x = _gray_vectors(list(real.images[..., None].astype(np.float32) / 255), 32)
    train, test = np.r_[cells[0], cells[1]], np.r_[cells[2], cells[3]]
    y_train = np.r_[np.ones(len(cells[0])), np.zeros(len(cells[1]))]
    y_test = np.r_[np.ones(len(cells[2])), np.zeros(len(cells[3]))]
    _, pred = real_only_control(x[train], y_train, x[test], seed)
    return cohen_kappa_score(y_test, pred)


if __name__ == "__main__":
    first, last, *sources = sys.argv[1:]
    for source in sources:
        ks = np.array([control_kappa(source, s) for s in range(int(first), int(last))])
        sem = ks.std(ddof=1) / np.sqrt(len(ks))
        print(f"{source} seeds {first}..{int(last) - 1}: mean kappa {ks.mean():+.3f} +- {sem:.3f}")
