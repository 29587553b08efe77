# Every target creates or reuses .venv; re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
# Tests and the demo never touch the network: timm must not try the hub.
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: install test lint format demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,bench,docs]"
	rm -f $(VENV)/.installed-*
	touch $@

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: $(STAMP)
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

demo: $(STAMP)
	$(BIN)/skfingerprint demo --output demo_output

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_select.py
	$(BIN)/python benchmarks/bench_quality.py
	$(BIN)/python benchmarks/bench_embed.py

clean:
	rm -rf docs/_build docs/auto_examples docs/gen_modules demo_output .pytest_cache
