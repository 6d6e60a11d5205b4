"""Server time of the list pages over 10,000 generations: p50 and p95 of /, /history, the API list, a page.

python bench/pages.py [--rows 10000] [--requests 100] [--database-url URL --reset]

Fills a fresh SQLite database in a temporary folder (or the PostgreSQL database at
``--database-url``, which must be empty unless ``--reset`` drops its public schema first) with
generations over a few users in bulk: most succeeded with images, some rated, the newest of each
user queued or running. Then builds the app with its workers off and calls each page in-process;
the time counted is the server's, from the request entering the app to the response leaving it.
Run with OMP_NUM_THREADS=1 on a quiet machine for figures that compare.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import Engine, create_engine, event, insert, inspect, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from starlette.types import ASGIApp, Receive, Scope, Send  # noqa: E402

from app.config import Settings  # noqa: E402
from app.db.migrate import upgrade_database  # noqa: E402
from app.db.models import Feedback, Generation, Image, ImageKind, Mode, Role, Status, User  # noqa: E402
from app.db.session import make_session_factory  # noqa: E402
from app.main import create_app  # noqa: E402
from app.services.users import LOCAL_USERNAME, UNUSABLE_PASSWORD_PREFIX  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
USERS = 4  # the local artist (whose pages are measured) and three others sharing the queue
QUEUED_PER_USER = 30
RUNNING_PER_USER = 1
MODELS = ("studio-tiny", "sd15", "sdxl")
PROMPTS = ("a red barn under a blue sky", "a lighthouse at dusk", "a bowl of lemons, oil on canvas", "a fox in snow")
T0 = datetime(2026, 1, 1, 8, 0, 0)


class ServerTimer:
    """ASGI wrapper that records how long the app took over each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seconds: list[float] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            self.seconds.append(time.perf_counter() - started)


@contextmanager
def counting_statements(engine: Engine) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)


def prepare_database(url: str, *, reset: bool) -> None:
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                if reset:
                    connection.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
                    connection.execute(text("CREATE SCHEMA public"))
                elif inspect(connection).get_table_names():
                    raise SystemExit(f"{url} is not empty: pass --reset to drop its public schema first")
        finally:
            engine.dispose()
    upgrade_database(url)


def fill(engine: Engine, *, rows: int, seed: int = 0) -> dict[str, int]:
    """Bulk-insert ``rows`` generations over USERS users; returns ids worth measuring."""
    rng = random.Random(seed)
    users = [
        {
            "id": index + 1,
            "username": LOCAL_USERNAME if index == 0 else f"artist{index}",
            "password_hash": UNUSABLE_PASSWORD_PREFIX + "bench",
            "role": Role.ADMIN if index == 0 else Role.ARTIST,
            "created_at": T0,
        }
        for index in range(USERS)
    ]
    per_user = rows // USERS
    generations: list[dict[str, Any]] = []
    images: list[dict[str, Any]] = []
    feedback: list[dict[str, Any]] = []
    for number in range(rows):
        user_id = number % USERS + 1
        # Rows are written oldest first, so each user's newest jobs are the ones still waiting.
        from_end = per_user - number // USERS
        if from_end <= QUEUED_PER_USER:
            status = Status.QUEUED
        elif from_end <= QUEUED_PER_USER + RUNNING_PER_USER:
            status = Status.RUNNING
        else:
            status = rng.choices((Status.SUCCEEDED, Status.FAILED, Status.CANCELLED), (90, 5, 5))[0]
        created = T0 + timedelta(minutes=number)
        claimed = None if status == Status.QUEUED else created + timedelta(seconds=5)
        finished = claimed + timedelta(seconds=rng.uniform(3, 30)) if claimed and status.is_final else None
        generation_id = number + 1
        n_images = rng.choice((1, 1, 2, 4))
        generations.append(
            {
                "id": generation_id,
                "user_id": user_id,
                "mode": Mode.TXT2IMG,
                "prompt": f"{rng.choice(PROMPTS)} #{number}",
                "negative_prompt": "",
                "model": rng.choice(MODELS),
                "scheduler": "ddim",
                "seed": rng.randrange(2**32),
                "steps": 20,
                "guidance": 7.5,
                "width": 512,
                "height": 512,
                "n_images": n_images,
                "strength": None,
                "params": {},
                "style_image_ids": [],
                "status": status,
                "priority": 0,
                "attempts": 0 if claimed is None else 1,
                "worker": None if claimed is None else "bench:cpu",
                "claimed_at": claimed,
                "heartbeat_at": claimed,
                "started_at": claimed,
                "finished_at": finished,
                "error": "out of memory" if status == Status.FAILED else None,
                "created_at": created,
            }
        )
        if status != Status.SUCCEEDED:
            continue
        for index in range(n_images):
            image_id = len(images) + 1
            images.append(
                {
                    "id": image_id,
                    "sha256": f"{image_id:064x}",
                    "width": 512,
                    "height": 512,
                    "format": "png",
                    "kind": ImageKind.OUTPUT,
                    "generation_id": generation_id,
                    "index": index,
                    "user_id": user_id,
                    "created_at": finished,
                }
            )
            if rng.random() < 0.3:
                feedback.append(
                    {
                        "user_id": user_id,
                        "image_id": image_id,
                        "rating": rng.randint(1, 5),
                        "liked": rng.random() < 0.5,
                        "comment": "",
                        "created_at": finished,
                        "updated_at": finished,
                    }
                )
    factory = make_session_factory(engine)
    with factory() as session:
        session.execute(insert(User), users)
        session.execute(insert(Generation), generations)
        session.execute(insert(Image), images)
        session.execute(insert(Feedback), feedback)
        if engine.dialect.name == "postgresql":
            # Explicit ids leave the sequences behind; later inserts would collide.
            for table in ("users", "generations", "images", "feedback"):
                session.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"))
        session.commit()
        if engine.dialect.name == "postgresql":
            # What autovacuum would have done by the time a real table held this many rows;
            # SQLite keeps no statistics unless asked, and the studio never asks.
            session.execute(text("ANALYZE"))
            session.commit()
    rated = next(row["image_id"] for row in feedback if row["user_id"] == 1)
    page = next(image["generation_id"] for image in images if image["id"] == rated)
    return {"generations": len(generations), "images": len(images), "feedback": len(feedback), "page": page}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(client: TestClient, timer: ServerTimer, engine: Engine, path: str, requests: int) -> str:
    for _ in range(3):  # warm-up: templates compiled, statement caches filled
        assert client.get(path).status_code == 200, path
    with counting_statements(engine) as statements:
        client.get(path)
    timer.seconds.clear()
    for _ in range(requests):
        response = client.get(path)
        assert response.status_code == 200, f"{path}: {response.status_code}"
    ms = [seconds * 1000 for seconds in timer.seconds]
    return (
        f"{path:<24} p50 {statistics.median(ms):6.1f} ms   p95 {percentile(ms, 0.95):6.1f} ms   "
        f"{len(statements):3d} statements"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--database-url", help="a PostgreSQL database to fill (default: a fresh SQLite file)")
    parser.add_argument("--reset", action="store_true", help="drop the database's public schema first")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        data_dir = Path(folder)
        url = args.database_url or f"sqlite:///{data_dir / 'studio.db'}"
        prepare_database(url, reset=args.reset)
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=data_dir,
            database_url=url,
            models_dir=REPO_ROOT / "models",
            start_workers=False,
            preload_default_model=False,
            auth="local",
        )
        app = create_app(settings)
        engine: Engine = app.state.db_engine
        started = time.perf_counter()
        counts = fill(engine, rows=args.rows)
        print(
            f"{make_url(url).get_backend_name()}: {counts['generations']} generations, {counts['images']} images, "
            f"{counts['feedback']} ratings over {USERS} users, filled in {time.perf_counter() - started:.1f} s"
        )
        timer = ServerTimer(app)
        # A loopback Host, which the studio answers by default.
        with TestClient(timer, base_url="http://127.0.0.1") as client:
            for path in ("/", "/history", "/api/generations", f"/generations/{counts['page']}"):
                print(measure(client, timer, engine, path, args.requests))


if __name__ == "__main__":
    main()
