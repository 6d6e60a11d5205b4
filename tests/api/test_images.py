"""Uploads API: safe decoding of what artists upload, and the bounds on request bodies."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable

from fastapi.testclient import TestClient
from httpx import Response
from PIL import Image


def _png(width: int = 32, height: int = 24) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 200)).save(buffer, format="PNG")
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A valid PNG header declaring a huge canvas, with a few bytes of (tiny) pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def _upload(client: TestClient, data: bytes, name: str = "picture.png", content_type: str = "image/png") -> Response:
    return client.post("/api/uploads", files={"file": (name, data, content_type)})


def test_png_upload_is_accepted_with_its_size(idle_client: TestClient) -> None:
    response = _upload(idle_client, _png(32, 24))

    assert response.status_code == 201
    body = response.json()
    assert body["width"] == 32 and body["height"] == 24
    stored = idle_client.get(f"/api/images/{body['id']}")
    assert stored.status_code == 200
    assert stored.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(stored.content)) as image:
        assert image.size == (32, 24)


def test_a_text_file_named_png_is_unsupported_media(idle_client: TestClient) -> None:
    response = _upload(idle_client, b"just some words, not a picture\n", name="notes.png")

    assert response.status_code == 415
    assert "PNG" in response.json()["detail"]


def test_a_truncated_png_is_refused_as_invalid(idle_client: TestClient) -> None:
    data = _png(64, 64)

    response = _upload(idle_client, data[: len(data) // 2])

    assert response.status_code == 422
    assert "truncated or corrupt" in response.json()["detail"]


def test_a_decompression_bomb_header_is_refused_before_decoding(idle_client: TestClient) -> None:
    response = _upload(idle_client, _bomb_png())

    assert response.status_code == 413
    assert "100000x100000" in response.json()["detail"]
    assert idle_client.get("/healthz").status_code == 200


def test_a_body_over_the_request_limit_is_refused(make_client: Callable[..., TestClient]) -> None:
    client = make_client(start_workers=False, max_request_bytes=4096)

    response = _upload(client, _png(8, 8) + b"\x00" * 8192)

    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_uploads_never_appear_under_the_name_they_were_sent_with(idle_client: TestClient) -> None:
    body = _upload(idle_client, _png(), name="../../etc/passwd.png").json()

    response = idle_client.get(f"/api/images/{body['id']}")

    assert response.status_code == 200
    assert "passwd" not in response.headers.get("content-disposition", "")
