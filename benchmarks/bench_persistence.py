"""Model files in the two formats, side by side: size, save time and load time.

A default pipeline with a ViT-B/16 backbone (``vit_base_patch16_224``, ``pretrained=False``
here: the file holds the same 86M weights whatever their values) is fitted on a small synthetic
task and saved with :func:`skfingerprint.save_model` as skops (the default; safe to load) and
as joblib (a pickle). Each file is then loaded in a fresh Python process
(``load_model``, import time excluded); save and load times are the best of ``--repeats``.
``--tiny`` uses the tiny ViT of the tests instead.

    .venv/bin/python benchmarks/bench_persistence.py [--tiny] [--repeats 3]

Prints one table and rewrites ``benchmarks/RESULTS_persistence.md``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import machine  # noqa: E402

from skfingerprint import make_fingerprint_pipeline, save_model  # noqa: E402
from skfingerprint.datasets import make_synthetic_leak  # noqa: E402
from skfingerprint.pipeline import TINY_VIT  # noqa: E402

LOAD = """
import sys, time
from skfingerprint import load_model
t = time.perf_counter()
load_model(sys.argv[1], allow_pickle=True)
print(time.perf_counter() - t)
"""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS_persistence.md")
    args = parser.parse_args(argv)
    vit = TINY_VIT if args.tiny else dict(model="vit_base_patch16_224", pretrained=False)
    task = make_synthetic_leak(20, 20, 60, image_size=64, random_state=0)
    pipe = make_fingerprint_pipeline(**vit, k=20, random_state=0).fit(task.X_pairs, task.y)
    rows = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("skops", "joblib"):
            path = Path(tmp) / f"model.{fmt}"
            saves, loads = [], []
            for _ in range(args.repeats):
                t = time.perf_counter()
                save_model(pipe, path, format=fmt)
                saves.append(time.perf_counter() - t)
                out = subprocess.run(
                    [sys.executable, "-c", LOAD, str(path)],
                    capture_output=True, text=True, env=env, check=True,
                )  # fmt: skip
                loads.append(float(out.stdout.strip()))
            rows[fmt] = (path.stat().st_size / 1e6, min(saves), min(loads))
    backbone = "tiny ViT (TINY_VIT)" if args.tiny else "ViT-B/16 (86M weights)"
    lines = [
        "# Model files: skops vs joblib (`benchmarks/bench_persistence.py`)",
        "",
        "Rewritten by the benchmark; edits are lost. "
        + __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"Command: `.venv/bin/python benchmarks/bench_persistence.py"
        f"{' --tiny' if args.tiny else ''} --repeats {args.repeats}`  ",
        f"Machine: {machine()}  ",
        f"Backbone: {backbone}",
        "",
        "| format | size (MB) | save (s) | load in a fresh process (s) |",
        "|:---|---:|---:|---:|",
    ]
    for fmt, (size, save, load) in rows.items():
        lines.append(f"| {fmt} | {size:.1f} | {save:.2f} | {load:.2f} |")
    s, j = rows["skops"], rows["joblib"]
    lines += ["", f"skops / joblib: size {s[0] / j[0]:.2f}x, save {s[1] / j[1]:.2f}x, "
              f"load {s[2] / j[2]:.2f}x (measured side by side in one run)."]  # fmt: skip
    text = "\n".join(lines) + "\n"
    args.output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
