# Painting Studio: one-command setup, run, test and lint.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# 2.13.0 is the CPU build kept on disk; a machine with GPUs gets CUDA by installing torch first.
TORCH_VERSION ?= 2.13.0
# Upscaler networks: spandrel without its declared torchvision (app/engine/upscaling.py runs it without one).
SPANDREL ?= spandrel>=0.4.1,<0.5

.PHONY: install run test lint format migrate screenshots

install:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==$(TORCH_VERSION)
	$(BIN)/pip install -e '.[dev]'
	$(BIN)/pip install --no-deps '$(SPANDREL)'

run: install
	$(BIN)/studio serve

# The browser tests drive Debian's Chromium; a fresh machine gets it here instead of skipping them.
test: install
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }
	$(BIN)/python -m pytest -q

# Every page of a furnished studio at 1280 and 390 px wide, as PNGs in build/screenshots.
screenshots: install
	@test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }
	HF_HUB_OFFLINE=1 $(BIN)/python -m tests.e2e.screenshots build/screenshots

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate:
	$(BIN)/studio migrate
