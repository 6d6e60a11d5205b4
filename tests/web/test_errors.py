"""Refusals in the browser: the error page keeps the signed-in menu, htmx gets a fragment, the API gets JSON."""

from __future__ import annotations

import re
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.db.models import Generation, User

HTMX = {"HX-Request": "true"}


def test_a_missing_page_is_the_error_page_with_the_signed_in_menu(
    client: TestClient, sign_in: Callable[[User], None], session: Session, make_user: Callable[..., User]
) -> None:
    sign_in(make_user(session, "bruno"))

    for url in ("/generations/99999", "/galleries/99999", "/generations/99999/lineage", "/batches/nothing-here-123"):
        response = client.get(url)

        assert response.status_code == 404, url
        assert "text/html" in response.headers["content-type"], url
        assert "Nothing here" in response.text, url
        assert 'title="Log out bruno"' in response.text, url


def page_token(client: TestClient) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text)
    assert match, "the studio form carries the session's token"
    return match.group(1)


def test_a_refused_form_explains_itself_on_the_error_page(
    client: TestClient, sign_in: Callable[[User], None], session: Session, make_user: Callable[..., User]
) -> None:
    sign_in(make_user(session, "bruno"))

    response = client.post("/pick", data={"csrf_token": page_token(client), "winner": "", "loser": "2"})

    assert response.status_code == 422
    assert "This could not be done" in response.text
    assert "pick one of the two images" in response.text
    assert 'title="Log out bruno"' in response.text


def test_the_json_api_answers_the_same_refusals_as_json(client: TestClient) -> None:
    missing = client.get("/api/generations/99999")
    refused = client.post("/api/preferences", json={"winner_image_id": 99998, "loser_image_id": 99999})

    assert missing.status_code == 404 and missing.json() == {"detail": "generation 99999 not found"}
    assert refused.status_code == 404 and "not found" in refused.json()["detail"]


def test_htmx_gets_a_fragment_with_the_errors_own_status_outside_the_studio_form(
    client: TestClient,
    sign_in: Callable[[User], None],
    session: Session,
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
) -> None:
    theirs = make_generation(session, owner=make_user(session))
    sign_in(make_user(session))

    response = client.get(f"/partials/generations/{theirs.id}/card", headers=HTMX)

    assert response.status_code == 404
    assert f"generation {theirs.id} not found" in response.text
    assert "<html" not in response.text, "a fragment, never a whole page swapped into another"


def test_a_refused_studio_form_does_not_tell_whether_someone_elses_parent_exists(
    client: TestClient,
    sign_in: Callable[[User], None],
    session: Session,
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
) -> None:
    theirs = make_generation(session, owner=make_user(session))
    me = make_user(session)
    mine = make_generation(session, owner=me)
    sign_in(me)
    token = page_token(client)

    def refused_with_parent(parent_id: int) -> str:
        fields = {"csrf_token": token, "prompt": "a red barn", "steps": "0", "parent_id": str(parent_id)}
        response = client.post("/partials/generate", data=fields)
        assert response.status_code == 200  # the form again, answered in place
        return response.text

    assert f'Refining <a href="/generations/{mine.id}">' in refused_with_parent(mine.id)
    assert "Refining" not in refused_with_parent(theirs.id)
    assert "Refining" not in refused_with_parent(99999)
