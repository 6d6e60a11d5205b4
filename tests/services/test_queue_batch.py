"""Claiming a batch: a claimed job's companions are the jobs the fair order runs next, while they share its call."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Generation, Image, ImageKind, Mode, Status, User
from app.params import LoraWeight, Region
from app.services import queue
from app.services.batching import batch_key, claim_companions

MakeUser = Callable[..., User]
MakeGeneration = Callable[..., Generation]


def _claim_batch(session: Session, *, worker: str = "w1", images: int = 8) -> list[int]:
    head = queue.claim(session, worker=worker)
    if head is None:
        return []
    companions = claim_companions(session, head=head, worker=worker, images=images)
    return [head.id, *(job.id for job in companions)]


def _queued_ids(session: Session) -> set[int]:
    session.expire_all()
    return set(session.scalars(select(Generation.id).where(Generation.status == Status.QUEUED)))


def test_a_batch_is_exactly_what_claims_one_by_one_would_take(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob, carol = make_user(session, "alice"), make_user(session, "bob"), make_user(session, "carol")
    for index in range(9):
        make_generation(session, owner=(alice, bob, alice, carol, alice, bob)[index % 6], priority=index % 2)

    one_by_one = []
    while (job := queue.claim(session, worker="w1")) is not None:
        one_by_one.append(job.id)
    # The same queue again, as it was before any claim.
    session.execute(update(Generation).values(status=Status.QUEUED, worker=None, claimed_at=None, attempts=0))
    session.commit()

    batches = [_claim_batch(session, images=4) for _ in range(3)]

    assert [job_id for batch in batches for job_id in batch] == one_by_one
    assert [len(batch) for batch in batches] == [4, 4, 1]


def test_users_alternate_inside_a_batch_as_they_do_between_claims(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    a1, a2, a3 = (make_generation(session, owner=alice, seed=seed) for seed in (1, 2, 3))
    b1, b2 = (make_generation(session, owner=bob, prompt="a green tree", seed=seed) for seed in (4, 5))

    assert _claim_batch(session) == [a1.id, b1.id, a2.id, b2.id, a3.id]


def test_a_batch_stops_at_another_users_job_that_cannot_share_the_call(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice, bob = make_user(session, "alice"), make_user(session, "bob")
    a1 = make_generation(session, owner=alice)
    make_generation(session, owner=alice)
    b1 = make_generation(session, owner=bob, steps=3)  # another call, next in the fair order after a1

    assert _claim_batch(session) == [a1.id]
    # Bob's job is next: the batch took nothing the fair order put behind it.
    assert _claim_batch(session, worker="w2")[0] == b1.id


def test_a_batch_stops_at_the_owners_own_job_that_cannot_share_the_call(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    a1 = make_generation(session, owner=alice)
    a2 = make_generation(session, owner=alice, width=72)
    a3 = make_generation(session, owner=alice)

    assert _claim_batch(session) == [a1.id]
    assert _queued_ids(session) == {a2.id, a3.id}


def test_a_batch_holds_at_most_the_bound_in_images_and_stops_at_a_job_that_does_not_fit(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    three = [make_generation(session, owner=alice, n_images=3) for _ in range(3)]
    single = make_generation(session, owner=alice)

    assert _claim_batch(session, images=8) == [three[0].id, three[1].id]
    assert _queued_ids(session) == {three[2].id, single.id}
    assert _claim_batch(session, images=1) == [three[2].id]


def test_a_bound_of_one_image_claims_no_companions(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    first = make_generation(session, owner=alice)
    make_generation(session, owner=alice)

    assert _claim_batch(session, images=1) == [first.id]


def test_companions_are_claimed_like_any_job(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    make_generation(session, owner=alice)
    companion = make_generation(session, owner=alice, prompt="another prompt", negative_prompt="", seed=99)

    _claim_batch(session, worker="cpu-0")

    session.expire_all()
    row = session.get(Generation, companion.id)
    assert row is not None
    assert (row.status, row.worker, row.attempts) == (Status.RUNNING, "cpu-0", 1)
    assert row.claimed_at is not None and row.started_at is not None and row.heartbeat_at is not None


def test_claim_next_if_leaves_a_refused_job_and_everything_behind_it_queued(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    first, second = make_generation(session, owner=alice), make_generation(session, owner=alice)

    assert queue.claim_next_if(session, worker="w1", accept=lambda job: job.id == second.id) is None
    assert _queued_ids(session) == {first.id, second.id}
    claimed = queue.claim_next_if(session, worker="w1", accept=lambda job: job.id == first.id)
    assert claimed is not None and claimed.id == first.id and claimed.status == Status.RUNNING
    assert queue.claim_next_if(session, worker="w1", accept=lambda job: True) is not None
    assert queue.claim_next_if(session, worker="w1", accept=lambda job: True) is None


def test_batch_key_lets_prompts_seeds_and_counts_differ_but_nothing_the_call_carries(
    session: Session, make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    alice = make_user(session)
    upload = Image(sha256="0" * 64, width=64, height=64, format="png", kind=ImageKind.UPLOAD, user_id=alice.id)
    session.add(upload)
    session.commit()
    base = make_generation(session, owner=alice, negative_prompt="blurry")
    same = [
        make_generation(session, owner=alice, prompt="a cat", negative_prompt="dark", seed=5, n_images=3),
        make_generation(session, owner=alice, negative_prompt="x", params={"batch": "grid1", "batch_index": 2}),
        make_generation(session, owner=alice, negative_prompt="x", params={"action": "vary"}),
    ]
    other_calls = [
        make_generation(session, owner=alice, negative_prompt="x", model="sd15"),
        make_generation(session, owner=alice, negative_prompt="x", steps=3),
        make_generation(session, owner=alice, negative_prompt="x", height=72),
        make_generation(session, owner=alice, negative_prompt="x", guidance=6.5),
        make_generation(session, owner=alice, negative_prompt="x", scheduler="euler"),
        make_generation(session, owner=alice, negative_prompt=""),
        make_generation(
            session, owner=alice, negative_prompt="x", params={"loras": [LoraWeight(name="ink").model_dump()]}
        ),
        make_generation(session, owner=alice, negative_prompt="x", source_image_id=upload.id, strength=0.5),
    ]
    alone = [
        make_generation(session, owner=alice, mode=Mode.STYLE, style_image_ids=[upload.id]),
        make_generation(session, owner=alice, mode=Mode.INPAINT, source_image_id=upload.id, mask_image_id=upload.id),
        make_generation(
            session,
            owner=alice,
            params={"regions": [Region(prompt="sun", box=(0.0, 0.0, 0.5, 0.5)).model_dump()]},
        ),
        make_generation(session, owner=alice, source_image_id=upload.id, params={"upscale_scale": 2.0}),
        make_generation(
            session, owner=alice, params={"control": [{"image_id": upload.id, "kind": "canny", "model": "canny"}]}
        ),
    ]

    assert batch_key(base) is not None
    assert all(batch_key(job) == batch_key(base) for job in same)
    assert all(batch_key(job) not in (None, batch_key(base)) for job in other_calls)
    assert all(batch_key(job) is None for job in alone)
    repaint = make_generation(session, owner=alice, negative_prompt="x", source_image_id=upload.id, strength=0.5)
    assert batch_key(repaint) == batch_key(other_calls[-1])


def test_concurrent_workers_claiming_batches_claim_every_job_exactly_once(
    session: Session, session_factory: sessionmaker[Session], make_user: MakeUser, make_generation: MakeGeneration
) -> None:
    users = [make_user(session) for _ in range(4)]
    jobs = [make_generation(session, owner=users[index % 4], steps=2 + index % 2) for index in range(48)]
    claims: dict[str, list[list[int]]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def work(name: str) -> None:
        mine: list[list[int]] = []
        try:
            with session_factory() as own_session:
                start.wait()
                while batch := _claim_batch(own_session, worker=name, images=4):
                    mine.append(batch)
        except BaseException as error:  # surfaced below, in the test's thread
            errors.append(error)
        claims[name] = mine

    threads = [threading.Thread(target=work, args=(f"w{index}",)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert not errors, errors
    counts = Counter(job_id for batches in claims.values() for batch in batches for job_id in batch)
    assert sorted(counts) == sorted(job.id for job in jobs)
    assert set(counts.values()) == {1}
    session.expire_all()
    rows = {row.id: row for row in session.scalars(select(Generation))}
    for name, batches in claims.items():
        for batch in batches:
            assert all(rows[job_id].worker == name and rows[job_id].attempts == 1 for job_id in batch)
            assert len({batch_key(rows[job_id]) for job_id in batch}) == 1
