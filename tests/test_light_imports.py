"""The web side is light: importing the app, the CLI's help and ``studio migrate`` load no engine.

Each check runs a fresh interpreter with ``-X importtime``, which lists every module the process
imported, so what a web process or a CLI command loads is read from outside, as it really runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.engine.runner import SCHEDULERS
from app.params import DEFAULT_SCHEDULER, SCHEDULER_NAMES

REPO_ROOT = Path(__file__).resolve().parents[1]
ENGINE_PACKAGES = ("torch", "diffusers", "transformers")


def imported_modules(args: list[str], env: dict[str, str]) -> set[str]:
    run = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    # Lines read "import time: self [us] | cumulative | module"; the last column names the module.
    return {line.rsplit("|", 1)[1].strip() for line in run.stderr.splitlines() if line.startswith("import time:")}


@pytest.fixture
def studio_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STUDIO_")}
    env["STUDIO_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["-c", "import app.main"], id="import app.main"),
        pytest.param(["-c", "from app.main import create_app; create_app()"], id="create_app"),
        pytest.param(["-m", "app.cli", "--help"], id="studio --help"),
        pytest.param(["-m", "app.cli", "migrate"], id="studio migrate"),
        pytest.param(["-m", "app.cli", "models"], id="studio models"),
    ],
)
def test_the_web_side_and_the_cli_load_no_engine(args: list[str], studio_env: dict[str, str]) -> None:
    modules = imported_modules(args, studio_env)

    assert "app.config" in modules  # the check saw the studio's own imports
    loaded = sorted(name for name in modules if name.split(".")[0] in ENGINE_PACKAGES)
    assert loaded == []


def test_the_scheduler_names_the_web_side_knows_are_the_engines() -> None:
    assert set(SCHEDULER_NAMES) == set(SCHEDULERS)
    assert DEFAULT_SCHEDULER in SCHEDULERS
