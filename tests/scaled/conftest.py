"""Scaled mode with real processes: a fresh PostgreSQL database per test, and helpers that start
``studio serve`` and ``studio worker`` as the operator would, on RabbitMQ or Redis.

Every test gets a database of its own (``CREATE DATABASE``) on the PostgreSQL server that
STUDIO_DATABASE_URL names (or the local one), its own Celery queue and its own Redis key prefix,
so runs sharing the servers never see each other's rows, messages or events. Without a
reachable PostgreSQL the tests skip and say so.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.live_server import free_port
from tests.tiny_pipeline import TINY, tiny_models

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCAL_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _server_url() -> str:
    """A URL on the PostgreSQL server to create test databases from."""
    given = os.environ.get("STUDIO_DATABASE_URL", "")
    if given and make_url(given).get_backend_name() == "postgresql":
        return make_url(given).set(database="postgres").render_as_string(hide_password=False)
    return LOCAL_POSTGRES


@pytest.fixture
def fresh_database() -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped after the test."""
    server = _server_url()
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"studio_scaled_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # no server, or no right to create databases
        admin.dispose()
        pytest.skip(f"needs a PostgreSQL server that lets tests create databases ({server}): {error}")
    try:
        yield make_url(server).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def reachable(url: str) -> str | None:
    """None when the broker or Redis at ``url`` answers, else why not."""
    try:
        if url.startswith("redis"):
            import redis

            redis.Redis.from_url(url, socket_connect_timeout=2).ping()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=2) as connection:
                connection.ensure_connection(max_retries=1)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return None


def need(url: str) -> None:
    problem = reachable(url)
    if problem is not None:
        pytest.skip(f"needs {url.split(':', 1)[0]} at {url}: {problem}")


@pytest.fixture(scope="session")
def scaled_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models directory holding only the tiny test model (loads in a blink, paints 64 px)."""
    root = tmp_path_factory.mktemp("scaled-models")
    shutil.copytree(tiny_models(tmp_path_factory) / TINY, root / TINY)
    return root


@dataclass
class Studio:
    """The processes of one scaled studio and the environment they share."""

    env: dict[str, str]
    logs: Path
    web: list[tuple[subprocess.Popen[bytes], str]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def _spawn(self, args: list[str], name: str, **extra: str) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", "app.cli", *args],
            cwd=REPO_ROOT,
            env={**self.env, **extra},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_web(self) -> str:
        port = free_port()
        process = self._spawn(["serve", "--port", str(port)], f"web-{port}")
        url = f"http://127.0.0.1:{port}"
        self.web.append((process, url))
        return url

    def start_worker(self) -> subprocess.Popen[bytes]:
        process = self._spawn(["worker"], f"worker-{len(self.workers)}")
        self.workers.append(process)
        return process

    def wait_web(self, url: str, *, within: float = 180.0) -> None:
        """Waits until the server at ``url`` answers /healthz (a generous bound, not a timing check)."""
        process = next(process for process, known in self.web if known == url)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"the web process at {url} exited with {process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"the web process at {url} never answered /healthz:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for log in sorted(self.logs.glob("*.log")):
            parts.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-lines:]))
        return "\n".join(parts)

    def stop(self) -> None:
        processes = [process for process, _ in self.web] + self.workers
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def scaled_env(database_url: str, data_dir: Path, models_dir: Path, broker_url: str) -> dict[str, str]:
    """What every process of one test's studio is started with: short windows, one torch thread."""
    run = uuid.uuid4().hex[:12]
    env = {key: value for key, value in os.environ.items() if not key.startswith("STUDIO_")}
    env.update(
        {
            "STUDIO_DATABASE_URL": database_url,
            "STUDIO_DATA_DIR": str(data_dir),
            "STUDIO_MODELS_DIR": str(models_dir),
            "STUDIO_DEFAULT_MODEL": TINY,
            "STUDIO_DEVICES": "cpu",
            "STUDIO_QUEUE": "celery",
            "STUDIO_BROKER_URL": broker_url,
            "STUDIO_REDIS_URL": REDIS_URL,
            "STUDIO_REDIS_PREFIX": f"test-{run}",
            "STUDIO_CELERY_QUEUE": f"test-{run}",
            "STUDIO_SECRET_KEY": f"scaled-test-{run}",
            "STUDIO_AUTH": "local",
            "STUDIO_MAX_QUEUED_PER_USER": "1000",
            # A dead worker's job is requeued within seconds; two machines' cores are busy, so
            # the window leaves heartbeats (every 0.5 s) plenty of room.
            "STUDIO_HEARTBEAT_SECONDS": "0.5",
            "STUDIO_STALE_AFTER_SECONDS": "6",
            "STUDIO_REDISPATCH_AFTER_SECONDS": "2",
            "STUDIO_MAX_ATTEMPTS": "10",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture
def make_studio(fresh_database: str, tmp_path: Path, scaled_models_dir: Path) -> Iterator[Callable[[str], Studio]]:
    """``make_studio(broker_url) -> Studio`` on the test's fresh database; stopped at the end."""
    studios: list[Studio] = []

    def make(broker_url: str) -> Studio:
        need(broker_url)
        need(REDIS_URL)
        logs = tmp_path / "logs"
        logs.mkdir(exist_ok=True)
        studio = Studio(env=scaled_env(fresh_database, tmp_path / "data", scaled_models_dir, broker_url), logs=logs)
        studios.append(studio)
        return studio

    yield make
    for studio in studios:
        studio.stop()
