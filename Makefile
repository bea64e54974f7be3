# The project's own install steps: a fresh machine needs nothing but python3.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint typecheck bench bench-smoke clean

# torch is pinned to the CPU wheel that lies on this machine's disk and is
# installed before the extras, so that the `torch>=2.1` range in the extras is
# already satisfied and never pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[all,dev,bench]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/tensorhouse demo

test: install lint typecheck
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check tensorhouse tests benchmarks

typecheck: install
	$(BIN)/mypy

bench: install
	$(BIN)/python benchmarks/bench_format.py

bench-smoke: install
	$(BIN)/python benchmarks/bench_format.py --smoke

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
