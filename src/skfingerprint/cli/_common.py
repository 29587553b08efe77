"""Shared by the command line's modules: exit statuses, ``CLIError``, status log, input checks."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from pathlib import Path

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

PROG = "skfingerprint"


class CLIError(Exception):
    """An expected error: printed as ``error: <message>`` without a traceback.

    Parameters
    ----------
    message : str
        What went wrong and, where possible, how to fix it.
    code : int, default=1
        Exit status: 2 for a wrong command line or input, 1 for a failure while working.
    """

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


class _Log:
    """Status lines on stderr (results go to stdout), with the time since the start."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        elapsed = time.perf_counter() - self.start
        print(f"[{elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _short_warnings():
    """Show warnings as ``warning: <message>`` lines (no source line), then restore."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr if file is None else file)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = original


def _existing_dir(path: str, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise CLIError(f"{what} '{p}' does not exist", EXIT_USAGE)
    if not p.is_dir():
        raise CLIError(f"{what} '{p}' is not a folder", EXIT_USAGE)
    return p


def _output_file(path: str, what: str) -> Path:
    """Check, before any long work, that ``path`` can be written."""
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"{what} '{p}' is a folder; give a file name", EXIT_USAGE)
    parent = p.parent  # "." for a bare file name
    if not parent.is_dir():
        raise CLIError(
            f"cannot write {what} '{p}': folder '{parent}' does not exist (create it first)",
            EXIT_USAGE,
        )
    if not os.access(parent, os.W_OK):
        raise CLIError(f"cannot write {what} '{p}': folder '{parent}' is not writable", EXIT_USAGE)
    return p


def _load_split(
    path: str, *, command: str, want: str | None = None, pool_with: list[str] | None = None
):
    """Read an ImageCLEF folder (its library joined by the ``generated/`` images of the
    ``pool_with`` folders); layout problems are usage errors (exit 2)."""
    from ..imageclef import load_imageclef_gans
    from ..images import ImageLoadError

    root = _existing_dir(path, "folder")
    pooled = [_existing_dir(p, "--pool-with folder") for p in pool_with or ()]
    try:
        data = load_imageclef_gans(root, pool_with=pooled or None)
    except ImageLoadError as exc:
        raise CLIError(str(exc), EXIT_FAILURE) from None
    except (FileNotFoundError, ValueError) as exc:
        raise CLIError(
            f"{exc}\n(see '{PROG} {command} --help' for the layout)", EXIT_USAGE
        ) from None
    if want == "train" and data.split != "train":
        raise CLIError(
            f"'{root}' is a test layout (real_unknown/): it has no labels. '{command}' needs a "
            "training layout with real_used/ and real_not_used/ "
            + (
                f"(use '{PROG} predict MODEL {root} -o submission.csv' to label these images)"
                if command == "evaluate"
                else ""
            ),
            EXIT_USAGE,
        )
    return data
