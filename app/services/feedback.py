"""Feedback: ratings, likes and comments on images, A/B preference picks, and their JSON Lines export."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import Feedback, Generation, Image, Preference, User
from app.params import Parameters
from app.services import images
from app.services.errors import InvalidInput, NotFound
from app.services.storage import ImageStore

MAX_COMMENT = 2000
MAX_LINEAGE_DEPTH = 1000


def for_user(session: Session, *, user: User | None, image_ids: Sequence[int]) -> dict[int, Feedback]:
    """``user``'s feedback rows for these images, by image id."""
    if user is None or not image_ids:
        return {}
    stmt = select(Feedback).where(Feedback.user_id == user.id, Feedback.image_id.in_(set(image_ids)))
    return {row.image_id: row for row in session.scalars(stmt)}


def give(
    session: Session,
    *,
    user: User,
    image_id: int,
    rating: int | None = None,
    liked: bool | None = None,
    comment: str | None = None,
    clear_rating: bool = False,
) -> Feedback:
    """Set what ``user`` thinks of an image they may see; one row per user and image, updated in place.

    Fields left as None keep their value, so a like does not erase a rating.
    """
    image = images.get_visible(session, image_id=image_id, user=user)
    if rating is not None and not 1 <= rating <= 5:
        raise InvalidInput(f"rating must be between 1 and 5 (got {rating})")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise InvalidInput(f"comment must be at most {MAX_COMMENT} characters (got {len(comment)})")
    for attempt in range(2):
        row = session.scalar(select(Feedback).where(Feedback.user_id == user.id, Feedback.image_id == image.id))
        if row is None:
            row = Feedback(user_id=user.id, image_id=image.id, liked=False, comment="")
            session.add(row)
        if clear_rating:
            row.rating = None
        elif rating is not None:
            row.rating = rating
        if liked is not None:
            row.liked = liked
        if comment is not None:
            row.comment = comment.strip()
        row.updated_at = utcnow()
        try:
            session.commit()
            return row
        except IntegrityError:
            # The same user's two tabs inserted the row at once; the unique constraint kept one.
            # Roll back and update that one instead.
            session.rollback()
            if attempt:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class Summary:
    average: float | None
    ratings: int
    likes: int
    comments: list[tuple[str, str]]


def summary(session: Session, *, image_id: int) -> Summary:
    """Everyone's feedback on one image: mean rating, count, likes and the comments with their authors."""
    average, count = session.execute(
        select(func.avg(Feedback.rating), func.count(Feedback.rating)).where(Feedback.image_id == image_id)
    ).one()
    likes = session.scalar(select(func.count()).where(Feedback.image_id == image_id, Feedback.liked.is_(True)))
    rows = session.execute(
        select(User.username, Feedback.comment)
        .join(User, User.id == Feedback.user_id)
        .where(Feedback.image_id == image_id, Feedback.comment != "")
        .order_by(Feedback.updated_at)
    ).all()
    return Summary(
        average=float(average) if average is not None else None,
        ratings=int(count or 0),
        likes=int(likes or 0),
        comments=[(name, text) for name, text in rows],
    )


# ---------------------------------------------------------------------------------------------
# A/B preferences


def lineage_root(session: Session, generation: Generation) -> int:
    """The id of the first generation in ``generation``'s chain of refinements."""
    current = generation
    for _ in range(MAX_LINEAGE_DEPTH):
        if current.parent_id is None:
            break
        parent = session.get(Generation, current.parent_id)
        if parent is None:
            break
        current = parent
    return current.id


def comparable(session: Session, first: Image, second: Image) -> bool:
    """Two outputs of the same prompt, or of one lineage (one refined from the other, or siblings)."""
    if first.generation is None or second.generation is None:
        return False
    a, b = first.generation, second.generation
    if a.id == b.id or a.prompt.strip() == b.prompt.strip():
        return True
    return lineage_root(session, a) == lineage_root(session, b)


def record_preference(session: Session, *, user: User, winner_image_id: int, loser_image_id: int) -> Preference:
    """Record that ``user`` prefers one image over another; both must be visible to them and comparable."""
    if winner_image_id == loser_image_id:
        raise InvalidInput("pick between two different images")
    winner = images.get_visible(session, image_id=winner_image_id, user=user)
    loser = images.get_visible(session, image_id=loser_image_id, user=user)
    if not comparable(session, winner, loser):
        raise InvalidInput("compare two paintings of the same prompt or of the same lineage")
    assert winner.generation is not None
    preference = Preference(
        user_id=user.id, winner_image_id=winner.id, loser_image_id=loser.id, prompt=winner.generation.prompt
    )
    session.add(preference)
    session.commit()
    return preference


def pair_candidates(session: Session, *, user: User, generation: Generation) -> list[Image]:
    """Images the user may compare with this generation's: its own outputs, then its lineage's."""
    root = lineage_root(session, generation)
    stmt = select(Generation).where(Generation.user_id == generation.user_id).order_by(Generation.id)
    related = [
        g
        for g in session.scalars(stmt)
        if g.prompt.strip() == generation.prompt.strip() or lineage_root(session, g) == root
    ]
    result = list(generation.images)
    for other in related:
        if other.id != generation.id:
            result.extend(other.images)
    return [image for image in result if images.can_see(session, image, user)]


def _parameters(generation: Generation | None) -> dict[str, Any]:
    if generation is None:
        return {}
    extras = generation.params.stored()
    return {
        "generation_id": generation.id,
        "mode": generation.mode.value,
        # The prompt is the row's own field; everything else it was painted with is here.
        **Parameters.of(generation).model_dump(exclude={"prompt"}),
        "parent_id": generation.parent_id,
        **({"params": extras} if extras else {}),
    }


def export_rows(
    session: Session, *, user: User | None = None, locate: ImageStore | None = None
) -> Iterator[dict[str, Any]]:
    """One dict per preference pick, oldest first: the shape preference-tuning tools read
    (``prompt``, ``chosen``, ``rejected``), with the negative prompt and each side's parameters.

    ``chosen``/``rejected`` are file paths when ``locate`` (the image store) is given, as the CLI
    export does, otherwise the API URLs of the PNGs. ``user=None`` exports everyone's picks.
    """
    stmt = select(Preference).order_by(Preference.id)
    if user is not None:
        stmt = stmt.where(Preference.user_id == user.id)
    for preference in session.scalars(stmt).yield_per(500):
        winner = session.get(Image, preference.winner_image_id)
        loser = session.get(Image, preference.loser_image_id)
        if winner is None or loser is None:
            continue
        generation = winner.generation

        def where(image: Image) -> str:
            return str(locate.path(image.sha256)) if locate is not None else f"/api/images/{image.id}"

        yield {
            "prompt": preference.prompt,
            "negative_prompt": generation.negative_prompt if generation is not None else "",
            "chosen": where(winner),
            "rejected": where(loser),
            "chosen_image_id": winner.id,
            "rejected_image_id": loser.id,
            "chosen_sha256": winner.sha256,
            "rejected_sha256": loser.sha256,
            "parameters": {"chosen": _parameters(generation), "rejected": _parameters(loser.generation)},
            "user_id": preference.user_id,
            "created_at": preference.created_at.isoformat() + "Z",
        }


def get_preference(session: Session, *, user: User, preference_id: int) -> Preference:
    preference = session.get(Preference, preference_id)
    if preference is None or preference.user_id != user.id:
        raise NotFound(f"preference {preference_id} not found")
    return preference
