"""Feedback API: rating, liking and commenting on images, A/B picks, and the preference export."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from app.db.models import Feedback, Role
from app.deps import CurrentUser, SessionDep
from app.params import RowId
from app.services import feedback, images

router = APIRouter(tags=["feedback"])


class FeedbackIn(BaseModel):
    rating: int | None = Field(default=None, ge=0, le=5, description="1-5; 0 clears the rating")
    liked: bool | None = None
    comment: str | None = Field(default=None, max_length=feedback.MAX_COMMENT)


class FeedbackOut(BaseModel):
    image_id: int
    rating: int | None
    liked: bool
    comment: str
    average_rating: float | None
    ratings: int
    likes: int


class PreferenceIn(BaseModel):
    winner_image_id: RowId
    loser_image_id: RowId


class PreferenceOut(BaseModel):
    id: int
    winner_image_id: int
    loser_image_id: int
    prompt: str


def feedback_out(session: SessionDep, image_id: int, row: Feedback | None) -> FeedbackOut:
    total = feedback.summary(session, image_id=image_id)
    return FeedbackOut(
        image_id=image_id,
        rating=row.rating if row else None,
        liked=row.liked if row else False,
        comment=row.comment if row else "",
        average_rating=total.average,
        ratings=total.ratings,
        likes=total.likes,
    )


@router.post("/images/{image_id}/feedback", response_model=FeedbackOut)
def give_feedback(image_id: RowId, body: FeedbackIn, session: SessionDep, user: CurrentUser) -> FeedbackOut:
    """Set your rating, like and comment; fields you leave out keep their value."""
    row = feedback.give(
        session,
        user=user,
        image_id=image_id,
        rating=body.rating or None,
        clear_rating=body.rating == 0,
        liked=body.liked,
        comment=body.comment,
    )
    return feedback_out(session, image_id, row)


@router.get("/images/{image_id}/feedback", response_model=FeedbackOut)
def get_feedback(image_id: RowId, session: SessionDep, user: CurrentUser) -> FeedbackOut:
    image = images.get_visible(session, image_id=image_id, user=user)
    return feedback_out(session, image.id, feedback.for_user(session, user=user, image_ids=[image.id]).get(image.id))


@router.post("/preferences", status_code=201, response_model=PreferenceOut)
def record_preference(body: PreferenceIn, session: SessionDep, user: CurrentUser) -> PreferenceOut:
    """A "which is better?" pick between two images of the same prompt or lineage."""
    preference = feedback.record_preference(
        session, user=user, winner_image_id=body.winner_image_id, loser_image_id=body.loser_image_id
    )
    return PreferenceOut(
        id=preference.id,
        winner_image_id=preference.winner_image_id,
        loser_image_id=preference.loser_image_id,
        prompt=preference.prompt,
    )


@router.get("/preferences/export", response_class=StreamingResponse)
def export_preferences(
    session: SessionDep, user: CurrentUser, everyone: Annotated[bool, Query(alias="all")] = False
) -> StreamingResponse:
    """Your picks as JSON Lines (``prompt``, ``negative_prompt``, ``chosen``, ``rejected``,
    ``parameters``); an admin may ask for everyone's with ``?all=true``."""
    scope = None if everyone and user.role == Role.ADMIN else user
    lines = [json.dumps(row) + "\n" for row in feedback.export_rows(session, user=scope)]

    def body() -> Iterator[str]:
        yield from lines

    headers = {"Content-Disposition": 'attachment; filename="preferences.jsonl"'}
    return StreamingResponse(body(), media_type="application/jsonl", headers=headers)
