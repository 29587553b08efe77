"""skfingerprint: audit generative models of medical images for training-data leaks.

Given the images a GAN or diffusion model generated, decide which real images were in its
training set, with scikit-learn estimators that compose in a ``Pipeline``.

The names below load their module on first use (PEP 562), so ``import skfingerprint`` and
``skfingerprint --help`` do not pay for torch, timm, FAISS and skorch up front.
"""

from __future__ import annotations

import importlib
import os

# Torch's CPU allocator asks the kernel for 2 MB pages for each buffer of 2 MB or more when
# this is set: one page fault per 2 MB instead of one per 4 kB. Torch reads it once, at its
# first CPU allocation (importing skfingerprint makes none), so it must be set this early. The
# ViT-B embedder ran 1.21-1.33x faster for it on a Zen 5 (benchmarks/bench_embed.py), with no
# more peak memory. THP_MEM_ALLOC_ENABLE=0 in the environment keeps torch's default.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

__version__ = "0.1.0.dev0"

#: Public name -> the module that defines it.
_LAZY = {
    "clear_memory_cache": "_cache",
    "set_memory_cache_limit": "_cache",
    "WeightsUnavailableError": "_vit",
    "MaxSimilarityClassifier": "baselines",
    "PixelNearestNeighbor": "baselines",
    "CANetClassifier": "canet",
    "ViTLayerFusionEmbedder": "embedding",
    "load_imageclef_gans": "imageclef",
    "read_submission": "imageclef",
    "write_scores": "imageclef",
    "write_submission": "imageclef",
    "ImageLoadError": "images",
    "ImageSet": "images",
    "as_image_set": "images",
    "LinearRelationClassifier": "linear_head",
    "format_reports": "metrics",
    "kappa_scorer": "metrics",
    "membership_report": "metrics",
    "tpr_at_fpr": "metrics",
    "PairedImages": "pairs",
    "PairEmbeddings": "pairs",
    "make_pairs": "pairs",
    "ModelFileError": "persistence",
    "UntrustedModelError": "persistence",
    "load_model": "persistence",
    "save_model": "persistence",
    "TINY_CANET": "pipeline",
    "TINY_VIT": "pipeline",
    "make_fingerprint_pipeline": "pipeline",
    "plot_leak_candidates": "plotting",
    "write_report": "report",
    "MASKED_COSINE": "_contracts",
    "FaissCandidateSelector": "selection",
}

__all__ = sorted([*_LAZY, "__version__"], key=lambda n: (not n.isupper(), n))


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'skfingerprint' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # once loaded, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})
