#!/bin/bash
# Issue 18's three named one-line mutations: apply each, run the test that must catch it, revert.
# Each must print "failed"; the files are restored whatever happens. Run from the repository root:
#     bash benchmarks/named_mutations.sh
# With --check it only checks that each text still occurs exactly once in one source file (a
# test runs that, so that a change to a line named here cannot silently break the script).
set -u
CHECK=$([ "${1:-}" = "--check" ] && echo 1 || echo 0)
PY=${PY:-.venv/bin/python}
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
status=0
mutate() { # text to replace, replacement, test; the file is the one source file holding the text
  local file
  file=$("$PY" -c 'import pathlib, sys
hits = [str(p) for p in sorted(pathlib.Path("src/skfingerprint").rglob("*.py"))
        if sys.argv[1] in p.read_text()]
print(hits[0] if len(hits) == 1 and open(hits[0]).read().count(sys.argv[1]) == 1 else "")' "$1")
  [ -n "$file" ] || { echo "not found exactly once in exactly one file: $1"; exit 2; }
  if [ "$CHECK" = 1 ]; then
    echo "found in $file: $3"
    return
  fi
  cp "$file" "$file.orig"
  trap 'mv "$file.orig" "$file"' EXIT
  "$PY" - "$file" "$1" "$2" <<'PY'
import sys
path, old, new = sys.argv[1:]
text = open(path).read()
assert text.count(old) == 1, old
open(path, "w").write(text.replace(old, new))
PY
  echo "### $file: '$1' -> '$2'"
  result=$("$PY" -m pytest -q -p no:cacheprovider "$3" 2>&1 | tail -1)
  echo "    $3: $result"
  mv "$file.orig" "$file"
  trap - EXIT
  case $result in *failed*) ;; *) status=1; echo "    NOT CAUGHT" ;; esac
}
mutate "    pred, proba = _predict(model, data, log, args.verbose)
    with _work_errors():" "    pred, proba = _predict(model, data, log, args.verbose)
    pred = pred * 0
    with _work_errors():" tests/test_cli.py::test_predict_writes_the_submission
mutate "kappa_scorer = make_scorer(cohen_kappa_score)" "kappa_scorer = make_scorer(accuracy_score)" \
  tests/test_metrics.py::test_kappa_scorer_is_kappa_not_accuracy
mutate "enabled=dtype != torch.float32),
        ):
            return self._in_passes(
                len(x)," "enabled=False),
        ):
            return self._in_passes(
                len(x)," tests/test_embedding.py::test_bf16_agrees_with_fp32
[ "$CHECK" = 1 ] && exit $status # nothing was touched; a work tree may hold uncommitted changes
git diff --quiet -- src && echo "sources clean" || { echo "sources modified!"; status=1; }
exit $status
