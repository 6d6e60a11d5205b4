"""The login gate: with STUDIO_AUTH=required, anonymous requests reach only what a stranger may see.

That is: login, register, share links (``/s/...``), static assets and the health probe. A path
naming one resource by its id (``/api/images/7``, ``/galleries/3``) answers 404, exactly as it does
to a signed-in user who may not see it: to a stranger nothing exists, and ids leak nothing. Every
other path answers 401 to the JSON API and redirects a page to ``/login``. The gate only asks
whether the request claims an identity (a session user or a Bearer header); the routes then
check that the identity is real, so a forged or stale claim still ends in 401 or 404 there.
"""

from __future__ import annotations

import json
import re
from html import escape
from urllib.parse import quote

from starlette.types import ASGIApp, Receive, Scope, Send

OPEN_PREFIXES = ("/static/", "/s/", "/api/auth/")
OPEN_PATHS = frozenset({"/login", "/register", "/logout", "/healthz", "/favicon.ico"})
NAMES_A_RESOURCE = re.compile(r"/\d+(/|$)")
NOT_FOUND_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Not found · Painting Studio</title>
<link rel="stylesheet" href="/static/css/studio.css"></head><body><main class="wrap main"><section class="empty-state">
<h1>Nothing here</h1><p class="muted">This page does not exist, or it is not shared with you.</p>
<p><a class="button" href="{login}">Log in</a></p></section></main></body></html>"""


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
        query = scope.get("query_string", b"").decode("latin-1")
        target = "/login?next=" + quote(path + (f"?{query}" if query else ""), safe="")
        if NAMES_A_RESOURCE.search(path):
            if path.startswith("/api/"):
                await _respond(send, 404, b'{"detail": "not found"}', [(b"content-type", b"application/json")])
            else:
                page = NOT_FOUND_PAGE.format(login=escape(target)).encode()
                await _respond(send, 404, page, [(b"content-type", b"text/html; charset=utf-8")])
            return
        if path.startswith("/api/") or path in ("/docs", "/openapi.json", "/redoc"):
            body = json.dumps({"detail": "log in to do this"}).encode()
            await _respond(send, 401, body, [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")])
            return
        if headers.get(b"hx-request") == b"true":
            # htmx follows HX-Redirect with a full page load instead of swapping the login page in.
            await _respond(send, 401, b"", [(b"hx-redirect", target.encode())])
            return
        await _respond(send, 303, b"", [(b"location", target.encode())])


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
