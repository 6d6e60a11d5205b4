"""The one description of a generation's parameters: every layer lines up with it by name."""

from __future__ import annotations

import dataclasses
import json

import pytest
from pydantic import ValidationError
from sqlalchemy import inspect

from app.db.models import Generation
from app.engine.runner import SCHEDULERS, GenerationSpec
from app.params import (
    SCHEDULER_NAMES,
    Action,
    InterpolationWalk,
    JobParams,
    Outpaint,
    ParameterFields,
    Parameters,
    RemixOrigin,
)
from app.schemas import GenerationOut, InpaintRequest, PromptRequest, StyleRequest
from app.services.generations import NewGeneration
from app.services.lineage import PARAMETER_LABELS
from app.services.metadata import STUDIO_KEY, png_text_chunks
from app.web.forms import FIELDS, StudioForm


def test_every_parameter_is_a_column_of_the_generation_row() -> None:
    columns = {column.key for column in inspect(Generation).columns}
    assert set(Parameters.names()) <= columns


def test_every_parameter_reaches_the_engine_spec_by_name() -> None:
    spec_fields = {field.name for field in dataclasses.fields(GenerationSpec)}
    assert set(Parameters.names()) <= spec_fields


def test_every_parameter_is_a_field_of_a_new_generation() -> None:
    new_fields = {field.name for field in dataclasses.fields(NewGeneration)}
    assert set(Parameters.names()) <= new_fields


def test_requests_the_form_and_the_answer_share_the_parameter_names() -> None:
    requested = set(ParameterFields.model_fields)
    # Strength belongs to the modes that start from an image; every other parameter is in every request.
    assert set(Parameters.names()) - {"strength"} <= requested
    for request in (PromptRequest, StyleRequest, InpaintRequest):
        assert requested <= set(request.model_fields)
    assert "strength" in StyleRequest.model_fields and "strength" in InpaintRequest.model_fields
    assert set(FIELDS) == requested
    assert set(Parameters.names()) <= set(GenerationOut.model_fields)


def test_the_scheduler_names_are_the_engines_table() -> None:
    assert set(SCHEDULER_NAMES) == set(SCHEDULERS)


def test_every_parameter_but_the_prompt_and_sides_is_named_on_a_lineage_edge() -> None:
    # LoRAs, regions and ControlNets live in JobParams but change the picture as much as any column,
    # so edges name them too.
    assert set(PARAMETER_LABELS) == (set(Parameters.names()) - {"prompt", "width", "height"}) | {
        "size",
        "loras",
        "regions",
        "control",
    }
    assert PARAMETER_LABELS["negative_prompt"] == "negative prompt"


def test_png_chunk_records_every_parameter() -> None:
    parameters = Parameters(
        prompt="a fox", model="studio-tiny", scheduler="ddim", seed=3, steps=2, guidance=5.0, width=64, height=64
    )
    studio = json.loads(png_text_chunks(parameters.model_dump())[STUDIO_KEY])
    assert set(Parameters.names()) <= set(studio)


def test_the_studio_form_refines_every_parameter_of_a_row() -> None:
    row = Generation(
        prompt="a fox",
        negative_prompt="blur",
        model="studio-tiny",
        scheduler="euler",
        seed=9,
        steps=12,
        guidance=6.5,
        width=64,
        height=72,
        n_images=2,
    )
    row.id = 5
    form = StudioForm.refining(row)
    assert (form.prompt, form.negative_prompt, form.seed, form.guidance, form.height, form.n_images) == (
        "a fox",
        "blur",
        "9",
        "6.5",
        "72",
        "2",
    )
    assert form.parent_id == "5"
    assert PromptRequest.model_validate(form.values).steps == 12


def test_job_params_keep_the_stored_keys_of_older_rows() -> None:
    stored = {
        "action": "interpolate",
        "interpolate": {"from": 1, "to": 2, "frames": 4, "prompt_b": "b", "negative_prompt_b": "", "seed_b": 7},
        "remix_of": {"generation_id": 3, "user_id": 4, "username": "ann"},
    }
    params = JobParams.model_validate(stored)
    assert params.action == Action.INTERPOLATE
    assert params.interpolate == InterpolationWalk(start=1, to=2, frames=4, prompt_b="b", seed_b=7)
    assert params.remix_of == RemixOrigin(generation_id=3, user_id=4, username="ann")
    assert params.stored() == stored


def test_a_new_step_does_not_inherit_the_step_kind_or_grid_cell() -> None:
    params = JobParams(action=Action.VARY, batch="abcdefgh", batch_index=2, mask_blur=3.0, outpaint=Outpaint(left=8))
    inherited = params.without_step()
    assert (inherited.action, inherited.batch, inherited.batch_index) == (None, None, None)
    assert (inherited.mask_blur, inherited.outpaint) == (3.0, Outpaint(left=8))


def test_the_row_always_holds_typed_params() -> None:
    row = Generation(params={"style_strength": 0.25, "style_method": "shared-attention"})
    assert isinstance(row.params, JobParams) and row.params.style_strength == 0.25


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"prompt": "x", "steps": 0}, "steps"),
        ({"prompt": "x", "width": 100}, "width must be a multiple of 8"),
        ({"prompt": "x", "parent_id": 2**31}, "parent_id"),
        ({"prompt": "x", "seed": -1}, "seed"),
    ],
)
def test_bad_parameters_are_refused_naming_the_field(fields: dict[str, object], named: str) -> None:
    with pytest.raises(ValidationError) as error:
        PromptRequest.model_validate(fields)
    assert named in str(error.value)
