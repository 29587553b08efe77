"""CUDA check: the default and the paper pipelines fitted on a GPU agree with the CPU, and a model
fitted on a GPU loads and predicts on a machine without one (DESIGN.md section 4).

Needs a CUDA device (CI never has one; run it where one is lent)::

    python benchmarks/check_cuda.py [--out DIR]

Prints, per pipeline, the embedder's precision on each device, the largest difference of
P(used) between the GPU and CPU fits, how often their labels agree, the fit+predict seconds of
each, and the largest difference after the GPU-fitted model is reloaded in a process that sees
no GPU (``CUDA_VISIBLE_DEVICES=""``). Exits 1 if the reload differs or CUDA is missing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import joblib
import numpy as np
import torch

from skfingerprint.datasets import make_synthetic_leak
from skfingerprint.pipeline import TINY_CANET, TINY_VIT, make_fingerprint_pipeline

RELOAD = """
import sys, joblib, numpy as np, torch
assert not torch.cuda.is_available()
pipe = joblib.load(sys.argv[1]); X = joblib.load(sys.argv[2])
np.save(sys.argv[3], pipe.predict_proba(X)[:, 1])
"""


def fit(features: str, device: str, task, dtype: str):
    pipe = make_fingerprint_pipeline(
        "canet", **TINY_VIT, features=features, k=20, random_state=0, max_epochs=20, device=device,
        embedder_params=dict(device=device, dtype=dtype), **TINY_CANET,
    )  # fmt: skip
    start = time.perf_counter()
    pipe.fit(task.X_pairs, task.y)
    p = pipe.predict_proba(task.X_pairs)[:, 1]
    return pipe, p, time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp()))
    parser.add_argument("--dtype", default="auto", help="the embedder's dtype (default auto)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check")
        return 1
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
    task = make_synthetic_leak(60, 60, 200, image_size=64, random_state=0)
    failed = False
    for features in ("relations", "paper"):
        gpu, p_gpu, t_gpu = fit(
            features, "auto", task, args.dtype
        )  # "auto" is CUDA here, CPU on reload
        cpu, p_cpu, t_cpu = fit(features, "cpu", task, args.dtype)
        dtypes = [str(s[1]._runtime()[1]) for s in (gpu.steps[0], cpu.steps[0])]
        agree = float(((p_gpu >= 0.5) == (p_cpu >= 0.5)).mean())
        print(
            f"{features}: embedder dtype auto {dtypes[0]} / cpu {dtypes[1]}; "
            f"max |P_gpu - P_cpu| {np.abs(p_gpu - p_cpu).max():.4f}, labels agree {agree:.3f}; "
            f"fit+predict {t_gpu:.1f}s on cuda, {t_cpu:.1f}s on cpu"
        )
        model, data, result = (args.out / f"{features}.{x}" for x in ("joblib", "X.joblib", "npy"))
        joblib.dump(gpu, model)
        joblib.dump(task.X_pairs, data)
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        subprocess.run(
            [sys.executable, "-c", RELOAD, str(model), str(data), str(result)], env=env, check=True
        )
        diff = float(np.abs(np.load(result) - p_gpu).max())
        print(f"{features}: GPU-fitted model reloaded without a GPU: max |P diff| {diff:.2e}")
        failed |= diff > 1e-2
    return int(failed)


if __name__ == "__main__":
    raise SystemExit(main())
