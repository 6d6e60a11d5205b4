"""API tokens: issuing Bearer tokens, storing only their hashes, resolving and revoking them."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import ApiToken, User
from app.services.errors import InvalidInput, NotFound

TOKEN_PREFIX = "pst_"
MAX_NAME_LENGTH = 100


def hash_token(token: str) -> str:
    """SHA-256 is enough here: a token carries 256 random bits, so there is nothing to brute-force,
    and an unsalted digest lets the unique index find the row in one lookup."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue(session: Session, *, owner: User, name: str) -> tuple[ApiToken, str]:
    """A new token for ``owner``; the clear text is returned once and never stored."""
    name = name.strip()
    if not name:
        raise InvalidInput("name the token, so you can tell it apart when you revoke it")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"token name must be at most {MAX_NAME_LENGTH} characters (got {len(name)})")
    clear = TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(user_id=owner.id, token_hash=hash_token(clear), name=name)
    session.add(token)
    session.commit()
    return token, clear


def resolve(session: Session, clear: str) -> User | None:
    """The user a live token belongs to, or None for an unknown or revoked token."""
    if not clear.startswith(TOKEN_PREFIX):
        return None
    token = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(clear)))
    if token is None or token.revoked_at is not None:
        return None
    user = session.get(User, token.user_id)
    if user is None:
        return None
    # Two requests with one token may both write this; either timestamp is right.
    token.last_used_at = utcnow()
    session.commit()
    return user


def list_for_user(session: Session, *, owner: User) -> list[ApiToken]:
    stmt = select(ApiToken).where(ApiToken.user_id == owner.id).order_by(ApiToken.id.desc())
    return list(session.scalars(stmt))


def revoke(session: Session, *, owner: User, token_id: int) -> ApiToken:
    """Revoke one of ``owner``'s tokens; someone else's answers NotFound, as a missing one does."""
    token = session.get(ApiToken, token_id)
    if token is None or token.user_id != owner.id:
        raise NotFound(f"token {token_id} not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.commit()
    return token
