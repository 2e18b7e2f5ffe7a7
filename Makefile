# hsutils: two commands on a fresh machine -> `make demo` (the main job on the demo portal) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hsutils-installed
DEMO   := data/demo

.PHONY: setup demo test bench lab report lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name hsutils --display-name "Python (hsutils)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)  ## venv, package, dev tools, Jupyter kernel "hsutils"

demo: setup  ## generate the demo portal and run the main job on it
	rm -rf $(DEMO)
	$(BIN)/hsutils demo-data --out $(DEMO)/snapshot
	$(BIN)/hsutils validate $(DEMO)/snapshot

test: setup  ## the test suite (what CI runs)
	$(BIN)/python -m pytest -n 2 -q

bench: setup  ## speed and memory figures -> reports/bench.json
	$(BIN)/python benchmarks/run.py --out reports/bench.json

lab: setup  ## JupyterLab on the notebooks with the hsutils kernel
	$(BIN)/jupyter lab notebooks/

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
