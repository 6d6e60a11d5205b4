"""Rate limits on logging in and registering: failed logins per username and per address, sign-ups per address.

Argon2 makes each password check cost real CPU on purpose, so unbounded login and register
requests are both a password-guessing route and a way to exhaust the server. The counts live in
memory in embedded mode and in Redis when scaled (several web processes must share them), through
the ``limits`` library's moving windows.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import Depends, Request
from limits import RateLimitItem, parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from app.config import Settings
from app.services.errors import RateLimited

# Usernames longer than the column allows are cut: the key stays small whatever is sent.
_MAX_KEY = 64


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


class AttemptLimiter:
    """Refuses logins after too many failures (per username, per address) and sign-ups per address."""

    def __init__(self, storage_uri: str, *, login_failures: str, registrations: str) -> None:
        self.storage = storage_from_string(storage_uri)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.login_failures: RateLimitItem = parse(login_failures)
        self.registrations: RateLimitItem = parse(registrations)

    @classmethod
    def from_settings(cls, settings: Settings) -> AttemptLimiter:
        storage = settings.redis_url if settings.queue == "celery" else "memory://"
        return cls(storage, login_failures=settings.login_failure_limit, registrations=settings.register_limit)

    def _retry_after(self, item: RateLimitItem, *keys: str) -> int:
        reset_time, _ = self.limiter.get_window_stats(item, *keys)
        return max(1, math.ceil(reset_time - time.time()))

    def check_login(self, *, username: str, address: str) -> None:
        """Before the password is checked: refuse when this username or this address failed too often."""
        user_key = ("login-user", username.strip().lower()[:_MAX_KEY])
        address_key = ("login-address", address)
        for keys in (user_key, address_key):
            if not self.limiter.test(self.login_failures, *keys):
                retry_after = max(self._retry_after(self.login_failures, *key) for key in (user_key, address_key))
                raise RateLimited(
                    f"too many failed logins; wait {_minutes(retry_after)} before trying again "
                    "(or ask an admin to reset your password)",
                    retry_after=retry_after,
                )

    def login_failed(self, *, username: str, address: str) -> None:
        self.limiter.hit(self.login_failures, "login-user", username.strip().lower()[:_MAX_KEY])
        self.limiter.hit(self.login_failures, "login-address", address)

    def login_succeeded(self, *, username: str) -> None:
        """The account's own count starts again; the address keeps its failures."""
        self.limiter.clear(self.login_failures, "login-user", username.strip().lower()[:_MAX_KEY])

    def check_register(self, *, address: str) -> None:
        """Counts a sign-up attempt from ``address``; refuses past the limit."""
        if not self.limiter.hit(self.registrations, "register-address", address):
            retry_after = self._retry_after(self.registrations, "register-address", address)
            raise RateLimited(
                f"too many new accounts from this address; wait {_minutes(retry_after)} before registering another",
                retry_after=retry_after,
            )


def client_address(request: Request) -> str:
    """The address the request came from (the proxy's, behind one)."""
    return request.client.host if request.client else "unknown"


def get_limiter(request: Request) -> AttemptLimiter:
    limiter: AttemptLimiter = request.app.state.limiter
    return limiter


LimiterDep = Annotated[AttemptLimiter, Depends(get_limiter)]
