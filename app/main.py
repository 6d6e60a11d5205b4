"""The application: ``create_app(settings)`` builds everything and keeps it on ``app.state``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.sessions import SessionMiddleware

from app.api import admin as admin_api
from app.api import attention as attention_api
from app.api import auth as auth_api
from app.api import brushes as brushes_api
from app.api import controlnets as controlnets_api
from app.api import events as events_api
from app.api import feedback as feedback_api
from app.api import galleries as galleries_api
from app.api import generations as generations_api
from app.api import images as images_api
from app.api import interpolation as interpolation_api
from app.api import lineage as lineage_api
from app.api import loras as loras_api
from app.api import models as models_api
from app.api import parameters as parameters_api
from app.api import provenance as provenance_api
from app.api import sharing as sharing_api
from app.api import upscale as upscale_api
from app.api import upscalers as upscalers_api
from app.config import LOOPBACK_HOSTS, Settings, SettingsError, get_settings
from app.db.migrate import upgrade_database
from app.db.session import make_engine, make_session_factory
from app.deps import ApiCsrf, LoginRequired
from app.engine.catalog import ModelCatalog, ModelNotFound
from app.gate import LoginGateMiddleware
from app.http.limits import AttemptLimiter
from app.middleware import (
    BodyLimitMiddleware,
    SecureCookiesMiddleware,
    SecurityHeadersMiddleware,
    TrustedHostMiddleware,
)
from app.services.errors import InvalidInput, RateLimited, StudioError
from app.services.storage import ImageStore
from app.web import accounts as accounts_pages
from app.web import attention as attention_pages
from app.web import brushes as brush_pages
from app.web import galleries as galleries_pages
from app.web import interpolation as interpolation_pages
from app.web import lineage as lineage_pages
from app.web import pages, partials
from app.web import previews as preview_pages
from app.web import provenance as provenance_pages
from app.web.errors import error_page
from app.workers.events import EventBus, MemoryEventBus, RedisEventBus
from app.workers.pool import WorkerPool

if TYPE_CHECKING:
    from app.workers.jobs import JobContext

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "templates"
STATIC_DIR = ROOT / "static"


def _validation_message(error: RequestValidationError) -> str:
    """One sentence a person can act on, naming each bad field."""
    parts = []
    for item in error.errors():
        location = ".".join(str(part) for part in item.get("loc", ()) if part not in ("body", "query", "path"))
        message = str(item.get("msg", "is invalid")).removeprefix("Value error, ")
        parts.append(message if location and message.startswith(location) else f"{location or 'request'}: {message}")
    return "; ".join(parts)


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(StudioError)
    async def studio_error(request: Request, error: StudioError) -> Response:
        # The one place domain errors become answers: {"detail"} for the JSON API; for pages and
        # forms the error page, the htmx fragment or the form again (app.web.errors).
        if _is_api(request):
            response: Response = JSONResponse({"detail": error.message}, status_code=error.status_code)
        else:
            response = await error_page(request, error)
        if isinstance(error, RateLimited):
            response.headers["Retry-After"] = str(error.retry_after)
        return response

    @app.exception_handler(ModelNotFound)
    async def model_not_found(request: Request, error: ModelNotFound) -> Response:
        return await studio_error(request, InvalidInput(str(error.args[0] if error.args else error)))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(item.get("loc", ())), "msg": str(item.get("msg", ""))} for item in error.errors()]
        return JSONResponse({"detail": _validation_message(error), "errors": errors}, status_code=422)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _: LoginRequired) -> Response:
        # The JSON API says 401; a page sends the person to the login form and back afterwards.
        if _is_api(request):
            return JSONResponse(
                {"detail": "log in to do this"}, status_code=401, headers={"WWW-Authenticate": "Bearer"}
            )
        target = "/login?next=" + quote(request.url.path, safe="")
        if request.headers.get("hx-request") == "true":
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)


def _make_bus(settings: Settings) -> EventBus:
    if settings.queue == "celery":
        return RedisEventBus(settings.redis_url, prefix=settings.redis_prefix)
    return MemoryEventBus()


def _job_context_factory(app: FastAPI, settings: Settings) -> Callable[[], JobContext]:
    def make() -> JobContext:
        # Imported here, on the pool's start-up thread: this is where torch and diffusers load.
        from app.workers.jobs import build_job_context

        return build_job_context(
            settings, session_factory=app.state.session_factory, store=app.state.store, bus=app.state.bus
        )

    return make


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    if not settings.allowed_host_list:
        raise SettingsError(
            f"STUDIO_HOST={settings.host} is reachable from other machines, so the studio must know the names it "
            "is reached by: set STUDIO_ALLOWED_HOSTS (for example studio.example.org,192.168.1.20), or '*' to answer "
            "any Host header (a page on another site could then reach it by pointing its own name at this server)"
        )
    # Given, not the random one each process makes up: several web processes (scaled mode) must
    # read each other's login cookies, and a server others reach must not sign everyone out at
    # every restart.
    if (settings.queue == "celery" or settings.host not in LOOPBACK_HOSTS) and (
        "secret_key" not in settings.model_fields_set
    ):
        reason = (
            "STUDIO_QUEUE=celery runs several web processes that must read each other's login sessions"
            if settings.queue == "celery"
            else f"STUDIO_HOST={settings.host} is reachable from other machines, and sessions must outlive a restart"
        )
        raise SettingsError(
            f"{reason}, so the studio needs one secret to sign them: set STUDIO_SECRET_KEY to the same long random "
            "string in every web process (python -c 'import secrets; print(secrets.token_urlsafe(32))' makes one)"
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        upgrade_database(settings.sqlalchemy_url)
        pool: WorkerPool | None = app.state.pool
        if pool is not None:
            # Returns at once: the engine is imported and the default model preloaded on the
            # pool's own threads, so the server answers (and /healthz says "loading") meanwhile.
            pool.start()
        try:
            yield
        finally:
            if pool is not None:
                pool.stop()
            app.state.db_engine.dispose()

    app = FastAPI(
        title="Painting Studio",
        description="Paint with diffusion models: prompts, style references, inpainting.",
        lifespan=lifespan,
    )
    engine = make_engine(
        settings.sqlalchemy_url, pool_size=settings.db_pool_size, max_overflow=settings.db_max_overflow
    )
    app.state.settings = settings
    app.state.db_engine = engine
    app.state.session_factory = make_session_factory(engine)
    # SQLite ends a request's read in the library's own call; a server database over the network.
    app.state.local_database = engine.dialect.name == "sqlite"
    # The web side lists and checks models through the catalog (no torch); the pipelines are
    # loaded by the registry that the worker pool builds on its own thread.
    app.state.catalog = ModelCatalog(settings.models_dir)
    app.state.store = ImageStore(settings.images_dir)
    app.state.bus = _make_bus(settings)
    app.state.limiter = AttemptLimiter.from_settings(settings)
    app.state.templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    app.state.pool = None
    dispatch: Callable[[int], None]
    if settings.queue == "celery":
        from app.workers.celery_app import dispatch_to_celery

        dispatch = dispatch_to_celery
    else:
        pool = WorkerPool(settings, _job_context_factory(app, settings)) if settings.start_workers else None
        app.state.pool = pool

        def dispatch(generation_id: int) -> None:
            if app.state.pool is not None:
                app.state.pool.notify()

    app.state.dispatch = dispatch

    _install_error_handlers(app)
    if settings.auth_mode == "required":
        # Added before SessionMiddleware, so it runs inside it and can read the session.
        app.add_middleware(LoginGateMiddleware)
    app.add_middleware(SessionMiddleware, secret_key=settings.secret_key, same_site="lax", https_only=False)
    app.add_middleware(SecureCookiesMiddleware, always=settings.public_url.lower().startswith("https://"))
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    # Added last, so it runs first: a foreign Host header (DNS rebinding) is answered before anything.
    app.add_middleware(TrustedHostMiddleware, allowed=settings.allowed_host_list)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    # ApiCsrf: cookie-session requests that change state must carry X-CSRF-Token (see app.deps.api_csrf).
    app.include_router(auth_api.router, prefix="/api")
    app.include_router(generations_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(events_api.router, prefix="/api")
    app.include_router(brushes_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(images_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(attention_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(lineage_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(upscale_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(interpolation_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(parameters_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(provenance_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(galleries_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(sharing_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(feedback_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(admin_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(models_api.router, prefix="/api")
    app.include_router(loras_api.router, prefix="/api")
    app.include_router(upscalers_api.router, prefix="/api")
    app.include_router(controlnets_api.router, prefix="/api", dependencies=[ApiCsrf])
    app.include_router(models_api.health_router)
    app.include_router(pages.router)
    app.include_router(partials.router)
    app.include_router(brush_pages.router)
    app.include_router(accounts_pages.router)
    app.include_router(galleries_pages.router)
    app.include_router(lineage_pages.router)
    app.include_router(interpolation_pages.router)
    app.include_router(preview_pages.router)
    app.include_router(provenance_pages.router)
    app.include_router(attention_pages.router)
    return app
