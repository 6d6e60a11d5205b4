"""The account, gallery, share, pick and admin pages, as a browser without JavaScript uses them."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable

from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Feedback, Gallery, Preference, User
from tests.social.conftest import CSRF, PASSWORD, Cast, Output

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def form_token(page: str) -> str:
    match = CSRF_INPUT.search(page)
    assert match, "the page's forms carry a CSRF token"
    return match.group(1)


def assert_csp_clean(html: str) -> None:
    assert not re.search(r"<script(?![^>]*\bsrc=)", html), "no inline scripts"
    assert " style=" not in html, "no inline styles"


def test_login_form_needs_its_csrf_token_then_returns_to_where_the_visitor_was(
    anonymous: TestClient, cast: Cast
) -> None:
    redirect = anonymous.get("/galleries")
    assert redirect.status_code == 303
    login_url = redirect.headers["location"]
    page = anonymous.get(login_url)
    assert page.status_code == 200 and 'name="next" value="/galleries"' in page.text
    assert_csp_clean(page.text)
    token = form_token(page.text)
    fields = {"username": "alice", "password": PASSWORD, "next": "/galleries"}
    assert anonymous.post("/login", data=fields).status_code == 403, "no token, no login"
    wrong = anonymous.post("/login", data={**fields, "password": "nope nope", "csrf_token": token})
    assert wrong.status_code == 401 and "wrong username or password" in wrong.text
    done = anonymous.post("/login", data={**fields, "csrf_token": token})
    assert done.status_code == 303 and done.headers["location"] == "/galleries"
    assert anonymous.get("/galleries").status_code == 200
    fresh = form_token(anonymous.get("/login").text)  # logging in started a new session
    evil = anonymous.post("/login", data={**fields, "next": "//evil.example/", "csrf_token": fresh})
    assert evil.headers["location"] == "/"


def test_register_form_creates_the_account_and_logs_in(anonymous: TestClient, session: Session) -> None:
    token = form_token(anonymous.get("/register").text)
    fields = {"username": "dora", "password": "paints a lot", "password_again": "paints a lot", "csrf_token": token}
    assert anonymous.post("/register", data={**fields, "password_again": "different"}).status_code == 422
    assert anonymous.post("/register", data=fields).status_code == 303
    assert "dora" in anonymous.get("/galleries").text
    token = form_token(anonymous.get("/galleries").text)
    assert anonymous.post("/logout", data={"csrf_token": token}).status_code == 303
    assert anonymous.get("/galleries").status_code == 303


def test_a_form_post_without_its_csrf_token_is_refused(
    session: Session, cast: Cast, app: object, settings: object, browser: Callable[[User], TestClient]
) -> None:
    alice = browser(cast.alice)
    alice.headers.pop("X-CSRF-Token")
    refused = alice.post("/galleries", data={"title": "Sneaky", "visibility": "public"})
    assert refused.status_code == 422 and "this form has expired" in refused.text, "refused in place"
    forged = alice.post("/galleries", data={"title": "Sneaky", "csrf_token": "forged"})
    assert forged.status_code == 422 and "this form has expired" in forged.text
    assert session.scalar(select(func.count()).select_from(Gallery)) == 0
    made = alice.post("/galleries", data={"title": "Honest", "visibility": "private", "csrf_token": CSRF})
    assert made.status_code == 303 and made.headers["location"].startswith("/galleries/")


def test_gallery_page_builds_shares_and_downloads_a_gallery(
    session: Session,
    cast: Cast,
    browser: Callable[[User], TestClient],
    anonymous: TestClient,
    make_output: Callable[..., Output],
) -> None:
    alice = browser(cast.alice)
    first, second = make_output(cast.alice, n=2).images
    gallery = alice.post("/galleries", data={"title": "Barns <b>", "visibility": "private", "csrf_token": CSRF})
    path = gallery.headers["location"]
    gallery_id = int(path.rsplit("/", 1)[1])
    for image in (first, second):
        assert alice.post(f"{path}/items", data={"image_id": image.id, "csrf_token": CSRF}).status_code == 303
    caption = {"action": "caption", "caption": "dawn", "csrf_token": CSRF}
    alice.post(f"{path}/items/{second.id}", data=caption)
    alice.post(f"{path}/items/{second.id}", data={"action": "up", "csrf_token": CSRF})
    alice.post(f"{path}/items/{second.id}", data={"action": "cover", "csrf_token": CSRF})
    page = alice.get(path).text
    assert_csp_clean(page)
    assert "Barns &lt;b&gt;" in page and "dawn" in page
    assert "data-view=" in page and 'id="share-dialog"' in page
    assert page.index(f"item-{second.id}") < page.index(f"item-{first.id}"), "moved up"
    assert 'aria-label="Rate 5 of 5"' in page

    assert alice.post(f"{path}/share", data={"expires_in_hours": "24", "csrf_token": CSRF}).status_code == 303
    shared = alice.get(path).text
    token = re.search(r"/s/([A-Za-z0-9_-]{20,})", shared)
    assert token and "data-copy=" in shared and "until" in shared
    view = anonymous.get(f"/s/{token.group(1)}")
    assert view.status_code == 200
    assert_csp_clean(view.text)
    assert '<meta property="og:title" content="Barns &lt;b&gt;">' in view.text
    preview_url = f"/s/{token.group(1)}/images/{second.id}/preview.png"
    assert f'og:image" content="http://testserver{preview_url}"' in view.text
    preview = anonymous.get(preview_url)
    assert preview.status_code == 200 and preview.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(preview.content)) as enlarged:
        side = re.search(r'og:image:width" content="(\d+)"', view.text)
        assert side and enlarged.width == int(side.group(1)) >= 600
    assert 'name="twitter:card" content="summary_large_image"' in view.text

    archive = zipfile.ZipFile(io.BytesIO(anonymous.get(f"/s/{token.group(1)}/download").content))
    assert archive.namelist() == [f"001-image-{second.id}.png", f"002-image-{first.id}.png"]
    assert archive.read(archive.namelist()[0]).startswith(b"\x89PNG")
    assert alice.get(f"/api/galleries/{gallery_id}/download").headers["content-type"] == "application/zip"

    assert alice.post(f"/share/{token.group(1)}/revoke", data={"csrf_token": CSRF}).status_code == 303
    assert anonymous.get(f"/s/{token.group(1)}").status_code == 404
    assert alice.post(f"{path}/delete", data={"csrf_token": CSRF}).status_code == 303
    assert alice.get(path).status_code == 404


def test_stars_likes_and_comments_post_from_the_page(
    session: Session, cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    alice = browser(cast.alice)
    image_id = make_output(cast.alice).image.id
    widget = alice.post(
        f"/images/{image_id}/feedback", data={"rating": "4", "csrf_token": CSRF}, headers={"HX-Request": "true"}
    )
    assert widget.status_code == 200 and widget.text.count("star-on") == 4
    alice.post(f"/images/{image_id}/feedback", data={"liked": "true", "csrf_token": CSRF, "back": "/history"})
    alice.post(f"/images/{image_id}/feedback", data={"comment": "warm", "csrf_token": CSRF})
    row = session.scalars(select(Feedback)).one()
    assert (row.rating, row.liked, row.comment) == (4, True, "warm")


def test_which_is_better_page_records_a_pick(
    session: Session, cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    alice = browser(cast.alice)
    batch = make_output(cast.alice, n=2)
    page = alice.get(f"/pick?generation={batch.generation.id}")
    assert page.status_code == 200 and page.text.count('action="/pick"') == 2
    assert_csp_clean(page.text)
    winner, loser = batch.images
    answer = alice.post(
        "/pick",
        data={
            "winner": winner.id,
            "loser": loser.id,
            "generation": batch.generation.id,
            "next_offset": 1,
            "csrf_token": CSRF,
        },
    )
    assert answer.status_code == 303
    pick = session.scalars(select(Preference)).one()
    assert (pick.winner_image_id, pick.loser_image_id) == (winner.id, loser.id)
    assert browser(cast.bob).get(f"/pick?generation={batch.generation.id}").status_code == 404


def test_admin_page_lists_accounts_and_queue_for_admins_only(
    cast: Cast, browser: Callable[[User], TestClient], make_generation: Callable[..., object], session: Session
) -> None:
    make_generation(session, cast.bob, prompt="a queued lighthouse")
    page = browser(cast.admin).get("/admin")
    assert page.status_code == 200 and "alice" in page.text and "a queued lighthouse" in page.text
    assert_csp_clean(page.text)
    assert browser(cast.alice).get("/admin").status_code == 404
    assert browser(cast.alice).get("/api/admin/users").status_code == 404
    assert [u["username"] for u in browser(cast.admin).get("/api/admin/users").json()] == ["alice", "bob", "root"]
    assert browser(cast.admin).get("/api/admin/queue").json()[0]["prompt"] == "a queued lighthouse"


def test_explore_and_my_galleries_pages(
    cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    alice, bob = browser(cast.alice), browser(cast.bob)
    alice.post("/api/galleries", json={"title": "Open skies", "visibility": "public"})
    alice.post("/api/galleries", json={"title": "Hidden drafts", "visibility": "private"})
    mine = alice.get("/galleries").text
    assert "Open skies" in mine and "Hidden drafts" in mine
    explore = bob.get("/explore").text
    assert "Open skies" in explore and "Hidden drafts" not in explore and "by alice" in explore
    assert_csp_clean(explore)


def test_a_refused_gallery_setting_is_answered_on_the_gallery_page_as_typed(
    session: Session, cast: Cast, browser: Callable[[User], TestClient]
) -> None:
    alice = browser(cast.alice)
    path = alice.post("/galleries", data={"title": "Barns", "visibility": "private", "csrf_token": CSRF}).headers[
        "location"
    ]
    too_long = "x" * 201
    refused = alice.post(
        f"{path}/edit",
        data={"title": too_long, "description": "kept as typed", "visibility": "public", "csrf_token": CSRF},
    )
    # A typo is answered in place: the gallery's page, the message beside the settings, the typing kept.
    assert refused.status_code == 200
    assert 'role="alert"' in refused.text and "title must be at most 200 characters" in refused.text
    assert "kept as typed" in refused.text
    assert re.search(r'<option value="public"\s+selected', refused.text)
    assert 'href="/logout"' in refused.text or "Log out" in refused.text, "the signed-in menu is intact"
    unknown = alice.post(f"{path}/items", data={"image_id": "999999", "csrf_token": CSRF})
    assert unknown.status_code == 200 and 'role="alert"' in unknown.text and "999999" in unknown.text
    session.expire_all()
    assert session.scalar(select(Gallery.title).where(Gallery.title == "Barns")) == "Barns"


def test_a_refused_share_of_a_painting_is_answered_on_its_page(
    session: Session, cast: Cast, browser: Callable[[User], TestClient], make_output: Callable[..., Output]
) -> None:
    alice = browser(cast.alice)
    generation = make_output(cast.alice).generation
    refused = alice.post(
        f"/generations/{generation.id}/share", data={"expires_in_hours": "99999999", "csrf_token": CSRF}
    )
    assert refused.status_code == 200
    assert 'role="alert"' in refused.text and "a link must expire within" in refused.text
    assert f"#{generation.id}" in refused.text
