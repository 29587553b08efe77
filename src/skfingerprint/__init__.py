"""skfingerprint: audit generative models of medical images for training-data leaks.

Given the images a GAN or diffusion model generated, decide which real images were in its
training set, with scikit-learn estimators that compose in a ``Pipeline``.
"""

from ._cache import clear_memory_cache
from ._vit import WeightsUnavailableError
from .baselines import MaxSimilarityClassifier, PixelNearestNeighbor
from .canet import CANetClassifier
from .embedding import ViTLayerFusionEmbedder
from .imageclef import load_imageclef_gans, read_submission, write_scores, write_submission
from .images import ImageLoadError, ImageSet, as_image_set
from .linear_head import LinearRelationClassifier
from .metrics import format_reports, kappa_scorer, membership_report
from .pairs import PairedImages, PairEmbeddings, make_pairs
from .persistence import ModelFileError, UntrustedModelError, load_model, save_model
from .pipeline import TINY_CANET, TINY_VIT, make_fingerprint_pipeline
from .plotting import plot_leak_candidates
from .report import write_report
from .selection import MASKED_COSINE, FaissCandidateSelector

__version__ = "0.1.0.dev0"

__all__ = [
    "MASKED_COSINE",
    "TINY_CANET",
    "TINY_VIT",
    "CANetClassifier",
    "FaissCandidateSelector",
    "ImageLoadError",
    "ImageSet",
    "LinearRelationClassifier",
    "MaxSimilarityClassifier",
    "ModelFileError",
    "PairEmbeddings",
    "PairedImages",
    "PixelNearestNeighbor",
    "UntrustedModelError",
    "ViTLayerFusionEmbedder",
    "WeightsUnavailableError",
    "__version__",
    "as_image_set",
    "clear_memory_cache",
    "format_reports",
    "kappa_scorer",
    "load_imageclef_gans",
    "load_model",
    "make_fingerprint_pipeline",
    "make_pairs",
    "membership_report",
    "plot_leak_candidates",
    "read_submission",
    "save_model",
    "write_report",
    "write_scores",
    "write_submission",
]
