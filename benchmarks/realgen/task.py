"""Build a trained-generator membership task and write it as ImageCLEFmed GANs folders.

1. Real images: ``make_synthetic_leak(n_used, n_not_used, 1, image_size=64)`` CT-like slices,
   split by patient into *used* and *not used* (its own generated images are thrown away).
2. A DCGAN (``dcgan.py``) is trained on the **used** real images only.
3. Train split: a generated library (``n_generated`` samples), half of the used and half of the
   not-used real images, labelled. Test split: a **fresh** generated library (other latents) and
   the other halves, unlabelled. Every generated image is a sample of the trained network.

Folders written under ``<root>/seed<s>/``::

    train/generated/*.png  train/real_used/*.png  train/real_not_used/*.png
    test/generated/*.png   test/real_unknown/*.png
    test_labels.csv        (id,label of the test reals: the answer key, kept out of test/)
    samples.png            (generated samples, each above its nearest used real image)
    generator.pt           (the trained generator's weights: reruns skip training)

The root is a cache: a seed's folder is reused when its ``config.json`` matches.

``samples_seed0.png`` beside this file is seed 0's ``samples.png`` of the benchmark run
(rows of 8 generated samples, each row followed by their nearest used real images): CT-like
slices with body, lungs, spine and table, noisier and blurrier than the reals.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skfingerprint.datasets import make_synthetic_leak, write_imageclef_layout

from .dcgan import Generator, sample, train_dcgan

__all__ = ["DEFAULTS", "build_task", "load_generator"]

DEFAULT_ROOT = Path(__file__).resolve().parents[1] / ".cache" / "realgen" / "full"

#: Task and training sizes of the benchmark (about 2 minutes of DCGAN training per seed on one
#: CPU thread).
DEFAULTS = dict(n_used=100, n_not_used=100, n_generated=500, epochs=200, width=16, batch_size=16)


def _grid(generated: np.ndarray, real: np.ndarray, n: int = 16, per_row: int = 8) -> np.ndarray:
    """Rows of ``per_row`` generated samples, each row followed by the samples' nearest used
    real images (pixel L2), as one uint8 image."""
    n = max(min(n, len(generated) - len(generated) % per_row), min(len(generated), per_row))
    per_row = min(per_row, n)
    g = generated[:n].reshape(n, -1).astype(np.float32)
    r = real.reshape(len(real), -1).astype(np.float32)
    nearest = ((g * g).sum(1)[:, None] - 2 * g @ r.T + (r * r).sum(1)[None]).argmin(1)
    rows = []
    for i in range(0, n, per_row):
        rows.append(np.concatenate(list(generated[i : i + per_row]), axis=1))
        rows.append(np.concatenate(list(real[nearest[i : i + per_row]]), axis=1))
    return np.concatenate(rows, axis=0)


def _split_by_patient(
    y: np.ndarray, patient: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of two halves, each with about half of the used and half of the not-used
    images, and no patient in both: a classifier cannot learn a used *patient* on the train
    split and recognise it in the test split, so only the generator links a test image to its
    label. Each label's patients are shuffled and dealt to the train half until it holds half
    of that label's images."""
    train = []
    for label in (1, 0):
        rows_of = {p: np.flatnonzero((patient == p) & (y == label)) for p in np.unique(patient)}
        rows_of = {p: r for p, r in rows_of.items() if len(r)}
        half, count = (y == label).sum() // 2, 0
        for p in rng.permutation(sorted(rows_of)):
            if count >= half:
                break
            train.extend(rows_of[p])
            count += len(rows_of[p])
    train = np.sort(np.asarray(train))
    return train, np.setdiff1d(np.arange(len(y)), train)


def build_task(
    seed: int,
    root: str | Path = DEFAULT_ROOT,
    *,
    n_used: int = DEFAULTS["n_used"],
    n_not_used: int = DEFAULTS["n_not_used"],
    n_generated: int = DEFAULTS["n_generated"],
    epochs: int = DEFAULTS["epochs"],
    width: int = DEFAULTS["width"],
    batch_size: int = DEFAULTS["batch_size"],
    log=print,
) -> tuple[Path, dict]:
    """Train (or reuse) the seed's DCGAN and write its ImageCLEF folders.

    Returns the seed's folder and timings ``{"train_s", "write_s", "cached"}``.
    """
    config = dict(
        seed=seed, n_used=n_used, n_not_used=n_not_used, n_generated=n_generated,
        epochs=epochs, width=width, batch_size=batch_size, image_size=64, version=2,
    )  # fmt: skip
    train_config = {k: config[k] for k in ("seed", "n_used", "n_not_used", "epochs", "width")}
    train_config.update(batch_size=batch_size)
    folder = Path(root) / f"seed{seed}"
    stamp = folder / "config.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == config:
        return folder, {"train_s": 0.0, "write_s": 0.0, "cached": True}
    for old in ("train", "test", "config.json"):  # the generator itself may still be good
        if (folder / old).is_dir():
            shutil.rmtree(folder / old)
        (folder / old).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)

    real = make_synthetic_leak(
        n_used, n_not_used, 1, image_size=64, random_state=1000 + seed
    )  # its single generated image is not used
    used = np.flatnonzero(real.y == 1)
    train_rows, test_rows = _split_by_patient(real.y, real.patient, np.random.default_rng(seed))
    t = time.perf_counter()
    G = _load_generator(folder, train_config)
    if G is None:
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small convolutions: one thread beats spin-waiting OpenMP
        try:
            G = train_dcgan(
                real.real_images[used], epochs=epochs, width=width, batch_size=batch_size,
                seed=seed, log=log,
            )  # fmt: skip
        finally:
            torch.set_num_threads(torch_threads)
        state = {"state_dict": G.state_dict(), "nz": G.nz, "width": width, "config": train_config}
        torch.save(state, folder / "generator.pt")
    train_s = time.perf_counter() - t

    t = time.perf_counter()
    splits = {"train": (train_rows, 2 * seed), "test": (test_rows, 2 * seed + 1)}
    for name, (rows, latent_seed) in splits.items():
        rows = np.sort(rows)  # ids in a fixed order that does not give the labels away
        generated = sample(G, n_generated, seed=10_000 + latent_seed)
        task = dict(
            real_images=real.real_images[rows],
            ids=[f"{name}_real_{i:04d}" for i in range(len(rows))],
            y=real.y[rows],
            generated_images=generated,
            generated_ids=[f"{name}_gen_{i:04d}" for i in range(n_generated)],
        )
        write_imageclef_layout(task, folder / name, split=name)
        if name == "test":
            with open(folder / "test_labels.csv", "w", newline="") as f:
                csv.writer(f).writerows(zip(task["ids"], task["y"].tolist(), strict=True))
        else:
            grid = _grid(generated, real.real_images[used])
            Image.fromarray(grid).save(folder / "samples.png")
    stamp.write_text(json.dumps(config, indent=1))
    return folder, {"train_s": train_s, "write_s": time.perf_counter() - t, "cached": False}


def load_generator(folder: str | Path) -> Generator:
    """The trained generator saved in a seed's folder (eval mode)."""
    state = torch.load(Path(folder) / "generator.pt", weights_only=True)
    G = Generator(state["nz"], state["width"])
    G.load_state_dict(state["state_dict"])
    return G.eval()


def _load_generator(folder: Path, train_config: dict) -> Generator | None:
    """The generator saved in ``folder`` if it was trained with ``train_config``, else None."""
    try:
        state = torch.load(folder / "generator.pt", weights_only=True)
    except (OSError, RuntimeError):
        return None
    return load_generator(folder) if state.get("config") == train_config else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--epochs", type=int, default=DEFAULTS["epochs"])
    args = parser.parse_args(argv)
    for s in args.seeds:
        folder, info = build_task(s, args.root, epochs=args.epochs)
        print(f"seed {s}: {folder} {info}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
