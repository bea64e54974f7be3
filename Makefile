# The project's own install steps: a fresh machine needs nothing but python3.
#   make demo         the demo: the library with every integration (.[all])
#   make test         lint, format check, types, the test suite and the docstring examples (.[all,dev])
#   make bench-smoke  every benchmarks/bench_*.py --smoke, against its peers (.[all,dev,bench])
#   make bench        every benchmark at full size (long; peers as above)
#   make test-min     the core tests on the declared minimum versions (a separate venv)
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -q

.PHONY: install demo test test-min pytest doctest lint typecheck bench bench-smoke clean

# torch is pinned to the CPU wheel that lies on this machine's disk and is
# installed before the extras, so that the `torch>=2.1` range in the extras is
# already satisfied and never pulls a multi-GB CUDA build.
$(VENV)/.stamp-venv:
	$(PY) -m venv $(VENV)
	$(PIP) torch==2.13.0
	touch $@

# One stamp per job: each installs only what its job needs, on top of the same venv.
$(VENV)/.stamp-demo: pyproject.toml $(VENV)/.stamp-venv
	$(PIP) -e '.[all]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml $(VENV)/.stamp-venv
	$(PIP) -e '.[all,dev]'
	touch $@

# The benchmarks also use the test tools (moto for S3, deltalake for the commit log).
$(VENV)/.stamp-bench: pyproject.toml $(VENV)/.stamp-venv
	$(PIP) -e '.[all,dev,bench]'
	touch $@

install: $(VENV)/.stamp-demo

demo: $(VENV)/.stamp-demo
	$(BIN)/tensorhouse demo

# pytest exits 5 when it collects nothing: that fails the target too (never hidden).
test: lint typecheck pytest doctest

pytest: $(VENV)/.stamp-test
	$(BIN)/pytest -q $(PYTEST_ARGS)

# Every docstring example runs (memory:// or temporary paths, seconds).
doctest: $(VENV)/.stamp-test
	$(BIN)/pytest -q --doctest-modules tensorhouse

lint: $(VENV)/.stamp-test
	$(BIN)/ruff check tensorhouse tests benchmarks
	$(BIN)/ruff format --check tensorhouse tests benchmarks

typecheck: $(VENV)/.stamp-test
	$(BIN)/mypy

# Each benchmark runs even when one before it failed; the target fails if any did.
bench-smoke: $(VENV)/.stamp-bench
	@status=0; for f in benchmarks/bench_*.py; do \
	  echo "== $$f --smoke"; start=$$(date +%s); \
	  $(BIN)/python $$f --smoke || { echo "FAILED: $$f --smoke"; status=1; }; \
	  echo "== $$f: $$(( $$(date +%s) - start )) s"; \
	done; exit $$status

bench: $(VENV)/.stamp-bench
	@status=0; for f in benchmarks/bench_*.py; do \
	  echo "== $$f"; $(BIN)/python $$f $(BENCH_ARGS) || { echo "FAILED: $$f"; status=1; }; \
	done; exit $$status

# The declared floors, installed exactly (.ci/min_constraints.py pins every `>=` of the core
# dependencies and of the SQL engines' extras to `==`; the test tools keep their own floors),
# then the tests of the format, local storage, SQL connectors and filters. .ci/run runs it last:
# it builds a second venv (about 12 minutes of pip on a fresh machine, 2 of tests). The s3 extra is left out: s3fs==2024.2 with
# moto[server] sent pip's resolver backtracking through aiobotocore for over 8 minutes, so
# the S3 tests skip here (moto_server absent).
MIN_VENV ?= .venv-min
MIN_TESTS ?= tests/test_dataset.py tests/test_types.py tests/test_chunks.py tests/test_predicate.py \
  tests/test_pruning.py tests/test_connector_dataset.py tests/test_tabular_types.py \
  tests/test_duckdb.py tests/test_datafusion.py tests/test_versions.py tests/test_storage.py \
  --deselect tests/test_duckdb.py::test_to_torch

$(MIN_VENV)/.stamp-min: pyproject.toml .ci/min_constraints.py
	$(PY) -m venv $(MIN_VENV)
	$(PY) .ci/min_constraints.py duckdb datafusion > $(MIN_VENV)/constraints.txt
	$(MIN_VENV)/bin/pip install -q -c $(MIN_VENV)/constraints.txt -e '.[duckdb,datafusion]' \
	  pytest pytest-timeout hypothesis pandas deltalake polars
	touch $@

test-min: $(MIN_VENV)/.stamp-min
	$(MIN_VENV)/bin/pip freeze | grep -i -E '^(numpy|pyarrow|duckdb|datafusion|nanoarrow|sqlglot)=='
	$(MIN_VENV)/bin/pytest -q -p no:cacheprovider $(MIN_TESTS) $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(MIN_VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
