"""Orphan image files: removing stored PNGs (and their thumbnails) that no Image row references.

Files are written before their rows, so a file without a row is either about to be referenced
(an upload or a job between its write and its commit) or left behind (a job cancelled or
requeued after it wrote its outputs, a process killed between the two). A job whose outputs
were refused removes them at once (``remove_unreferenced``); a periodic pass removes whatever
else is old enough that no write can still be on its way to a row (``remove_orphans``).

The store is content-addressed, so one file may back rows of several jobs or users: a file is
removed only when no row at all names its hash.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db.models import Image
from app.services.storage import ImageStore

logger = logging.getLogger(__name__)

# Hashes per IN (...) query: well under every driver's parameter limit.
_CHUNK = 500


def referenced(session: Session, sha256s: Iterable[str]) -> set[str]:
    """Which of ``sha256s`` some Image row names."""
    wanted = sorted(set(sha256s))
    found: set[str] = set()
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        found.update(session.scalars(select(Image.sha256).where(Image.sha256.in_(chunk)).distinct()))
    return found


def remove_unreferenced(session: Session, store: ImageStore, *, sha256s: Iterable[str]) -> list[str]:
    """Removes the files among ``sha256s`` that no row references; returns the removed hashes.

    A job writing the same bytes at this very moment could commit its row just after the check
    and find its file gone; the worker re-writes missing outputs after its commit (workers.jobs),
    which closes all but an instant of that window.
    """
    candidates = set(sha256s)
    keep = referenced(session, candidates)
    removed = [sha256 for sha256 in sorted(candidates - keep) if store.remove(sha256)]
    if removed:
        logger.info("removed %d image files no row references: %s", len(removed), ", ".join(removed))
    return removed


def remove_orphans(session: Session, store: ImageStore, *, older_than: timedelta) -> list[str]:
    """Removes stored PNGs older than ``older_than`` that no row references; returns their hashes."""
    cutoff = time.time() - older_than.total_seconds()
    return remove_unreferenced(session, store, sha256s=store.hashes(older_than=cutoff))
