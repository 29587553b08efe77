"""Mutation score per module, from the last ``mutmut run`` (``make mutate``).

mutmut (configured under ``[tool.mutmut]`` in pyproject.toml) changes one token of the modules
that decide answers at a time and runs the fast unit tests that cover the changed function; a
mutant is *killed* when a test fails. This script reads ``mutmut results --all true``, counts
per module, subtracts the surviving mutants listed in ``benchmarks/mutation_equivalent.txt``
(each with the reason it cannot change an answer), shows every other survivor's diff, and
rewrites ``benchmarks/RESULTS_mutation.md``.

    make mutate      # rm -rf mutants; mutmut run; this script

``--root DIR`` (repeatable) reads the results of other checkouts too, each module from the
first root that has it: a slow module can come from a separate run, and the command line's
modules come from ``make mutate-cli`` (its tests fit small models, so they run apart, with
their own test selection, in ``build/mutate-cli``).
"""

from __future__ import annotations

import argparse
import collections
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

from bench_quality import machine  # noqa: E402

MUTMUT = [sys.executable, "-m", "mutmut"]
# "skfingerprint.cli._commands.xǁ_Classǁmethod__mutmut_3: survived": the module is what precedes
# the mangled function name (x_ or xǁ).
LINE = re.compile(r"^\s*(skfingerprint\.([\w.]+?)\.x[_ǁ]\S*): (.+)$")


def equivalents() -> dict[str, str]:
    """``mutant name -> reason`` from mutation_equivalent.txt (``name: reason`` lines)."""
    out = {}
    for line in (BENCH / "mutation_equivalent.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, reason = line.split(":", 1)
            out[name.strip()] = reason.strip()
    return out


def diff(name: str, root: Path) -> str:
    shown = subprocess.run([*MUTMUT, "show", name], capture_output=True, text=True, cwd=root)
    return "\n".join(
        line for line in shown.stdout.splitlines() if line[:2] in ("- ", "+ ") and line.strip()
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, action="append", default=[])
    args = parser.parse_args(argv)
    status: dict[str, dict[str, str]] = {}
    where: dict[str, Path] = {}
    for root in [*args.root, ROOT]:
        res = subprocess.run(
            [*MUTMUT, "results", "--all", "true"],
            capture_output=True,
            text=True,
            cwd=root,
            check=True,
        )
        found: dict[str, dict[str, str]] = collections.defaultdict(dict)
        for line in res.stdout.splitlines():
            m = LINE.match(line)
            if m:
                found[m.group(2)][m.group(1)] = m.group(3).strip()
        for module, mutants in found.items():
            if module not in status:
                status[module], where[module] = mutants, root
    if not status:
        raise SystemExit("no mutants found: run `mutmut run` first (make mutate)")
    known = equivalents()
    lines = [
        "# Mutation testing (`make mutate`)",
        "",
        "Rewritten by `benchmarks/mutation_report.py`; edits are lost. "
        + __doc__.split("\n\n")[1].replace("\n", " "),
        "",
        f"Machine: {machine()}",
        "",
        "| module | mutants | killed | survived | equivalent | other | not run | score | run in |",
        "|:---|---:|---:|---:|---:|---:|---:|---:|:---|",
    ]
    survivors = []
    for module in sorted(status):
        counts = collections.Counter(status[module].values())
        # mutmut reports a test process that died on the mutant (SIGSEGV in FAISS) as
        # "segfault": the tests did not pass, so it is detected
        killed = counts["killed"] + counts["segfault"]
        survived = [n for n, s in status[module].items() if s in ("survived", "suspicious")]
        # Counted as killed after a check by hand (apply, run the tests, revert), listed with
        # the reason: "crash: ..." (the test process dies on the mutant, SIGSEGV in FAISS, which
        # mutmut's fork server can report as survived or suspicious), "caught: ..." (a test
        # mutmut cannot observe, such as one in a subprocess, fails on it) and "killed later:
        # ..." (a test added after this run fails on it).
        crashed = [
            n
            for n in survived
            if known.get(n, "").startswith(("crash:", "caught:", "killed later:"))
        ]
        killed += len(crashed)
        survived = [n for n in survived if n not in crashed]
        equivalent = [n for n in survived if n in known]
        not_run = counts["not checked"]  # a run stopped before reaching them
        other = sum(counts.values()) - killed - len(survived) - not_run
        scored = sum(counts.values()) - not_run - len(equivalent)
        score = killed / scored if scored else float("nan")
        lines.append(
            f"| {module.replace('.', '/')}.py | {sum(counts.values())} | {killed} | "
            f"{len(survived)} | {len(equivalent)} | {other} | {not_run} | "
            f"{100 * score:.1f}%{' (partial)' if not_run else ''} | `{where[module]}` |"
        )
        survivors += [(n, known.get(n), where[module]) for n in survived]
    lines += [
        "",
        "Score = killed / (mutants run - equivalent survivors). *other*: timeouts, crashes, "
        "mutants no test reaches (counted against the score). *not run*: a run stopped before "
        "it reached them; a row with any is marked partial and scores only the mutants run.",
        "",
        "## Surviving mutants",
        "",
    ]
    for name, reason, root in survivors:
        lines += [f"### `{name}`", "", "```diff", diff(name, root), "```", ""]
        lines += [f"Equivalent: {reason}" if reason else "**Not killed yet.**", ""]
    (BENCH / "RESULTS_mutation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[: 8 + len(status) + 2]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
