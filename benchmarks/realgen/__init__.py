"""A membership task whose generated images come out of a really trained generator (a DCGAN).

``python -m realgen`` (run from ``benchmarks/``) or :func:`build_task` trains the DCGAN on only
the *used* real images of a synthetic CT task and writes ImageCLEF folders; see ``task.py``.
"""

from .task import build_task

__all__ = ["build_task"]
