"""Synthetic leak tasks (``make_synthetic_leak``) and their ImageCLEF layout writer, for testing."""

from ..imageclef import write_imageclef_layout
from ._synthetic import make_synthetic_leak

__all__ = ["make_synthetic_leak", "write_imageclef_layout"]
