"""Provenance through the API: every output signed, POST /api/provenance/check, the check page, shares."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from typing import Any

import c2pa
import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from app.services import provenance

Paint = Callable[..., dict[str, Any]]
Wait = Callable[..., dict[str, Any]]


def image_bytes(client: TestClient, generation: dict[str, Any]) -> bytes:
    [image] = generation["images"]
    response = client.get(image["url"])
    assert response.status_code == 200
    return response.content


def independent_read(data: bytes) -> dict[str, Any]:
    """The active manifest and its state, as c2pa-python's reader sees them with default settings."""
    with c2pa.Reader("image/png", io.BytesIO(data)) as reader:
        store = json.loads(reader.json())
        manifest: dict[str, Any] = store["manifests"][store["active_manifest"]]
        manifest["state"] = reader.get_validation_state()
    return manifest


def check(client: TestClient, data: bytes, name: str = "picture.png", mime: str = "image/png") -> dict[str, Any]:
    response = client.post("/api/provenance/check", files={"file": (name, data, mime)})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def upload(client: TestClient, picture: Image.Image) -> int:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    response = client.post("/api/uploads", files={"file": ("picture.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    image_id: int = response.json()["id"]
    return image_id


def test_a_painting_carries_xmp_and_a_manifest_an_independent_reader_validates(
    client: TestClient, paint_job: Paint
) -> None:
    done = paint_job(client, prompt="a red boat on the left")
    assert done["status"] == "succeeded", done["error"]
    data = image_bytes(client, done)

    with Image.open(io.BytesIO(data)) as opened:
        xmp = opened.info[provenance.XMP_KEY]
        assert opened.info["parameters"].startswith("a red boat on the left")
        assert json.loads(opened.info["studio"])["prompt"] == "a red boat on the left"
    assert re.search(r'DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"', xmp)
    manifest = independent_read(data)
    assert manifest["state"] == "Valid"
    actions = [a for s in manifest["assertions"] if s["label"].startswith("c2pa.actions") for a in s["data"]["actions"]]
    assert [action["action"] for action in actions] == ["c2pa.created"]
    assert actions[0]["softwareAgent"]["model"] == done["model"]

    report = check(client, data)
    assert report["has_manifest"] and report["valid"] and report["ours"]
    assert report["generator"] == "Painting Studio"
    assert report["model"] == done["model"]
    assert report["ingredients"] == []
    assert report["watermark"] is False


def test_an_inpainted_upload_names_its_source_and_mask_and_is_a_composite(client: TestClient, wait_final: Wait) -> None:
    source = Image.fromarray(np.full((64, 64, 3), (200, 40, 40), dtype=np.uint8))
    mask = Image.new("RGB", (64, 64), 0)
    mask.paste((255, 255, 255), (16, 16, 48, 48))
    image_id, mask_id = upload(client, source), upload(client, mask)
    request = {"prompt": "a yellow sun", "image_id": image_id, "mask_id": mask_id, "steps": 2, "scheduler": "ddim"}

    response = client.post("/api/generate/inpaint", json=request)
    assert response.status_code == 202, response.text
    done = wait_final(client, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]

    report = check(client, image_bytes(client, done))
    assert report["valid"] and report["ours"]
    assert report["source_type"] == provenance.COMPOSITE
    assert [(item["role"], item["relationship"]) for item in report["ingredients"]] == [
        ("source", "parentOf"),
        ("mask", "inputTo"),
    ]
    assert f"image {image_id}" in report["ingredients"][0]["title"]


def test_a_re_encoded_or_cropped_painting_is_reported_as_not_validating(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client)
    with Image.open(io.BytesIO(image_bytes(client, done))) as opened:
        opened.load()
        cropped, jpeg = io.BytesIO(), io.BytesIO()
        opened.crop((8, 8, 56, 56)).save(cropped, format="PNG")
        opened.convert("RGB").save(jpeg, format="JPEG", quality=90)

    for data, mime in ((cropped.getvalue(), "image/png"), (jpeg.getvalue(), "image/jpeg")):
        report = check(client, data, mime=mime)
        assert report["valid"] is False
        assert report["ours"] is False
        assert report["has_manifest"] is False


def test_check_refuses_what_is_not_a_picture(client: TestClient) -> None:
    response = client.post("/api/provenance/check", files={"file": ("notes.txt", b"hello", "text/plain")})

    assert response.status_code == 415
    assert "PNG" in response.json()["detail"]


def test_the_shared_painting_downloads_with_its_credentials(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client)
    stored = image_bytes(client, done)
    shared = client.post(f"/api/generations/{done['id']}/share")
    assert shared.status_code == 201, shared.text
    token = shared.json()["token"]
    [image] = done["images"]

    download = client.get(f"/s/{token}/images/{image['id']}")

    assert download.status_code == 200
    assert download.content == stored
    assert check(client, download.content)["ours"]


def test_the_check_page_reads_a_dropped_picture(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client)
    page = client.get("/provenance")
    assert page.status_code == 200
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None

    response = client.post(
        "/provenance",
        data={"csrf_token": token.group(1)},
        files={"file": ("mine.png", image_bytes(client, done), "image/png")},
    )

    assert response.status_code == 200, response.text
    assert "Made by this studio" in response.text
    assert done["model"] in response.text


def test_the_painting_page_shows_its_content_credentials(client: TestClient, wait_final: Wait) -> None:
    source_id = upload(client, Image.new("RGB", (64, 64), (30, 90, 200)))
    request = {"prompt": "a red boat", "image_id": source_id, "outpaint": {"right": 8}, "steps": 2, "scheduler": "ddim"}
    response = client.post("/api/generate/inpaint", json=request)
    assert response.status_code == 202, response.text
    done = wait_final(client, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    [image] = done["images"]

    page = client.get(f"/generations/{done['id']}")
    fragment = client.get(f"/partials/images/{image['id']}/credentials")

    assert page.status_code == 200
    assert "Content Credentials" in page.text
    assert f'hx-get="/partials/images/{image["id"]}/credentials"' in page.text
    assert fragment.status_code == 200
    assert "Signed by this studio" in fragment.text
    assert f"model <strong>{done['model']}</strong>" in fragment.text
    assert f"source: upload (image {source_id})" in fragment.text
    assert "composite" in fragment.text


def test_a_share_page_shows_the_credentials_to_a_visitor(
    client: TestClient, make_client: Callable[..., TestClient], paint_job: Paint
) -> None:
    done = paint_job(client)
    token = client.post(f"/api/generations/{done['id']}/share").json()["token"]
    [image] = done["images"]
    visitor = make_client(auth="required", start_workers=False)

    page = visitor.get(f"/s/{token}")
    fragment = visitor.get(f"/s/{token}/images/{image['id']}/credentials")

    assert page.status_code == 200
    assert f'hx-get="/s/{token}/images/{image["id"]}/credentials"' in page.text
    assert f'href="/s/{token}/images/{image["id"]}" download' in page.text
    assert fragment.status_code == 200
    assert "Signed by this studio" in fragment.text
    assert "a prompt only" in fragment.text
    assert visitor.get(f"/s/not-a-token/images/{image['id']}/credentials").status_code == 404


def test_a_shared_gallery_zip_keeps_each_paintings_credentials(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client)
    [image] = done["images"]
    gallery = client.post("/api/galleries", json={"title": "boats"}).json()["id"]
    assert client.post(f"/api/galleries/{gallery}/items", json={"image_id": image["id"]}).status_code in (200, 201)
    token = client.post(f"/api/galleries/{gallery}/share").json()["token"]

    download = client.get(f"/s/{token}/download")

    assert download.status_code == 200
    with zipfile.ZipFile(io.BytesIO(download.content)) as archive:
        [name] = archive.namelist()
        data = archive.read(name)
    assert data == image_bytes(client, done)
    assert independent_read(data)["state"] == "Valid"


def test_style_over_an_uploaded_content_image_is_a_composite_with_its_references(
    client: TestClient, wait_final: Wait
) -> None:
    reference = upload(client, Image.new("RGB", (64, 64), (220, 120, 30)))
    content = upload(client, Image.new("RGB", (64, 64), (200, 200, 40)))
    request = {
        "prompt": "a lighthouse on a cliff",
        "style_image_ids": [reference],
        "image_id": content,
        "strength": 0.7,
        "steps": 2,
        "scheduler": "ddim",
    }
    response = client.post("/api/generate/style", json=request)
    assert response.status_code == 202, response.text
    done = wait_final(client, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    data = image_bytes(client, done)

    with Image.open(io.BytesIO(data)) as opened:
        assert (
            'DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"'
            in (opened.info[provenance.XMP_KEY])
        )
    manifest = independent_read(data)
    assert manifest["state"] == "Valid"
    assert {(item["description"], item["relationship"]) for item in manifest["ingredients"]} == {
        ("source", "parentOf"),
        ("style", "inputTo"),
    }


def test_an_unlisted_gallery_shows_its_paintings_credentials_by_its_link(client: TestClient, paint_job: Paint) -> None:
    done = paint_job(client)
    [image] = done["images"]
    made = client.post("/api/galleries", json={"title": "boats", "visibility": "unlisted"})
    assert made.status_code == 201, made.text
    gallery = made.json()
    assert client.post(f"/api/galleries/{gallery['id']}/items", json={"image_id": image["id"]}).status_code in (
        200,
        201,
    )

    fragment = client.get(f"{gallery['link']}/images/{image['id']}/credentials")

    assert fragment.status_code == 200, fragment.text
    assert "Signed by this studio" in fragment.text
    assert client.get(f"/g/no-such-slug/images/{image['id']}/credentials").status_code == 404
