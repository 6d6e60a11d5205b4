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


class GenerationAccepted(BaseModel):
    id: int
    status: str
    url: str
    events_url: str


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
