"""Request and response models of the JSON API (DESIGN.md section 10)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from app.engine.runner import DEFAULT_SCHEDULER, SCHEDULERS

SchedulerName = Literal["ddim", "euler", "euler-a", "dpm++-2m", "dpm++-2m-karras", "unipc", "pndm", "ddpm"]
assert set(SchedulerName.__args__) == set(SCHEDULERS)  # type: ignore[attr-defined]

MIN_SIDE, MAX_SIDE = 64, 2048
MAX_PIXELS = 2048 * 2048
MAX_PROMPT = 2000


def check_side(name: str, value: int | None) -> int | None:
    if value is not None and (value % 8 or not MIN_SIDE <= value <= MAX_SIDE):
        raise ValueError(f"{name} must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE} (got {value})")
    return value


class GenerateRequest(BaseModel):
    """Fields every generation mode shares."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT)
    negative_prompt: str = Field(default="", max_length=MAX_PROMPT)
    model: str | None = Field(default=None, max_length=128)
    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)
    steps: int = Field(default=20, ge=1, le=150)
    guidance: float = Field(default=7.0, ge=0.0, le=30.0)
    width: int | None = None
    height: int | None = None
    n_images: int = Field(default=1, ge=1, le=8)
    scheduler: SchedulerName = DEFAULT_SCHEDULER  # type: ignore[assignment]
    parent_id: int | None = Field(default=None, ge=1)

    @field_validator("width")
    @classmethod
    def _width(cls, value: int | None) -> int | None:
        return check_side("width", value)

    @field_validator("height")
    @classmethod
    def _height(cls, value: int | None) -> int | None:
        return check_side("height", value)

    @model_validator(mode="after")
    def _pixels(self) -> GenerateRequest:
        if self.width and self.height and self.width * self.height * self.n_images > MAX_PIXELS * 2:
            raise ValueError(
                f"{self.n_images} images of {self.width}x{self.height} are too many pixels for one job; "
                "lower n_images or the size"
            )
        return self


class PromptRequest(GenerateRequest):
    pass


StyleMethod = Literal["shared-attention", "ip-adapter"]


class StyleRequest(GenerateRequest):
    """A prompt painted in the style of one to four reference images, optionally over a content image."""

    style_image_ids: list[int] = Field(min_length=1, max_length=4)
    style_weights: list[float] | None = Field(default=None, max_length=4)
    style_strength: float = Field(default=0.5, ge=0.0, le=1.0)
    style_method: StyleMethod = "shared-attention"
    image_id: int | None = Field(default=None, ge=1, description="content image to repaint in the style")
    strength: float = Field(default=0.6, gt=0.0, le=1.0, description="how much of the content image is repainted")

    @model_validator(mode="after")
    def _weights(self) -> StyleRequest:
        if self.style_weights is not None:
            if len(self.style_weights) != len(self.style_image_ids):
                raise ValueError(
                    f"style_weights has {len(self.style_weights)} values for {len(self.style_image_ids)} style images"
                )
            if any(not 0.0 <= weight <= 2.0 for weight in self.style_weights) or sum(self.style_weights) <= 0:
                raise ValueError("style_weights must be between 0 and 2, and not all 0")
        return self


class OutpaintRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    left: int = Field(default=0, ge=0, le=1024, multiple_of=8)
    right: int = Field(default=0, ge=0, le=1024, multiple_of=8)
    top: int = Field(default=0, ge=0, le=1024, multiple_of=8)
    bottom: int = Field(default=0, ge=0, le=1024, multiple_of=8)


class InpaintRequest(GenerateRequest):
    """Repaint the white part of a mask over an image; ``outpaint`` extends the canvas first."""

    image_id: int = Field(ge=1)
    mask_id: int | None = Field(default=None, ge=1)
    strength: float = Field(default=1.0, gt=0.0, le=1.0)
    mask_blur: float = Field(default=4.0, ge=0.0, le=64.0)
    outpaint: OutpaintRequest | None = None

    @model_validator(mode="after")
    def _mask_or_outpaint(self) -> InpaintRequest:
        extends = self.outpaint is not None and any(
            (self.outpaint.left, self.outpaint.right, self.outpaint.top, self.outpaint.bottom)
        )
        if self.mask_id is None and not extends:
            raise ValueError("give a mask_id, or an outpaint that extends at least one side")
        return self


class GenerationAccepted(BaseModel):
    id: int
    status: str
    url: str
    events_url: str
    notes: list[str] = Field(default_factory=list, description="adjustments made to the request, e.g. a resized mask")


class ImageOut(BaseModel):
    id: int
    url: str
    thumb_url: str
    width: int
    height: int


class GenerationOut(BaseModel):
    id: int
    status: str
    mode: str
    prompt: str
    negative_prompt: str
    model: str
    seed: int
    steps: int
    guidance: float
    width: int
    height: int
    n_images: int
    scheduler: str
    strength: float | None
    parent_id: int | None
    images: list[ImageOut]
    error: str | None
    queue_position: int | None
    estimated_wait_s: float | None = None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class GenerationPage(BaseModel):
    items: list[GenerationOut]
    next_cursor: int | None


class UploadOut(BaseModel):
    id: int
    width: int
    height: int


class ModelOut(BaseModel):
    name: str
    default: bool
    width: int
    height: int
    pipeline: str
    inpainting_unet: bool
    ip_adapter: bool
    description: str


class Health(BaseModel):
    status: str
    database: str
    workers: dict[str, int | None]


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


class VaryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed: int | None = Field(default=None, ge=0, le=2**32 - 1)


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
    extra: dict[str, str | int | float | bool | None] = Field(default_factory=dict)


class InterpolateRequest(BaseModel):
    """A walk from this generation to ``to_id``: ``frames`` images, first and last the two paintings."""

    model_config = ConfigDict(extra="forbid")

    to_id: int = Field(ge=1)
    frames: int = Field(default=8, ge=3, le=16)
