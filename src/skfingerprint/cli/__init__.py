"""``skfingerprint``: audit a generative model for training-data leaks from the command line.

::

    skfingerprint fit TRAIN_DIR -o model.skops        # learn from a labelled folder
    skfingerprint predict model.skops TEST_DIR -o submission.csv
    skfingerprint evaluate model.skops TRAIN_DIR       # score against known labels
    skfingerprint report model.skops TEST_DIR -o report.html   # an HTML report to read
    skfingerprint demo                                  # everything, on built-in synthetic data

Exit status: 0 success, 1 the work failed, 2 the command line or its inputs are wrong,
130 interrupted.

This package owns ``main`` (dispatch and error reporting); the parser is ``_parser`` (no heavy
imports, so ``--help`` is fast), the commands ``_commands`` and ``_demo``, and what they share
``_common``.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from ..persistence import ModelFileError
from ._common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, CLIError, _Log, _short_warnings
from ._common import EXIT_OK as EXIT_OK  # re-exported: the statuses are named here, as before
from ._common import PROG as PROG
from ._parser import build_parser

__all__ = ["CLIError", "build_parser", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``skfingerprint`` command line.

    Parameters
    ----------
    argv : sequence of str, default=None
        Arguments without the program name; ``sys.argv[1:]`` when None.

    Returns
    -------
    int
        Exit status: 0 success, 1 failure, 2 wrong command line or inputs, 130 interrupted.

    Examples
    --------
    >>> from skfingerprint.cli import main
    >>> main(["demo", "--quick", "--output", "demo_output"])  # doctest: +SKIP
    0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    log = _Log()
    try:
        with _short_warnings():
            return args.func(args, log)
    except CLIError as exc:
        if args.verbose > 1 and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"error: {exc}", file=sys.stderr)
        return exc.code
    except ModelFileError as exc:  # a model file that cannot be used: an input problem
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("\ninterrupted (Ctrl-C)", file=sys.stderr)
        if getattr(args, "cache_dir", None):
            print(
                f"the ViT embeddings finished so far are kept in '{args.cache_dir}': run again "
                "with the same --cache-dir to start from them",
                file=sys.stderr,
            )
        return EXIT_INTERRUPTED
    except Exception as exc:  # a bug: show where, and say so
        traceback.print_exc()
        print(
            f"error: unexpected {type(exc).__name__}: {exc} (this is likely a bug in "
            "skfingerprint; please report it with the traceback above)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
