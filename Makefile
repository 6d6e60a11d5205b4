# Painting Studio: one-command setup, run, test and lint.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# 2.13.0 is the CPU build kept on disk; a machine with GPUs gets CUDA by installing torch first.
TORCH_VERSION ?= 2.13.0

.PHONY: install run test lint format migrate

install:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install torch==$(TORCH_VERSION)
	$(BIN)/pip install -e '.[dev]'

run: install
	$(BIN)/studio serve

test: install
	$(BIN)/python -m pytest -q

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format:
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

migrate:
	$(BIN)/studio migrate
