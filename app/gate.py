"""The login gate: with STUDIO_AUTH=required, anonymous requests reach only what a stranger may see.

That is: login, register, share links (``/s/...``), static assets and the health probe. Every
other path answers 401 to the JSON API and redirects a page to ``/login``. The gate only asks
whether the request claims an identity (a session user or a Bearer header); the routes then
check that the identity is real, so a forged or stale claim still ends in 401 or 404 there.
"""

from __future__ import annotations

import json
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PREFIXES = ("/static/", "/s/", "/api/auth/")
OPEN_PATHS = frozenset({"/login", "/register", "/logout", "/healthz", "/favicon.ico"})


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class LoginGateMiddleware:
    """Installed inside SessionMiddleware (it reads ``scope["session"]``), only in required mode."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        session = scope.get("session") or {}
        headers = dict(scope.get("headers", []))
        claims_user = session.get("user_id") is not None or headers.get(b"authorization", b"").lower().startswith(
            b"bearer "
        )
        if claims_user:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path.startswith("/api/") or path in ("/docs", "/openapi.json", "/redoc"):
            body = json.dumps({"detail": "log in to do this"}).encode()
            await _respond(send, 401, body, [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")])
            return
        query = scope.get("query_string", b"").decode("latin-1")
        target = "/login?next=" + quote(path + (f"?{query}" if query else ""), safe="")
        if headers.get(b"hx-request") == b"true":
            # htmx follows HX-Redirect with a full page load instead of swapping the login page in.
            await _respond(send, 401, b"", [(b"hx-redirect", target.encode())])
            return
        await _respond(send, 303, b"", [(b"location", target.encode())])


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
