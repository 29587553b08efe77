"""Progress of long steps: a bar that stays on a terminal, plain lines in a log, nothing at 0."""

import io
import os
import struct
import sys

import pytest

from skfingerprint._progress import Progress, format_seconds, is_interactive


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_that_updates_and_stays(monkeypatch):
    # Catches: leave=False (the finished bar erased), no bar at all on a terminal, or the
    # bar's unit dropped (tqdm's "it/s").
    term = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", term)
    with Progress(10, 1, "ViT embedding", noun="images") as progress:
        for _ in range(5):
            progress.update(2)
    text = term.getvalue()
    assert "\r" in text  # repainted in place while it runs
    last = text.rstrip("\n").rsplit("\r", 1)[-1]
    assert last.startswith("ViT embedding: 100%") and "10/10" in last  # left on screen
    assert "img/s" in text and "it/s" not in text


def test_a_log_gets_one_plain_line_when_the_step_ends(capsys):
    # Catches: a tqdm bar written to a log file (carriage returns), or no line at the end.
    with Progress(400, 1, "ViT embedding (real images)", noun="images") as progress:
        for _ in range(4):
            progress.update(100)
    out, err = capsys.readouterr()
    assert out == "" and "\r" not in err
    assert err.count("\n") == 1
    assert err.startswith("ViT embedding (real images): 400 images in ")
    assert err.rstrip().endswith("images/s)")


def test_a_long_step_prints_a_line_a_minute_and_an_unfinished_one_says_so(monkeypatch, capsys):
    # Catches: silence in a log for the whole of a long pass; an interrupted pass reported as
    # complete.
    monkeypatch.setattr(Progress, "interval", 0.0)
    with pytest.raises(KeyboardInterrupt), Progress(10, 1, "step", noun="batches") as progress:
        progress.update(3)
        raise KeyboardInterrupt
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("step: 3/10 batches after ")
    assert lines[-1].startswith("step: stopped after 3 of 10 batches (")


@pytest.mark.parametrize("term", [False, True])
def test_nothing_at_verbose_0(monkeypatch, capsys, term):
    # Catches: a bar or a line shown whatever verbose says.
    if term:
        monkeypatch.setattr(sys, "stderr", FakeTerminal())
    with Progress(10, 0, "step") as progress:
        progress.update(10)
    assert capsys.readouterr() == ("", "")
    if term:
        assert sys.stderr.getvalue() == ""


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.04, "0.0 s"), (12.34, "12.3 s"), (59.94, "59.9 s"), (59.95, "1 min 00 s"),
     (59.96, "1 min 00 s"), (245, "4 min 05 s"), (3599.4, "59 min 59 s"),
     (3600, "1 h 00 min"), (3720, "1 h 02 min")],
)  # fmt: skip
def test_format_seconds(seconds, text):
    # Catches: "60.0 s" or "245.0 s" where minutes read better, and each boundary moved by one
    # (`<=` for `<`: "60.0 s" at 59.95, "60 min 00 s" at an hour).
    assert format_seconds(seconds) == text


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_a_terminal_without_width_gets_plain_lines():
    # Catches: a bar drawn on a 0-column pseudo-terminal (docker run -t in CI), which tqdm cuts
    # to nothing: no progress shown at all.
    fcntl = pytest.importorskip("fcntl")
    termios = pytest.importorskip("termios")
    master, slave = os.openpty()
    try:
        with os.fdopen(os.dup(slave), "w") as stream:
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
            assert stream.isatty() and not is_interactive(stream)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
            assert is_interactive(stream)
            # one column is narrow but a width all the same (catches `> 1` for `> 0`)
            fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 1, 0, 0))
            assert is_interactive(stream)
    finally:
        os.close(master)
        os.close(slave)


class NotebookStream(io.StringIO):
    """What a Jupyter kernel puts in sys.stderr: no terminal, but tqdm.auto draws a widget."""


NotebookStream.__module__ = "ipykernel.iostream"


class NoIsatty:
    def write(self, text):
        return len(text)


def test_a_notebook_is_interactive_and_a_file_or_pipe_is_not():
    # Catches: a notebook given plain lines (the module test dropped, `return False`, another
    # prefix), and a stream that is not a terminal, has no isatty or is closed taken for one
    # (`return True` for `return False`).
    assert is_interactive(NotebookStream())
    assert not is_interactive(io.StringIO())
    assert not is_interactive(NoIsatty())
    closed = io.StringIO()
    closed.close()
    assert not is_interactive(closed)


def test_each_plain_line_is_flushed_as_it_is_written(monkeypatch):
    # Catches: print without flush=True: a buffered stderr (a log file, a pipe) would hold the
    # line until the process ends, so a watched log shows nothing while the pass runs.
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", write_through=False)
    stream.isatty = lambda: False
    monkeypatch.setattr(sys, "stderr", stream)
    with Progress(2, 1, "step", noun="batches") as progress:
        progress.update(2)
    assert raw.getvalue().decode().startswith("step: 2 batches in ")


class Clock:
    """``time.perf_counter`` for ``_progress``, moved by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    import types

    import skfingerprint._progress as progress_module

    clock = Clock()
    monkeypatch.setattr(progress_module, "time", types.SimpleNamespace(perf_counter=clock))
    return clock


def test_so_far_lines_come_each_interval_with_the_rate_since_the_start(clock, capsys):
    # Catches: the elapsed time or the rate computed wrong (`+ start`, `* elapsed`), a line
    # missed when exactly one interval has passed (`>` for `>=`), the last line's time not
    # kept (the next update fails or repeats it), a "so far" line once every unit is done
    # (`<=`), and a default step other than one unit.
    with Progress(10, 1, "step", noun="batches") as progress:
        clock.now = 130.0
        progress.update(3)  # 30 s: no line yet
        clock.now = 160.0
        progress.update(3)  # 60 s: a line
        clock.now = 190.0
        progress.update()  # 30 s after that line: none
        clock.now = 220.0
        progress.update()  # 60 s after it: a line
        clock.now = 300.0
        progress.update(2)  # all done: the end line only
    assert capsys.readouterr().err.splitlines() == [
        "step: 6/10 batches after 1 min 00 s (0.1 batches/s)",
        "step: 8/10 batches after 2 min 00 s (0.1 batches/s)",
        "step: 10 batches in 3 min 20 s (0.1 batches/s)",
    ]


def test_the_end_line_gives_the_time_and_rate_and_comes_once(clock, capsys):
    # Catches: `+ start` or `* elapsed` in the end line, the default noun, a rate divided by a
    # zero time (`or True`, `>= 0`), text in place of no rate, and a second close printing
    # again (`enabled = True`).
    progress = Progress(40, 1, "ViT embedding")
    clock.now = 112.5
    progress.update(40)
    progress.close()
    progress.close()
    instant = Progress(2, 1, "cached")
    instant.update(2)
    instant.close()
    assert capsys.readouterr().err.splitlines() == [
        "ViT embedding: 40 images in 12.5 s (3.2 images/s)",
        "cached: 2 images in 0.0 s",
    ]


def test_silent_at_verbose_0_even_when_an_interval_has_passed(clock, capsys):
    # Catches: `or` for `and` in update (a "so far" line at verbose 0).
    progress = Progress(10, 0, "step")
    clock.now = 1000.0
    progress.update(3)
    progress.close()
    assert capsys.readouterr() == ("", "")
