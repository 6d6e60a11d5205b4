"""Generation parameters: the names every layer shares, without importing the engine."""

from __future__ import annotations

# The engine's scheduler table (app.engine.runner.SCHEDULERS) is keyed by these names;
# tests/test_light_imports.py checks the two agree, so the web side can validate a name without loading diffusers.
SCHEDULER_NAMES: tuple[str, ...] = ("ddim", "euler", "euler-a", "dpm++-2m", "dpm++-2m-karras", "unipc", "pndm", "ddpm")
DEFAULT_SCHEDULER = "dpm++-2m"
