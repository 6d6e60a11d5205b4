"""Annotated dependencies: what routes receive from the app built by ``create_app``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.config import LOOPBACK_HOSTS, Settings
from app.db.models import Role, User
from app.engine.catalog import ModelCatalog
from app.http import csrf, sessions
from app.http.submit import Submitter
from app.services import tokens, users
from app.services.errors import NotFound
from app.services.storage import ImageStore
from app.workers.events import EventBus

# The dependencies that only read the app's state or the request are coroutines: FastAPI runs a plain
# function dependency on a worker thread, one hand-off (and, while a worker paints, one wait for the
# interpreter lock) per dependency, and a job's submit, its JSON and its PNG each resolve several.
# Those that query the database stay plain functions, off the event loop.


async def get_session(request: Request) -> AsyncIterator[Session]:
    """The request's session; closed (its connection back in the pool) once the route has returned.

    ``SessionDep`` gives it scope="function": FastAPI ends it after the route and the response
    model have run, before the body is sent. A streamed body (server-sent events, files) so
    holds no connection while a slow client reads it; such a body opens its own short sessions.

    A coroutine: making a session touches no database (it connects on first use, in the route's
    thread). Closing one that still holds a connection hands it back to the pool, which resets it
    (a ROLLBACK, over the network on PostgreSQL): that goes to a worker thread. A session whose
    route committed last holds none and closes here, and so does one on SQLite, whose ROLLBACK is
    a call into the library that ends a read at once (a worker-thread hop costs more than it).
    """
    session: Session = request.app.state.session_factory()
    try:
        yield session
    finally:
        if session.in_transaction() and not request.app.state.local_database:
            await run_in_threadpool(session.close)
        else:
            session.close()


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_catalog(request: Request) -> ModelCatalog:
    catalog: ModelCatalog = request.app.state.catalog
    return catalog


async def get_store(request: Request) -> ImageStore:
    store: ImageStore = request.app.state.store
    return store


async def get_bus(request: Request) -> EventBus:
    bus: EventBus = request.app.state.bus
    return bus


async def get_dispatch(request: Request) -> Callable[[int], None]:
    dispatch: Callable[[int], None] = request.app.state.dispatch
    return dispatch


async def get_templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


SessionDep = Annotated[Session, Depends(get_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogDep = Annotated[ModelCatalog, Depends(get_catalog)]
# The former name, kept while routes still ask for it: the web side only ever needed the catalog.
StoreDep = Annotated[ImageStore, Depends(get_store)]
BusDep = Annotated[EventBus, Depends(get_bus)]
DispatchDep = Annotated[Callable[[int], None], Depends(get_dispatch)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]


async def get_submitter(session: SessionDep, dispatch: DispatchDep, settings: SettingsDep) -> Submitter:
    return Submitter(session, dispatch, max_queued=settings.max_queued_per_user)


SubmitDep = Annotated[Submitter, Depends(get_submitter)]
"""Every route that creates a job submits it through this: enqueued, then dispatched (app.http.submit)."""


class LoginRequired(Exception):
    """No user behind a request that needs one; app.main answers 401 (JSON) or a redirect to /login (pages)."""


AUTH_BEARER = "bearer"
AUTH_SESSION = "session"
AUTH_LOCAL = "local"


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


async def optional_user(request: Request, session: SessionDep, settings: SettingsDep) -> User | None:
    """Who the request acts for: a Bearer token, else the signed session, else (local mode) the local artist.

    Decided once per request (``acting_user``), in a worker thread unless the CSRF check already did.
    """
    if getattr(request.state, _RESOLVED, False):
        user: User | None = request.state.user
        return user
    return await run_in_threadpool(acting_user, request, session, settings)


def acting_user(request: Request, session: Session, settings: Settings) -> User | None:
    """Who the request acts for, decided on its first call and then kept for the rest of the request.

    How it was decided is kept on ``request.state.auth`` (bearer, session, local or None): the
    CSRF check depends on it. The user is kept on ``request.state.user`` too, so that an error
    page rendered after the route failed still shows the signed-in menu. The user belongs to the
    route's ``SessionDep`` session (one per request) and is released with it when the route
    returns (detached, its columns still loaded), so no user holds a connection while a response
    streams. Queries the database: call it off the event loop.
    """
    if getattr(request.state, _RESOLVED, False):
        kept: User | None = request.state.user
        return kept
    user = _acting_user(request, session, settings)
    request.state.user = user
    setattr(request.state, _RESOLVED, True)
    return user


_RESOLVED = "user_resolved"


def _acting_user(request: Request, session: Session, settings: Settings) -> User | None:
    request.state.auth = None
    clear = _bearer(request)
    if clear is not None:
        user = tokens.resolve(session, clear)
        if user is None:
            # A script that sends a bad token is told so, never silently served as someone else.
            raise HTTPException(
                401, detail="the API token is unknown or revoked", headers={"WWW-Authenticate": "Bearer"}
            )
        request.state.auth = AUTH_BEARER
        return user
    user = sessions.session_user(request, session)
    if user is not None:
        request.state.auth = AUTH_SESSION
        return user
    # A browser that logged out stays anonymous: it reaches the login page, not the local artist.
    if settings.auth_mode == "local" and not sessions.signed_out(request):
        request.state.auth = AUTH_LOCAL
        return users.ensure_local_user(session)
    return None


OptionalUser = Annotated[User | None, Depends(optional_user)]


class Caller:
    """Who a request acts for, decided in the route's own worker thread.

    ``CurrentUser`` resolves the user in a worker-thread hop of its own before the route runs;
    a route that runs its reads in a worker thread anyway asks for a ``Caller`` and calls
    ``required()`` (or ``optional()``) there: one hop instead of two. A hop is a thread woken on
    a core and the event loop woken after it; beside a painting job on two cores each costs
    more than the query it carries. Used by the routes a script asks most often (a job's JSON and
    its event stream, its pictures).
    """

    def __init__(self, request: Request, session: Session, settings: Settings) -> None:
        self.request = request
        self.session = session
        self.settings = settings

    def optional(self) -> User | None:
        return acting_user(self.request, self.session, self.settings)

    def required(self) -> User:
        user = self.optional()
        if user is None:
            raise LoginRequired()
        return user


async def get_caller(request: Request, session: SessionDep, settings: SettingsDep) -> Caller:
    return Caller(request, session, settings)


CallerDep = Annotated[Caller, Depends(get_caller)]


async def current_user(user: OptionalUser) -> User:
    if user is None:
        raise LoginRequired()
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    """An admin; anyone else is told the page does not exist (404, not 403)."""
    if user.role != Role.ADMIN:
        raise NotFound("not found")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


def _is_loopback_host(host_header: str) -> bool:
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return host.strip("[]") in LOOPBACK_HOSTS


async def api_csrf(request: Request, session: SessionDep, settings: SettingsDep) -> None:
    """Refuse a state-changing JSON request that a browser could have been tricked into sending.

    - Bearer requests need no token: a browser never attaches an Authorization header by itself.
    - Requests authenticated by the session cookie need the session's token in X-CSRF-Token
      (pages read it from ``<meta name="csrf-token">``; scripts from ``GET /api/auth/csrf``).
    - The local artist (STUDIO_AUTH=local, no session user) has no cookie to ride on, but a page
      on any website can still make the browser post to http://127.0.0.1:8000. So a request
      without a token is let through only when the server is bound to loopback (nobody else can
      reach it) and the request does not come from a browser: browsers send ``Origin`` (and
      ``Sec-Fetch-Site``) on every cross-origin POST, PATCH and DELETE, scripts such as curl do
      not. A browser request with a matching token is fine as well, if its Host is a loopback
      name (a DNS-rebinding page would arrive with its own host name).
    - Anonymous requests (required mode) carry no identity to abuse; the route refuses them.
    """
    if request.method in csrf.SAFE_METHODS:
        return  # before deciding who asks: a read needs no token, and its route decides in its own thread
    user = await optional_user(request, session, settings)
    auth = getattr(request.state, "auth", None)
    if auth == AUTH_BEARER or user is None:
        return
    token_ok = csrf.carries_token(request, request.headers.get(csrf.HEADER))
    if auth == AUTH_SESSION:
        if token_ok:
            return
    elif auth == AUTH_LOCAL:
        from_browser = "origin" in request.headers or "sec-fetch-site" in request.headers
        loopback = settings.host in LOOPBACK_HOSTS
        if loopback and not from_browser:
            return
        if loopback and token_ok and _is_loopback_host(request.headers.get("host", "")):
            return
    raise HTTPException(403, detail="missing or wrong CSRF token: send the X-CSRF-Token header (GET /api/auth/csrf)")


ApiCsrf = Depends(api_csrf)


async def form_csrf(request: Request, _: OptionalUser) -> None:
    """Refuse a form post whose token (the ``csrf_token`` field, or htmx's header) is not this session's.

    The session cookie is SameSite=Lax, so a cross-site form post arrives without it and has no
    token to match; this also covers the local mode, where a request without a session acts as
    the local artist. Starlette keeps the parsed form on the request, so the route reads it again
    for free. The user is resolved first only so that the refusal's page shows who is signed in.
    """
    if request.method in csrf.SAFE_METHODS:
        return
    given = request.headers.get(csrf.HEADER) or (await request.form()).get(csrf.FIELD)
    if not csrf.carries_token(request, given):
        raise csrf.FormExpired()


FormCsrf = Depends(form_csrf)
"""On every HTML router (app.web): a refused token answers 422 with the error page or fragment."""
