# openjukebox developer commands. `make test` is all a fresh machine needs.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BASE_STAMP := $(VENV)/.installed-base

.PHONY: install test test-slow lint format bench clean synth-deps browser-deps music-deps demo

# What `make demo` needs: torch and openjukebox alone.
$(BASE_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e .
	touch $(BASE_STAMP)

# Everything else: the test and parity extras on top.
$(STAMP): $(BASE_STAMP)
	$(BIN)/pip install -q -e ".[dev,parity]"
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

format: $(STAMP)
	$(BIN)/ruff format src tests bench scripts
	$(BIN)/ruff check --fix src tests bench scripts

# A song with lyrics from the bundled demo model (no download): wavs, lyrics timings, karaoke page in out/demo/.
DEMO_ARTIST ?= june meadow
DEMO_GENRE ?= folk
DEMO_LYRICS ?= examples/demo_lyrics.txt
DEMO_SECONDS ?= 12
DEMO_SEED ?= 0
DEMO_GUIDANCE ?= 3
DEMO_OUT ?= out/demo
demo: $(BASE_STAMP)
	$(BIN)/openjukebox demo --artist "$(DEMO_ARTIST)" --genre "$(DEMO_GENRE)" --lyrics-file "$(DEMO_LYRICS)" \
		--seconds $(DEMO_SECONDS) --seed $(DEMO_SEED) --guidance $(DEMO_GUIDANCE) --out "$(DEMO_OUT)"

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

# Free music for the demo model's training corpus: 41 Wesnoth tracks, GPL-2+ (Debian; needs root).
music-deps:
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends wesnoth-1.16-music

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .ruff_cache
