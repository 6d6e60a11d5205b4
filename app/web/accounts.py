"""Account pages: the login and register forms, logging out, and the admin page."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.db.models import Role
from app.deps import AdminUser, FormCsrf, SessionDep, SettingsDep, TemplatesDep
from app.http.csrf import csrf_token
from app.http.limits import LimiterDep, client_address
from app.http.sessions import end_session, start_session
from app.params import RowId
from app.services import admin, users
from app.services.errors import InvalidInput, NotFound, RateLimited
from app.web.errors import Refusal, refused_page
from app.web.forms import FormFields

router = APIRouter(include_in_schema=False, dependencies=[FormCsrf])


def safe_next(target: str | None) -> str:
    """Only a path on this site: a login link must not bounce anyone to another origin."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc else "/"


def _render(
    request: Request, templates: TemplatesDep, name: str, *, status_code: int = 200, **context: Any
) -> HTMLResponse:
    context.setdefault("active", "")
    context["csrf_token"] = csrf_token(request)
    return templates.TemplateResponse(request, name, context, status_code=status_code)


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request,
    templates: TemplatesDep,
    settings: SettingsDep,
    next_path: Annotated[str | None, Query(alias="next", max_length=2000)] = None,
) -> HTMLResponse:
    return _render(
        request,
        templates,
        "pages/login.html",
        next=safe_next(next_path),
        error=None,
        username="",
        local_mode=settings.auth_mode == "local",
    )


@router.post("/login/local")
def continue_local(request: Request, settings: SettingsDep) -> Response:
    """Local mode, after a logout: act as the built-in local artist again (nothing to type)."""
    if settings.auth_mode != "local":
        raise NotFound("not found")
    request.session.clear()
    return RedirectResponse("/", status_code=303)


def _login_again(refusal: Refusal) -> HTMLResponse:
    # A login form is refused for its CSRF token (403, as the JSON API answers a missing token)
    # or for too many failures (429); a wrong password is answered below.
    fields = refusal.fields
    return _render(
        refusal.request,
        refusal.templates,
        "pages/login.html",
        status_code=429 if isinstance(refusal.error, RateLimited) else 403,
        next=safe_next(fields.get("next")),
        error=refusal.error.message,
        username=str(fields.get("username", "")),
    )


@router.post("/login", response_class=HTMLResponse)
@refused_page(_login_again)
def login(
    request: Request, fields: FormFields, session: SessionDep, templates: TemplatesDep, limiter: LimiterDep
) -> Response:
    target = safe_next(fields.get("next"))
    username = str(fields.get("username", ""))
    limiter.check_login(username=username, address=client_address(request))
    user = users.authenticate(session, username=username, password=str(fields.get("password", "")))
    if user is None:
        limiter.login_failed(username=username, address=client_address(request))
        return _render(
            request,
            templates,
            "pages/login.html",
            status_code=401,
            next=target,
            error="wrong username or password",
            username=username,
        )
    limiter.login_succeeded(username=username)
    start_session(request, user)
    return RedirectResponse(target, status_code=303)


@router.get("/register", response_class=HTMLResponse)
def register_page(request: Request, templates: TemplatesDep) -> HTMLResponse:
    return _render(request, templates, "pages/register.html", error=None, username="")


def _register_again(refusal: Refusal) -> HTMLResponse:
    username = str(refusal.fields.get("username", ""))
    return _render(
        refusal.request,
        refusal.templates,
        "pages/register.html",
        status_code=429 if isinstance(refusal.error, RateLimited) else 422,
        error=refusal.error.message,
        username=username,
    )


@router.post("/register", response_class=HTMLResponse)
@refused_page(_register_again)
def register(request: Request, fields: FormFields, session: SessionDep, limiter: LimiterDep) -> Response:
    limiter.check_register(address=client_address(request))
    password = str(fields.get("password", ""))
    if password != fields.get("password_again", password):
        raise InvalidInput("the two passwords differ; type the same password twice")
    user = users.create_user(session, username=str(fields.get("username", "")), password=password)
    start_session(request, user)
    return RedirectResponse("/", status_code=303)


@router.post("/logout")
def logout(request: Request, session: SessionDep) -> Response:
    end_session(request, session)
    return RedirectResponse("/login", status_code=303)


@router.get("/admin", response_class=HTMLResponse)
def admin_page(request: Request, session: SessionDep, user: AdminUser, templates: TemplatesDep) -> HTMLResponse:
    return _render(
        request,
        templates,
        "pages/admin.html",
        user=user,
        accounts=admin.accounts(session),
        queue=admin.queue(session),
        roles=[role.value for role in Role],
        active="admin",
    )


@router.post("/admin/users/{user_id}/role")
def set_role(user_id: RowId, fields: FormFields, session: SessionDep, actor: AdminUser) -> Response:
    role = fields.get("role")
    if role not in {r.value for r in Role}:
        raise InvalidInput(f"role must be admin or artist (got {role!r})")
    admin.set_role(session, actor=actor, user_id=user_id, role=Role(role))
    return RedirectResponse("/admin", status_code=303)
