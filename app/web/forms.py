"""The studio form: the values it shows, and how its fields become a PromptRequest."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import ValidationError

from app.db.models import Generation
from app.engine.catalog import ModelCatalog, ModelNotFound, ModelSpec
from app.params import SCHEDULER_NAMES, ControlUnit, LoraWeight, Parameters, Region, lora_text
from app.schemas import PromptRequest
from app.services.errors import StudioError

SCHEDULERS: tuple[str, ...] = SCHEDULER_NAMES
# The studio form has a field for each parameter a request takes (app.params.ParameterFields).
FIELDS: tuple[str, ...] = tuple(PromptRequest.model_fields)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        # The LoRAs field reads as A1111 writes LoRAs in a prompt: <lora:name:weight> ...
        return lora_text([LoraWeight.model_validate(item) for item in value])
    return str(value)


def regions_text(regions: list[Region] | None) -> str:
    """The regions field as the region editor reads and writes it: JSON, or empty for none."""
    return json.dumps([region.model_dump(mode="json") for region in regions]) if regions else ""


def control_field(units: list[ControlUnit] | None) -> str:
    """The control field as the ControlNet picker (static/js/control_picker.js) reads and writes it: JSON, or empty."""
    return json.dumps([unit.model_dump(mode="json") for unit in units]) if units else ""


def _default(name: str) -> str:
    field = PromptRequest.model_fields[name]
    return "" if field.is_required() else _as_text(field.get_default(call_default_factory=True))


def default_model_spec(catalog: ModelCatalog, name: str) -> ModelSpec | None:
    """The default model's spec for the studio form; None when it is missing or refused (the form says so)."""
    try:
        return catalog.spec(name)
    except ModelNotFound:
        return None


class StudioForm:
    """What the studio form shows, as text by field name: defaults, a refined generation, or what was typed."""

    def __init__(self, **values: str) -> None:
        unknown = set(values) - set(FIELDS)
        if unknown:
            raise TypeError(f"the studio form has no field {sorted(unknown)[0]!r}")
        self.values: dict[str, str] = {name: _default(name) for name in FIELDS} | values

    def __getattr__(self, name: str) -> str:
        values = self.__dict__.get("values", {})
        if name in values:
            return str(values[name])
        raise AttributeError(name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StudioForm) and self.values == other.values

    def __repr__(self) -> str:
        return f"StudioForm({self.values!r})"

    @classmethod
    def fresh(cls, model: ModelSpec | None) -> StudioForm:
        """The defaults, with the steps and scheduler ``model``'s folder names as its own (as the API applies them)."""
        if model is None or model.default_scheduler is None:
            return cls()
        chosen = {"scheduler": model.default_scheduler}
        if model.default_steps is not None:
            chosen["steps"] = str(model.default_steps)
        return cls(**chosen)

    @classmethod
    def refining(cls, generation: Generation) -> StudioForm:
        """Every parameter of ``generation``, seed included, with it as the parent."""
        recorded = Parameters.of(generation).model_dump(include=set(FIELDS))
        return cls(
            **{name: _as_text(value) for name, value in recorded.items()},
            loras=lora_text(generation.params.loras if generation.params is not None else None),
            regions=regions_text(generation.params.regions if generation.params is not None else None),
            control=control_field(generation.params.control if generation.params is not None else None),
            parent_id=str(generation.id),
        )

    @classmethod
    def submitted(cls, fields: Mapping[str, Any]) -> StudioForm:
        """What the person typed, so a refused form comes back as they left it."""
        return cls(**{name: str(fields[name] or "") for name in FIELDS if name in fields})


class FormError(StudioError):
    """A submitted form that cannot become a job; the message says which field to fix and how.

    ``field`` names the first field at fault, so the page can show the message next to it.
    """

    status_code = 422

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(part) for part in item.get("loc", ()))
        label = PromptRequest.label(field)
        message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
        if not field or message.startswith(field):
            parts.append(message)
        elif item.get("type") == "string_too_short" and field == "prompt":
            parts.append("write a prompt: describe what to paint")
        else:
            parts.append(f"{label}: {message[:1].lower()}{message[1:]}")
    return "; ".join(parts)


def parse_prompt_form(fields: Mapping[str, Any]) -> PromptRequest:
    """The form's fields as a PromptRequest; an empty optional field means its default."""
    values = {name: fields[name] for name in FIELDS if isinstance(fields.get(name), str) and fields[name].strip()}
    try:
        return PromptRequest.model_validate(values)
    except ValidationError as error:
        locations = [item.get("loc", ()) for item in error.errors()]
        field = next((str(loc[0]) for loc in locations if loc and str(loc[0]) in FIELDS), None)
        raise FormError(_describe(error), field=field) from error


async def read_form(request: Request) -> dict[str, Any]:
    """The posted form's text fields (files are not part of the studio form)."""
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


FormFields = Annotated[dict[str, Any], Depends(read_form)]
