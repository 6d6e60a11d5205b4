"""Annotated dependencies: what routes receive from the app built by ``create_app``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app.config import Settings
from app.db.models import User
from app.engine.registry import ModelRegistry
from app.services import users
from app.services.storage import ImageStore
from app.workers.events import EventBus


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.session_factory() as session:
        yield session


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_registry(request: Request) -> ModelRegistry:
    registry: ModelRegistry = request.app.state.registry
    return registry


def get_store(request: Request) -> ImageStore:
    store: ImageStore = request.app.state.store
    return store


def get_bus(request: Request) -> EventBus:
    bus: EventBus = request.app.state.bus
    return bus


def get_dispatch(request: Request) -> Callable[[int], None]:
    dispatch: Callable[[int], None] = request.app.state.dispatch
    return dispatch


def get_templates(request: Request) -> Jinja2Templates:
    templates: Jinja2Templates = request.app.state.templates
    return templates


SessionDep = Annotated[Session, Depends(get_session)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
StoreDep = Annotated[ImageStore, Depends(get_store)]
BusDep = Annotated[EventBus, Depends(get_bus)]
DispatchDep = Annotated[Callable[[int], None], Depends(get_dispatch)]
TemplatesDep = Annotated[Jinja2Templates, Depends(get_templates)]


def optional_user(request: Request, session: SessionDep, settings: SettingsDep) -> User | None:
    """The signed-in user; in local mode, anyone without a session acts as the local artist."""
    user_id = request.session.get("user_id") if "session" in request.scope else None
    if user_id is not None:
        user = session.get(User, user_id)
        if user is not None:
            return user
    if settings.auth_mode == "local":
        return users.ensure_local_user(session)
    return None


OptionalUser = Annotated[User | None, Depends(optional_user)]


def current_user(user: OptionalUser) -> User:
    if user is None:
        raise HTTPException(status_code=401, detail="log in to do this")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
