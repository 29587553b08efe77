"""Does training CANet in bf16 change its answers? fp32 against bf16, paired, on task folders.

``CANetClassifier(dtype="auto")`` trains in bf16 (``torch.autocast`` over the training steps'
products) where the CPU multiplies bf16 natively, 1.4-1.7x faster (``bench_canet.py``). A speed
change must not be a quality change: each CANet pipeline of ``bench_quality.py`` (the paper's
configuration at ``TINY_CANET``'s widths and at the default, paper, widths; CANet on relation
scores) is fitted twice per seed on the train folder, ``dtype="float32"`` and
``dtype="bfloat16"``, same seed, and scored on the test folder: test kappa and AUC of each, the
paired bootstrap interval of the kappa difference, the share of identical 0/1 predictions and
the largest difference of P(used).

    .venv/bin/python benchmarks/probe_canet_bf16.py --cache-dir DIR \\
        [--task ct-phantom-128/dcgan-short] [--seeds 3 4 5]

reads the folders ``DIR/tasks/<source>-<generator>/seed<N>-*`` that ``bench_quality.py`` or the
probes built (it trains no generator) and prints a markdown table; writes nothing. bf16 on a CPU
without native bf16 is emulated and slow, but gives the same numbers.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_quality import PAPER_LAYERS, _test_labels, kappa_interval, machine

DTYPES = ("float32", "bfloat16")


def configs() -> dict:
    from skfingerprint.pipeline import TINY_CANET

    paper = dict(features="paper", layers=PAPER_LAYERS, min_similarity=0.6, threshold=0.6)
    return {
        "paper CANet (TINY_CANET widths)": {**paper, **TINY_CANET},
        "paper CANet (paper widths)": paper,
        "CANet on relations (TINY_CANET widths)": dict(TINY_CANET),
    }


def seed_folders(root: Path, seeds: list[int]) -> list[tuple[int, Path]]:
    out = []
    for seed in seeds:
        found = sorted(root.glob(f"seed{seed}-*"))
        if not found:
            raise SystemExit(f"no folder for seed {seed} under {root}: build it with bench_quality")
        out.append((seed, found[0]))
    return out


def main(argv=None) -> int:
    from skfingerprint import load_imageclef_gans
    from skfingerprint.pipeline import TINY_VIT, make_fingerprint_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--task", default="ct-phantom-128/dcgan-short")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args(argv)
    root = args.cache_dir / "tasks" / args.task.replace("/", "-")
    runs = {c: {d: {"y": [], "pred": [], "p": [], "sid": [], "s": 0.0} for d in DTYPES}
            for c in configs()}  # fmt: skip
    start_all = time.perf_counter()
    for seed, folder in seed_folders(root, args.seeds):
        train = load_imageclef_gans(folder / "train")
        test = load_imageclef_gans(folder / "test")
        y = _test_labels(folder, test.ids)
        for name, params in configs().items():
            for dtype in DTYPES:
                start = time.perf_counter()
                pipe = make_fingerprint_pipeline(
                    "canet", **TINY_VIT, k=args.k, random_state=seed, dtype=dtype, **params
                ).fit(train.X_pairs, train.y)
                r = runs[name][dtype]
                r["s"] += time.perf_counter() - start
                r["y"].append(y)
                r["pred"].append(pipe.predict(test.X_pairs))
                r["p"].append(pipe.predict_proba(test.X_pairs)[:, 1])
                r["sid"].append(np.full(len(y), seed))
    print(f"Task {args.task}, seeds {args.seeds}, k = {args.k}; {machine()}; "
          f"{time.perf_counter() - start_all:.0f} s")  # fmt: skip
    print()
    print("| CANet pipeline | fp32: kappa / AUC | bf16: kappa / AUC | bf16 minus fp32 [95% CI] "
          "| same 0/1 predictions | largest P(used) difference | fit s, fp32 / bf16 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for name in configs():
        f, b = runs[name]["float32"], runs[name]["bfloat16"]
        y, sid = np.concatenate(f["y"]), np.concatenate(f["sid"])
        pred_f, pred_b = np.concatenate(f["pred"]), np.concatenate(b["pred"])
        auc = {d: np.mean([roc_auc_score(t, p) for t, p in zip(r["y"], r["p"], strict=True)])
               for d, r in (("f", f), ("b", b))}  # fmt: skip
        kf, kb = kappa_interval(y, pred_f, sid, 2000), kappa_interval(y, pred_b, sid, 2000)
        diff = kappa_interval(y, pred_b, sid, 2000, reference=pred_f)
        largest = np.abs(np.concatenate(f["p"]) - np.concatenate(b["p"])).max()
        print(f"| {name} | {kf[0]:+.3f} / {auc['f']:.3f} | {kb[0]:+.3f} / {auc['b']:.3f} | "
              f"{diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}] | {(pred_f == pred_b).mean():.3f} "
              f"| {largest:.3f} | {f['s']:.0f} / {b['s']:.0f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
