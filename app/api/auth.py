"""Accounts API: register, log in and out, the CSRF token, and Bearer API tokens."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import BaseModel, Field

from app.db.models import ApiToken, User
from app.deps import ApiCsrf, CurrentUser, SessionDep
from app.http.csrf import csrf_token
from app.http.limits import LimiterDep, client_address
from app.http.sessions import end_session, start_session
from app.params import RowId
from app.schemas import UtcDatetime
from app.services import tokens, users

router = APIRouter(tags=["accounts"])


class Credentials(BaseModel):
    username: str = Field(min_length=1, max_length=users.MAX_USERNAME_LENGTH)
    password: str = Field(min_length=1, max_length=1024)


class UserOut(BaseModel):
    id: int
    username: str
    role: str


class LoggedIn(UserOut):
    csrf_token: str


class CsrfOut(BaseModel):
    csrf_token: str


class TokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=tokens.MAX_NAME_LENGTH)


class TokenOut(BaseModel):
    id: int
    name: str
    created_at: UtcDatetime
    last_used_at: UtcDatetime | None
    revoked_at: UtcDatetime | None


class TokenCreated(TokenOut):
    token: str


def user_out(user: User) -> UserOut:
    return UserOut(id=user.id, username=user.username, role=user.role.value)


# Login and register take JSON only: a cross-site form cannot send application/json without a CORS
# preflight, which this app never grants, so they need no CSRF token (there is no session yet).
@router.post("/auth/register", status_code=201, response_model=LoggedIn)
def register(body: Credentials, request: Request, session: SessionDep, limiter: LimiterDep) -> LoggedIn:
    limiter.check_register(address=client_address(request))
    user = users.create_user(session, username=body.username, password=body.password)
    token = start_session(request, user)
    return LoggedIn(**user_out(user).model_dump(), csrf_token=token)


@router.post("/auth/login", response_model=LoggedIn)
def login(body: Credentials, request: Request, session: SessionDep, limiter: LimiterDep) -> LoggedIn:
    # Checked before the (deliberately slow) password hash: a refused guess costs nothing.
    limiter.check_login(username=body.username, address=client_address(request))
    user = users.authenticate(session, username=body.username, password=body.password)
    if user is None:
        limiter.login_failed(username=body.username, address=client_address(request))
        raise HTTPException(401, detail="wrong username or password")
    limiter.login_succeeded(username=body.username)
    token = start_session(request, user)
    return LoggedIn(**user_out(user).model_dump(), csrf_token=token)


@router.post("/auth/logout", status_code=204, dependencies=[ApiCsrf])
def logout(request: Request, session: SessionDep) -> Response:
    """Ends every session of the account (the saved cookies of other browsers too)."""
    end_session(request, session)
    return Response(status_code=204)


@router.get("/auth/me", response_model=UserOut)
def me(user: CurrentUser) -> UserOut:
    return user_out(user)


@router.get("/auth/csrf", response_model=CsrfOut)
def get_csrf(request: Request) -> CsrfOut:
    """The token that cookie-session requests send in X-CSRF-Token when they change something."""
    return CsrfOut(csrf_token=csrf_token(request))


def token_out(token: ApiToken) -> TokenOut:
    return TokenOut(
        id=token.id,
        name=token.name,
        created_at=token.created_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


@router.post("/tokens", status_code=201, response_model=TokenCreated, dependencies=[ApiCsrf])
def create_token(body: TokenRequest, session: SessionDep, user: CurrentUser) -> TokenCreated:
    """A Bearer token for scripts; the clear text is in this answer only."""
    token, clear = tokens.issue(session, owner=user, name=body.name)
    return TokenCreated(**token_out(token).model_dump(), token=clear)


@router.get("/tokens", response_model=list[TokenOut])
def list_tokens(session: SessionDep, user: CurrentUser) -> list[TokenOut]:
    return [token_out(token) for token in tokens.list_for_user(session, owner=user)]


@router.delete("/tokens/{token_id}", status_code=204, dependencies=[ApiCsrf])
def revoke_token(token_id: RowId, session: SessionDep, user: CurrentUser) -> Response:
    tokens.revoke(session, owner=user, token_id=token_id)
    return Response(status_code=204)
