"""CSRF: the session's token and whether a request carries it, for HTML forms and the JSON API alike.

A page puts the token in each form (``csrf_token`` field) and in htmx's ``X-CSRF-Token`` header
(``<meta name="csrf-token">``); scripts read it from ``GET /api/auth/csrf``. The dependencies that
apply the policy live in app.deps: ``FormCsrf`` for forms, ``ApiCsrf`` for the JSON API.
"""

from __future__ import annotations

import hmac
import secrets

from starlette.requests import Request

from app.services.errors import StudioError

SESSION_KEY = "csrf_token"
FIELD = "csrf_token"
HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class FormExpired(StudioError):
    """A form posted without this session's token: stale (the session changed) or forged elsewhere."""

    status_code = 422

    def __init__(self) -> None:
        super().__init__("this form has expired; reload the page and submit it again")


def csrf_token(request: Request) -> str:
    """The session's CSRF token, made on first use; pages put it in forms and in htmx headers."""
    token = request.session.get(SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[SESSION_KEY] = token
    return token


def carries_token(request: Request, given: object) -> bool:
    """Whether ``given`` is this session's token; a request without a session has none to match."""
    expected = request.session.get(SESSION_KEY) if "session" in request.scope else None
    return isinstance(expected, str) and isinstance(given, str) and hmac.compare_digest(expected, given)
