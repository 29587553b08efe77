"""Every look at the suite, read back: the default's margin over the best baseline per task.

Each ``RESULTS_seeds*.md`` and ``RESULTS_unseen_seeds*.md`` is one look (``bench_quality.py``
on three seeds no choice of the default of its day had been made on). Its summary gives, per
task, the paired bootstrap interval of the default minus the best baseline *within* that look;
this script puts the looks side by side and asks what no single look can: how large the margin
is on a new draw of a task, with an interval over the looks (Student's t on their means: each
look is an independent draw of real images, split and generator), and how often it reaches the
issue's +0.10. It replaces the tally once counted by hand.

Two groups: every look (the tally of task x look pairs won, tied and lost), and the looks taken
with today's default, from the commit that adopted round 18's span scores (2026-12-04 11:45
UTC, 5bdfde4; nothing since has changed the offline default's answers, so the looks after it
measure the same method). Move ``CURRENT_DEFAULT_SINCE`` when a change to those answers lands.

    .venv/bin/python benchmarks/summarise_looks.py

writes ``benchmarks/RESULTS_looks.md`` (``--output -`` prints it).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
from scipy import stats

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from bench_quality import _task_name as task_name  # noqa: E402
from realgen.task import TASKS, UNSEEN_TASKS  # noqa: E402

#: When the default of today was adopted (round 18, commit 5bdfde4).
CURRENT_DEFAULT_SINCE = datetime(2026, 12, 4, 11, 45)
#: The margin issue 13 asks of every task.
TARGET = 0.10

_NUM = r"([+-]\d+\.\d+)"
_VERDICT = re.compile(
    r"^- \*\*(?P<task>[^*:]+)\*\*: best baseline (?P<best>.+?) \(kappa .*?the default pipeline "
    r"(?P<word>BEATS it|LOSES to it|ties with it \(interval contains 0\)) by "
    rf"{_NUM} \[{_NUM}, {_NUM}\]"
)
_WORDS = {"BEATS it": "won", "LOSES to it": "lost", "ties with it (interval contains 0)": "tied"}


def parse_look(text: str, name: str = "") -> dict:
    """One RESULTS file's date, seeds and per-task verdict ``(best, outcome, diff, lo, hi)``.

    Reads the summary's bullets only (the per-task sections repeat them as "Verdict:" lines).
    Raises ValueError naming ``name`` when the file has no date, seeds or verdict."""
    date = re.search(r"^Date: (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", text, re.M)
    seeds = re.search(r"^Seeds \[([\d, ]+)\]", text, re.M)
    tasks = {}
    for line in text.splitlines():
        m = _VERDICT.match(line)
        if m:
            diff, lo, hi = (float(m.group(i)) for i in (4, 5, 6))
            tasks[m["task"]] = (m["best"], _WORDS[m["word"]], diff, lo, hi)
    if date is None or seeds is None or not tasks:
        raise ValueError(
            f"{name or 'text'}: not a bench_quality.py summary (no date, seeds or verdict)"
        )
    return {
        "name": name,
        "date": datetime.strptime(date[1], "%Y-%m-%d %H:%M"),
        "seeds": [int(s) for s in seeds[1].split(",")],
        "tasks": tasks,
    }


def summarise(looks: list[dict], tasks: list[str], target: float = TARGET) -> dict:
    """Per task: the looks that scored it, the mean margin with its t interval over the looks
    (NaN with one look), its range, and how many looks won, tied, lost and met ``target``
    (margin >= target, as printed to three decimals, and the look's interval above 0)."""
    out = {}
    for task in tasks:
        rows = [look["tasks"][task] for look in looks if task in look["tasks"]]
        diffs = np.array([r[2] for r in rows])
        n = len(diffs)
        mean = float(diffs.mean()) if n else float("nan")
        half = (
            float(stats.t.ppf(0.975, n - 1) * diffs.std(ddof=1) / np.sqrt(n))
            if n > 1
            else float("nan")
        )
        outcomes = [r[1] for r in rows]
        out[task] = {
            "looks": n,
            "mean": mean,
            "interval": (mean - half, mean + half),
            "range": (float(diffs.min()), float(diffs.max())) if n else (np.nan, np.nan),
            **{word: outcomes.count(word) for word in ("won", "tied", "lost")},
            "met": sum(r[2] >= target - 1e-9 and r[3] > 0 for r in rows),
        }
    return out


def _task_order(looks: list[dict]) -> list[str]:
    """The suite's tasks, the unseen pairings, then any other task a look scored."""
    known = [task_name(*t) for t in (*TASKS, *UNSEEN_TASKS)]
    scored = {task for look in looks for task in look["tasks"]}
    return [t for t in known if t in scored] + sorted(scored.difference(known))


def _summary_table(summary: dict, target: float) -> list[str]:
    lines = [
        "| task | looks | mean margin [95% t interval over looks] | range | won / tied / lost "
        f"| met +{target:.2f} | +{target:.2f} vs the interval |",
        "|:---|---:|---:|---:|---:|---:|:---|",
    ]
    for task, s in summary.items():
        lo, hi = s["interval"]
        where = (
            ("below it" if hi < target else "above it" if lo > target else "inside it")
            if s["looks"] > 1
            else "one look"
        )
        lines.append(
            f"| {task} | {s['looks']} | {s['mean']:+.3f} [{lo:+.3f}, {hi:+.3f}] "
            f"| {s['range'][0]:+.3f} .. {s['range'][1]:+.3f} "
            f"| {s['won']} / {s['tied']} / {s['lost']} | {s['met']} | {where} |"
        )
    return lines


def report(looks: list[dict], since: datetime = CURRENT_DEFAULT_SINCE, target=TARGET) -> str:
    """The markdown page: the current default's looks summarised, the tally over every look,
    and each look's margins."""
    looks = sorted(looks, key=lambda look: look["date"])
    tasks = _task_order(looks)
    current = [look for look in looks if look["date"] >= since]
    suite = {task_name(*t) for t in TASKS}
    pairs = [r for look in looks for t, r in look["tasks"].items() if t in suite]
    tally = {word: sum(r[1] == word for r in pairs) for word in ("won", "tied", "lost")}
    suite_looks = [look for look in looks if suite & set(look["tasks"])]
    draws = sum(len(look["seeds"]) for look in suite_looks)
    lines = [
        "# Every look at the suite, side by side (`benchmarks/summarise_looks.py`)",
        "",
        "Rewritten by the script; edits are lost. " + __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        "Command: `.venv/bin/python benchmarks/summarise_looks.py`",
        "",
        f"## Today's default: {len(current)} looks since {since:%Y-%m-%d %H:%M} UTC "
        f"({sum(len(look['seeds']) for look in current)} draws)",
        "",
        *_summary_table(summarise(current, tasks, target), target),
        "",
        f"## Every look: {len(looks)} looks; of the suite's tasks {len(suite_looks)} looks, "
        f"{draws} draws, {len(pairs)} task x look pairs: {tally['won']} won, {tally['tied']} "
        f"tied, {tally['lost']} lost",
        "",
        *_summary_table(summarise(looks, tasks, target), target),
        "",
        "## Each look: the default minus the best baseline (its paired bootstrap interval "
        "decides won / tied / lost; * marks a tie, ! a loss)",
        "",
        "| file | date (UTC) | seeds | " + " | ".join(tasks) + " |",
        "|:---|:---|:---|" + "---:|" * len(tasks),
    ]
    mark = {"won": "", "tied": "*", "lost": "!"}
    for look in looks:
        cells = [
            f"{look['tasks'][t][2]:+.3f}{mark[look['tasks'][t][1]]}" if t in look["tasks"] else ""
            for t in tasks
        ]
        seeds = look["seeds"]
        lines.append(
            f"| {look['name']} | {look['date']:%Y-%m-%d %H:%M} | {seeds[0]}-{seeds[-1]} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def look_files(folder: Path = BENCH) -> list[Path]:
    """The looks: every seeds file of ``bench_quality.py`` (RESULTS.md, the suite's first
    seeds, is where the default was developed, so it is not one)."""
    return sorted([*folder.glob("RESULTS_seeds*.md"), *folder.glob("RESULTS_unseen_seeds*.md")])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default=str(BENCH / "RESULTS_looks.md"), help="'-': stdout")
    args = parser.parse_args(argv)
    looks = [parse_look(p.read_text(), p.name) for p in look_files()]
    text = report(looks)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"wrote {args.output} ({len(looks)} looks)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
