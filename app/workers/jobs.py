"""Jobs: runs one claimed generation through the engine and stores what it paints.

Shared by the embedded pool and the Celery worker. Files are written before rows are committed,
so a row never points at a missing file; a job run twice replaces its own outputs.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PIL import Image as PILImage
from sqlalchemy.orm import Session, sessionmaker

from app.db.models import Generation, Mode, Status
from app.db.models import Image as ImageRow
from app.engine.inpaint import Outpaint
from app.engine.registry import ModelRegistry
from app.engine.runner import Cancelled, GenerationResult, GenerationSpec, InterpolationTarget, StepProgress, run
from app.engine.style import StyleReference
from app.services import generations
from app.services.imageio import to_mask
from app.services.images import load_pil
from app.services.metadata import png_text_chunks
from app.services.storage import ImageStore
from app.workers.events import EventBus

logger = logging.getLogger(__name__)


@dataclass
class JobContext:
    session_factory: sessionmaker[Session]
    registry: ModelRegistry
    store: ImageStore
    bus: EventBus
    heartbeat_seconds: float


def preview_data_url(image: PILImage.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=60)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode()


def _load_image(
    store: ImageStore, session: Session, image_id: int | None, *, rgb: bool = True
) -> PILImage.Image | None:
    if image_id is None:
        return None
    row = session.get(ImageRow, image_id)
    if row is None:
        raise ValueError(f"input image {image_id} no longer exists")
    image = load_pil(store, row)
    return image.convert("RGB") if rgb else image


def spec_for(generation: Generation, session: Session, store: ImageStore) -> GenerationSpec:
    """The engine's view of a generation row: plain values and decoded input images."""
    params = dict(generation.params or {})
    spec = GenerationSpec(
        model=generation.model,
        prompt=generation.prompt,
        negative_prompt=generation.negative_prompt,
        seed=generation.seed,
        steps=generation.steps,
        guidance=generation.guidance,
        width=generation.width,
        height=generation.height,
        n_images=generation.n_images,
        scheduler=generation.scheduler,
        strength=generation.strength,
        extra=params,
    )
    spec.init_image = _load_image(store, session, generation.source_image_id)
    if generation.mode == Mode.INPAINT:
        spec.mode = "inpaint"
        # Kept as stored: a mask's alpha (transparent = keep) counts too.
        mask = _load_image(store, session, generation.mask_image_id, rgb=False)
        spec.mask_image = to_mask(mask) if mask is not None else None
        if spec.mask_image is None and spec.init_image is not None:
            spec.mask_image = PILImage.new("L", spec.init_image.size, 0)
        spec.mask_blur = float(params.get("mask_blur", 4.0))
        if params.get("outpaint"):
            spec.outpaint = Outpaint(**params["outpaint"])
    elif spec.init_image is not None:
        spec.mode = "img2img"
        spec.init_image = spec.init_image.resize((generation.width, generation.height), PILImage.Resampling.LANCZOS)
    if generation.mode == Mode.STYLE:
        weights = list(params.get("style_weights") or [1.0] * len(generation.style_image_ids))
        spec.style_references = [
            StyleReference(image=image, weight=float(weight))
            for image_id, weight in zip(generation.style_image_ids, weights, strict=True)
            if (image := _load_image(store, session, image_id)) is not None
        ]
        spec.style_strength = float(params.get("style_strength", 0.5))
        spec.style_method = str(params.get("style_method", "shared-attention"))
    walk = params.get("interpolate")
    if isinstance(walk, dict):
        # A walk from this row's prompt and seed to another generation's (see services.interpolation).
        spec.interpolate_to = InterpolationTarget(
            prompt=str(walk["prompt_b"]),
            negative_prompt=str(walk.get("negative_prompt_b") or ""),
            seed=int(walk["seed_b"]),
            frames=int(walk.get("frames") or generation.n_images),
        )
    return spec


def _parameters(generation: Generation, seed: int, index: int) -> dict[str, Any]:
    return {
        "generation_id": generation.id,
        "index": index,
        "mode": generation.mode.value,
        "prompt": generation.prompt,
        "negative_prompt": generation.negative_prompt,
        "model": generation.model,
        "scheduler": generation.scheduler,
        "seed": seed,
        "steps": generation.steps,
        "guidance": generation.guidance,
        "width": generation.width,
        "height": generation.height,
        "strength": generation.strength,
        "parent_id": generation.parent_id,
    }


class _Heartbeat:
    """Refreshes the row's heartbeat on its own thread while the engine runs.

    The engine may sit in one long step (or in loading a model) for a while; a separate thread
    keeps the heartbeat fresh meanwhile. When the row is no longer ours (cancelled, or requeued
    by a sweeper), ``stop_requested`` is set and the next step end stops the engine.
    """

    def __init__(self, context: JobContext, generation_id: int, worker: str) -> None:
        self._context = context
        self._generation_id = generation_id
        self._worker = worker
        self._done = threading.Event()
        self.stop_requested = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{generation_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._done.wait(self._context.heartbeat_seconds):
            try:
                with self._context.session_factory() as session:
                    alive = generations.heartbeat(session, generation_id=self._generation_id, worker=self._worker)
            except Exception:  # a transient database error must not kill the job
                logger.exception("heartbeat failed for generation %s", self._generation_id)
                continue
            if not alive:
                self.stop_requested.set()
                return


def execute(context: JobContext, generation_id: int, *, worker: str, device: str) -> Status:
    """Runs a generation this worker has claimed and records the outcome. Never raises."""
    bus = context.bus
    bus.publish(generation_id, "status", {"status": Status.RUNNING.value})
    try:
        with context.session_factory() as session:
            generation = session.get(Generation, generation_id)
            if generation is None:
                return Status.FAILED
            spec = spec_for(generation, session, context.store)
            session.expunge(generation)

        with _Heartbeat(context, generation_id, worker) as heartbeat:
            on_step = _progress_publisher(bus, generation_id, heartbeat.stop_requested.is_set)
            result = run(context.registry, spec, device=device, on_step=on_step)
        outputs = _store_outputs(context, generation, result)
        with context.session_factory() as session:
            kept = generations.complete(session, generation_id=generation_id, worker=worker, outputs=outputs)
        status = Status.SUCCEEDED if kept else _current_status(context, generation_id)
    except Cancelled:
        status = _current_status(context, generation_id)
    except Exception as error:  # the job fails, the worker lives on
        logger.exception("generation %s failed", generation_id)
        message = _describe(error)
        with context.session_factory() as session:
            generations.fail(session, generation_id=generation_id, worker=worker, error=message)
        status = _current_status(context, generation_id)
    bus.publish(generation_id, "status", {"status": status.value})
    return status


def _progress_publisher(bus: EventBus, generation_id: int, stop: Callable[[], bool]) -> Callable[[StepProgress], bool]:
    def on_step(progress: StepProgress) -> bool:
        data: dict[str, Any] = {"step": progress.step, "total": progress.total}
        if progress.preview is not None:
            data["preview"] = preview_data_url(progress.preview)
        bus.publish(generation_id, "progress", data)
        return not stop()

    return on_step


def _store_outputs(
    context: JobContext, generation: Generation, result: GenerationResult
) -> list[generations.OutputImage]:
    outputs = []
    for index, (image, seed) in enumerate(zip(result.images, result.seeds, strict=True)):
        stored = context.store.put_image(image, text_chunks=png_text_chunks(_parameters(generation, seed, index)))
        outputs.append(
            generations.OutputImage(sha256=stored.sha256, width=image.width, height=image.height, index=index)
        )
    return outputs


def _current_status(context: JobContext, generation_id: int) -> Status:
    with context.session_factory() as session:
        generation = session.get(Generation, generation_id)
        return generation.status if generation is not None else Status.FAILED


def _describe(error: Exception) -> str:
    # Shown to the artist: the exception's own words, never a stack trace.
    text = str(error).strip() or error.__class__.__name__
    return text[:500]
