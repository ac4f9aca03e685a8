# Set-up and everyday commands. `make demo` and `make test` create .venv on first use;
# the install is redone only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint install clean recipes-check peers

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# torch first, pinned to the CPU build this project is developed with; the project itself
# declares torch>=2.4, so pip then finds it satisfied.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,demo,serve,plot]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/rnnseq demo

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks recipes

# Every recipe for two steps on a sample of its data (also run by the test suite).
recipes-check: $(STAMP)
	$(BIN)/python recipes/run.py all --check

# Opt-in: OpenNMT-py and JoeyNMT in their own virtualenvs, for benchmarks/peers/compare.py.
peers:
	bash benchmarks/peers/setup.sh

clean:
	rm -rf $(VENV) rnnseq-demo .pytest_cache
