# RapidAnalysis: two commands on a fresh machine.
#   make test   create .venv if missing, install with test extras, lint, type-check, run the test suite
#   make demo   create .venv if missing, install, run the simulated observatory end to end
#               (camera and mount simulators, the Rapid Analysis CSC, an observing sequence)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo sal-demo lint format bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/ruff check python tests bench
	$(BIN)/ruff format --check python tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/rapid_analysis demo --workdir rapid_analysis_demo

sal-demo: $(STAMP)
	$(BIN)/sal_demo

lint: $(STAMP)
	$(BIN)/ruff check python tests bench
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format python tests bench
	$(BIN)/ruff check --fix python tests bench

bench: $(STAMP)
	$(BIN)/python bench/sal_latency.py
	$(BIN)/python bench/dispatch.py
	$(BIN)/python bench/autonomous_latency.py
	$(BIN)/python bench/results_writer.py
	$(BIN)/python bench/command_burst.py
	$(BIN)/python bench/cli_startup.py

clean:
	rm -rf $(VENV) build *.egg-info python/*.egg-info
