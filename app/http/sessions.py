"""Login sessions: signing a user in on this browser and out again (the signed session cookie)."""

from __future__ import annotations

from starlette.requests import Request

from app.db.models import User
from app.http.csrf import csrf_token

USER_KEY = "user_id"


def start_session(request: Request, user: User) -> str:
    """Log ``user`` in on this browser: a fresh session (no fixation) with a fresh CSRF token, returned."""
    request.session.clear()
    request.session[USER_KEY] = user.id
    return csrf_token(request)


def end_session(request: Request) -> None:
    """Log out: forget the user and the CSRF token together."""
    request.session.clear()
