"""Domain errors: services raise these, one set of handlers in app.main turns them into 4xx."""

from __future__ import annotations


class StudioError(Exception):
    """Base of the errors a caller can act on; the message is shown to them as it is."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(StudioError):
    status_code = 404


class Conflict(StudioError):
    status_code = 409


class InvalidInput(StudioError):
    status_code = 422


class TooLarge(StudioError):
    status_code = 413


class UnsupportedMedia(StudioError):
    status_code = 415


class RateLimited(StudioError):
    """Too many requests of a kind for now; ``retry_after`` seconds say when to try again (429)."""

    status_code = 429

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
