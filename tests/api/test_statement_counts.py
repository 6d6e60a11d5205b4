"""Lists cost a constant number of SQL statements: the generations API, the history and the studio page.

Each page is requested over a few rows and over three times as many (queued, succeeded with
images, rated, failed); the statements it runs must not grow with the rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models import Feedback, Image, ImageKind, Status, User
from app.main import create_app
from app.services.users import LOCAL_USERNAME
from tests.conftest import create_test_generation, create_test_user

FEW = 4  # one of each kind below; the studio page shows 8 cards, so 3 * FEW still changes it
T0 = datetime(2026, 1, 1, 12, 0, 0)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """An app acting as the local artist, with no workers: queued jobs stay queued."""
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/generations").status_code == 200  # creates the local artist
        yield client


def _factory(client: TestClient) -> sessionmaker[Session]:
    return client.app.state.session_factory  # type: ignore[attr-defined,no-any-return]


def add_rows(client: TestClient, count: int) -> None:
    """``count`` generations of the local artist, cycling queued / succeeded / rated / failed.

    Another artist's queued job shares the queue, so positions are not all trivially 0..n.
    """
    with _factory(client)() as session:
        local = session.scalars(select(User).where(User.username == LOCAL_USERNAME)).one()
        other = create_test_user(session)
        create_test_generation(session, other, model="sd15")
        for number in range(count):
            kind = number % 4
            if kind == 0:
                create_test_generation(session, local, model="sd15" if number % 8 else "studio-tiny")
                continue
            status = Status.FAILED if kind == 3 else Status.SUCCEEDED
            started = T0 + timedelta(minutes=number)
            generation = create_test_generation(
                session,
                local,
                status=status,
                claimed_at=started,
                started_at=started,
                finished_at=started + timedelta(seconds=5),
                error="out of memory" if status == Status.FAILED else None,
            )
            if status != Status.SUCCEEDED:
                continue
            images = [
                Image(
                    sha256=f"{generation.id:032x}{index:032x}",
                    width=64,
                    height=64,
                    format="png",
                    kind=ImageKind.OUTPUT,
                    generation_id=generation.id,
                    index=index,
                    user_id=local.id,
                )
                for index in range(2)
            ]
            session.add_all(images)
            session.flush()
            if kind == 2:
                session.add(Feedback(user_id=local.id, image_id=images[0].id, rating=4, liked=True))
            session.commit()


def statements_of(client: TestClient, path: str) -> tuple[list[str], str]:
    """The SQL statements the app ran to answer GET ``path``, and the answer's body."""
    engine: Engine = client.app.state.db_engine  # type: ignore[attr-defined]
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        response = client.get(path)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert response.status_code == 200, response.text
    return statements, response.text


PATHS = [
    "/api/generations",
    "/api/generations?min_rating=1",
    "/history",
    "/history?sort=rating",
    "/",
]


@pytest.mark.parametrize("path", PATHS)
def test_a_list_runs_as_many_statements_for_three_times_the_rows(client: TestClient, path: str) -> None:
    add_rows(client, FEW)
    few, few_body = statements_of(client, path)

    add_rows(client, 2 * FEW)
    many, many_body = statements_of(client, path)

    assert len(many_body) > len(few_body)  # the second page really shows more rows
    assert len(many) == len(few), f"{path}: {len(few)} statements over {FEW} rows, {len(many)} over {3 * FEW}"


def test_the_api_list_shows_positions_waits_and_images_of_every_row(client: TestClient) -> None:
    add_rows(client, 3 * FEW)

    statements, _ = statements_of(client, "/api/generations")
    items = client.get("/api/generations").json()["items"]

    assert len(items) == 3 * FEW
    queued = [item for item in items if item["status"] == "queued"]
    # The other artist was never served, so their job goes first; then the local artist's, oldest first.
    assert [item["queue_position"] for item in reversed(queued)] == list(range(1, len(queued) + 1))
    assert all(item["estimated_wait_s"] == 5 * (item["queue_position"] + 1) for item in queued)
    others = [item for item in items if item not in queued]
    assert all(item["queue_position"] is None and item["estimated_wait_s"] is None for item in others)
    assert all(len(item["images"]) == 2 for item in items if item["status"] == "succeeded")
    # The user, the page, its images, the queue positions and the recent run times.
    assert len(statements) <= 6, "\n".join(statements)


def test_the_studio_page_shows_how_far_back_each_queued_card_is(client: TestClient) -> None:
    add_rows(client, FEW)

    _, body = statements_of(client, "/")

    # The one queued job of the local artist waits behind the other artist's (added first).
    assert "1 ahead" in body
    assert "done in about 10 s" in body


def test_a_finished_job_with_its_images_is_answered_in_two_statements(client: TestClient) -> None:
    # Pollers ask for their job every few tens of milliseconds while it paints.
    add_rows(client, FEW)
    with _factory(client)() as session:
        finished = session.scalars(
            select(Image.generation_id).where(Image.generation_id.is_not(None)).order_by(Image.id).limit(1)
        ).one()

    statements, body = statements_of(client, f"/api/generations/{finished}")

    assert len(client.get(f"/api/generations/{finished}").json()["images"]) == 2
    # The acting user, then the job joined to its images.
    assert len(statements) == 2, "\n".join(statements)
    assert '"status":"succeeded"' in body
