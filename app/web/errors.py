"""Refusals in the browser: a domain error on an HTML route as a page, an htmx fragment, or the form again.

app.main sends every ``StudioError`` raised on a page or a form route here (the JSON API answers
``{"detail": ...}`` instead), so no route catches errors to render them:

- an htmx request gets the form-errors fragment, which the studio's htmx config swaps into
  ``#form-errors``: a typo answers 200, a stale form 422 and a quota or rate limit 429 (all
  three are swapped in; see ``in_place_status`` and base.html's htmx-config);
- a form route marked with ``@refused_page(render)`` gets ``render(refusal)``: the form again,
  as it was typed, with the message inline (the studio form without JavaScript, login, register);
- anything else gets the error page, with the signed-in menu.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from app.config import Settings
from app.db.models import User
from app.engine.catalog import ModelCatalog
from app.http.csrf import FormExpired, csrf_token
from app.services.errors import StudioError

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])
# A refused form answered in place (the form again, or its errors swapped in by htmx) is a page
# that works, not a failed request: it answers 200, so browsers log no failed resource for a typo.
# The JSON API and the error page keep the refusal's own status.
ANSWERED_IN_PLACE = 200


def in_place_status(error: StudioError) -> int:
    """What a refused form answers when it is shown again in place.

    A typo (a bad value, an id that names nothing) answers 200, the form with its message; a stale
    or forged form (its CSRF token), a quota or a rate limit keep their own status, since they are
    refusals of the request rather than of what was typed.
    """
    if isinstance(error, FormExpired) or error.status_code == 429:
        return error.status_code
    return ANSWERED_IN_PLACE


_REFUSED_PAGE = "refused_page"


def is_htmx(request: Request) -> bool:
    return request.headers.get("hx-request") == "true"


@dataclass(frozen=True)
class Refusal:
    """A refused form, as its page needs it to render itself again.

    ``session`` is a fresh one: the route's own session closed when the error left the route.
    """

    request: Request
    error: StudioError
    form: FormData
    session: Session
    user: User | None

    @property
    def fields(self) -> dict[str, Any]:
        """The posted text fields (files are left out)."""
        return {name: value for name, value in self.form.items() if isinstance(value, str)}

    @property
    def templates(self) -> Jinja2Templates:
        templates: Jinja2Templates = self.request.app.state.templates
        return templates

    @property
    def settings(self) -> Settings:
        settings: Settings = self.request.app.state.settings
        return settings

    @property
    def catalog(self) -> ModelCatalog:
        catalog: ModelCatalog = self.request.app.state.catalog
        return catalog

    def plain_page(self) -> Response:
        """The error page, for a form that cannot render itself again (nobody is signed in to show it to)."""
        return _plain_page(self.request, self.error)


RefusedPage = Callable[[Refusal], Response]


def refused_page(render: RefusedPage) -> Callable[[Endpoint], Endpoint]:
    """Mark a form route: refused without JavaScript, it answers ``render(refusal)`` instead of the error page."""

    def mark(endpoint: Endpoint) -> Endpoint:
        setattr(endpoint, _REFUSED_PAGE, render)
        return endpoint

    return mark


def _user(request: Request) -> User | None:
    # Set by app.deps.optional_user when the route (or its CSRF check) asked who is signed in.
    user: User | None = getattr(request.state, "user", None)
    return user


async def error_page(request: Request, error: StudioError) -> Response:
    """The answer to a page or form route that raised ``error``."""
    templates: Jinja2Templates = request.app.state.templates
    render: RefusedPage | None = getattr(request.scope.get("endpoint"), _REFUSED_PAGE, None)
    if is_htmx(request):
        # A refused form's fragment goes into #form-errors, answered in place: every reason shows there
        # (an unknown reference image too), while other fragments keep the error's own status.
        return templates.TemplateResponse(
            request,
            "partials/form_errors.html",
            # The field at fault (a FormError's), so the page can show the message next to it.
            {"message": error.message, "field": getattr(error, "field", None)},
            status_code=in_place_status(error) if render is not None else error.status_code,
            headers={"HX-Retarget": "#form-errors", "HX-Reswap": "innerHTML"},
        )
    if render is not None and request.method == "POST":
        form = await request.form()
        return await run_in_threadpool(_render_again, render, request, error, form)
    return _plain_page(request, error)


def _plain_page(request: Request, error: StudioError) -> Response:
    templates: Jinja2Templates = request.app.state.templates
    context = {
        "message": error.message,
        "status_code": error.status_code,
        "user": _user(request),
        "csrf_token": csrf_token(request),
        "active": "",
    }
    return templates.TemplateResponse(request, "pages/error.html", context, status_code=error.status_code)


def _render_again(render: RefusedPage, request: Request, error: StudioError, form: FormData) -> Response:
    with request.app.state.session_factory() as session:
        return render(Refusal(request=request, error=error, form=form, session=session, user=_user(request)))
