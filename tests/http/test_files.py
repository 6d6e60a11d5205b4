"""Stored pictures as responses: small files whole with their SHA-256 as ETag, large ones streamed."""

from __future__ import annotations

import hashlib
import io

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image

from app.db.models import Image as StoredImage
from app.http import files


def _uploaded(client: TestClient) -> tuple[int, bytes]:
    """An uploaded picture's id and the bytes the store keeps for it."""
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 90, 20)).save(buffer, format="PNG")
    response = client.post("/api/uploads", files={"file": ("picture.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201
    image_id: int = response.json()["id"]
    state = client.app.state  # type: ignore[attr-defined]
    with state.session_factory() as session:
        sha256 = session.get(StoredImage, image_id).sha256
    return image_id, state.store.read(sha256)


def client_png(client: TestClient, image_id: int) -> bytes:
    return client.get(f"/api/images/{image_id}").content


def test_a_stored_png_comes_whole_with_its_sha256_as_etag(client: TestClient) -> None:
    image_id, stored = _uploaded(client)

    response = client.get(f"/api/images/{image_id}")

    assert response.status_code == 200
    assert response.content == stored
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-length"] == str(len(stored))
    assert response.headers["etag"] == f'"{hashlib.sha256(stored).hexdigest()}"'
    assert "immutable" in response.headers["cache-control"]
    assert response.headers["content-disposition"] == "inline"


def test_a_thumbnail_comes_as_webp(client: TestClient) -> None:
    image_id, _ = _uploaded(client)

    response = client.get(f"/api/images/{image_id}/thumb")

    assert response.status_code == 200
    assert response.headers["content-type"] == "image/webp"
    # Made from the PNG, not the PNG: its name as a weak validator, never the PNG's strong one.
    assert response.headers["etag"] == f'W/"{hashlib.sha256(client_png(client, image_id)).hexdigest()}"'
    with Image.open(io.BytesIO(response.content)) as thumbnail:
        assert thumbnail.format == "WEBP" and thumbnail.size == (40, 30)


def test_a_file_past_the_whole_file_bound_streams_the_same_bytes(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    image_id, stored = _uploaded(client)
    monkeypatch.setattr(files, "WHOLE_FILE_BYTES", 16)

    response = client.get(f"/api/images/{image_id}")

    assert response.status_code == 200
    assert response.content == stored
    assert "immutable" in response.headers["cache-control"]
    # Starlette's own validator, not the SHA-256: the file was streamed, not read here.
    assert response.headers["etag"] != f'"{hashlib.sha256(stored).hexdigest()}"'


def test_every_request_hands_its_connection_back_to_the_pool(client: TestClient, app: FastAPI) -> None:
    image_id, _ = _uploaded(client)  # a route that commits last
    pool = app.state.session_factory.kw["bind"].pool

    for path in (f"/api/images/{image_id}", "/api/generations", "/api/auth/me"):
        assert client.get(path).status_code == 200
        assert pool.checkedout() == 0, path
