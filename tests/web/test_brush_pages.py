"""The other brushes' pages: the inpainting mask editor, style chips in the studio, style jobs from the form."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient
from PIL import Image as PILImage
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Generation, Image, ImageKind, Mode, Status, User
from app.services import users

HTMX = {"HX-Request": "true"}
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\ssrc=)[^>]*>", re.IGNORECASE)


def local_artist(app: FastAPI) -> User:
    with app.state.session_factory() as session:
        user = users.ensure_local_user(session)
        session.expunge(user)
        return user


def upload(
    client: TestClient,
    width: int = 64,
    height: int = 48,
    colour: tuple[int, int, int] = (200, 60, 40),
    *,
    csrf: str | None = None,
) -> int:
    """An uploaded PNG's id; a signed-in session sends its CSRF token, as the pages' scripts do."""
    buffer = io.BytesIO()
    PILImage.new("RGB", (width, height), colour).save(buffer, format="PNG")
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    response = client.post(
        "/api/uploads", files={"file": ("picture.png", buffer.getvalue(), "image/png")}, headers=headers
    )
    assert response.status_code == 201, response.text
    image_id: int = response.json()["id"]
    return image_id


def page_csrf(client: TestClient) -> str:
    """The token a page hands its scripts in ``<meta name="csrf-token">``."""
    match = re.search(r'<meta name="csrf-token" content="([^"]+)">', client.get("/").text)
    assert match, "pages expose the CSRF token to their scripts"
    return match.group(1)


def style_form(csrf: str, *image_ids: int, **overrides: str | list[str]) -> dict[str, str | list[str]]:
    values: dict[str, str | list[str]] = {
        "csrf_token": csrf,
        "prompt": "a lighthouse on a cliff",
        "negative_prompt": "",
        "model": "",
        "seed": "5",
        "steps": "2",
        "guidance": "5",
        "width": "",
        "height": "",
        "n_images": "1",
        "scheduler": "ddim",
        "parent_id": "",
        "style_image_id": [str(image_id) for image_id in image_ids],
        "style_weight": ["1.5"] * len(image_ids),
        "style_strength": "0.7",
        "style_method": "shared-attention",
    }
    values.update(overrides)
    return values


def assert_no_inline_code(html: str) -> None:
    assert not INLINE_SCRIPT.search(html), "behaviour lives in static/js, never inline"
    assert " style=" not in html, "styles live in static/css, never in attributes"


# --- the inpainting mask editor ---------------------------------------------------------------


def test_inpaint_editor_shows_the_image_under_a_mask_canvas_with_its_tools(client: TestClient) -> None:
    image_id = upload(client, 64, 48)

    page = client.get(f"/images/{image_id}/inpaint")

    assert page.status_code == 200
    html = page.text
    assert f'src="/api/images/{image_id}"' in html
    assert re.search(r'<canvas class="mask-canvas" width="64" height="48" data-role="mask"', html)
    for control in ('data-tool="brush"', 'data-tool="eraser"', 'data-role="brush-size"', 'data-action="undo"'):
        assert control in html, control
    for control in ('data-action="invert"', 'data-action="clear"', 'name="prompt"', 'name="strength"'):
        assert control in html, control
    assert 'name="mask_blur"' in html
    for side in ("top", "right", "bottom", "left"):
        assert re.search(rf'name="outpaint_{side}" type="number" min="0" max="1024" step="8" value="0"', html), side
    assert '<script src="/static/js/mask_editor.js" defer></script>' in html
    assert '<link rel="stylesheet" href="/static/css/brushes.css">' in html
    assert "data-mask-editor" in html and f'data-image-id="{image_id}"' in html
    assert_no_inline_code(html)


def test_inpaint_editor_starts_from_the_prompt_of_the_painting_it_came_from(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    owner = local_artist(app)
    generation = make_generation(session, owner=owner, status=Status.SUCCEEDED, prompt="a quiet harbour at dusk")
    image_id = upload(client)
    image = session.get(Image, image_id)
    assert image is not None
    image.generation_id, image.kind = generation.id, ImageKind.OUTPUT
    session.commit()

    html = client.get(f"/images/{image_id}/inpaint").text

    assert ">a quiet harbour at dusk</textarea>" in html
    assert f'data-source-id="{generation.id}"' in html
    assert f'href="/generations/{generation.id}"' in html


def test_inpaint_editor_is_not_found_for_an_unknown_or_someone_elses_image(
    client: TestClient, session: Session, make_user: Callable[..., User], sign_in: Callable[[User], None]
) -> None:
    assert client.get("/images/999999/inpaint").status_code == 404
    image_id = upload(client)

    client.cookies.clear()  # drop the local artist's session, then act as someone else
    sign_in(make_user(session))
    response = client.get(f"/images/{image_id}/inpaint")

    assert response.status_code == 404
    assert "Nothing here" in response.text


def test_generation_page_offers_inpaint_and_use_as_style_for_each_image(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    generation = make_generation(session, owner=local_artist(app), status=Status.SUCCEEDED)
    image_ids = [upload(client, colour=(index * 60, 90, 120)) for index in range(2)]
    for index, image_id in enumerate(image_ids):
        image = session.get(Image, image_id)
        assert image is not None
        image.generation_id, image.index, image.kind = generation.id, index, ImageKind.OUTPUT
    session.commit()

    html = client.get(f"/generations/{generation.id}").text

    for image_id in image_ids:
        assert f'href="/images/{image_id}/inpaint"' in html
        assert f'href="/?style={image_id}" data-use-style="{image_id}"' in html


# --- style references in the studio -----------------------------------------------------------


def test_studio_with_a_style_query_shows_the_reference_as_a_removable_chip(client: TestClient) -> None:
    image_id = upload(client)

    html = client.get(f"/?style={image_id}").text

    chips = re.findall(r'<li class="style-chip" data-image-id="(\d+)">', html)
    assert chips == [str(image_id)]
    assert f'src="/api/images/{image_id}/thumb"' in html
    assert f'name="style_image_id" value="{image_id}"' in html
    assert re.search(r'name="style_weight" min="0" max="2" step="0.1" value="1.0"', html)
    assert f'aria-label="Remove style reference {image_id}"' in html
    assert 'name="style_strength"' in html and 'name="style_method"' in html
    assert 'action="/partials/generate/style"' in html
    assert '<script src="/static/js/style_refs.js" defer></script>' in html
    assert_no_inline_code(html)


def test_studio_shows_several_references_and_leaves_out_ids_it_cannot_show(
    client: TestClient, session: Session, make_user: Callable[..., User], sign_in: Callable[[User], None]
) -> None:
    hidden = upload(client)  # the local artist's
    client.cookies.clear()  # drop the local artist's session, then act as someone else
    sign_in(make_user(session))
    token = page_csrf(client)
    first, second = upload(client, csrf=token), upload(client, colour=(10, 20, 200), csrf=token)

    html = client.get(f"/?style={first}&style={hidden}&style=999999&style=abc&style={second}&style={first}").text

    assert re.findall(r'<li class="style-chip" data-image-id="(\d+)">', html) == [str(first), str(second)]


def test_studio_without_references_paints_prompts(client: TestClient) -> None:
    html = client.get("/").text

    assert 'action="/partials/generate"' in html
    assert re.findall(r'<li class="style-chip" data-image-id="(\d+)">', html) == []
    assert re.search(r'<div class="style-options" data-role="options"\s+hidden>', html)


def test_style_job_is_submitted_from_the_studio_form(client: TestClient, app: FastAPI, csrf: str) -> None:
    first, second = upload(client), upload(client, colour=(20, 200, 90))

    response = client.post(
        "/partials/generate/style",
        data=style_form(csrf, first, second, style_weight=["1.5", "0.5"]),
        follow_redirects=False,
    )

    assert response.status_code == 303
    generation_id = int(response.headers["location"].rsplit("/", 1)[1])
    with app.state.session_factory() as session:
        generation = session.get(Generation, generation_id)
        assert generation is not None
        assert generation.mode == Mode.STYLE
        assert generation.status == Status.QUEUED
        assert generation.prompt == "a lighthouse on a cliff"
        assert list(generation.style_image_ids) == [first, second]
        assert generation.params.style_weights == [1.5, 0.5]
        assert generation.params.style_strength == 0.7
        assert generation.params.style_method == "shared-attention"


def test_style_job_from_htmx_answers_the_job_card(client: TestClient, app: FastAPI, csrf: str) -> None:
    image_id = upload(client)

    response = client.post("/partials/generate/style", data=style_form(csrf, image_id), headers=HTMX)

    assert response.status_code == 200
    card = re.search(r'id="job-(\d+)"', response.text)
    assert card, "the new job's card"
    with app.state.session_factory() as session:
        generation = session.get(Generation, int(card.group(1)))
        assert generation is not None and generation.mode == Mode.STYLE


def test_style_form_is_refused_with_a_reason_a_person_can_act_on(
    client: TestClient, app: FastAPI, csrf: str, session: Session
) -> None:
    image_id = upload(client)
    cases = [
        (style_form(csrf), "choose at least one style reference"),
        (style_form(csrf, image_id, style_method="ip-adapter"), "has no IP-Adapter"),
        (style_form(csrf, image_id, style_weight=["3"]), "between 0 and 2"),
        (style_form(csrf, 999999), "image 999999 not found"),
        (style_form("not-the-token", image_id), "this form has expired"),
    ]
    for data, reason in cases:
        response = client.post("/partials/generate/style", data=data, headers=HTMX)
        # Answered in place: a typo with 200, a stale form with its 422 (htmx swaps both in).
        assert response.status_code == (422 if "expired" in reason else 200), reason
        assert response.headers["HX-Retarget"] == "#form-errors"
        assert reason in response.text, (reason, response.text)
    assert session.scalars(select(Generation)).all() == []


def test_refused_style_form_without_javascript_keeps_the_chips(client: TestClient, csrf: str) -> None:
    image_id = upload(client)

    response = client.post("/partials/generate/style", data=style_form(csrf, image_id, prompt=""))

    assert response.status_code == 200
    assert "prompt: field required" in response.text
    assert re.findall(r'<li class="style-chip" data-image-id="(\d+)">', response.text) == [str(image_id)]
    assert re.search(r'name="style_weight" min="0" max="2" step="0.1" value="1.5"', response.text)
    assert 'value="0.7"' in response.text
