"""Generation parameters: the one description of what a painting is asked with and recorded as.

Every layer reads this module instead of listing parameters itself: the request models
(``app.schemas``) build on ``ParameterFields``; the ``Generation`` row has a column per
``Parameters`` field and keeps the mode-specific ones as ``JobParams`` (typed, stored as JSON);
the worker maps ``Parameters`` onto the engine's spec by name; the PNG chunks, the lineage diff,
the studio form and the API answer all iterate ``Parameters``' fields with their titles.
Adding a parameter means a field here (and a column, with its migration) plus the code that uses it.

Nothing here imports torch, the database or the web framework, so any layer may import it.
"""

from __future__ import annotations

import enum
import json
import re
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

# The engine's scheduler table (app.engine.runner.SCHEDULERS) is checked against these names.
# "lcm" and "tcd" are few-step samplers for distilled models and LoRAs (LCM, TCD, Hyper-SD): 1-8 steps,
# guidance off (0 or 1).
SchedulerName = Literal[
    "ddim", "euler", "euler-a", "dpm++-2m", "dpm++-2m-karras", "unipc", "pndm", "ddpm", "lcm", "tcd"
]
SCHEDULER_NAMES: tuple[str, ...] = SchedulerName.__args__  # type: ignore[attr-defined]
DEFAULT_SCHEDULER: SchedulerName = "dpm++-2m"

MIN_SIDE, MAX_SIDE = 64, 2048
MAX_PIXELS = 2048 * 2048
MAX_PROMPT = 2000
MAX_SEED = 2**32 - 1
# Row ids are 32-bit columns on PostgreSQL: a larger number names no row, and the database
# would refuse it with an error rather than find nothing, so every id a request carries is bounded.
MAX_ID = 2**31 - 1

Prompt = Annotated[str, Field(min_length=1, max_length=MAX_PROMPT, title="prompt")]
NegativePrompt = Annotated[str, Field(max_length=MAX_PROMPT, title="negative prompt")]
ModelName = Annotated[str, Field(max_length=128, title="model")]
Seed = Annotated[int, Field(ge=0, le=MAX_SEED, title="seed")]
Steps = Annotated[int, Field(ge=1, le=150, title="steps")]
Guidance = Annotated[float, Field(ge=0.0, le=30.0, title="guidance")]
ImageCount = Annotated[int, Field(ge=1, le=8, title="number of images")]
Strength = Annotated[float, Field(gt=0.0, le=1.0, title="strength")]
RowId = Annotated[int, Field(ge=1, le=MAX_ID)]
MAX_LORAS = 8
LoraName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[\w\-. /]+$",
        title="LoRA name",
        description="its path under loras/ without .safetensors",
    ),
]
LoraWeightValue = Annotated[float, Field(ge=-2.0, le=2.0, title="LoRA weight")]
UpscalerName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[\w\-. /]+$",
        title="upscaler",
        description="its path under upscalers/ without .safetensors",
    ),
]
"""An id in a path, a query or a body: 1..2^31-1 (FastAPI reads the bounds from this type)."""


def parse_row_id(value: object) -> int | None:
    """A form field's text (``"12"``, ``" #12 "``) as a row id, or None when it names no possible row."""
    text = str(value if value is not None else "").strip().lstrip("#")
    if not (text.isascii() and text.isdigit() and len(text) <= len(str(MAX_ID))):
        return None
    number = int(text)
    return number if 1 <= number <= MAX_ID else None


def check_side(name: str, value: int | None) -> int | None:
    if value is not None and (value % 8 or not MIN_SIDE <= value <= MAX_SIDE):
        raise ValueError(f"{name} must be a multiple of 8 between {MIN_SIDE} and {MAX_SIDE} (got {value})")
    return value


def fit_side(value: int) -> int:
    """A side the pipelines accept: a multiple of 8 within bounds."""
    return max(MIN_SIDE, min(MAX_SIDE, value - value % 8))


class Mode(enum.StrEnum):
    TXT2IMG = "txt2img"
    STYLE = "style"
    INPAINT = "inpaint"


class Action(enum.StrEnum):
    """What kind of step made a generation from its parent."""

    REFINE = "refine"
    VARY = "vary"
    REMIX = "remix"
    INPAINT = "inpaint"
    STYLE = "style"
    INTERPOLATE = "interpolate"
    UPSCALE = "upscale"


StyleMethod = Literal["shared-attention", "ip-adapter"]


class LoraWeight(BaseModel):
    """A LoRA by name at a weight (-2..2; 0 paints as if it were absent)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)

    name: LoraName
    weight: LoraWeightValue = 1.0
    # A1111's short hash of the file when it was asked for (set by the studio, not by a request).
    hash: str | None = Field(default=None, max_length=64, exclude_if=lambda value: value is None)


MAX_REGIONS = 4


class Region(BaseModel):
    """A prompt painted on top of the base prompt inside a box of the canvas (fractions: x0, y0, x1, y1)
    or inside the white part of an uploaded mask image (``mask_id``): exactly one of the two."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)

    prompt: Prompt
    box: tuple[float, float, float, float] | None = Field(
        default=None,
        title="box",
        description="x0, y0, x1, y1 as fractions 0..1",
        exclude_if=lambda value: value is None,
    )
    mask_id: RowId | None = Field(
        default=None,
        title="region mask",
        description="an uploaded image whose white part is the region (as inpaint masks)",
        exclude_if=lambda value: value is None,
    )
    weight: float = Field(default=1.0, gt=0.0, le=4.0, title="region weight")

    @field_validator("box")
    @classmethod
    def _box(cls, box: tuple[float, float, float, float] | None) -> tuple[float, float, float, float] | None:
        if box is None:
            return box
        x0, y0, x1, y1 = box
        if not (0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0):
            raise ValueError(
                f"box must be x0, y0, x1, y1 with 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (got {list(box)})"
            )
        return box

    @model_validator(mode="after")
    def _one_place(self) -> Region:
        if (self.box is None) == (self.mask_id is None):
            given = "both" if self.box is not None else "neither"
            raise ValueError(f"a region takes exactly one of box and mask_id (got {given})")
        return self


def parse_regions_text(text: str) -> Any:
    """A form's regions field (JSON, as the studio's region editor writes it) as request items; blank is none."""
    if not text.strip():
        return []
    try:
        return json.loads(text)
    except ValueError as error:
        raise ValueError(
            'regions must be a JSON list like [{"prompt": "a red boat", "box": [0, 0, 0.5, 1], "weight": 1}]'
        ) from error


def region_text(region: Region) -> str:
    """How a region reads to a person and in a lineage edge: ``"a red boat" in box 0,0,0.5,1 ×1.5``."""
    where = f"mask #{region.mask_id}" if region.box is None else "box " + ",".join(f"{side:g}" for side in region.box)
    weight = f" ×{region.weight:g}" if region.weight != 1.0 else ""
    return f'"{region.prompt}" in {where}{weight}'


MAX_CONTROLS = 3
ControlKind = Literal["canny", "depth", "scribble", "none"]
CONTROL_KINDS: tuple[str, ...] = ControlKind.__args__  # type: ignore[attr-defined]
ControlNetName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=200,
        pattern=r"^[\w\-. ]+$",
        title="ControlNet",
        description="its folder's name under controlnet/",
    ),
]


class ControlUnit(BaseModel):
    """A guide image for a ControlNet: the map of ``kind`` computed from the image guides the painting
    at ``weight`` (0..2) from ``start`` to ``end`` (fractions of the denoising steps)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True)

    image_id: int = Field(ge=1, le=MAX_ID, title="control image")
    kind: ControlKind = Field(default="canny", title="pre-processor")
    model: ControlNetName
    weight: float = Field(default=1.0, ge=0.0, le=2.0, title="ControlNet weight")
    start: float = Field(default=0.0, ge=0.0, le=1.0, title="ControlNet start")
    end: float = Field(default=1.0, ge=0.0, le=1.0, title="ControlNet end")

    @model_validator(mode="after")
    def _span(self) -> ControlUnit:
        if self.end <= self.start:
            raise ValueError(
                f"a ControlNet's end must come after its start (got start {self.start:g}, end {self.end:g})"
            )
        return self


def control_text(units: list[ControlUnit] | None) -> str:
    """How ControlNets read to a person and in a lineage edge: ``canny ControlNet at 1 (0–1) on image #3``."""
    return "; ".join(
        f"{unit.kind} {unit.model} at {unit.weight:g} ({unit.start:g}–{unit.end:g}) on image #{unit.image_id}"
        for unit in units or []
    )


def check_loras(loras: list[LoraWeight]) -> list[LoraWeight]:
    names = [lora.name for lora in loras]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"each LoRA may be asked for once (repeated: {', '.join(repeated)})")
    return loras


_LORA_ITEM = re.compile(r"<lora:([^<>]+)>|([^,<>]+)")


def parse_lora_text(text: str) -> list[dict[str, Any]]:
    """A form's LoRA text (``ink:0.8, other`` or A1111's ``<lora:ink:0.8>``) as request items; weight 1 when absent.

    What is not a number after the last colon stays part of the name, so validation names it.
    """
    items: list[dict[str, Any]] = []
    for match in _LORA_ITEM.finditer(text):
        item = (match.group(1) or match.group(2) or "").strip()
        if not item:
            continue
        name, colon, weight = item.rpartition(":")
        if colon:
            try:
                items.append({"name": name.strip(), "weight": float(weight)})
                continue
            except ValueError:
                pass
        items.append({"name": item, "weight": 1.0})
    return items


def lora_text(loras: list[LoraWeight] | None) -> str:
    """How LoRAs read to a person and in a lineage edge: ``<lora:name:weight>`` each, as A1111 writes them."""
    return " ".join(f"<lora:{lora.name}:{lora.weight:g}>" for lora in loras or [])


# ---------------------------------------------------------------------------------------------
# The parameters every generation has (one column each on the Generation row)


class Parameters(BaseModel):
    """A generation's parameters as recorded; built from a row with ``Parameters.of(row)``.

    Each field's title is how a person reads its name (forms, lineage edges, error messages).
    """

    model_config = ConfigDict(from_attributes=True, frozen=True)

    prompt: str = Field(title="prompt")
    negative_prompt: str = Field(default="", title="negative prompt")
    model: str = Field(title="model")
    scheduler: str = Field(title="scheduler")
    seed: int = Field(title="seed")
    steps: int = Field(title="steps")
    guidance: float = Field(title="guidance")
    width: int = Field(title="width")
    height: int = Field(title="height")
    n_images: int = Field(default=1, title="number of images")
    strength: float | None = Field(default=None, title="strength")

    @classmethod
    def of(cls, source: Any) -> Parameters:
        """The parameters of a row, a request resolved against its model, or anything with these attributes."""
        return cls.model_validate(source, from_attributes=True)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(cls.model_fields)

    @classmethod
    def label(cls, name: str) -> str:
        field = cls.model_fields.get(name)
        return field.title if field is not None and field.title else name.replace("_", " ")


class ParameterFields(BaseModel):
    """The parameters as a request gives them: bounded, and optional where the model has a default.

    The JSON API's request models and the studio form both validate through subclasses of this.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, str_strip_whitespace=True)

    prompt: Prompt
    negative_prompt: NegativePrompt = ""
    model: ModelName | None = None
    seed: Seed | None = None
    steps: Steps = 20
    guidance: Guidance = 7.0
    width: int | None = Field(default=None, title="width")
    height: int | None = Field(default=None, title="height")
    n_images: ImageCount = 1
    scheduler: SchedulerName = DEFAULT_SCHEDULER
    parent_id: int | None = Field(default=None, ge=1, le=MAX_ID, title="refined generation")
    loras: list[LoraWeight] = Field(default_factory=list, max_length=MAX_LORAS, title="LoRAs")
    regions: list[Region] = Field(default_factory=list, max_length=MAX_REGIONS, title="regions")
    control: list[ControlUnit] = Field(default_factory=list, max_length=MAX_CONTROLS, title="ControlNet")

    @field_validator("control", mode="before")
    @classmethod
    def _control_text(cls, value: Any) -> Any:
        # The studio form sends its ControlNet field as JSON text (static/js/control_picker.js); empty is none.
        if not isinstance(value, str):
            return value
        if not value.strip():
            return []
        try:
            return json.loads(value)
        except ValueError as error:
            raise ValueError("control must be a JSON list of ControlNet units") from error

    @field_validator("regions", mode="before")
    @classmethod
    def _regions_text(cls, value: Any) -> Any:
        # The studio form sends its regions field as JSON text, written by its region editor.
        return parse_regions_text(value) if isinstance(value, str) else value

    @field_validator("loras", mode="before")
    @classmethod
    def _lora_text(cls, value: Any) -> Any:
        # The studio form sends its LoRA field as text: "ink:0.8, other" or "<lora:ink:0.8>".
        return parse_lora_text(value) if isinstance(value, str) else value

    @field_validator("loras")
    @classmethod
    def _loras(cls, value: list[LoraWeight]) -> list[LoraWeight]:
        if any(lora.hash is not None for lora in value):
            raise ValueError("a LoRA is asked for by name and weight only; the studio records its hash")
        return check_loras(value)

    @field_validator("width")
    @classmethod
    def _width(cls, value: int | None) -> int | None:
        return check_side("width", value)

    @field_validator("height")
    @classmethod
    def _height(cls, value: int | None) -> int | None:
        return check_side("height", value)

    @model_validator(mode="after")
    def _pixels(self) -> ParameterFields:
        if self.width and self.height and self.width * self.height * self.n_images > MAX_PIXELS * 2:
            raise ValueError(
                f"{self.n_images} images of {self.width}x{self.height} are too many pixels for one job; "
                "lower n_images or the size"
            )
        return self

    @classmethod
    def label(cls, name: str) -> str:
        field = cls.model_fields.get(name)
        return field.title if field is not None and field.title else name.replace("_", " ")


# ---------------------------------------------------------------------------------------------
# What a mode or a step adds (Generation.params, stored as JSON under these exact keys)


class Outpaint(BaseModel):
    """Pixels added on each side of the canvas before inpainting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    left: int = Field(default=0, ge=0, le=1024, multiple_of=8)
    right: int = Field(default=0, ge=0, le=1024, multiple_of=8)
    top: int = Field(default=0, ge=0, le=1024, multiple_of=8)
    bottom: int = Field(default=0, ge=0, le=1024, multiple_of=8)

    @property
    def extends(self) -> bool:
        return any((self.left, self.right, self.top, self.bottom))


class RemixOrigin(BaseModel):
    """Whose generation a remix started from, kept even when the original can't be seen."""

    model_config = ConfigDict(frozen=True)

    generation_id: int
    user_id: int
    username: str | None = None


class InterpolationWalk(BaseModel):
    """Where an interpolation walks to: the end generation's prompt and seed, in ``frames`` frames."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    # Stored as "from", as rows before this model have it.
    start: int = Field(validation_alias=AliasChoices("from", "start"), serialization_alias="from")
    to: int
    frames: int
    prompt_b: str
    negative_prompt_b: str = ""
    seed_b: int


class JobParams(BaseModel):
    """The mode- and step-specific parameters of a generation; absent ones are None.

    Stored in the ``params`` JSON column with these keys (``exclude_none``), so rows written
    before this model existed read back unchanged.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # the kind of step that made it from its parent (see app.services.steps)
    action: Action | None = None
    remix_of: RemixOrigin | None = None
    # style reference
    style_weights: list[float] | None = None
    style_strength: float | None = None
    style_method: StyleMethod | None = None
    # inpaint and outpaint
    mask_blur: float | None = None
    outpaint: Outpaint | None = None
    # interpolation
    interpolate: InterpolationWalk | None = None
    # LoRAs applied for the call, with their files' short hashes
    loras: list[LoraWeight] | None = None
    # regional prompts: a prompt per box on top of the base prompt
    regions: list[Region] | None = None
    # ControlNets: guide images, their pre-processors and the ControlNets that followed them
    control: list[ControlUnit] | None = None
    # upscale: how many times larger than the source image it was painted (image-to-image, tiled VAE)
    upscale_scale: float | None = None
    # upscale: the upscaler network (its name under upscalers/) that enlarged the source; None is Lanczos
    upscaler: str | None = None
    # a cell of a seed grid or prompt matrix
    batch: str | None = None
    batch_kind: str | None = None
    batch_index: int | None = None
    batch_label: str | None = None

    def stored(self) -> dict[str, Any]:
        """The JSON kept in the row."""
        return self.model_dump(mode="json", exclude_none=True, by_alias=True)

    def updated(self, **changes: Any) -> JobParams:
        return self.model_validate({**self.model_dump(exclude_none=True, by_alias=True), **changes})

    def without_step(self) -> JobParams:
        """What a new generation made from this one inherits: not the step's kind or the grid cell."""
        return self.model_copy(
            update={
                "action": None,
                "remix_of": None,
                "batch": None,
                "batch_kind": None,
                "batch_index": None,
                "batch_label": None,
                "upscale_scale": None,
                "upscaler": None,
            }
        )


# ---------------------------------------------------------------------------------------------
# What each mode's request adds to the shared fields


class StyleFields(ParameterFields):
    """A prompt painted in the style of one to four reference images, optionally over a content image."""

    style_image_ids: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=4)
    style_weights: list[float] | None = Field(default=None, max_length=4)
    style_strength: float = Field(default=0.5, ge=0.0, le=1.0)
    style_method: StyleMethod = "shared-attention"
    image_id: int | None = Field(default=None, ge=1, le=MAX_ID, description="content image to repaint in the style")
    strength: float = Field(default=0.6, gt=0.0, le=1.0, description="how much of the content image is repainted")

    @model_validator(mode="after")
    def _weights(self) -> StyleFields:
        if self.style_weights is not None:
            if len(self.style_weights) != len(self.style_image_ids):
                raise ValueError(
                    f"style_weights has {len(self.style_weights)} values for {len(self.style_image_ids)} style images"
                )
            if any(not 0.0 <= weight <= 2.0 for weight in self.style_weights) or sum(self.style_weights) <= 0:
                raise ValueError("style_weights must be between 0 and 2, and not all 0")
        return self


class UpscaleFields(BaseModel):
    """A larger version of one image of a generation: Lanczos-resized, then repainted lightly at the new size."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    image_index: int = Field(default=0, ge=0, le=7, title="image index", description="which image of the generation")
    scale: float = Field(default=2.0, ge=1.25, le=4.0, title="scale")
    strength: float = Field(default=0.3, gt=0.0, le=1.0, title="strength", description="how much is repainted")
    steps: Steps = 20
    upscaler: UpscalerName | None = Field(
        default=None, description="an upscaler network from GET /api/upscalers run before the repaint; none: Lanczos"
    )

    @model_validator(mode="after")
    def _some_step(self) -> UpscaleFields:
        # Image-to-image runs steps x strength denoising steps; none would leave the resize unpainted.
        if int(self.steps * self.strength) < 1:
            raise ValueError(
                f"strength {self.strength:g} of {self.steps} steps paints no step; raise the steps or the strength"
            )
        return self


class InpaintFields(ParameterFields):
    """Repaint the white part of a mask over an image; ``outpaint`` extends the canvas first."""

    image_id: int = Field(ge=1, le=MAX_ID)
    mask_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    strength: float = Field(default=1.0, gt=0.0, le=1.0)
    mask_blur: float = Field(default=4.0, ge=0.0, le=64.0)
    outpaint: Outpaint | None = None

    @model_validator(mode="after")
    def _mask_or_outpaint(self) -> InpaintFields:
        if self.mask_id is None and not (self.outpaint is not None and self.outpaint.extends):
            raise ValueError("give a mask_id, or an outpaint that extends at least one side")
        return self
