# exolam: `make demo` reproduces the paper's figures (quick presets), `make test` runs the tests.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# Never more torch threads than the 2 cores of our machines.
export OMP_NUM_THREADS ?= 2
export MPLBACKEND := Agg

.PHONY: demo test bench setup clean sysdeps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	# torch first, exact pin: takes the CPU wheel on disk instead of a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,data,control,flow,expert,encoders,hdf5]'
	touch $(STAMP)

setup: $(STAMP)

demo: sysdeps $(STAMP)
	$(BIN)/exolam reproduce all --quick --out runs
	$(BIN)/exolam report --out runs
	@echo "report: runs/report.md"

test: sysdeps $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs

# System GL libraries for headless dm_control rendering (EGL, OSMesa fallback). Installs only what is
# missing, with apt-get as root; otherwise prints what to install and succeeds, so it never fails `make`.
SYSDEPS := libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6
sysdeps:
	@missing=""; for p in $(SYSDEPS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "sysdeps: GL packages present"; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "sysdeps: no apt-get here; install$$missing (or your system's EGL/OSMesa) for dm_control rendering"; \
	elif [ "$$(id -u)" != 0 ]; then echo "sysdeps: not root; skipped. To render dm_control headless: sudo apt-get install -y$$missing"; \
	else echo "sysdeps: installing$$missing"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null) \
	  || echo "sysdeps: apt-get failed; install$$missing by hand"; \
	fi
