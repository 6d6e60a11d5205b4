"""Login sessions: signing a user in on this browser and out again (the signed session cookie).

The cookie carries the user's id and ``session_version``; every request compares the version with
the row, and logging out bumps it, so a cookie saved before a logout signs nobody in (all of the
account's sessions end together). Logging out also marks the browser as signed out, which keeps
the local mode from acting as its built-in artist until someone logs in again.
"""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request

from app.db.models import User
from app.http.csrf import csrf_token
from app.params import MAX_ID

USER_KEY = "user_id"
VERSION_KEY = "session_version"
SIGNED_OUT_KEY = "signed_out"


def start_session(request: Request, user: User) -> str:
    """Log ``user`` in on this browser: a fresh session (no fixation) with a fresh CSRF token, returned."""
    request.session.clear()
    request.session[USER_KEY] = user.id
    request.session[VERSION_KEY] = user.session_version
    return csrf_token(request)


def session_user(request: Request, session: Session) -> User | None:
    """The user this browser's session signs in, while that session is still current."""
    if "session" not in request.scope:
        return None
    user_id = request.session.get(USER_KEY)
    if user_id is None:
        return None
    user = session.get(User, user_id) if isinstance(user_id, int) and 1 <= user_id <= MAX_ID else None
    # A session from before versions were kept counts as version 0: the first logout ends it too.
    if user is None or request.session.get(VERSION_KEY, 0) != user.session_version:
        # Ended by a logout (here or elsewhere) or the account is gone: forget it, signed out.
        request.session.clear()
        request.session[SIGNED_OUT_KEY] = True
        return None
    return user


def signed_out(request: Request) -> bool:
    """Whether this browser logged out (and has not logged in since)."""
    return "session" in request.scope and bool(request.session.get(SIGNED_OUT_KEY))


def end_session(request: Request, session: Session) -> None:
    """Log out: end every session of the signed-in account, and forget the user and the CSRF token here."""
    user = session_user(request, session)
    if user is not None:
        user.session_version += 1
        session.commit()
    request.session.clear()
    request.session[SIGNED_OUT_KEY] = True
