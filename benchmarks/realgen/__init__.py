"""Membership tasks whose generated images come out of really trained generators.

:func:`build_task` trains a generator (a DCGAN at two training lengths, or a small DDPM) on
only the *used* images of a real image source and writes ImageCLEF folders; see ``task.py``,
``sources.py`` and ``bench_quality.py``, which runs the suite.
"""

from .task import TASKS, build_task

__all__ = ["TASKS", "build_task"]
