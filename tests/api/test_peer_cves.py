"""The peers' known vulnerability classes, each tried against the studio (issue 14).

Each test names the advisory whose class it covers: pickle loading (InvokeAI CVE-2024-12029),
path traversal read and delete with encodings, backslashes and symlinks (InvokeAI CVE-2025-6237,
CVE-2024-11042), stored XSS through uploads (ComfyUI CVE-2024-10099), cross-site requests
including ``Origin: null`` (ComfyUI CVE-2024-10481), and unauthenticated exposure beyond loopback.
"""

from __future__ import annotations

import ast
import io
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from PIL import Image
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

APP_DIR = Path(__file__).resolve().parents[2] / "app"
CONFIG_SOURCE_MARK = "class Settings(BaseSettings)"


def _png(width: int = 16, height: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 40, 40)).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(client: TestClient, data: bytes, name: str, content_type: str) -> Response:
    return client.post("/api/uploads", files={"file": (name, data, content_type)})


# --- InvokeAI CVE-2024-12029: loading a model ran pickled code --------------------------------


def test_pickle_weights_are_refused_invokeai_cve_2024_12029(idle_client: TestClient) -> None:
    """A model folder with pickle weights is refused before anything loads it."""
    listed = [model["name"] for model in idle_client.get("/api/models").json()]
    job = idle_client.post("/api/generate/prompt", json={"prompt": "x", "model": "pickled"})

    assert "pickled" not in listed
    assert job.status_code == 422 and "pickle" in job.json()["detail"]


def test_no_code_path_unpickles_invokeai_cve_2024_12029() -> None:
    """No module calls pickle.load(s) or torch.load without weights_only=True."""
    offenders = []
    for path in APP_DIR.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else ""
            if owner in ("pickle", "cPickle", "dill", "joblib") and node.func.attr in ("load", "loads"):
                offenders.append(f"{path.name}:{node.lineno}")
            if owner == "torch" and node.func.attr == "load":
                safe = any(
                    kw.arg == "weights_only" and isinstance(kw.value, ast.Constant) and kw.value.value is True
                    for kw in node.keywords
                )
                if not safe:
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


# --- InvokeAI CVE-2025-6237 / CVE-2024-11042: path traversal read and delete ------------------

TRAVERSALS = [
    "/static/../app/config.py",
    "/static/%2e%2e/app/config.py",
    "/static/..%2fapp%2fconfig.py",
    "/static/..%5capp%5cconfig.py",
    "/static/..\\app\\config.py",
    "/static/%252e%252e%252fapp%252fconfig.py",
    "/static/....//app/config.py",
    "/api/images/..%2f..%2fapp%2fconfig.py",
    "/api/images/1/..%2f..%2f..%2fapp%2fconfig.py",
    "/s/..%2f..%2fapp%2fconfig.py",
    "/s/x/images/1/..%5c..%5capp%5cconfig.py",
    "/g/..%2f..%2fapp%2fconfig.py",
    "/g/..%5c..%5capp%5cconfig.py/download",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_traversal_reads_nothing_outside_invokeai_cve_2025_6237(idle_client: TestClient, path: str) -> None:
    response = idle_client.get(path)

    assert response.status_code in (400, 404, 405, 422), (path, response.status_code)
    assert CONFIG_SOURCE_MARK not in response.text


@pytest.mark.parametrize("name", ["../tiny", "..\\tiny", "tiny/../tiny", "/etc", "C:\\models\\tiny", "%2e%2e/tiny"])
def test_model_names_never_become_paths_invokeai_cve_2025_6237(idle_client: TestClient, name: str) -> None:
    response = idle_client.post("/api/generate/prompt", json={"prompt": "x", "model": name})

    assert response.status_code == 422, response.text


def test_a_symlink_under_static_is_not_followed_out_invokeai_cve_2025_6237(
    app_for_symlinks: FastAPI, tmp_path: Path
) -> None:
    """The static mount serves files, never what a symlink in it points to outside it."""
    secret = tmp_path / "secret.txt"
    secret.write_text("the secret key")
    served = tmp_path / "served"
    served.mkdir()
    (served / "plain.txt").write_text("fine")
    (served / "escape.txt").symlink_to(secret)
    mount = next(route for route in app_for_symlinks.routes if isinstance(route, Mount) and route.path == "/static")
    assert isinstance(mount.app, StaticFiles)
    # The app's own mount, pointed at a folder holding a symlink: its settings decide.
    mount.app.directory = str(served)
    mount.app.all_directories = [str(served)]
    client = TestClient(app_for_symlinks)

    assert client.get("/static/plain.txt").text == "fine"
    escaped = client.get("/static/escape.txt")
    assert escaped.status_code == 404 and "secret" not in escaped.text


@pytest.fixture
def app_for_symlinks(make_client: Callable[..., TestClient]) -> FastAPI:
    app = make_client(start_workers=False).app
    assert isinstance(app, FastAPI)
    return app


@pytest.mark.parametrize(
    "path",
    [
        "/api/galleries/..%2f..%2fcanary.txt",
        "/api/galleries/1/items/..%5c..%5ccanary.txt",
        "/api/share/..%2f..%2fcanary.txt",
        "/api/share/..\\..\\canary.txt",
        "/api/tokens/..%2fcanary.txt",
    ],
)
def test_traversal_deletes_nothing_invokeai_cve_2024_11042(idle_client: TestClient, tmp_path: Path, path: str) -> None:
    canary = tmp_path / "canary.txt"
    canary.write_text("still here")

    response = idle_client.delete(path)

    assert response.status_code in (400, 404, 405, 422), (path, response.status_code)
    assert canary.read_text() == "still here"


# --- ComfyUI CVE-2024-10099: stored XSS through uploaded files --------------------------------

SVG = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>'
HTML = b"<!doctype html><html><body><script>alert(document.domain)</script></body></html>"


@pytest.mark.parametrize(
    ("data", "name", "content_type"),
    [
        (SVG, "x.svg", "image/svg+xml"),
        (SVG, "x.png", "image/png"),
        (HTML, "x.html", "text/html"),
        (HTML, "x.png", "image/png"),
    ],
)
def test_script_carrying_uploads_are_refused_comfyui_cve_2024_10099(
    idle_client: TestClient, data: bytes, name: str, content_type: str
) -> None:
    response = _upload(idle_client, data, name, content_type)

    assert response.status_code == 415, response.text


def test_a_png_html_polyglot_is_served_re_encoded_and_never_as_html_comfyui_cve_2024_10099(
    idle_client: TestClient,
) -> None:
    polyglot = _png() + HTML
    uploaded = _upload(idle_client, polyglot, "<img src=x onerror=alert(1)>.png", "text/html")
    assert uploaded.status_code == 201, uploaded.text
    image_id = uploaded.json()["id"]

    served = idle_client.get(f"/api/images/{image_id}")

    assert served.headers["content-type"] == "image/png"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert "script-src 'self'" in served.headers["content-security-policy"]
    assert b"<script>" not in served.content, "the upload was re-encoded, not stored as sent"
    assert "onerror" not in uploaded.text


# --- ComfyUI CVE-2024-10481: cross-site requests, Origin: null included ------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "null"},
        {"Origin": "https://evil.example"},
        {"Origin": "http://127.0.0.1:8000"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "null", "Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
    ],
)
def test_a_cross_site_request_queues_nothing_comfyui_cve_2024_10481(
    idle_client: TestClient, headers: dict[str, str]
) -> None:
    """A page elsewhere (a sandboxed iframe sends Origin: null) cannot make the browser queue a job."""
    response = idle_client.post(
        "/api/generate/prompt",
        content=b'{"prompt": "from another site"}',
        headers={"Content-Type": "application/json", **headers},
    )

    assert response.status_code == 403, response.text
    assert "CSRF" in response.json()["detail"]
    assert idle_client.get("/api/generations").json()["items"] == []


def test_cross_origin_reads_are_not_granted_comfyui_cve_2024_10481(idle_client: TestClient) -> None:
    preflight = idle_client.options(
        "/api/generations", headers={"Origin": "null", "Access-Control-Request-Method": "GET"}
    )
    read = idle_client.get("/api/generations", headers={"Origin": "null"})

    assert "access-control-allow-origin" not in preflight.headers
    assert "access-control-allow-origin" not in read.headers


def test_a_cross_site_form_post_is_refused_comfyui_cve_2024_10481(idle_client: TestClient) -> None:
    response = idle_client.post("/partials/generate", data={"prompt": "from another site"}, headers={"Origin": "null"})

    assert response.status_code in (403, 422)
    assert idle_client.get("/api/generations").json()["items"] == []


# --- Unauthenticated exposure beyond loopback -------------------------------------------------


def test_bound_beyond_loopback_strangers_reach_nothing(make_client: Callable[..., TestClient]) -> None:
    """Off loopback the studio requires login by default: no local artist, nothing to read or queue."""
    client = make_client(start_workers=False, host="0.0.0.0", auth="", allowed_hosts="studio.example.org")
    client.headers["host"] = "studio.example.org"

    assert client.get("/api/generations").status_code == 401
    assert client.post("/api/generate/prompt", json={"prompt": "x"}).status_code == 401
    assert client.get("/api/admin/users").status_code == 401
    assert client.get("/api/images/1").status_code in (401, 404)
    history = client.get("/history", follow_redirects=False)
    assert history.status_code == 303 and history.headers["location"].startswith("/login")
    assert client.get("/api/auth/me").status_code == 401
