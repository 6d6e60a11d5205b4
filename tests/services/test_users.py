"""Users service: password hashing, creating artists, the built-in local artist."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import Role, User
from app.services import users
from app.services.errors import Conflict, InvalidInput


def test_a_password_verifies_against_its_hash_only() -> None:
    password_hash = users.hash_password("correct horse battery")

    assert password_hash != "correct horse battery"
    assert users.verify_password("correct horse battery", password_hash)
    assert not users.verify_password("wrong horse battery", password_hash)
    assert not users.verify_password("anything", "not-a-hash")


def test_create_user_stores_an_artist_who_can_log_in(session: Session) -> None:
    alice = users.create_user(session, username="alice", password="correct horse battery")

    found = users.get_by_username(session, "alice")
    assert found is not None and found.id == alice.id
    assert found.role == Role.ARTIST
    assert users.verify_password("correct horse battery", found.password_hash)
    assert users.get_by_username(session, "nobody") is None


def test_create_user_refuses_a_taken_username(session: Session) -> None:
    users.create_user(session, username="alice", password="correct horse battery")

    with pytest.raises(Conflict, match="taken"):
        users.create_user(session, username="alice", password="another password")


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("", "long enough", "username must not be empty"),
        ("   ", "long enough", "username must not be empty"),
        ("x" * 65, "long enough", "at most 64"),
        ("bob", "short", "at least 8"),
    ],
)
def test_create_user_refuses_bad_input(session: Session, username: str, password: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        users.create_user(session, username=username, password=password)


def test_the_local_artist_is_an_admin_created_once_who_cannot_log_in(session: Session) -> None:
    first = users.ensure_local_user(session)
    second = users.ensure_local_user(session)

    assert first.id == second.id
    assert (first.username, first.role) == ("local", Role.ADMIN)
    assert session.scalar(select(func.count()).select_from(User)) == 1
    assert not users.verify_password("", first.password_hash)
    assert not users.verify_password(first.password_hash, first.password_hash)
