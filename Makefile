# exolam: `make demo` reproduces the paper's figures (quick presets), `make test` runs the tests.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Never more torch threads than the 2 cores of our machines.
export OMP_NUM_THREADS ?= 2
export MPLBACKEND := Agg

.PHONY: demo test bench setup clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, exact pin: takes the CPU wheel on disk instead of a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,data]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/exolam reproduce all --quick --out runs
	$(BIN)/exolam report --out runs
	@echo "report: runs/report.md"

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs
