"""A generation's page: the feedback widget under each image and the owner's Share dialog."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.db.models import Feedback, Generation, Image, ImageKind, Role, Status, User
from app.services import feedback, users
from tests.conftest import create_test_user

MakeGeneration = Callable[..., Generation]


def painted(
    app: FastAPI, make_generation: MakeGeneration, owner: User | None = None, **overrides: Any
) -> tuple[int, int]:
    """A finished generation (of the local artist unless ``owner``) with one output; (generation id, image id)."""
    with app.state.session_factory() as session:
        owner = owner or users.ensure_local_user(session)
        generation = make_generation(session, owner, status=Status.SUCCEEDED, **overrides)
        image = Image(
            sha256=f"{generation.id:064x}",
            width=64,
            height=64,
            format="png",
            kind=ImageKind.OUTPUT,
            generation_id=generation.id,
            index=0,
            user_id=owner.id,
        )
        session.add(image)
        session.commit()
        return generation.id, image.id


def stars_on(html: str, image_id: int) -> int:
    widget = html.split(f'id="feedback-{image_id}"', 1)[1].split("</form>", 1)[0]
    return len(re.findall(r'class="star star-on"', widget))


def comment_value(html: str, image_id: int) -> str | None:
    widget = html.split(f'id="feedback-{image_id}"', 1)[1]
    match = re.search(r'<input name="comment" value="([^"]*)"', widget)
    return match.group(1) if match else None


def test_each_image_shows_the_feedback_widget_with_the_saved_rating(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    generation_id, image_id = painted(app, make_generation)
    with app.state.session_factory() as session:
        feedback.give(
            session,
            user=users.ensure_local_user(session),
            image_id=image_id,
            rating=3,
            liked=True,
            comment="warm light",
        )

    html = client.get(f"/generations/{generation_id}").text

    assert f'action="/images/{image_id}/feedback"' in html
    assert stars_on(html, image_id) == 3
    assert comment_value(html, image_id) == "warm light"
    assert 'class="like like-on"' in html


def test_an_unrated_image_shows_an_empty_widget(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    generation_id, image_id = painted(app, make_generation)

    html = client.get(f"/generations/{generation_id}").text

    assert stars_on(html, image_id) == 0
    assert comment_value(html, image_id) == ""


def test_rating_from_the_page_form_returns_to_the_page_and_updates_the_widget(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    generation_id, image_id = painted(app, make_generation)
    html = client.get(f"/generations/{generation_id}").text
    back = re.search(rf'id="feedback-{image_id}".*?name="back" value="([^"]+)"', html, re.S)
    assert back and back.group(1) == f"/generations/{generation_id}"

    rated = client.post(
        f"/images/{image_id}/feedback",
        data={"csrf_token": csrf, "back": back.group(1), "rating": "4"},
        follow_redirects=False,
    )
    commented = client.post(
        f"/images/{image_id}/feedback",
        data={"csrf_token": csrf, "back": back.group(1), "comment": "more fog"},
        follow_redirects=False,
    )

    assert rated.status_code == commented.status_code == 303
    assert rated.headers["location"] == f"/generations/{generation_id}"
    html = client.get(f"/generations/{generation_id}").text
    assert stars_on(html, image_id) == 4
    assert comment_value(html, image_id) == "more fog"
    with app.state.session_factory() as session:
        row = session.query(Feedback).filter_by(image_id=image_id).one()
        assert (row.rating, row.comment) == (4, "more fog")


def test_rating_with_htmx_answers_the_refreshed_widget(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    _, image_id = painted(app, make_generation)

    response = client.post(
        f"/images/{image_id}/feedback",
        data={"csrf_token": csrf, "rating": "5"},
        headers={"HX-Request": "true"},
    )

    assert response.status_code == 200
    assert stars_on(response.text, image_id) == 5


def test_the_owner_sees_a_share_button_and_dialog(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration
) -> None:
    generation_id, _ = painted(app, make_generation)

    html = client.get(f"/generations/{generation_id}").text

    assert 'data-open-dialog="share-dialog"' in html
    assert '<dialog id="share-dialog"' in html
    assert f'action="/generations/{generation_id}/share"' in html
    assert "No link yet." in html


def test_a_new_link_from_the_dialog_returns_to_the_page_with_a_copy_button(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    generation_id, _ = painted(app, make_generation)

    made = client.post(
        f"/generations/{generation_id}/share",
        data={"csrf_token": csrf, "back": f"/generations/{generation_id}?shared=1#share", "expires_in_hours": "24"},
        follow_redirects=False,
    )

    assert made.status_code == 303
    assert made.headers["location"] == f"/generations/{generation_id}?shared=1#share"
    html = client.get(f"/generations/{generation_id}?shared=1").text
    link = re.search(r'id="share-url-1" value="([^"]+/s/([^"]+))"', html)
    assert link, "the dialog lists the new link"
    assert 'data-copy="share-url-1"' in html
    assert "until " in html
    assert client.get(f"/s/{link.group(2)}").status_code == 200


def test_the_share_form_without_back_still_opens_the_link(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, csrf: str
) -> None:
    generation_id, _ = painted(app, make_generation)

    made = client.post(f"/generations/{generation_id}/share", data={"csrf_token": csrf}, follow_redirects=False)

    assert made.status_code == 303
    assert made.headers["location"].startswith("/s/")


def test_an_admin_viewing_someone_elses_painting_gets_no_share_button(
    client: TestClient, app: FastAPI, make_generation: MakeGeneration, sign_in: Callable[[User], None]
) -> None:
    with app.state.session_factory() as session:
        owner = create_test_user(session, "bob")
        admin = create_test_user(session, "root", role=Role.ADMIN)
        session.expunge_all()
    generation_id, image_id = painted(app, make_generation, owner=owner)
    sign_in(admin)

    html = client.get(f"/generations/{generation_id}").text

    assert f'id="feedback-{image_id}"' in html
    assert 'data-open-dialog="share-dialog"' not in html
    assert '<dialog id="share-dialog"' not in html
