"""Synthetic tasks and dataset writers for auditing generative models."""

from ..imageclef import write_imageclef_layout
from ._synthetic import make_synthetic_leak

__all__ = ["make_synthetic_leak", "write_imageclef_layout"]
