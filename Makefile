# Every target creates or reuses .venv; re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# Tests and the demo never touch the network: timm must not try the hub.
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: install test lint format demo bench bench-quality bench-data docs clean mutate mutate-cli mutate-report

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,bench,docs]"
	rm -f $(VENV)/.installed-*
	touch $@

test: $(STAMP)
	@$(MAKE) -s bench-data || echo "note: the benchmark suite's real-source tests will skip"
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks examples docs
	$(BIN)/ruff format --check src tests benchmarks examples docs

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks examples docs
	$(BIN)/ruff check --fix src tests benchmarks examples docs

demo: $(STAMP)
	$(BIN)/skfingerprint demo --output demo_output

bench: bench-quality
	$(BIN)/python benchmarks/bench_select.py
	$(BIN)/python benchmarks/bench_embed.py

# The membership suite: trains its generators on a fresh clone (cached in benchmarks/.cache).
bench-quality: $(STAMP) bench-data
	nice -n 19 $(BIN)/python benchmarks/bench_quality.py

# Real image sources of the suite: two Debian packages (apt-get needs root; else it says so).
BENCH_DATA := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
	/usr/share/fonts/truetype/seto/setofont.ttf
bench-data:
	@for f in $(BENCH_DATA); do test -f $$f || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    dataset-fashion-mnist fonts-seto \
	  || { echo "install Debian's dataset-fashion-mnist and fonts-seto (as root)"; exit 1; }; \
	fi

# Mutation testing of the modules that decide answers ([tool.mutmut] in pyproject.toml): slow,
# not in CI. Writes benchmarks/RESULTS_mutation.md.
mutate: $(STAMP)
	$(BIN)/python -m pip install -q "mutmut>=3.8"
	rm -rf mutants
	nice -n 19 $(BIN)/mutmut run
	$(BIN)/python benchmarks/mutation_report.py

# The site in docs/_build/html; runs every examples/plot_*.py. Warnings are errors.
docs: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -b html docs docs/_build/html

clean:
	rm -rf docs/_build docs/auto_examples docs/gen_modules docs/sg_execution_times.rst demo_output .pytest_cache

# The command line's modules (benchmarks/mutmut_cli.toml) and the audit report
# (benchmarks/mutmut_report.toml): their tests fit models, so each runs in a copy of the tracked
# files whose [tool.mutmut] is replaced. Then: mutation_report.py --root build/mutate-cli (-report)
mutate-cli mutate-report: mutate-%: $(STAMP)
	$(BIN)/python -m pip install -q "mutmut>=3.8"
	rm -rf build/mutate-$* && mkdir -p build/mutate-$*
	git ls-files -z | xargs -0 cp --parents -t build/mutate-$*
	sed '/^\[tool.mutmut\]/,$$d' pyproject.toml > build/mutate-$*/pyproject.toml
	cat benchmarks/mutmut_$*.toml >> build/mutate-$*/pyproject.toml
	cd build/mutate-$* && nice -n 19 ../../$(BIN)/mutmut run

