"""Progress of long steps (ViT passes, fine-tuning) on stderr, readable where it lands.

On a terminal or in a notebook: a tqdm bar that updates and stays on screen when the step ends.
Anywhere else (a log file, CI): no carriage-return bar, which would turn into one long line of
repaints, but one plain line when the step ends, and one a minute while it runs::

    ViT embedding (real images): 400 images in 12.3 s (32.5 images/s)

At ``verbose=0`` nothing is printed.
"""

from __future__ import annotations

import os
import sys
import time

__all__ = ["Progress", "format_seconds", "is_interactive"]


def format_seconds(seconds: float) -> str:
    """``"12.3 s"``, ``"4 min 05 s"`` or ``"1 h 02 min"``."""
    if seconds < 59.95:  # what rounds to 60.0 s reads better as 1 min 00 s
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def is_interactive(stream) -> bool:
    """A terminal with a width, or a Jupyter kernel's stream (where tqdm.auto draws a widget).

    A pseudo-terminal of 0 columns (``docker run -t`` in CI, ``script``) gets plain lines: tqdm
    would cut its bar to nothing there."""
    if type(stream).__module__.startswith("ipykernel"):
        return True
    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    try:
        return os.get_terminal_size(stream.fileno()).columns > 0
    except (AttributeError, OSError, ValueError):  # a terminal we cannot measure
        return True


class Progress:
    """Count the units of work of one step and show it as a bar or as plain lines.

    Parameters
    ----------
    total : int
        Units the step will do.
    verbose : int
        Nothing is shown at 0.
    desc : str
        What the step is (``"ViT embedding (real images)"``), the start of every line.
    noun : str, default="images"
        The units, plural, in the plain lines.
    unit : str, default="img"
        The units in the bar's rate.
    """

    #: Seconds between "so far" lines when stderr is not a terminal.
    interval = 60.0

    def __init__(
        self, total: int, verbose: int, desc: str, *, noun: str = "images", unit: str = "img"
    ) -> None:
        self.total, self.desc, self.noun = int(total), desc, noun
        self.n = 0
        self.enabled = bool(verbose)
        self.start = self._last_line = time.perf_counter()
        self.bar = None
        if self.enabled and is_interactive(sys.stderr):
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, desc=desc, unit=unit, leave=True, file=sys.stderr)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self, message: str) -> None:
        print(f"{self.desc}: {message}", file=sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units done."""
        self.n += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.enabled and self.n < self.total:
            now = time.perf_counter()
            if now - self._last_line >= self.interval:
                self._last_line = now
                elapsed = now - self.start
                self._line(
                    f"{self.n}/{self.total} {self.noun} after {format_seconds(elapsed)} "
                    f"({self.n / elapsed:.1f} {self.noun}/s)"
                )

    def close(self) -> None:
        """End the step: leave the bar on screen, or print its one line."""
        if not self.enabled:
            return
        self.enabled = False  # once
        if self.bar is not None:
            self.bar.close()
            return
        elapsed = time.perf_counter() - self.start
        if self.n < self.total:
            self._line(
                f"stopped after {self.n} of {self.total} {self.noun} ({format_seconds(elapsed)})"
            )
            return
        rate = f" ({self.n / elapsed:.1f} {self.noun}/s)" if elapsed > 0 else ""
        self._line(f"{self.n} {self.noun} in {format_seconds(elapsed)}{rate}")
