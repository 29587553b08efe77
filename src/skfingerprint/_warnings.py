"""``warn_at_caller``: warnings that point at the user's line, not into a library.

A warning raised in a selector's ``fit`` reached from ``Pipeline.fit`` would otherwise point
into scikit-learn's ``_set_output.py`` or ``pipeline.py``: the user cannot see which of their
calls it is about. The stack level is computed instead: the first frame outside this package
and the libraries it is called through.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import warnings


def _package_folder(name: str) -> str:
    """A package's folder, found without importing it (skorch would import torch)."""
    return os.path.dirname(os.path.abspath(importlib.util.find_spec(name).origin)) + os.sep


_LIBRARIES = (
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
    *(_package_folder(name) for name in ("sklearn", "joblib", "skorch")),
)


def warn_at_caller(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` with the stack level of the first caller outside skfingerprint,
    scikit-learn, joblib and skorch."""
    frame, level = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARIES):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
