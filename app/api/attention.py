"""Attention API: where each word of a painting's prompt landed, its heat maps, and refines from them."""

from __future__ import annotations

from fastapi import APIRouter, Path
from fastapi.responses import Response

from app.api.generations import accepted
from app.deps import CurrentUser, OptionalUser, SessionDep, StoreDep, SubmitDep
from app.params import RowId
from app.schemas import AttentionOut, AttentionRefineRequest, GenerationAccepted, WordAttentionOut
from app.services import attention

router = APIRouter(tags=["images"])


@router.get("/images/{image_id}/attention", response_model=AttentionOut)
def image_attention(image_id: RowId, session: SessionDep, user: OptionalUser, store: StoreDep) -> AttentionOut:
    """The prompt's words with each one's coverage, peak and heat map; 404 for an image you can't see."""
    found = attention.for_image(session, store, image_id=image_id, user=user)
    return AttentionOut(
        image_id=image_id,
        available=found.available,
        reason=found.reason,
        prompt=found.text,
        words=[
            WordAttentionOut(
                word=word.word,
                index=word.index,
                coverage=word.coverage,
                peak=word.peak,
                strength=word.strength,
                weak=word.weak,
                map_url=f"/api/images/{image_id}/attention/{word.index}.png",
            )
            for word in found.words
        ],
    )


@router.get("/images/{image_id}/attention/{index}.png", response_class=Response)
def word_heat_map(
    image_id: RowId,
    session: SessionDep,
    user: OptionalUser,
    store: StoreDep,
    index: int = Path(ge=0, le=255, description="the word's index in the attention answer"),
) -> Response:
    """Word ``index``'s heat map: an RGBA PNG at the image's size, dimmed where the word did not land."""
    png = attention.heat_map_png(session, store, image_id=image_id, user=user, index=index)
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.post("/images/{image_id}/attention/refine", status_code=202, response_model=GenerationAccepted)
def refine_from_attention(
    image_id: RowId, body: AttentionRefineRequest, user: CurrentUser, store: StoreDep, submit: SubmitDep
) -> GenerationAccepted:
    """A refine of the image's painting: its weak words (or ``words``) weighted up or moved earlier."""
    generation = submit.through(
        attention.refine, store, owner=user, image_id=image_id, how=body.how, indexes=body.words
    )
    return accepted(generation)
