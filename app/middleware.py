"""HTTP guards every request and response passes through: trusted Host names, a bound on request
bodies, security headers."""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Everything the pages use is served from this origin; previews arrive as data: URLs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'self'; frame-ancestors 'none'; form-action 'self'"
)


def host_name(header: str) -> str:
    """The name in a Host header, lowercase, without port or IPv6 brackets (``[::1]:8000`` is ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    if header.count(":") == 1:
        header = header.split(":", 1)[0]
    return header.rstrip(".")


class TrustedHostMiddleware:
    """Answers 400 to a request whose Host header is not an allowed name.

    A page on another origin can point a name of its own at this server (DNS rebinding) and read
    its answers as same-origin; it cannot choose the Host header, which carries its own name.
    """

    def __init__(self, app: ASGIApp, allowed: Sequence[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.names = {name for name in allowed if not name.startswith("*.")}
        self.suffixes = tuple(name[1:] for name in allowed if name.startswith("*."))

    def allows(self, header: str) -> bool:
        name = host_name(header)
        return self.any or name in self.names or (bool(self.suffixes) and name.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any:
            await self.app(scope, receive, send)
            return
        header = next((value.decode("latin-1") for name, value in scope.get("headers", []) if name == b"host"), "")
        if self.allows(header):
            await self.app(scope, receive, send)
            return
        name = host_name(header)[:64]
        detail = f"this studio does not answer to the host name {name!r}; use the address its admin gave you"
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 400,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


class SecureCookiesMiddleware:
    """Marks every cookie ``Secure`` when the studio is public over https or the request came over https.

    A request that reached a TLS-terminating proxy arrives here with scheme https when uvicorn
    trusts that proxy (``--forwarded-allow-ips``); a cookie set on it must never travel in clear.
    """

    def __init__(self, app: ASGIApp, always: bool) -> None:
        self.app = app
        self.always = always

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not (self.always or scope.get("scheme") == "https"):
            await self.app(scope, receive, send)
            return

        async def secure(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    (name, value + b"; secure")
                    if name.lower() == b"set-cookie" and b"; secure" not in value.lower()
                    else (name, value)
                    for name, value in message.get("headers", [])
                ]
            await send(message)

        await self.app(scope, receive, secure)


class BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuses request bodies over ``max_bytes`` with 413, whether or not they declare a length."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        chunked = False
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit():
                declared = int(value)
            elif name == b"transfer-encoding":
                chunked = True
        if declared is not None and declared > self.max_bytes:
            await self._refuse(send)
            return
        if not chunked and not declared:
            # No body (a GET, most requests): nothing to count. HTTP/1.1 frames a body only by
            # Content-Length or Transfer-Encoding, and the server reads no more than declared.
            await self.app(scope, receive, send)
            return
        received = 0
        started = False
        exceeded = False
        replaced = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started, replaced
            if replaced:
                return
            if exceeded and message["type"] == "http.response.start" and not started:
                # The route (or FastAPI's body parser) caught the refusal and answered it as
                # its own error, typically "400 error parsing the body": the answer is 413.
                started = replaced = True
                await self._refuse(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        limit = f"{self.max_bytes // 1024**2} MiB" if self.max_bytes >= 1024**2 else f"{self.max_bytes} bytes"
        body = json.dumps(
            {"detail": f"request body is larger than {limit}: send a smaller image or less text"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})


# Added to every response that does not set its own (the API docs page sets none of them).
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The interactive API docs page is FastAPI's own and loads its scripts inline.
        if scope["type"] != "http" or scope.get("path") in ("/docs", "/redoc"):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                headers.extend((name, value) for name, value in SECURITY_HEADERS if name not in names)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)
