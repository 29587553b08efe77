"""Synthetic tasks and dataset writers for auditing generative models."""

from ._synthetic import make_synthetic_leak, write_imageclef_layout

__all__ = ["make_synthetic_leak", "write_imageclef_layout"]
