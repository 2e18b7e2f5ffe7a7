# hsutils: two commands on a fresh machine -> `make demo` (the main job on the demo portal) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.hsutils-installed
DEMO   := data/demo
DEMO_REPORTS := reports/demo
PERIOD ?= 2026Q4
SNAPSHOT ?= $(DEMO)/snapshot
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root,)  # Jupyter refuses root unless told

.PHONY: setup demo test bench lab report lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name hsutils --display-name "Python (hsutils)" >/dev/null
	touch $(STAMP)

setup: $(STAMP)  ## venv, package, dev tools, Jupyter kernel "hsutils"

demo: setup  ## the whole job on the demo portal: generate, validate, report, HubSpot stand-in pull + push dry run
	rm -rf $(DEMO)
	@started=$$(date +%s); \
	$(BIN)/hsutils demo-data --out $(DEMO)/snapshot && \
	$(BIN)/hsutils validate $(DEMO)/snapshot && \
	$(BIN)/hsutils report $(DEMO)/snapshot --period $(PERIOD) --out $(DEMO_REPORTS) && \
	echo "demo: leadership report ready $$(( $$(date +%s) - started )) s after the start: $(DEMO_REPORTS)/$(PERIOD)/leadership.html"
	$(BIN)/hsutils sandbox --snapshot $(DEMO)/snapshot --pull-to $(DEMO)/pulled \
	    --model $(DEMO_REPORTS)/$(PERIOD)/model.yml --scores $(DEMO_REPORTS)/$(PERIOD)/scores.parquet
	@echo "demo: open $(DEMO_REPORTS)/$(PERIOD)/leadership.html in a browser"

report: setup  ## the quarterly report: make report SNAPSHOT=data/snapshots/NAME PERIOD=2026Q4
	$(BIN)/hsutils report "$(SNAPSHOT)" --period "$(PERIOD)" --out reports

test: setup  ## the test suite (what CI runs)
	$(BIN)/python -m pytest -n 2 -q

bench: setup  ## speed and memory figures -> reports/bench.json
	$(BIN)/python benchmarks/run.py --out reports/bench.json

lab: setup  ## JupyterLab on the notebooks with the hsutils kernel
	$(BIN)/jupyter lab $(LAB_ARGS) notebooks/

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
