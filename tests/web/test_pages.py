"""The studio, generation and history pages, and the htmx fragments behind them."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import Generation, Status, User
from app.main import create_app
from app.services import users
from tests.model_folders import config_only_folder

HTMX = {"HX-Request": "true"}
SCRIPT_PROMPT = '<script>alert("x")</script> a red barn'
ESCAPED_SCRIPT = "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; a red barn"
FORM_FIELDS = (
    "prompt",
    "negative_prompt",
    "model",
    "seed",
    "steps",
    "guidance",
    "width",
    "height",
    "n_images",
    "scheduler",
    "parent_id",
)
SCHEDULERS = ("ddim", "euler", "euler-a", "dpm++-2m", "dpm++-2m-karras", "unipc", "pndm", "ddpm", "lcm", "tcd")


def local_artist(app: FastAPI) -> User:
    with app.state.session_factory() as session:
        user = users.ensure_local_user(session)
        session.expunge(user)
        return user


def count_generations(app: FastAPI) -> int:
    with app.state.session_factory() as session:
        return session.scalar(select(func.count()).select_from(Generation)) or 0


def linked_generation_ids(html: str) -> list[int]:
    """The generations a page or fragment links to, in order, each once."""
    return list(dict.fromkeys(int(found) for found in re.findall(r'href="/generations/(\d+)"', html)))


def field_value(html: str, name: str) -> str | None:
    match = re.search(rf'<input[^>]*name="{name}"[^>]*value="([^"]*)"', html)
    return match.group(1) if match else None


def form(**overrides: Any) -> dict[str, Any]:
    values = {
        "prompt": "a red barn under a blue sky",
        "negative_prompt": "",
        "model": "",
        "seed": "",
        "steps": "2",
        "guidance": "5",
        "width": "",
        "height": "",
        "n_images": "1",
        "scheduler": "ddim",
        "parent_id": "",
    }
    values.update(overrides)
    return values


def test_studio_renders_its_form_with_every_field(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    html = page.text
    for name in FORM_FIELDS:
        assert f'name="{name}"' in html, name
    for scheduler in SCHEDULERS:
        assert f'<option value="{scheduler}"' in html, scheduler
    assert 'hx-post="/partials/generate"' in html
    assert 'action="/partials/generate" method="post"' in html
    assert '<script src="/static/vendor/htmx.min.js"' in html
    assert "includeIndicatorStyles" in html


def test_pages_carry_no_inline_script_or_style(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    generation = make_generation(session, owner=local_artist(app))
    for url in ("/", "/history", f"/generations/{generation.id}"):
        html = client.get(url).text
        assert "style=" not in html, url
        assert re.search(r"<script(?![^>]*\ssrc=)[^>]*>", html) is None, url
        assert "cdn" not in html.lower(), url


def test_static_assets_are_served_locally(client: TestClient) -> None:
    assert client.get("/static/vendor/htmx.min.js").status_code == 200
    assert client.get("/static/js/progress.js").status_code == 200
    assert client.get("/static/css/studio.css").status_code == 200


def test_prompt_with_script_is_escaped_on_generation_page_and_history(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    generation = make_generation(session, owner=local_artist(app), prompt=SCRIPT_PROMPT, negative_prompt="<b>bold</b>")
    page = client.get(f"/generations/{generation.id}")
    assert page.status_code == 200
    assert SCRIPT_PROMPT not in page.text
    assert ESCAPED_SCRIPT in page.text
    assert "&lt;b&gt;bold&lt;/b&gt;" in page.text

    history = client.get("/history")
    assert history.status_code == 200
    assert SCRIPT_PROMPT not in history.text
    assert ESCAPED_SCRIPT in history.text


def test_generation_page_shows_every_parameter_and_a_refine_link(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    owner = local_artist(app)
    parent = make_generation(session, owner=owner, status=Status.SUCCEEDED)
    child = make_generation(
        session,
        owner=owner,
        parent_id=parent.id,
        seed=98765,
        steps=7,
        guidance=6.5,
        width=96,
        height=128,
        scheduler="euler-a",
        n_images=2,
        negative_prompt="muddy",
    )
    html = client.get(f"/generations/{child.id}").text
    for text in ("98765", "euler-a", "6.5", "96 &times; 128", "muddy", "studio-tiny", "txt2img"):
        assert text in html, text
    assert f'href="/?refine={child.id}"' in html
    assert f'href="/generations/{parent.id}"' in html


def test_partial_generate_enqueues_a_queued_job_and_answers_its_card(
    client: TestClient, app: FastAPI, csrf: str
) -> None:
    response = client.post("/partials/generate", data={**form(), "csrf_token": csrf}, headers=HTMX)
    assert response.status_code == 200, response.text
    with app.state.session_factory() as session:
        generation = session.scalars(select(Generation)).one()
        assert generation.status == Status.QUEUED
        assert generation.prompt == "a red barn under a blue sky"
        assert generation.steps == 2
        assert generation.model == "studio-tiny"
        assert generation.parent_id is None
    assert f'data-events-url="/api/generations/{generation.id}/events"' in response.text
    assert f'id="job-{generation.id}"' in response.text
    assert 'hx-post="/partials/generations/' in response.text  # the cancel button
    assert 'id="form-errors" hx-swap-oob="innerHTML"' in response.text


def test_bad_width_answers_the_form_errors_fragment_and_creates_nothing(
    client: TestClient, app: FastAPI, csrf: str
) -> None:
    response = client.post("/partials/generate", data={**form(width="1001"), "csrf_token": csrf}, headers=HTMX)
    assert response.status_code == 200  # answered in place
    assert response.headers["HX-Retarget"] == "#form-errors"
    assert "width must be a multiple of 8 between 64 and 2048 (got 1001)" in response.text
    assert 'role="alert"' in response.text
    assert count_generations(app) == 0


def test_form_without_javascript_redirects_to_the_new_generation(client: TestClient, app: FastAPI, csrf: str) -> None:
    response = client.post("/partials/generate", data={**form(), "csrf_token": csrf}, follow_redirects=False)
    assert response.status_code == 303
    with app.state.session_factory() as session:
        generation = session.scalars(select(Generation)).one()
    assert response.headers["location"] == f"/generations/{generation.id}"


def test_refused_form_without_javascript_comes_back_as_typed(client: TestClient, app: FastAPI, csrf: str) -> None:
    response = client.post("/partials/generate", data={**form(prompt="a quiet harbour", steps="0"), "csrf_token": csrf})
    assert response.status_code == 200
    assert "steps" in response.text and "greater than or equal to 1" in response.text
    assert "a quiet harbour</textarea>" in response.text
    assert count_generations(app) == 0


def test_form_post_without_the_session_token_is_refused(client: TestClient, app: FastAPI) -> None:
    response = client.post("/partials/generate", data={**form(), "csrf_token": "forged"}, headers=HTMX)
    assert response.status_code == 422
    assert "reload the page" in response.text
    assert count_generations(app) == 0


def test_refine_prefills_prompt_seed_and_parameters_and_sets_parent(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    generation = make_generation(
        session,
        owner=local_artist(app),
        prompt="a lighthouse & the sea",
        seed=424242,
        steps=9,
        guidance=3.5,
        width=72,
        height=80,
        n_images=3,
        scheduler="unipc",
        negative_prompt="fog",
        status=Status.SUCCEEDED,
    )
    html = client.get(f"/?refine={generation.id}").text
    assert "a lighthouse &amp; the sea</textarea>" in html
    assert "fog</textarea>" in html
    assert field_value(html, "seed") == "424242"
    assert field_value(html, "steps") == "9"
    assert field_value(html, "guidance") == "3.5"
    assert field_value(html, "width") == "72"
    assert field_value(html, "height") == "80"
    assert field_value(html, "n_images") == "3"
    assert field_value(html, "parent_id") == str(generation.id)
    assert '<option value="unipc" selected>' in html


def test_refined_submission_records_its_parent(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation], csrf: str
) -> None:
    parent = make_generation(session, owner=local_artist(app), status=Status.SUCCEEDED)
    data = {**form(parent_id=str(parent.id), seed=str(parent.seed)), "csrf_token": csrf}
    assert client.post("/partials/generate", data=data, headers=HTMX).status_code == 200
    with app.state.session_factory() as check:
        child = check.scalars(select(Generation).where(Generation.id != parent.id)).one()
        assert child.parent_id == parent.id
        assert child.seed == parent.seed


def test_unknown_or_foreign_generation_is_a_404_page(
    client: TestClient,
    sign_in: Callable[[User], None],
    session: Session,
    make_user: Callable[..., User],
    make_generation: Callable[..., Generation],
) -> None:
    stranger = make_generation(session, owner=make_user(session))
    sign_in(make_user(session))
    for url in ("/generations/99999", f"/generations/{stranger.id}", "/?refine=99999", f"/?refine={stranger.id}"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "text/html" in response.headers["content-type"]
        assert "Nothing here" in response.text
    assert client.get(f"/partials/generations/{stranger.id}/card", headers=HTMX).status_code == 404


def test_card_partial_shows_images_when_done(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    generation = make_generation(session, owner=local_artist(app), status=Status.SUCCEEDED)
    html = client.get(f"/partials/generations/{generation.id}/card", headers=HTMX).text
    assert "data-events-url" not in html  # nothing left to watch
    assert f'href="/?refine={generation.id}"' in html


def test_cancel_from_the_card_cancels_the_job(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation], csrf: str
) -> None:
    generation = make_generation(session, owner=local_artist(app))
    response = client.post(f"/partials/generations/{generation.id}/cancel", headers={**HTMX, "X-CSRF-Token": csrf})
    assert response.status_code == 200
    assert "badge-cancelled" in response.text
    session.refresh(generation)
    assert generation.status == Status.CANCELLED


def test_history_searches_filters_and_loads_more(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    owner = local_artist(app)
    made = [make_generation(session, owner=owner, prompt=f"harbour study {i}") for i in range(30)]
    make_generation(session, owner=owner, prompt="a violet mountain")
    first = client.get("/history?q=harbour").text
    assert "a violet mountain" not in first
    assert "harbour study 29" in first and "harbour study 0<" not in first
    cursor = re.search(r'hx-get="/partials/history\?([^"]+)"', first)
    assert cursor, "a load-more link when more pages exist"
    more = client.get("/partials/history?" + cursor.group(1).replace("&amp;", "&"), headers=HTMX).text
    assert "harbour study 0<" in more
    assert 'id="load-more" class="load-more" hx-swap-oob="true"' in more
    assert "hx-get" not in more.split('id="load-more"')[1]  # the last page has no further link
    # The two pages show every study once, newest first, and nothing else.
    shown = linked_generation_ids(first), linked_generation_ids(more)
    assert 0 < len(shown[0]) < len(made)
    assert shown[0] + shown[1] == [generation.id for generation in reversed(made)]
    assert "a violet mountain" not in client.get("/history?mode=inpaint").text
    assert "a violet mountain" in client.get("/history?mode=&model=").text


def test_history_filters_by_day_and_ignores_a_malformed_date(
    client: TestClient, app: FastAPI, session: Session, make_generation: Callable[..., Generation]
) -> None:
    owner = local_artist(app)
    make_generation(session, owner=owner, prompt="winter harbour", created_at=datetime(2026, 1, 5, 9, 0))
    make_generation(session, owner=owner, prompt="summer harbour", created_at=datetime(2026, 7, 5, 9, 0))
    page = client.get("/history?since=2026-06-01").text
    assert "summer harbour" in page and "winter harbour" not in page
    assert 'value="2026-06-01"' in page
    page = client.get("/history?until=2026-01-05").text
    assert "winter harbour" in page and "summer harbour" not in page
    page = client.get("/history?since=not-a-day").text
    assert "winter harbour" in page and "summer harbour" in page


def test_a_fresh_studio_form_takes_the_steps_and_scheduler_the_default_models_folder_names(
    settings: Settings, tmp_path: Path
) -> None:
    models = tmp_path / "models"
    config_only_folder(models, "quick", _studio_default_steps=6, _studio_default_scheduler="unipc")
    config_only_folder(models, "plain")

    def form(default_model: str) -> tuple[str, str]:
        chosen = settings.model_copy(update={"models_dir": models, "default_model": default_model})
        with TestClient(create_app(chosen)) as client:
            html = client.get("/").text
        steps = re.search(r'<input id="steps" name="steps"[^>]*value="(\d+)"', html)
        scheduler = re.search(r'<option value="([^"]+)" selected>', html[html.index('id="scheduler"') :])
        assert steps is not None and scheduler is not None
        return steps.group(1), scheduler.group(1)

    assert form("quick") == ("6", "unipc")
    assert form("plain") == ("20", "dpm++-2m")  # a folder that names none: the studio's own defaults
    assert form("missing") == ("20", "dpm++-2m")


def test_studio_renders_when_no_model_is_installed(settings: Settings, tmp_path: Path) -> None:
    empty = settings.model_copy(update={"models_dir": tmp_path / "no-models"})
    with TestClient(create_app(empty)) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert "No model installed" in page.text
        assert client.get("/history").status_code == 200
