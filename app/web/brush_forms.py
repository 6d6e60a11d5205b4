"""The brushes' form fields: style references chosen in the studio and how they become a StyleRequest."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from app.db.models import Image, User
from app.params import parse_row_id
from app.schemas import StyleRequest
from app.services import images
from app.services.errors import NotFound
from app.web.forms import FormError, parse_prompt_form

MAX_REFERENCES = 4  # StyleRequest.style_image_ids takes one to four
DEFAULT_STYLE_STRENGTH = float(StyleRequest.model_fields["style_strength"].default)
STYLE_METHODS = ("shared-attention", "ip-adapter")


@dataclass(frozen=True)
class StyleChip:
    """One chosen reference as the studio shows it: the image and its weight (0 to 2)."""

    image: Image
    weight: float = 1.0


@dataclass(frozen=True)
class StyleFields:
    """The style part of a posted studio form: repeated ids and weights, one strength, one method."""

    image_ids: list[str]
    weights: list[str]
    strength: str
    method: str

    @property
    def present(self) -> bool:
        return any(value.strip() for value in self.image_ids)


def style_fields(form: FormData) -> StyleFields:
    """The style part of a posted form (empty when it has no style references)."""

    def texts(name: str) -> list[str]:
        return [value for value in form.getlist(name) if isinstance(value, str)]

    strength, method = form.get("style_strength"), form.get("style_method")
    return StyleFields(
        image_ids=texts("style_image_id"),
        weights=texts("style_weight"),
        strength=strength if isinstance(strength, str) else "",
        method=method if isinstance(method, str) else "",
    )


async def read_style_fields(request: Request) -> StyleFields:
    return style_fields(await request.form())


StyleFormFields = Annotated[StyleFields, Depends(read_style_fields)]


def visible_references(
    session: Session, *, user: User, image_ids: Sequence[int | str], weights: Sequence[str] = ()
) -> list[StyleChip]:
    """The references ``user`` may see, in order, without repeats; unknown or hidden ids are left out."""
    chips: list[StyleChip] = []
    seen: set[int] = set()
    for position, raw in enumerate(image_ids):
        text = str(raw).strip()
        if len(chips) >= MAX_REFERENCES or not _is_id(text) or int(text) in seen:
            continue
        try:
            image = images.get_visible(session, image_id=int(text), user=user)
        except NotFound:
            continue
        seen.add(image.id)
        chips.append(StyleChip(image=image, weight=_weight(weights[position] if position < len(weights) else "")))
    return chips


def _is_id(text: str) -> bool:
    return parse_row_id(text) is not None


def _weight(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 1.0
    return min(2.0, max(0.0, value)) if value == value else 1.0


def parse_style_form(fields: dict[str, Any], style: StyleFields) -> StyleRequest:
    """The studio form with its references as a StyleRequest; messages name the field to fix."""
    prompt = parse_prompt_form(fields)
    ids = [value.strip() for value in style.image_ids if value.strip()]
    if not ids:
        raise FormError("choose at least one style reference")
    if len(ids) > MAX_REFERENCES:
        raise FormError(f"use at most {MAX_REFERENCES} style references (got {len(ids)})")
    if not all(_is_id(value) for value in ids):
        raise FormError("a style reference is not an image id; remove it and add the image again")
    values: dict[str, Any] = {**prompt.model_dump(exclude_unset=True), "style_image_ids": [int(value) for value in ids]}
    weights = [value.strip() for value in style.weights]
    if weights:
        if len(weights) != len(ids):
            raise FormError(f"{len(weights)} style weights were sent for {len(ids)} style references")
        values["style_weights"] = weights
    if style.strength.strip():
        values["style_strength"] = style.strength.strip()
    if style.method.strip():
        values["style_method"] = style.method.strip()
    try:
        return StyleRequest.model_validate(values)
    except ValidationError as error:
        raise FormError(_describe(error)) from error


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = " ".join(str(part) for part in item.get("loc", ())).replace("_", " ")
        message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(message if not field or message.startswith("style_") else f"{field}: {message}")
    return "; ".join(parts)
