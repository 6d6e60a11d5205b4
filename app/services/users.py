"""Users: password hashing, creating artists, logging in, and the built-in local artist."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.models import Role, User
from app.services.errors import Conflict, InvalidInput

LOCAL_USERNAME = "local"
MAX_USERNAME_LENGTH = 64
MIN_PASSWORD_LENGTH = 8
# An argon2 hash never equals this, so nobody can log in as the local artist with a password.
UNUSABLE_PASSWORD_PREFIX = "!"

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    if password_hash.startswith(UNUSABLE_PASSWORD_PREFIX):
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def authenticate(session: Session, *, username: str, password: str) -> User | None:
    """The user whose password this is, or None; an unknown name costs as much time as a wrong password."""
    user = get_by_username(session, username.strip())
    if user is None:
        verify_password(password, _dummy_hash())
        return None
    if not verify_password(password, user.password_hash):
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        session.commit()
    return user


_DUMMY_HASH: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(hash_password(secrets.token_urlsafe(16)))
    return _DUMMY_HASH[0]


def list_users(session: Session) -> list[User]:
    return list(session.scalars(select(User).order_by(User.id)))


def get_by_username(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(User.username == username))


def create_user(session: Session, *, username: str, password: str, role: Role = Role.ARTIST) -> User:
    username = username.strip()
    if not username:
        raise InvalidInput("username must not be empty")
    if len(username) > MAX_USERNAME_LENGTH:
        raise InvalidInput(f"username must be at most {MAX_USERNAME_LENGTH} characters (got {len(username)})")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(f"password must be at least {MIN_PASSWORD_LENGTH} characters (got {len(password)})")
    if get_by_username(session, username) is not None:
        raise Conflict(f"username {username!r} is taken")
    user = User(username=username, password_hash=hash_password(password), role=role)
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        # Two registrations raced past the check above; the unique index settled it.
        session.rollback()
        raise Conflict(f"username {username!r} is taken") from None
    return user


def ensure_local_user(session: Session) -> User:
    """The artist that requests act as when STUDIO_AUTH=local; created on first use."""
    user = get_by_username(session, LOCAL_USERNAME)
    if user is not None:
        return user
    user = User(
        username=LOCAL_USERNAME,
        password_hash=UNUSABLE_PASSWORD_PREFIX + secrets.token_urlsafe(32),
        role=Role.ADMIN,
    )
    session.add(user)
    try:
        session.commit()
    except IntegrityError:
        # Another process created it between our read and our write: use theirs.
        session.rollback()
        user = get_by_username(session, LOCAL_USERNAME)
        if user is None:  # pragma: no cover - the unique violation says it exists
            raise
    return user
