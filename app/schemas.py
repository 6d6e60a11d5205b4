"""Request and response models of the JSON API (DESIGN.md section 10)."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    computed_field,
    field_validator,
)

from app.engine.catalog import ModelState
from app.params import (
    MAX_ID,
    MAX_PIXELS,
    MAX_PROMPT,
    MAX_SIDE,
    MIN_SIDE,
    ControlKind,
    ControlUnit,
    InpaintFields,
    LoraWeight,
    Outpaint,
    ParameterFields,
    Parameters,
    Region,
    SchedulerName,
    Seed,
    StyleFields,
    StyleMethod,
    UpscaleFields,
    check_side,
)

__all__ = ["MAX_PIXELS", "MAX_PROMPT", "MAX_SIDE", "MIN_SIDE", "SchedulerName", "StyleMethod", "check_side"]


def _as_utc(value: datetime) -> datetime:
    # The database keeps naive UTC (see app.db.base.utcnow); the API says so with an offset.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_text(value: datetime) -> str:
    """ISO 8601 in UTC with its offset written ``Z``: the form of every datetime the API and exports give."""
    return _as_utc(value).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[datetime, AfterValidator(_as_utc), PlainSerializer(utc_text, return_type=str)]


class GenerateRequest(ParameterFields):
    """Fields every generation mode shares (see ``app.params.ParameterFields``)."""


class PromptRequest(GenerateRequest):
    pass


class StyleRequest(StyleFields):
    """A prompt painted in the style of one to four reference images, optionally over a content image."""


OutpaintRequest = Outpaint


class InpaintRequest(InpaintFields):
    """Repaint the white part of a mask over an image; ``outpaint`` extends the canvas first."""


class GenerationAccepted(BaseModel):
    id: int
    status: str
    url: str
    events_url: str
    notes: list[str] = Field(default_factory=list, description="adjustments made to the request, e.g. a resized mask")


class ImageOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    width: int
    height: int

    @computed_field  # type: ignore[prop-decorator]
    @property
    def url(self) -> str:
        return f"/api/images/{self.id}"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def thumb_url(self) -> str:
        return f"/api/images/{self.id}/thumb"


class GenerationOut(Parameters):
    """A generation as the API answers it: its parameters (``app.params.Parameters``) and its job's state."""

    model_config = ConfigDict(from_attributes=True, frozen=False)

    id: int
    status: str
    mode: str
    parent_id: int | None
    images: list[ImageOut]
    error: str | None
    queue_position: int | None = None
    estimated_wait_s: float | None = None
    loras: list[LoraWeight] = Field(default_factory=list, description="LoRAs it was painted with, and their hashes")
    regions: list[Region] = Field(default_factory=list, description="prompts painted in boxes of the canvas")
    control: list[ControlUnit] = Field(
        default_factory=list, description="guide images and the ControlNets that followed them"
    )
    upscaler: str | None = Field(default=None, description="the upscaler network an upscale step was enlarged by")
    created_at: UtcDatetime
    started_at: UtcDatetime | None
    finished_at: UtcDatetime | None

    @field_validator("status", "mode", mode="before")
    @classmethod
    def _enum_value(cls, value: Any) -> Any:
        return value.value if isinstance(value, enum.Enum) else value


class GenerationPage(BaseModel):
    items: list[GenerationOut]
    next_cursor: int | None


class UploadOut(BaseModel):
    id: int
    width: int
    height: int


class ModelCapabilities(BaseModel):
    """What a model can do through the studio's endpoints (its family's table row and its folder)."""

    txt2img: bool
    img2img: bool
    inpaint: bool
    outpaint: bool
    style_methods: list[str]
    lora: bool
    negative_prompt: bool
    guidance: Literal["cfg", "distilled", "none"]
    guidance_min: float
    guidance_max: float
    guidance_default: float
    schedulers: bool
    weighted_prompts: bool = False
    regional_prompts: bool = False
    controlnet: bool = False
    limits: str


class ModelOut(BaseModel):
    name: str
    default: bool
    # The default size; every side a model paints is a multiple of size_step.
    width: int
    height: int
    size_step: int
    family: str
    family_label: str
    pipeline: str
    inpainting_unet: bool
    ip_adapter: bool
    description: str
    capabilities: ModelCapabilities
    # What this process's worker pool knows of the model; None where no pool runs here (Celery).
    state: ModelState | None = None
    # Warm in this process's worker pool (state "ready"); False where no pool runs here.
    loaded: bool = False


class UpscalerOut(BaseModel):
    """An upscaler network an upscale may name: ``{"upscaler": name}``."""

    name: str
    scale: int | None = Field(description="how many times larger it paints, when the file tells")
    architecture: str | None = Field(description="ESRGAN, Compact (Real-ESRGAN), SPAN, ... when the file tells")
    size: int = Field(description="bytes")


class LoraOut(BaseModel):
    """A LoRA file a request may name: ``loras: [{"name": ..., "weight": ...}]``."""

    name: str
    family: str | None = Field(description="the model family it is for, when the file tells")
    size: int = Field(description="bytes")


class ControlNetOut(BaseModel):
    """A ControlNet folder a request may name: ``control: [{"image_id", "kind", "model": ..., "weight"}]``."""

    name: str
    family: str | None = Field(description="the model family it is for, when its config tells")
    size: int = Field(description="bytes")


class ControlPreviewRequest(BaseModel):
    """An image's control map as a ControlNet would see it, computed before painting."""

    model_config = ConfigDict(extra="forbid")

    image_id: int = Field(ge=1, le=MAX_ID)
    kind: ControlKind = "canny"
    width: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=8)
    height: int | None = Field(default=None, ge=MIN_SIDE, le=MAX_SIDE, multiple_of=8)


class ModelHealth(BaseModel):
    name: str
    state: ModelState
    error: str | None = None


class Health(BaseModel):
    status: Literal["ok", "error"]
    database: str
    workers: dict[str, int | None]
    # The default model, while the embedded pool loads it and after; None without a pool here.
    model: ModelHealth | None = None
    # Why status is "error" (a dead worker thread, an unreachable database); the answer is 503.
    detail: str | None = None


# ---------------------------------------------------------------------------------------------
# Lineage, variations, grids and reading parameters back from a PNG


class PromptSegmentOut(BaseModel):
    op: Literal["equal", "insert", "delete"]
    text: str


class PromptDiffOut(BaseModel):
    added: list[str]
    removed: list[str]
    segments: list[PromptSegmentOut]


class ParameterChangeOut(BaseModel):
    name: str
    label: str
    before: str | int | float | None
    after: str | int | float | None


class EdgeOut(BaseModel):
    """What changed from the parent: the kind of step, the prompt's words, the parameters."""

    action: str
    summary: str
    notes: list[str]
    prompt_diff: PromptDiffOut
    changes: list[ParameterChangeOut]


class LineageNodeOut(BaseModel):
    id: int
    url: str
    page_url: str
    prompt: str
    status: str
    mode: str
    action: str | None
    thumb_url: str | None
    is_focus: bool
    edge: EdgeOut | None
    children: list[LineageNodeOut]


class LineageOut(BaseModel):
    focus_id: int
    root_id: int
    ancestor_ids: list[int]
    node_count: int
    truncated: bool
    attribution: dict[str, int | str | None] | None
    root: LineageNodeOut


class UpscaleRequest(UpscaleFields):
    """POST /api/generations/{id}/upscale: which image, how much larger, how much repainted (see ``app.params``)."""


class VaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: Seed | None = None


class SeedGridRequest(GenerateRequest):
    """One prompt, ``count`` consecutive seeds starting at ``seed`` (random when absent)."""

    count: int = Field(default=4, ge=2, le=16)


class PromptMatrixRequest(GenerateRequest):
    """The prompt once as written and once per alternative for ``replace``, all on one seed."""

    replace: str = Field(min_length=1, max_length=200)
    alternatives: list[str] = Field(min_length=1, max_length=15)


class BatchAccepted(BaseModel):
    batch: str
    ids: list[int]
    url: str


class ParametersOut(BaseModel):
    """Parameters read from a PNG: ``source`` says whose chunk they came from."""

    source: Literal["studio", "a1111", "none"]
    prompt: str | None = None
    negative_prompt: str | None = None
    model: str | None = None
    seed: int | None = None
    steps: int | None = None
    guidance: float | None = None
    width: int | None = None
    height: int | None = None
    scheduler: str | None = None
    sampler: str | None = None
    regions: list[Region] = Field(default_factory=list, description="regional prompts, where the PNG records them")
    extra: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class InterpolateRequest(BaseModel):
    """A walk from this generation to ``to_id``: ``frames`` images, first and last the two paintings."""

    model_config = ConfigDict(extra="forbid")

    to_id: int = Field(ge=1, le=MAX_ID)
    frames: int = Field(default=8, ge=3, le=16)


class WordAttentionOut(BaseModel):
    """Where one word of the prompt landed (see app.services.attention for the definitions)."""

    word: str
    index: int = Field(description="the word's place among the prompt's words, from 0")
    coverage: float = Field(description="share of the image where the word's normalised map is at least 0.5")
    peak: tuple[float, float] = Field(description="[x, y] of the map's strongest cell, as fractions from the top left")
    strength: float = Field(description="the map's largest normalised value: 1 for the prompt's most placed word")
    weak: bool = Field(description="a content word whose coverage is under a quarter of the best content word's")
    map_url: str = Field(description="the word's heat map: an RGBA PNG at the image's size to lay over it")


class AttentionOut(BaseModel):
    """The words of an image's prompt and where each landed; ``available`` false with the ``reason``."""

    image_id: int
    available: bool
    reason: str | None = None
    prompt: str
    words: list[WordAttentionOut]


class AttentionRefineRequest(BaseModel):
    """Refine a painting from its attention maps: the words (by index; default: the weak ones)
    weighted up as ``(word:1.3)``, or moved to the front of the prompt."""

    model_config = ConfigDict(extra="forbid")

    how: Literal["weight", "earlier"]
    words: list[Annotated[int, Field(ge=0, le=255)]] | None = Field(default=None, min_length=1, max_length=32)
