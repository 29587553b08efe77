"""The real-only control over more seeds than the suite's tasks run (it needs no generator).

The suite's control is a logistic regression on pixel PCA of the real image alone; its 95%
interval must contain 0. This refits it (``bench_quality.control_on_deal``) on the deals of
many seeds and prints the mean kappa over seeds with its standard error. ``make bench-quality``
does the same over 12 deals per source (``Control, 12 deals``); this script is for other
ranges.

    .venv/bin/python benchmarks/control_seeds.py 0 12 fashion ct-phantom kanji
"""

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import control_on_deal
from realgen.task import SIZES
from sklearn.metrics import cohen_kappa_score

if __name__ == "__main__":
    first, last, *sources = sys.argv[1:]
    for source in sources:
        runs = [control_on_deal(source, s, SIZES) for s in range(int(first), int(last))]
        ks = np.array([cohen_kappa_score(r["y"], r["pred"]) for r in runs])
        sem = ks.std(ddof=1) / np.sqrt(len(ks))
        print(f"{source} seeds {first}..{int(last) - 1}: mean kappa {ks.mean():+.3f} +- {sem:.3f}")
