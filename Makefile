# openjukebox developer commands. `make test` is all a fresh machine needs.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-slow lint format bench clean synth-deps browser-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,parity]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff format src tests bench
	$(BIN)/ruff check --fix src tests bench

test: $(STAMP) lint
	$(BIN)/pytest -m "not slow" -q

test-slow: $(STAMP)
	$(BIN)/pytest -m slow -q

bench: $(STAMP)
	$(BIN)/python bench/vqvae.py

# System packages of `openjukebox data synth` (Debian; needs root: `sudo make synth-deps`).
synth-deps:
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends fluidsynth fluid-soundfont-gm espeak-ng sox

# Headless Chromium for the karaoke page test, driven by Playwright (Debian; needs root: `sudo make browser-deps`).
browser-deps:
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends chromium

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
