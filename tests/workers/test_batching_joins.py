"""Jobs that arrive while a call paints its first steps join it: the call starts again with them, in fair
order, within the window and a bounded number of times; each job keeps its own events, heartbeat, cancel and
outcome."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Generation, Status, User
from app.engine.runner import StepProgress, run
from app.services import queue
from app.workers import batches
from app.workers.batches import JOIN_RESTARTS, join_budget, join_window
from app.workers.jobs import JobContext
from app.workers.pool import WorkerPool
from app.workers.specs import spec_for
from tests.tiny_pipeline import TINY
from tests.workers.test_batching import (
    _events,
    _pixels,
    _wait_for_every_heartbeat,
    _wait_for_final_events,
    _wait_for_progress,
)

MakePool = Callable[..., WorkerPool]
WaitStatus = Callable[..., Generation]
FINAL = {Status.SUCCEEDED, Status.FAILED, Status.CANCELLED}
# What a step hook hears: the seeds of the call's jobs (one for a job painted alone) and the step.
Hook = Callable[[list[int], StepProgress], None]


@dataclass
class Painting:
    """Every call the workers make through ``workers.batches`` (the calls still paint)."""

    shared: list[list[int]] = field(default_factory=list)  # the seeds of each shared call
    looks: int = 0  # claims of companions, at a claim or at a step end
    hook: Hook | None = None  # called at every step end of a call, before any job hears it
    pool: list[WorkerPool] = field(default_factory=list)


@pytest.fixture
def batching_context(job_context: JobContext) -> JobContext:
    return replace(job_context, max_batch=8)


@pytest.fixture
def painting(monkeypatch: pytest.MonkeyPatch) -> Painting:
    seen = Painting()
    real_run, real_batch, real_claim = batches.run, batches.run_batch, batches.claim_companions

    def hooked(seeds: list[int], callback: Any) -> Any:
        def on_step(progress: StepProgress) -> bool:
            if seen.hook is not None:
                seen.hook(seeds, progress)
            return bool(callback(progress))

        return on_step

    def alone(registry: Any, spec: Any, *, on_step: Any, **kwargs: Any) -> Any:
        return real_run(registry, spec, on_step=hooked([spec.seed], on_step), **kwargs)

    def shared(registry: Any, specs: Any, *, on_step: Any, **kwargs: Any) -> Any:
        seeds = [spec.seed for spec in specs]
        seen.shared.append(seeds)
        return real_batch(registry, specs, on_step=[hooked(seeds, on_step[0]), *on_step[1:]], **kwargs)

    def claim(*args: Any, **kwargs: Any) -> Any:
        seen.looks += 1
        return real_claim(*args, **kwargs)

    monkeypatch.setattr(batches, "run", alone)
    monkeypatch.setattr(batches, "run_batch", shared)
    monkeypatch.setattr(batches, "claim_companions", claim)
    return seen


@dataclass
class Scene:
    """A pool that batches, an artist, and the jobs that arrive while a first one is painted."""

    session: Session
    session_factory: sessionmaker[Session]
    make_user: Callable[..., User]
    make_generation: Callable[..., Generation]
    make_pool: MakePool
    context: JobContext
    wait_status: WaitStatus
    painting: Painting
    owner: User
    arrived: list[int] = field(default_factory=list)  # what the step hooks submitted, in order

    def submit(self, owner_id: int, **values: Any) -> int:
        """Enqueues a job as the routes do, from the worker's thread: the row committed, then the pool told."""
        with self.session_factory() as submitting:
            job_id = self.make_generation(submitting, owner=SimpleNamespace(id=owner_id), model=TINY, **values).id
        self.painting.pool[0].notify()
        return int(job_id)

    def start(self, hook: Hook, *, context: JobContext | None = None, owner: User | None = None, **values: Any) -> int:
        """Starts a pool with ``hook`` at every step end, then enqueues the first job; its id."""
        self.painting.hook = hook
        self.painting.pool.append(self.make_pool(context or self.context))
        # Made once the pool runs: the step hook tells that pool of arrivals.
        return int(self.make_generation(self.session, owner=owner or self.owner, model=TINY, **values).id)

    def wait(self, first: int) -> list[Generation]:
        """The first job once it ended, then those that arrived while it was painted (known by then)."""
        done = [self.wait_status(self.session_factory, first, FINAL)]
        return done + [self.wait_status(self.session_factory, job_id, FINAL) for job_id in self.arrived]


@pytest.fixture
def scene(
    session: Session,
    session_factory: sessionmaker[Session],
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
    make_pool: MakePool,
    batching_context: JobContext,
    wait_status: WaitStatus,
    painting: Painting,
) -> Scene:
    return Scene(
        session=session,
        session_factory=session_factory,
        make_user=make_user,
        make_generation=make_generation,
        make_pool=make_pool,
        context=batching_context,
        wait_status=wait_status,
        painting=painting,
        owner=make_user(session),
    )


def _solo_difference(context: JobContext, session_factory: sessionmaker[Session], job: Generation) -> int:
    """The largest difference, in levels of 255, of a job's stored images from the job painted alone."""
    with session_factory() as reading:
        row = reading.get(Generation, job.id)
        assert row is not None
        solo = run(context.registry, spec_for(row, reading, context.store), device="cpu")
    worst = 0
    for image, alone in zip(sorted(job.images, key=lambda image: image.index), solo.images, strict=True):
        painted = _pixels(context.store.read(image.sha256))
        worst = max(worst, int(np.abs(painted - np.asarray(alone.convert("RGB"), dtype=np.int16)).max()))
    return worst


def test_the_window_is_a_quarter_of_the_steps_and_the_restarts_throw_away_at_most_half() -> None:
    assert [join_window(total) for total in (1, 2, 4, 8, 20, 30)] == [1, 1, 1, 2, 5, 7]
    assert [join_budget(total) for total in (1, 2, 4, 8, 20, 30)] == [1, 1, 2, 4, 10, 15]


def test_a_job_arriving_at_the_first_step_of_a_lone_job_joins_its_call_and_each_equals_its_solo_painting(
    scene: Scene,
) -> None:
    owner_id, submit, arrived = scene.owner.id, scene.submit, scene.arrived

    def arrive_at_the_first_step(seeds: list[int], progress: StepProgress) -> None:
        if seeds == [100] and progress.step == 1 and not arrived:
            arrived.append(submit(owner_id, steps=2, seed=200, n_images=2, prompt="a yellow sun over a field"))

    first = scene.start(arrive_at_the_first_step, steps=2, seed=100, prompt="a red boat on a lake")
    done = scene.wait(first)

    assert [job.status for job in done] == [Status.SUCCEEDED] * 2, [job.error for job in done]
    assert scene.painting.shared == [[100, 200]]  # stopped at its first step, painted again with the arrival
    assert [len(job.images) for job in done] == [1, 2]
    _wait_for_final_events(scene.context, [first, *arrived])
    for job in done:
        assert _solo_difference(scene.context, scene.session_factory, job) <= 2
        assert [data["status"] for data in _events(scene.context, job.id, "status")] == ["running", "succeeded"]
        # The first step of the stopped call reached nobody: each job's progress is that of the shared call.
        assert [data["step"] for data in _events(scene.context, job.id, "progress")] == [1, 2]


def test_a_lone_job_that_nothing_joins_asks_the_database_for_companions_only_when_claimed(scene: Scene) -> None:
    job_id = scene.make_generation(scene.session, owner=scene.make_user(scene.session), model=TINY, steps=8, seed=7).id

    scene.painting.pool.append(scene.make_pool(scene.context))
    done = scene.wait_status(scene.session_factory, job_id, FINAL)

    assert done.status == Status.SUCCEEDED
    assert scene.painting.looks == 1  # at its claim; no step end looked, since nothing was enqueued
    assert scene.painting.shared == []
    _wait_for_final_events(scene.context, [job_id])
    assert [data["step"] for data in _events(scene.context, job_id, "progress")] == list(range(1, 9))
    assert _solo_difference(scene.context, scene.session_factory, done) == 0


def test_a_job_arriving_after_the_window_is_painted_after_the_call_not_in_it(scene: Scene) -> None:
    owner_id, submit, arrived = scene.owner.id, scene.submit, scene.arrived
    late = join_window(8) + 1  # step 3 of 8

    def arrive_past_the_window(seeds: list[int], progress: StepProgress) -> None:
        if seeds == [100] and progress.step == late and not arrived:
            arrived.append(submit(owner_id, steps=8, seed=200))

    first = scene.start(arrive_past_the_window, steps=8, seed=100)
    done = scene.wait(first)

    assert [job.status for job in done] == [Status.SUCCEEDED] * 2
    assert scene.painting.shared == []
    assert scene.painting.looks == 2  # one at each job's claim: no step end past the window asks
    _wait_for_final_events(scene.context, [first, *arrived])
    assert [data["step"] for data in _events(scene.context, first, "progress")] == list(range(1, 9))
    assert done[0].finished_at is not None and done[1].claimed_at is not None
    assert done[1].claimed_at >= done[0].finished_at


def test_a_job_that_cannot_share_the_call_does_not_stop_it(scene: Scene) -> None:
    owner_id, submit, arrived = scene.owner.id, scene.submit, scene.arrived

    def another_call_arrives(seeds: list[int], progress: StepProgress) -> None:
        if seeds == [100] and progress.step == 1 and not arrived:
            arrived.append(submit(owner_id, steps=3, seed=200))  # other steps: another call

    first = scene.start(another_call_arrives, steps=4, seed=100)
    done = scene.wait(first)

    assert [job.status for job in done] == [Status.SUCCEEDED] * 2
    assert scene.painting.shared == []
    _wait_for_final_events(scene.context, [first, *arrived])
    # Looked once at the arrival, claimed nothing and went on: no step painted twice.
    assert [data["step"] for data in _events(scene.context, first, "progress")] == [1, 2, 3, 4]
    assert scene.painting.looks == 3


def test_an_arrival_never_skips_a_job_the_fair_order_runs_first(scene: Scene) -> None:
    alice, bob = scene.make_user(scene.session, "alice"), scene.make_user(scene.session, "bob")
    alice_id, bob_id = alice.id, bob.id
    submit, arrived = scene.submit, scene.arrived

    def both_arrive(seeds: list[int], progress: StepProgress) -> None:
        if seeds == [1] and progress.step == 1 and not arrived:
            # Bob was never served, so his job comes first; it cannot share the call, so Alice's
            # second job, which could, must not pass it.
            arrived.append(submit(bob_id, steps=3, seed=2))
            arrived.append(submit(alice_id, steps=4, seed=3))

    first = scene.start(both_arrive, owner=alice, steps=4, seed=1)
    done = {job.id: job for job in scene.wait(first)}

    assert all(job.status == Status.SUCCEEDED for job in done.values())
    assert scene.painting.shared == []
    claimed = sorted(done, key=lambda job_id: (done[job_id].claimed_at, job_id))
    assert claimed == [first, *arrived]


def test_a_burst_arriving_over_several_steps_joins_in_one_restart(scene: Scene) -> None:
    owner_id, submit, arrived = scene.owner.id, scene.submit, scene.arrived

    def one_arrives_at_each_of_the_first_three_steps(seeds: list[int], progress: StepProgress) -> None:
        if seeds == [100] and progress.step <= 3 and len(arrived) < 3:
            arrived.append(submit(owner_id, steps=20, seed=101 + len(arrived)))

    first = scene.start(one_arrives_at_each_of_the_first_three_steps, steps=20, seed=100)
    done = scene.wait(first)

    assert [job.status for job in done] == [Status.SUCCEEDED] * 4
    # Jobs arrived during steps 1 to 3, none during step 4: the claim waited for the burst's end.
    assert scene.painting.shared == [[100, 101, 102, 103]]
    assert scene.painting.looks == 2  # at the claim, and once at step 4
    _wait_for_final_events(scene.context, [first, *arrived])
    assert [data["step"] for data in _events(scene.context, first, "progress")] == [1, 2, 3, *range(1, 21)]


def test_a_call_restarts_at_most_a_few_times(scene: Scene) -> None:
    owner_id, submit, arrived = scene.owner.id, scene.submit, scene.arrived

    def one_arrives_at_the_first_step_of_every_call(seeds: list[int], progress: StepProgress) -> None:
        if 100 in seeds and progress.step == 1 and len(arrived) <= JOIN_RESTARTS:
            arrived.append(submit(owner_id, steps=20, seed=101 + len(arrived)))

    first = scene.start(one_arrives_at_the_first_step_of_every_call, steps=20, seed=100)
    done = scene.wait(first)

    assert [job.status for job in done] == [Status.SUCCEEDED] * (JOIN_RESTARTS + 2)
    # Each call restarted at its second step for the job that arrived at its first, three times;
    # the fourth arrival waited for the call to end and was painted alone.
    assert scene.painting.shared == [[100, 101], [100, 101, 102], [100, 101, 102, 103]]
    _wait_for_final_events(scene.context, [first, *arrived])
    assert [data["step"] for data in _events(scene.context, first, "progress")] == [1, 1, 1, *range(1, 21)]
    for job in done:
        assert _solo_difference(scene.context, scene.session_factory, job) <= 2


def test_a_trickle_of_arrivals_throws_away_at_most_half_of_a_calls_steps(scene: Scene) -> None:
    context = replace(scene.context, max_batch=16)
    owner_id, submit, arrived = scene.owner.id, scene.submit, scene.arrived

    def one_arrives_at_every_step(seeds: list[int], progress: StepProgress) -> None:
        if 100 in seeds and len(arrived) < 12:
            arrived.append(submit(owner_id, steps=20, seed=101 + len(arrived)))

    first = scene.start(one_arrives_at_every_step, context=context, steps=20, seed=100)
    done = scene.wait(first)

    assert [job.status for job in done] == [Status.SUCCEEDED] * 13
    assert (join_window(20), join_budget(20)) == (5, 10)
    # Still arriving at every step: each restart came at the window's last step (5), and after two
    # the call had thrown away 10 of its 20 steps, so it went on to the end; the last two arrivals
    # share the next call.
    assert scene.painting.shared == [list(range(100, 106)), list(range(100, 111)), [111, 112]]


def test_a_member_that_joined_can_be_cancelled_and_the_others_finish(scene: Scene) -> None:
    owner_id, submit, arrived = scene.owner.id, scene.submit, scene.arrived

    def arrive_then_cancel(seeds: list[int], progress: StepProgress) -> None:
        if seeds == [100] and progress.step == 1 and not arrived:
            arrived.append(submit(owner_id, steps=6, seed=200))
        elif seeds == [100, 200] and progress.step == 2:  # the artist cancels it, as the route does
            with scene.session_factory() as cancelling:
                user = cancelling.get(User, owner_id)
                assert user is not None
                cancelled = queue.cancel(cancelling, generation_id=arrived[0], user=user)
            scene.context.bus.publish(arrived[0], "status", {"status": cancelled.status.value})

    first = scene.start(arrive_then_cancel, steps=6, seed=100)
    done = scene.wait(first)

    assert [job.status for job in done] == [Status.SUCCEEDED, Status.CANCELLED]
    assert scene.painting.shared == [[100, 200]]  # the first job was not painted again
    assert [len(job.images) for job in done] == [1, 0]
    _wait_for_final_events(scene.context, [first, *arrived])
    assert [data["step"] for data in _events(scene.context, first, "progress")] == list(range(1, 7))
    assert [data["step"] for data in _events(scene.context, arrived[0], "progress")] == [1]
    assert _solo_difference(scene.context, scene.session_factory, done[0]) <= 2
    stored = {image.sha256 for job in done for image in job.images}
    assert {path.stem for path in scene.context.store.root.glob("??/??/*.png")} == stored


def test_a_job_that_joined_is_beaten_and_a_shutdown_hands_it_back_with_the_others(scene: Scene) -> None:
    owner_id, submit, arrived = scene.owner.id, scene.submit, scene.arrived

    def arrive_at_the_first_step(seeds: list[int], progress: StepProgress) -> None:
        if seeds == [100] and progress.step == 1 and not arrived:
            arrived.append(submit(owner_id, steps=400, seed=200))

    first = scene.start(arrive_at_the_first_step, steps=400, seed=100)
    pool = scene.painting.pool[0]
    _wait_for_progress(scene.context, [first])
    _wait_for_progress(scene.context, arrived)
    job_ids = [first, *arrived]

    _wait_for_every_heartbeat(scene.session_factory, job_ids)

    pool.stop()

    assert scene.painting.shared == [[100, 200]]
    with scene.session_factory() as reading:
        for job_id in job_ids:
            row = reading.get(Generation, job_id)
            assert row is not None
            assert (row.status, row.worker, row.attempts, row.images) == (Status.QUEUED, None, 0, [])
            statuses = [data["status"] for data in _events(scene.context, job_id, "status")]
            assert statuses == ["running", "queued"]
