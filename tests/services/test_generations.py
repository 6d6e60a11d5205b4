"""Generations service: the job queue on the Generation row (DESIGN.md section 4)."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.base import utcnow
from app.db.models import Generation, Image, ImageKind, Mode, Role, Status, User
from app.params import JobParams
from app.services import generations, queue
from app.services.errors import Conflict, NotFound
from app.services.generations import NewGeneration
from app.services.queue import OutputImage

MakeUser = Callable[..., User]
MakeGeneration = Callable[..., Generation]


def _new(**overrides: object) -> NewGeneration:
    values: dict[str, object] = {
        "mode": Mode.TXT2IMG,
        "prompt": "a lighthouse at dusk",
        "model": "studio-tiny",
        "scheduler": "ddim",
        "steps": 2,
        "guidance": 5.0,
        "width": 64,
        "height": 64,
    }
    values.update(overrides)
    return NewGeneration(**values)  # type: ignore[arg-type]


def _outputs(*shas: str) -> list[OutputImage]:
    return [OutputImage(sha256=sha, width=64, height=64, index=i) for i, sha in enumerate(shas)]


def _output_shas(session: Session, generation_id: int) -> list[str]:
    stmt = select(Image.sha256).where(Image.generation_id == generation_id).order_by(Image.index)
    return list(session.scalars(stmt))


def _claim_all(session: Session, worker: str = "w1") -> list[int]:
    claimed = []
    while (job := queue.claim(session, worker=worker)) is not None:
        claimed.append(job.id)
    return claimed


# --- enqueue ----------------------------------------------------------------------------------


def test_enqueue_records_a_random_seed_when_none_is_given(session: Session, make_user: MakeUser) -> None:
    alice = make_user(session, "alice")

    seeds = {generations.enqueue(session, owner=alice, new=_new()).seed for _ in range(5)}

    assert all(0 <= seed <= 2**32 - 1 for seed in seeds)
    assert len(seeds) > 1


def test_enqueue_keeps_the_given_seed_and_queues_the_job(session: Session, make_user: MakeUser) -> None:
    alice = make_user(session, "alice")

    generation = generations.enqueue(session, owner=alice, new=_new(seed=42, params=JobParams(style_strength=0.3)))

    session.expire_all()
    stored = session.get(Generation, generation.id)
    assert stored is not None
    assert (stored.seed, stored.status, stored.user_id, stored.attempts) == (42, Status.QUEUED, alice.id, 0)
    assert stored.params == JobParams(style_strength=0.3)


def test_enqueue_refuses_a_parent_the_owner_cannot_see(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    bobs = make_generation(session, owner=bob)

    with pytest.raises(NotFound):
        generations.enqueue(session, owner=alice, new=_new(parent_id=bobs.id))
    with pytest.raises(NotFound):
        generations.enqueue(session, owner=alice, new=_new(parent_id=999_999))

    child = generations.enqueue(session, owner=bob, new=_new(parent_id=bobs.id))
    assert child.parent_id == bobs.id


def test_enqueue_refuses_another_users_image(session: Session, make_user: MakeUser) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    upload = Image(sha256="b" * 64, width=64, height=64, format="png", kind=ImageKind.UPLOAD, user_id=bob.id)
    session.add(upload)
    session.commit()

    with pytest.raises(NotFound):
        generations.enqueue(session, owner=alice, new=_new(mode=Mode.STYLE, style_image_ids=[upload.id]))

    generation = generations.enqueue(session, owner=bob, new=_new(mode=Mode.STYLE, style_image_ids=[upload.id]))
    assert generation.style_image_ids == [upload.id]


# --- claim ------------------------------------------------------------------------------------


def test_claim_returns_none_on_an_empty_queue(session: Session) -> None:
    assert queue.claim(session, worker="w1") is None


def test_claiming_from_a_queue_with_nothing_queued_writes_nothing_and_ends_its_transaction(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    # Workers ask after every job and at every poll: an empty queue is answered by one read.
    finished = make_generation(session, owner=make_user(session))
    finished.status = Status.SUCCEEDED
    session.commit()
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(statement.lstrip().split(None, 1)[0].upper())

    engine = session.get_bind()
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert queue.claim(session, worker="w1") is None
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert statements == ["SELECT"]
    assert not session.in_transaction()


def test_claim_marks_the_job_running_under_the_worker(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    job = make_generation(session, owner=make_user(session))

    claimed = queue.claim(session, worker="cpu-0")

    assert claimed is not None and claimed.id == job.id
    assert claimed.status == Status.RUNNING
    assert claimed.worker == "cpu-0"
    assert claimed.attempts == 1
    assert claimed.claimed_at is not None and claimed.heartbeat_at is not None and claimed.started_at is not None
    assert queue.claim(session, worker="cpu-1") is None


def test_claim_order_gives_each_user_a_turn(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    a1, a2, a3 = (make_generation(session, owner=alice) for _ in range(3))
    b1 = make_generation(session, owner=bob)

    assert _claim_all(session) == [a1.id, b1.id, a2.id, a3.id]


def test_a_single_worker_finishing_each_job_still_alternates_users(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    a1, a2, a3 = (make_generation(session, owner=alice) for _ in range(3))
    b1, b2 = (make_generation(session, owner=bob) for _ in range(2))

    order = []
    while (job := queue.claim(session, worker="w1")) is not None:
        order.append(job.id)
        assert queue.complete(session, generation_id=job.id, worker="w1", outputs=[])

    assert order == [a1.id, b1.id, a2.id, b2.id, a3.id]


def test_claim_takes_higher_priority_first_within_a_turn(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    a_low = make_generation(session, owner=alice)
    a_high = make_generation(session, owner=alice, priority=5)
    b_mid = make_generation(session, owner=bob, priority=1)

    assert _claim_all(session) == [a_high.id, b_mid.id, a_low.id]


def test_claim_prefers_a_warm_model_among_equals(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    cold = make_generation(session, owner=alice, model="sd15")
    warm = make_generation(session, owner=bob, model="studio-tiny")

    first = queue.claim(session, worker="w1", warm_models=["studio-tiny"])
    second = queue.claim(session, worker="w1", warm_models=["studio-tiny"])

    assert first is not None and first.id == warm.id
    assert second is not None and second.id == cold.id


def test_a_warm_model_never_takes_another_users_turn(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    a1, a2 = (make_generation(session, owner=alice, model="studio-tiny") for _ in range(2))
    b1 = make_generation(session, owner=bob, model="sd15")

    order = []
    while (job := queue.claim(session, worker="w1", warm_models=["studio-tiny"])) is not None:
        order.append(job.id)
        queue.complete(session, generation_id=job.id, worker="w1", outputs=[])

    assert order == [a1.id, b1.id, a2.id]


def test_claim_skips_jobs_that_are_not_queued(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    for status in (Status.RUNNING, Status.SUCCEEDED, Status.FAILED, Status.CANCELLED):
        make_generation(session, owner=alice, status=status)
    queued = make_generation(session, owner=alice)

    assert _claim_all(session) == [queued.id]


def test_concurrent_workers_claim_every_job_exactly_once(
    session: Session, session_factory: sessionmaker[Session], make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    users = [make_user(session) for _ in range(4)]
    jobs = [make_generation(session, owner=users[i % 4], priority=i % 3) for i in range(60)]
    claims: dict[str, list[int]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(name: str) -> None:
        mine: list[int] = []
        try:
            with session_factory() as own_session:
                start.wait()
                while (job := queue.claim(own_session, worker=name)) is not None:
                    mine.append(job.id)
        except BaseException as error:  # surfaced below, in the test's thread
            errors.append(error)
        claims[name] = mine

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    counts = Counter(job_id for mine in claims.values() for job_id in mine)
    assert sorted(counts) == sorted(job.id for job in jobs)
    assert set(counts.values()) == {1}
    session.expire_all()
    rows = session.scalars(select(Generation)).all()
    assert all(row.status == Status.RUNNING and row.attempts == 1 for row in rows)
    assert all(row.id in claims[row.worker or ""] for row in rows)


# --- heartbeat, cancel ------------------------------------------------------------------------


def test_heartbeat_refreshes_a_running_job(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    make_generation(session, owner=make_user(session))
    job = queue.claim(session, worker="w1")
    assert job is not None
    session.execute(update(Generation).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    session.commit()

    assert queue.heartbeat(session, generation_id=job.id, worker="w1")
    session.refresh(job)
    assert job.heartbeat_at is not None and job.heartbeat_at > utcnow() - timedelta(minutes=1)
    assert not queue.heartbeat(session, generation_id=job.id, worker="someone-else")


def test_cancel_a_queued_job(session: Session, make_user: MakeUser, make_generation: MakeGeneration) -> None:
    alice = make_user(session)
    job = make_generation(session, owner=alice)

    cancelled = queue.cancel(session, generation_id=job.id, user=alice)

    assert cancelled.status == Status.CANCELLED and cancelled.finished_at is not None
    assert queue.is_cancelled(session, generation_id=job.id)
    assert queue.claim(session, worker="w1") is None


def test_cancel_a_running_job_stops_its_heartbeat(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    make_generation(session, owner=alice)
    job = queue.claim(session, worker="w1")
    assert job is not None
    assert not queue.is_cancelled(session, generation_id=job.id)

    queue.cancel(session, generation_id=job.id, user=alice)

    assert queue.is_cancelled(session, generation_id=job.id)
    assert not queue.heartbeat(session, generation_id=job.id, worker="w1")


def test_cancel_a_finished_job_is_a_conflict(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    for status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED):
        job = make_generation(session, owner=alice, status=status)
        with pytest.raises(Conflict):
            queue.cancel(session, generation_id=job.id, user=alice)


def test_cancel_another_users_job_is_not_found_but_admins_may(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    admin = make_user(session, "root", role=Role.ADMIN)
    job = make_generation(session, owner=alice)

    with pytest.raises(NotFound):
        queue.cancel(session, generation_id=job.id, user=bob)
    with pytest.raises(NotFound):
        queue.cancel(session, generation_id=999_999, user=alice)

    assert queue.cancel(session, generation_id=job.id, user=admin).status == Status.CANCELLED


# --- complete, fail ---------------------------------------------------------------------------


def test_complete_records_outputs_and_succeeds(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    make_generation(session, owner=alice, n_images=2)
    job = queue.claim(session, worker="w1")
    assert job is not None

    assert queue.complete(session, generation_id=job.id, worker="w1", outputs=_outputs("a" * 64, "b" * 64))

    session.refresh(job)
    assert job.status == Status.SUCCEEDED and job.finished_at is not None
    assert [(image.sha256[0], image.index, image.kind, image.user_id) for image in job.images] == [
        ("a", 0, ImageKind.OUTPUT, alice.id),
        ("b", 1, ImageKind.OUTPUT, alice.id),
    ]


def test_complete_is_idempotent_across_a_rerun(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    make_generation(session, owner=make_user(session))
    job = queue.claim(session, worker="w1")
    assert job is not None
    assert queue.complete(session, generation_id=job.id, worker="w1", outputs=_outputs("a" * 64))
    # The same worker reporting twice changes nothing.
    assert not queue.complete(session, generation_id=job.id, worker="w1", outputs=_outputs("x" * 64))
    assert _output_shas(session, job.id) == ["a" * 64]

    # The job runs again (its first run's worker was presumed dead and it went back to the queue).
    session.execute(update(Generation).where(Generation.id == job.id).values(status=Status.QUEUED, worker=None))
    session.commit()
    rerun = queue.claim(session, worker="w2")
    assert rerun is not None and rerun.id == job.id and rerun.attempts == 2
    assert queue.complete(session, generation_id=job.id, worker="w2", outputs=_outputs("c" * 64))

    assert _output_shas(session, job.id) == ["c" * 64]


def test_complete_after_a_requeue_writes_nothing_for_the_old_worker(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    make_generation(session, owner=make_user(session))
    job = queue.claim(session, worker="w1")
    assert job is not None
    session.execute(update(Generation).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
    session.commit()
    assert queue.requeue_stale(session, stale_after=timedelta(seconds=60), max_attempts=3) == 1
    assert queue.claim(session, worker="w2") is not None

    assert not queue.complete(session, generation_id=job.id, worker="w1", outputs=_outputs("a" * 64))
    assert queue.complete(session, generation_id=job.id, worker="w2", outputs=_outputs("b" * 64))
    assert _output_shas(session, job.id) == ["b" * 64]


def test_complete_after_cancel_writes_nothing(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    make_generation(session, owner=alice)
    job = queue.claim(session, worker="w1")
    assert job is not None
    queue.cancel(session, generation_id=job.id, user=alice)

    assert not queue.complete(session, generation_id=job.id, worker="w1", outputs=_outputs("a" * 64))

    session.refresh(job)
    assert job.status == Status.CANCELLED
    assert _output_shas(session, job.id) == []


def test_fail_records_the_error_only_for_the_running_worker(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    make_generation(session, owner=make_user(session))
    job = queue.claim(session, worker="w1")
    assert job is not None

    queue.fail(session, generation_id=job.id, worker="w2", error="not mine")
    session.refresh(job)
    assert job.status == Status.RUNNING

    queue.fail(session, generation_id=job.id, worker="w1", error="model sd15 is not installed")
    session.refresh(job)
    assert (job.status, job.error) == (Status.FAILED, "model sd15 is not installed")
    assert job.finished_at is not None


# --- requeue ----------------------------------------------------------------------------------


def test_requeue_stale_returns_silent_jobs_to_the_queue(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    make_generation(session, owner=alice)
    make_generation(session, owner=alice)
    silent = queue.claim(session, worker="w1")
    alive = queue.claim(session, worker="w2")
    assert silent is not None and alive is not None
    session.execute(
        update(Generation).where(Generation.id == silent.id).values(heartbeat_at=utcnow() - timedelta(minutes=5))
    )
    session.commit()

    assert queue.requeue_stale(session, stale_after=timedelta(seconds=60), max_attempts=3) == 1

    session.refresh(silent)
    session.refresh(alive)
    assert (silent.status, silent.worker) == (Status.QUEUED, None)
    assert alive.status == Status.RUNNING
    assert not queue.heartbeat(session, generation_id=silent.id, worker="w1")


def test_requeue_stale_fails_a_job_after_max_attempts(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    job = make_generation(session, owner=make_user(session))
    stale = timedelta(seconds=60)
    for attempt in range(1, 4):
        claimed = queue.claim(session, worker=f"w{attempt}")
        assert claimed is not None and claimed.attempts == attempt
        session.execute(update(Generation).values(heartbeat_at=utcnow() - timedelta(minutes=5)))
        session.commit()
        assert queue.requeue_stale(session, stale_after=stale, max_attempts=3) == 1

    session.refresh(job)
    assert job.status == Status.FAILED
    assert job.error is not None and "3 attempts" in job.error
    assert queue.claim(session, worker="w4") is None


def test_requeue_interrupted_returns_this_pools_running_jobs(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    mine = make_generation(session, owner=alice, status=Status.RUNNING, worker="host1:pid7:cpu-0", attempts=1)
    other = make_generation(session, owner=alice, status=Status.RUNNING, worker="host2:pid9:cpu-0", attempts=1)
    done = make_generation(session, owner=alice, status=Status.SUCCEEDED, worker="host1:pid7:cpu-0")

    assert queue.requeue_interrupted(session, worker_prefix="host1:") == 1

    for row in (mine, other, done):
        session.refresh(row)
    assert (mine.status, mine.worker) == (Status.QUEUED, None)
    assert other.status == Status.RUNNING
    assert done.status == Status.SUCCEEDED


def test_requeue_interrupted_treats_the_prefix_literally(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    make_generation(session, owner=make_user(session), status=Status.RUNNING, worker="pool_a-cpu-0")

    assert queue.requeue_interrupted(session, worker_prefix="pool%") == 0
    assert queue.requeue_interrupted(session, worker_prefix="pool_a") == 1


# --- queue position ---------------------------------------------------------------------------


def test_queue_position_follows_the_fair_order(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    a1, a2, a3 = (make_generation(session, owner=alice) for _ in range(3))
    b1 = make_generation(session, owner=bob)

    positions = {job.id: queue.queue_position(session, job) for job in (a1, a2, a3, b1)}
    assert positions == {a1.id: 0, b1.id: 1, a2.id: 2, a3.id: 3}

    claimed = queue.claim(session, worker="w1")
    assert claimed is not None and claimed.id == a1.id
    assert queue.queue_position(session, claimed) is None
    assert queue.queue_position(session, b1) == 0


# --- reading ----------------------------------------------------------------------------------


def test_get_visible_is_for_the_owner_and_admins(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    admin = make_user(session, "root", role=Role.ADMIN)
    job = make_generation(session, owner=alice)

    assert generations.get_visible(session, generation_id=job.id, user=alice).id == job.id
    assert generations.get_visible(session, generation_id=job.id, user=admin).id == job.id
    for viewer in (bob, None):
        with pytest.raises(NotFound):
            generations.get_visible(session, generation_id=job.id, user=viewer)


def test_list_for_user_filters_and_pages_newest_first(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    barn = make_generation(session, owner=alice, prompt="A red BARN at noon")
    sea = make_generation(session, owner=alice, prompt="the sea", mode=Mode.INPAINT, model="sd15")
    barn2 = make_generation(session, owner=alice, prompt="barn in snow", mode=Mode.STYLE)
    make_generation(session, owner=bob, prompt="bob's barn")
    make_generation(session, owner=alice, prompt="100%_literal")

    found, _ = generations.list_for_user(session, user=alice, q="barn")
    assert [g.id for g in found] == [barn2.id, barn.id]
    found, _ = generations.list_for_user(session, user=alice, mode=Mode.INPAINT)
    assert [g.id for g in found] == [sea.id]
    found, _ = generations.list_for_user(session, user=alice, model="sd15")
    assert [g.id for g in found] == [sea.id]
    found, _ = generations.list_for_user(session, user=alice, q="0%_")
    assert [g.prompt for g in found] == ["100%_literal"]
    found, _ = generations.list_for_user(session, user=alice, q="%")
    assert [g.prompt for g in found] == ["100%_literal"]

    pages: list[list[int]] = []
    cursor: int | None = None
    while True:
        page, cursor = generations.list_for_user(session, user=alice, limit=2, cursor=cursor)
        pages.append([g.id for g in page])
        if cursor is None:
            break
    flat = [job_id for page in pages for job_id in page]
    assert [len(page) for page in pages] == [2, 2]
    assert flat == sorted(flat, reverse=True)
    assert len(flat) == 4 and barn.id in flat and sea.id in flat


def test_list_for_user_keeps_the_asked_days_both_included(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session, "alice")
    march = make_generation(session, owner=alice, prompt="march", created_at=datetime(2026, 3, 1, 23, 59))
    april = make_generation(session, owner=alice, prompt="april", created_at=datetime(2026, 4, 2, 0, 0))
    may = make_generation(session, owner=alice, prompt="may", created_at=datetime(2026, 5, 3, 12, 0))

    found, _ = generations.list_for_user(session, user=alice, since=date(2026, 4, 2))
    assert [g.id for g in found] == [may.id, april.id]
    found, _ = generations.list_for_user(session, user=alice, until=date(2026, 3, 1))
    assert [g.id for g in found] == [march.id]
    found, _ = generations.list_for_user(session, user=alice, since=date(2026, 3, 2), until=date(2026, 5, 2))
    assert [g.id for g in found] == [april.id]
