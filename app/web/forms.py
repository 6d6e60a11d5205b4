"""The studio form: the values it shows, how its fields become a PromptRequest, and its CSRF token."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Annotated, Any, get_args

from fastapi import Depends, Request
from pydantic import ValidationError

from app.db.models import Generation
from app.schemas import PromptRequest, SchedulerName
from app.services.errors import StudioError

SCHEDULERS: tuple[str, ...] = get_args(SchedulerName)
FIELDS = (
    "prompt",
    "negative_prompt",
    "model",
    "seed",
    "steps",
    "guidance",
    "width",
    "height",
    "n_images",
    "scheduler",
    "parent_id",
)
LABELS = {"n_images": "number of images", "negative_prompt": "negative prompt", "parent_id": "refined generation"}
CSRF_SESSION_KEY = "csrf_token"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"


def _default(name: str) -> str:
    value = PromptRequest.model_fields[name].default
    return "" if value is None else str(value)


@dataclass
class StudioForm:
    """What the studio form shows, as text: defaults, a refined generation, or what was typed."""

    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""
    seed: str = ""
    steps: str = _default("steps")
    guidance: str = _default("guidance")
    width: str = ""
    height: str = ""
    n_images: str = _default("n_images")
    scheduler: str = _default("scheduler")
    parent_id: str = ""

    @classmethod
    def refining(cls, generation: Generation) -> StudioForm:
        """Every parameter of ``generation``, seed included, with it as the parent."""
        return cls(
            prompt=generation.prompt,
            negative_prompt=generation.negative_prompt,
            model=generation.model,
            seed=str(generation.seed),
            steps=str(generation.steps),
            guidance=f"{generation.guidance:g}",
            width=str(generation.width),
            height=str(generation.height),
            n_images=str(generation.n_images),
            scheduler=generation.scheduler,
            parent_id=str(generation.id),
        )

    @classmethod
    def submitted(cls, fields: Mapping[str, Any]) -> StudioForm:
        """What the person typed, so a refused form comes back as they left it."""
        defaults = asdict(cls())
        return cls(**{name: str(fields.get(name, defaults[name]) or "") for name in FIELDS})


class FormError(StudioError):
    """A submitted form that cannot become a job; the message says which field to fix and how."""

    status_code = 422


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        field = ".".join(str(part) for part in item.get("loc", ()))
        label = LABELS.get(field, field)
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
        raise FormError(_describe(error)) from error


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use; pages put it in forms and in htmx headers."""
    token = request.session.get(CSRF_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[CSRF_SESSION_KEY] = token
    return token


def check_csrf(request: Request, fields: Mapping[str, Any]) -> None:
    """Refuse a form post whose token (field or header) is not this session's.

    The session cookie is SameSite=Lax, so a cross-site form post arrives without it and has no
    token to match; this also covers the local mode, where a request without a session acts as
    the local artist.
    """
    expected = request.session.get(CSRF_SESSION_KEY)
    given = request.headers.get(CSRF_HEADER) or fields.get(CSRF_FIELD)
    if not isinstance(expected, str) or not isinstance(given, str) or not hmac.compare_digest(expected, given):
        raise FormError("this form has expired; reload the page and submit it again")


async def read_form(request: Request) -> dict[str, Any]:
    """The posted form's text fields (files are not part of the studio form)."""
    form = await request.form()
    return {name: value for name, value in form.items() if isinstance(value, str)}


FormFields = Annotated[dict[str, Any], Depends(read_form)]
