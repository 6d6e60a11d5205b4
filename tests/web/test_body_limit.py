"""A request body over STUDIO_MAX_REQUEST_BYTES answers 413 however it is sent (issue 14, class: oversized bodies).

A body sent in chunks declares no length, so the refusal comes while it is read; FastAPI's body
parser used to catch it and answer 400. The server keeps answering afterwards.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.live_server import free_port, running_studio

LIMIT = 4096


def _chunks(total: int, size: int = 1024) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


@pytest.fixture
def small_client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings.model_copy(update={"max_request_bytes": LIMIT}))) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/generate/prompt", "application/json"),
        ("/api/uploads", "multipart/form-data; boundary=xyz"),
        ("/login", "application/x-www-form-urlencoded"),
        ("/partials/generate", "application/x-www-form-urlencoded"),
    ],
)
def test_a_chunked_body_over_the_limit_answers_413(small_client: TestClient, path: str, content_type: str) -> None:
    """Oversized chunked bodies: 413 with a sentence naming the limit, on JSON, upload and form routes alike."""
    response = small_client.post(path, content=_chunks(LIMIT * 4), headers={"content-type": content_type})

    assert response.status_code == 413, response.text
    assert f"larger than {LIMIT} bytes" in response.json()["detail"]
    assert small_client.get("/healthz").status_code in (200, 503)
    assert small_client.get("/api/models").status_code == 200


def test_a_chunked_body_under_the_limit_is_read(small_client: TestClient) -> None:
    body = b'{"prompt": "a barn", "width": 7}'
    response = small_client.post(
        "/api/generate/prompt", content=iter([body[:10], body[10:]]), headers={"content-type": "application/json"}
    )

    assert response.status_code == 422, response.text
    assert "width" in response.json()["detail"]


def test_a_real_server_refuses_a_chunked_flood_and_keeps_serving(settings: Settings) -> None:
    """Over a socket as an attacker sends it: chunked transfer encoding, no length, far over the limit."""
    live = settings.model_copy(update={"max_request_bytes": LIMIT, "port": free_port(), "host": "127.0.0.1"})
    with running_studio(live) as base:
        address = urlsplit(base)
        with socket.create_connection((address.hostname, address.port), timeout=10) as raw:
            raw.sendall(
                b"POST /api/generate/prompt HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"x" * 1024
            try:
                for _ in range(64):
                    raw.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                raw.sendall(b"0\r\n\r\n")
            except OSError:
                pass  # the server may close the connection once it has answered
            answer = raw.recv(4096)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert httpx.get(f"{base}/api/models", timeout=10).status_code == 200
