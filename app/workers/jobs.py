"""Jobs: runs one claimed generation through the engine and stores what it paints.

Shared by the embedded pool and the Celery worker. Files are written before rows are committed,
so a row never points at a missing file; a job run twice replaces its own outputs. A job that
was cancelled (or taken from this worker) writes nothing, and outputs it wrote while a cancel
raced its completion are removed again unless some other row references the same bytes.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db.models import Generation, Status
from app.engine.registry import ModelRegistry
from app.engine.runner import Cancelled, GenerationResult, StepProgress, run
from app.services import attention, cleanup, provenance, queue
from app.services.imageio import encode_png
from app.services.metadata import png_text_chunks
from app.services.storage import ImageStore
from app.workers.events import EventBus
from app.workers.specs import origin_for, png_parameters, spec_for

logger = logging.getLogger(__name__)


@dataclass
class JobContext:
    session_factory: sessionmaker[Session]
    registry: ModelRegistry
    store: ImageStore
    bus: EventBus
    heartbeat_seconds: float
    # Signs each output with Content Credentials; None writes the text chunks only.
    credentials: provenance.Provenance | None = None
    # A watched job's previews: at most one per this many seconds (see _PreviewPacer).
    preview_seconds: float = 1.0
    # Images one call may paint for jobs sharing it (STUDIO_MAX_BATCH; 0: per device, 1: alone).
    max_batch: int = 1


def build_job_context(
    settings: Settings, *, session_factory: sessionmaker[Session], store: ImageStore, bus: EventBus
) -> JobContext:
    """The context a worker runs jobs in, with its own registry of warm pipelines."""
    if settings.device_threads:
        torch.set_num_threads(settings.device_threads)
    return JobContext(
        session_factory=session_factory,
        registry=ModelRegistry(
            settings.models_dir,
            cache_size=settings.pipeline_cache_size,
            low_vram=settings.low_vram,
            compile=settings.compile,
            compile_mode=settings.compile_mode,
        ),
        store=store,
        bus=bus,
        heartbeat_seconds=settings.heartbeat_seconds,
        credentials=provenance.provenance_for(settings),
        preview_seconds=settings.preview_seconds,
        max_batch=settings.max_batch,
    )


def preview_data_url(image: PILImage.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=60)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode()


# The share of a job's time its previews may take: painting one (at small sizes a VAE decode,
# then WebP) costs milliseconds, a whole step of a tiny model, so they are spaced to fit.
PREVIEW_BUDGET = 0.02


class _PreviewPacer:
    """When a watched job's next preview is due.

    The first is due ``seconds`` after the job starts painting (a job that ends sooner shows none:
    its picture comes as soon), each next one ``seconds`` after the last, or later where painting
    the last took more than ``PREVIEW_BUDGET`` of that span.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._due = clock() + seconds

    def due(self) -> bool:
        return self._clock() >= self._due

    def painted(self, started: float) -> None:
        """A preview was painted from ``started`` (this pacer's clock) until now."""
        now = self._clock()
        self._due = now + max(self._seconds, (now - started) / PREVIEW_BUDGET)


class Heartbeats:
    """Refreshes the heartbeat of every job being painted (one, or a batch's members) on one thread.

    The engine may sit in one long step (or in loading a model) for a while; a separate thread
    keeps the heartbeats fresh meanwhile. A job whose row is no longer ours (cancelled, or
    requeued by a sweeper) is marked lost: its step callback then says stop, and it leaves the
    call. A job whose outcome is recorded is no longer beaten. The sets are shared with the
    painting thread under a lock.
    """

    def __init__(self, context: JobContext, job_ids: list[int], worker: str) -> None:
        self._context = context
        self._worker = worker
        self._beating = set(job_ids)
        self._lost: set[int] = set()
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"heartbeat-batch-{min(job_ids, default=0)}", daemon=True
        )

    def __enter__(self) -> Heartbeats:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def lost(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._lost

    def finished(self, job_id: int) -> None:
        with self._lock:
            self._beating.discard(job_id)

    def add(self, job_ids: list[int]) -> None:
        """Beats jobs that joined the call after it started (a batch that grows while it paints)."""
        with self._lock:
            self._beating.update(job_ids)

    def _beat(self) -> None:
        while not self._done.wait(self._context.heartbeat_seconds):
            with self._lock:
                beating = sorted(self._beating)
            if not beating:
                continue
            try:
                with self._context.session_factory() as session:
                    gone = [
                        job_id
                        for job_id in beating
                        if not queue.heartbeat(session, generation_id=job_id, worker=self._worker)
                    ]
            except Exception:  # a transient database error must not kill the batch
                logger.exception("heartbeat failed for generations %s", beating)
                continue
            with self._lock:
                # A member recorded meanwhile is finished, not lost (its row is final, not ours).
                self._lost.update(job_id for job_id in gone if job_id in self._beating)
                self._beating.difference_update(gone)


def execute(
    context: JobContext, generation_id: int, *, worker: str, device: str, stop: threading.Event | None = None
) -> Status | None:
    """Runs a generation this worker has claimed and records the outcome. Never raises.

    ``stop`` is the pool's shutdown signal: the engine stops at its next step end and the job
    goes back to the queue (it did nothing wrong). Returns the job's status as recorded, or None
    when the database could not be read to say (the sweeper settles such a job later).
    """
    bus = context.bus
    bus.publish(generation_id, "status", {"status": Status.RUNNING.value})
    stopping = stop.is_set if stop is not None else lambda: False
    try:
        with context.session_factory() as session:
            generation = session.get(Generation, generation_id)
            if generation is None:
                return Status.FAILED
            spec = spec_for(generation, session, context.store)
            session.expunge(generation)

        with Heartbeats(context, [generation_id], worker) as heartbeats:
            # Cancelled: the route's final status on the bus (heard at the next step, from any
            # process) or the heartbeat finding the row no longer ours.
            def taken() -> bool:
                return heartbeats.lost(generation_id) or bus.ended(generation_id)

            on_step = _progress_publisher(
                bus, generation_id, lambda: taken() or stopping(), preview_seconds=context.preview_seconds
            )
            result = run(context.registry, spec, device=device, on_step=on_step)
        if taken():
            # The last step finished as the cancel landed: the job is not ours to record.
            status = _current_status(context, generation_id)
        else:
            status = keep_outputs(context, generation, result, worker=worker)
    except Cancelled:
        if stopping():
            # Cancelled by shutdown, not by the artist or a sweeper: hand the job back.
            release_job(context, generation_id, worker=worker)
        status = _current_status(context, generation_id)
    except Exception as error:  # the job fails, the worker lives on
        logger.exception("generation %s failed", generation_id)
        status = fail_job(context, generation_id, worker=worker, error=error)
    if status is not None:
        bus.publish(generation_id, "status", {"status": status.value})
    return status


def keep_outputs(
    context: JobContext, generation: Generation, result: GenerationResult, *, worker: str
) -> Status | None:
    """Writes a job's PNGs (and attention maps), then completes its row; the status as recorded.

    Files are written before the row commits, so a row never points at a missing file. A row that
    is no longer ours (cancelled as the last step ended) gets nothing, and the files are removed.
    """
    generation_id = generation.id
    pngs = _output_pngs(context, generation, result)
    outputs = _store_outputs(context, result, pngs)
    # The files are written; a database that fails now must not fail the painting, so the
    # rows are retried like any other outcome (complete() is guarded, so a retry after a
    # commit that did go through finds the job final and writes nothing).
    kept = _record(
        context,
        generation_id,
        "outputs",
        lambda session: queue.complete(session, generation_id=generation_id, worker=worker, outputs=outputs),
    )
    if kept:
        _restore_missing(context, generation, pngs, outputs, result)
        return Status.SUCCEEDED
    _discard(context, generation_id, outputs)
    return _current_status(context, generation_id)


def fail_job(context: JobContext, generation_id: int, *, worker: str, error: Exception) -> Status | None:
    """Records the job as failed with the error in words; the status as recorded."""
    message = _describe(error)
    _record(
        context,
        generation_id,
        "failure",
        lambda session: queue.fail(session, generation_id=generation_id, worker=worker, error=message),
    )
    return _current_status(context, generation_id)


def release_job(context: JobContext, generation_id: int, *, worker: str) -> None:
    """Hands a job this worker stopped (shutting down) back to the queue."""
    _record(
        context,
        generation_id,
        "release",
        lambda session: queue.release(session, generation_id=generation_id, worker=worker),
    )


RECORD_ATTEMPTS = 3
RECORD_BACKOFF_SECONDS = 0.5


def _record(context: JobContext, generation_id: int, what: str, write: Callable[[Session], bool | None]) -> bool:
    """Writes a job's outcome, retrying a failing database a few times.

    True when ``write`` went through and did not say False (a guarded write that found the job
    no longer ours); False otherwise.

    A job whose outcome could not be written stays 'running' with a heartbeat that no longer
    beats, so the sweeper requeues it later: the work repeats, nothing is lost.
    """
    for attempt in range(1, RECORD_ATTEMPTS + 1):
        try:
            with context.session_factory() as session:
                return write(session) is not False
        except Exception:
            logger.exception(
                "recording the %s of generation %s failed (attempt %d of %d)",
                what,
                generation_id,
                attempt,
                RECORD_ATTEMPTS,
            )
            if attempt < RECORD_ATTEMPTS:
                time.sleep(RECORD_BACKOFF_SECONDS * 2 ** (attempt - 1))
    logger.error("gave up recording the %s of generation %s; the sweeper will requeue it", what, generation_id)
    return False


def _progress_publisher(
    bus: EventBus, generation_id: int, stop: Callable[[], bool], *, preview_seconds: float = 1.0
) -> Callable[[StepProgress], bool]:
    """The step callback of one job: its progress on the bus, a preview when watched and due, its cancel.

    A preview the engine offers is painted only while a stream watches the job and the pacer says
    it is due, so a job nobody watches (an API client that polls, a batch) pays nothing for it.
    """
    pacer = _PreviewPacer(preview_seconds)

    def on_step(progress: StepProgress) -> bool:
        if stop():  # no progress after a cancel: the stream has already ended
            return False
        data: dict[str, Any] = {"step": progress.step, "total": progress.total}
        if progress.offers_preview and pacer.due() and bus.watched(generation_id):
            started = time.monotonic()
            preview = progress.preview
            if preview is not None:
                data["preview"] = preview_data_url(preview)
            pacer.painted(started)
        bus.publish(generation_id, "progress", data)
        return not stop()

    return on_step


def _output_pngs(context: JobContext, generation: Generation, result: GenerationResult) -> list[bytes]:
    """Each output's file: its pixels, both text chunks and (when signing) XMP and Content Credentials.

    Encoded once: a signature differs each time, and the store names a file by its bytes.
    """
    origin = None
    if context.credentials is not None:
        with context.session_factory() as session:
            origin = origin_for(generation, session, context.store)
    pngs = []
    for index, (image, seed) in enumerate(zip(result.images, result.seeds, strict=True)):
        chunks = png_text_chunks(png_parameters(generation, seed, index))
        if context.credentials is None or origin is None:
            pngs.append(encode_png(image, chunks))
        else:
            pngs.append(context.credentials.output_png(image, text_chunks=chunks, origin=origin))
    return pngs


def _store_outputs(context: JobContext, result: GenerationResult, pngs: list[bytes]) -> list[queue.OutputImage]:
    outputs = []
    for index, (image, png) in enumerate(zip(result.images, pngs, strict=True)):
        stored = context.store.put_png(png)
        outputs.append(queue.OutputImage(sha256=stored.sha256, width=image.width, height=image.height, index=index))
    _store_attention(context, result, outputs)
    return outputs


def _store_attention(
    context: JobContext, result: GenerationResult, outputs: list[queue.OutputImage], *, only: set[str] | None = None
) -> None:
    """Keeps each output's word maps (or ``only`` those of these files) beside its PNG; a failure
    costs the maps, never the painting."""
    for output, maps in zip(outputs, result.attention, strict=False):
        if maps is None or (only is not None and output.sha256 not in only):
            continue
        try:
            attention.save(
                context.store, output.sha256, text=maps.text, words=maps.words, spans=maps.spans, maps=maps.maps
            )
        except Exception:
            logger.exception("could not keep the attention maps of image %s", output.sha256)


def _discard(context: JobContext, generation_id: int, outputs: list[queue.OutputImage]) -> None:
    """Removes the outputs of a job whose completion was refused (cancelled or requeued meanwhile).

    Only files no row references go: the same bytes may belong to another job. If the database
    cannot say, the files stay for the periodic clean-up.
    """
    try:
        with context.session_factory() as session:
            cleanup.remove_unreferenced(session, context.store, sha256s=[output.sha256 for output in outputs])
    except Exception:
        logger.exception("could not remove the outputs of generation %s; the clean-up will", generation_id)


def _restore_missing(
    context: JobContext,
    generation: Generation,
    pngs: list[bytes],
    outputs: list[queue.OutputImage],
    result: GenerationResult | None = None,
) -> None:
    """Writes the outputs again if a clean-up removed identical bytes between our write and commit.

    A clean-up removes a PNG's attention maps with it (``ImageStore.remove``): they follow the PNG
    back from ``result``, so the painting still answers its words.
    """
    store = context.store
    maps = list(result.attention) if result is not None else []
    lost = [
        index
        for index, output in enumerate(outputs)
        if not store.exists(output.sha256)
        or (index < len(maps) and maps[index] is not None and not store.attention_path(output.sha256).is_file())
    ]
    if not lost:
        return
    logger.warning("outputs of generation %s were removed before their rows committed; rewriting", generation.id)
    for index in lost:
        store.put_png(pngs[index])
    if result is not None:
        _store_attention(context, result, outputs, only={outputs[index].sha256 for index in lost})


def _current_status(context: JobContext, generation_id: int) -> Status | None:
    try:
        with context.session_factory() as session:
            generation = session.get(Generation, generation_id)
            return generation.status if generation is not None else Status.FAILED
    except Exception:  # only used to report: a database error must not escape execute()
        logger.exception("could not read the status of generation %s", generation_id)
        return None


def _describe(error: Exception) -> str:
    # Shown to the artist: the exception's own words, never a stack trace.
    text = str(error).strip() or error.__class__.__name__
    return text[:500]
