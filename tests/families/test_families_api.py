"""Every family through the JSON API: listed with what it can do, painting, repainting and refusing.

The models are tiny random builds (``tests/families/builders.py``), so the pictures are noise;
what is checked is what a caller can observe: the same seed gives the same picture, unmasked
pixels survive an inpaint, an outpaint grows the canvas, and what a family can't do answers 422.
"""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.families.builders import (
    FAMILY_OF,
    FLUX,
    FLUX2,
    FLUX2_KLEIN,
    FLUX_FILL,
    QWEN,
    SD1,
    SD1_INPAINT,
    SD2,
    SD3,
    SDXL,
    ZIMAGE,
)

ALL = list(FAMILY_OF)
# FLUX.2 takes whole images as references only: it refuses image-to-image; [dev] refuses any repainting,
# [klein] inpaints and outpaints through its own inpainting pipeline.
REPAINTING = [name for name in ALL if name not in (FLUX2, FLUX2_KLEIN)]
MASKED = [*REPAINTING, FLUX2_KLEIN]
UNETS = [SD1, SD2, SDXL]
TRANSFORMERS = [SD3, FLUX, ZIMAGE, QWEN, FLUX2, FLUX2_KLEIN]
FINAL = {"succeeded", "failed", "cancelled"}


def wait(client: TestClient, generation_id: int) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(2400):
        body = client.get(f"/api/generations/{generation_id}").json()
        if body["status"] in FINAL:
            return body
        time.sleep(0.05)
    raise AssertionError(f"generation {generation_id} never finished: {body}")


def submit(client: TestClient, path: str, **fields: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"prompt": "a red barn", "steps": 2, "seed": 7, "width": 64, "height": 64}
    request.update(fields)
    response = client.post(path, json=request)
    assert response.status_code == 202, response.text
    done = wait(client, response.json()["id"])
    assert done["status"] == "succeeded", done["error"]
    return done


def pixels(client: TestClient, generation: dict[str, Any]) -> np.ndarray:
    [image] = generation["images"]
    response = client.get(image["url"])
    assert response.status_code == 200
    with Image.open(io.BytesIO(response.content)) as picture:
        return np.asarray(picture.convert("RGB"), dtype=np.int16)


def upload(client: TestClient, picture: Image.Image) -> int:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    response = client.post("/api/uploads", files={"file": ("picture.png", buffer.getvalue(), "image/png")})
    assert response.status_code == 201, response.text
    image_id: int = response.json()["id"]
    return image_id


def two_colour_picture(size: int = 64) -> Image.Image:
    array = np.zeros((size, size, 3), dtype=np.uint8)
    array[: size // 2] = (200, 40, 40)
    array[size // 2 :] = (40, 40, 200)
    array[..., 1] = np.linspace(0, 255, size, dtype=np.uint8)[None, :]
    return Image.fromarray(array)


def centre_mask(size: int = 64) -> Image.Image:
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, (size // 4, size // 4, 3 * size // 4, 3 * size // 4))
    return mask


def test_models_lists_every_family_with_its_size_and_capabilities(family_client: TestClient) -> None:
    models = {model["name"]: model for model in family_client.get("/api/models").json()}

    assert {name: models[name]["family"] for name in ALL} == FAMILY_OF
    for name in ALL:
        assert models[name]["width"] == models[name]["height"] == 64
        assert models[name]["size_step"] % 8 == 0
        assert models[name]["loaded"] in (True, False)
        assert models[name]["capabilities"]["txt2img"]
    for name in REPAINTING:
        capabilities = models[name]["capabilities"]
        assert capabilities["img2img"] and capabilities["inpaint"] and capabilities["outpaint"]
    for name in ALL:
        assert models[name]["capabilities"]["style_methods"] == ["shared-attention"]
    for name in UNETS:
        assert models[name]["capabilities"]["guidance"] == "cfg"
    inpainting = models[SD1_INPAINT]
    assert (inpainting["family"], inpainting["inpainting_unet"]) == ("sd1", True)
    assert inpainting["capabilities"]["txt2img"] is False and inpainting["capabilities"]["inpaint"] is True
    fill = models[FLUX_FILL]
    assert fill["family"] == "flux-fill"
    assert (fill["capabilities"]["txt2img"], fill["capabilities"]["img2img"]) == (False, False)
    assert (fill["capabilities"]["inpaint"], fill["capabilities"]["outpaint"]) == (True, True)
    flux = models[FLUX]["capabilities"]
    assert (flux["guidance"], flux["negative_prompt"], flux["schedulers"]) == ("distilled", False, False)
    assert models[SD3]["capabilities"]["negative_prompt"] is True
    assert models[ZIMAGE]["pipeline"] == "ZImagePipeline"
    flux2 = models[FLUX2]
    assert flux2["pipeline"] == "Flux2Pipeline"
    assert (flux2["capabilities"]["img2img"], flux2["capabilities"]["inpaint"], flux2["capabilities"]["outpaint"]) == (
        False,
        False,
        False,
    )
    assert (flux2["capabilities"]["guidance"], flux2["capabilities"]["negative_prompt"]) == ("distilled", False)
    klein = models[FLUX2_KLEIN]
    assert (klein["family"], klein["pipeline"]) == ("flux2", "Flux2KleinPipeline")
    assert (klein["capabilities"]["guidance"], klein["capabilities"]["negative_prompt"]) == ("cfg", False)
    assert (klein["capabilities"]["img2img"], klein["capabilities"]["inpaint"], klein["capabilities"]["outpaint"]) == (
        False,
        True,
        True,
    )


def test_a_model_reads_as_loaded_once_it_has_painted(family_client: TestClient) -> None:
    submit(family_client, "/api/generate/prompt", model=SD1)

    models = {model["name"]: model for model in family_client.get("/api/models").json()}

    assert models[SD1]["loaded"] is True
    assert models[SD1]["state"] == "ready"


@pytest.mark.parametrize("model", ALL)
def test_the_same_seed_paints_the_same_picture_and_another_seed_another(family_client: TestClient, model: str) -> None:
    first = pixels(family_client, submit(family_client, "/api/generate/prompt", model=model, seed=3))
    again = pixels(family_client, submit(family_client, "/api/generate/prompt", model=model, seed=3))
    other = pixels(family_client, submit(family_client, "/api/generate/prompt", model=model, seed=4))

    assert first.shape == (64, 64, 3)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("model", [*MASKED, SD1_INPAINT, FLUX_FILL])
def test_inpainting_keeps_every_unmasked_pixel(family_client: TestClient, model: str) -> None:
    source, mask = two_colour_picture(), centre_mask()
    image_id, mask_id = upload(family_client, source), upload(family_client, mask.convert("RGB"))

    done = submit(family_client, "/api/generate/inpaint", model=model, image_id=image_id, mask_id=mask_id, mask_blur=0)

    result, original = pixels(family_client, done), np.asarray(source, dtype=np.int16)
    keep = np.asarray(mask) == 0
    assert np.array_equal(result[keep], original[keep])
    assert np.abs(result[~keep] - original[~keep]).max() > 20, "the masked square was not repainted"


@pytest.mark.parametrize("model", [*MASKED, FLUX_FILL])
def test_outpainting_grows_the_canvas_around_the_source(family_client: TestClient, model: str) -> None:
    source = two_colour_picture()
    request = {"model": model, "image_id": upload(family_client, source), "mask_blur": 0}

    done = submit(family_client, "/api/generate/inpaint", outpaint={"right": 16, "bottom": 8}, **request)

    result = pixels(family_client, done)
    assert result.shape == (72, 80, 3)
    assert np.array_equal(result[:64, :64], np.asarray(source, dtype=np.int16))


@pytest.mark.parametrize("model", REPAINTING)
def test_style_over_a_content_image_paints_at_its_size(family_client: TestClient, model: str) -> None:
    reference = upload(family_client, Image.new("RGB", (64, 64), (220, 120, 30)))
    content = upload(family_client, two_colour_picture())

    done = submit(
        family_client,
        "/api/generate/style",
        model=model,
        style_image_ids=[reference],
        image_id=content,
        strength=0.7,
        scheduler="ddim",
    )

    assert done["mode"] == "style"
    assert pixels(family_client, done).shape == (64, 64, 3)


@pytest.mark.slow
@pytest.mark.parametrize("model", TRANSFORMERS)
def test_style_from_a_prompt_on_a_transformer_family_is_reproducible(family_client: TestClient, model: str) -> None:
    reference = upload(family_client, Image.new("RGB", (64, 64), (220, 120, 30)))
    request = {"model": model, "style_image_ids": [reference], "style_strength": 0.8}

    first = pixels(family_client, submit(family_client, "/api/generate/style", **request))
    again = pixels(family_client, submit(family_client, "/api/generate/style", **request))
    plain = pixels(family_client, submit(family_client, "/api/generate/prompt", model=model))

    assert np.array_equal(first, again)
    assert not np.array_equal(first, plain), "the reference changed nothing"


def test_a_prompt_for_an_inpainting_only_checkpoint_answers_422_saying_why(family_client: TestClient) -> None:
    response = family_client.post("/api/generate/prompt", json={"prompt": "a barn", "model": SD1_INPAINT})

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith(f"model '{SD1_INPAINT}': this Stable Diffusion 1.x model can't paint from a prompt alone")
    assert "inpainting checkpoint" in detail


def test_a_prompt_or_style_for_flux_fill_answers_422_saying_why(family_client: TestClient) -> None:
    reference = upload(family_client, Image.new("RGB", (64, 64), (220, 120, 30)))

    prompt = family_client.post("/api/generate/prompt", json={"prompt": "a barn", "model": FLUX_FILL})
    style = family_client.post(
        "/api/generate/style", json={"prompt": "a barn", "model": FLUX_FILL, "style_image_ids": [reference]}
    )

    assert prompt.status_code == 422
    assert "FLUX.1 Fill only repaints the masked part of an image" in prompt.json()["detail"]
    # A style job paints from a prompt too: the first thing FLUX.1 Fill can't do is said first.
    assert style.status_code == 422
    assert "can't paint from a prompt alone" in style.json()["detail"]


def test_flux2_refuses_to_repaint_a_picture_saying_why(family_client: TestClient) -> None:
    source, mask = upload(family_client, two_colour_picture()), upload(family_client, centre_mask().convert("RGB"))
    reference = upload(family_client, Image.new("RGB", (64, 64), (220, 120, 30)))
    base = {"prompt": "a barn", "model": FLUX2}

    styled = base | {"style_image_ids": [reference], "image_id": source}
    answers = {
        "image-to-image": family_client.post("/api/generate/style", json=styled),
        "inpaint": family_client.post("/api/generate/inpaint", json=base | {"image_id": source, "mask_id": mask}),
        "outpaint": family_client.post(
            "/api/generate/inpaint", json=base | {"image_id": source, "outpaint": {"right": 16}}
        ),
    }

    for what, response in answers.items():
        assert response.status_code == 422, what
        assert "FLUX.2 takes images as references, not as a picture to repaint" in response.json()["detail"], what
    assert "can't repaint a content image" in answers["image-to-image"].json()["detail"]
    assert "can't inpaint" in answers["inpaint"].json()["detail"]
    assert "can't outpaint" in answers["outpaint"].json()["detail"]


def test_flux2_klein_refuses_image_to_image_saying_why(family_client: TestClient) -> None:
    source = upload(family_client, two_colour_picture())
    reference = upload(family_client, Image.new("RGB", (64, 64), (220, 120, 30)))

    response = family_client.post(
        "/api/generate/style",
        json={"prompt": "a barn", "model": FLUX2_KLEIN, "style_image_ids": [reference], "image_id": source},
    )

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "can't repaint a content image: FLUX.2 [klein] repaints only masked parts" in detail


@pytest.mark.parametrize("model", [FLUX2, FLUX2_KLEIN])
def test_flux2_guidance_changes_the_picture_whatever_the_scheduler(family_client: TestClient, model: str) -> None:
    low = submit(family_client, "/api/generate/prompt", model=model, guidance=1.0, scheduler="euler-a")
    high = submit(family_client, "/api/generate/prompt", model=model, guidance=8.0, scheduler="ddim")

    assert (low["guidance"], high["guidance"]) == (1.0, 8.0)
    # FLUX.2 [dev] embeds distilled guidance in its transformer; [klein] runs classifier-free guidance.
    assert not np.array_equal(pixels(family_client, low), pixels(family_client, high))


@pytest.mark.parametrize("model", TRANSFORMERS)
def test_ip_adapter_style_on_a_folder_without_one_answers_422(family_client: TestClient, model: str) -> None:
    reference = upload(family_client, Image.new("RGB", (64, 64), (220, 120, 30)))

    response = family_client.post(
        "/api/generate/style",
        json={"prompt": "a barn", "model": model, "style_image_ids": [reference], "style_method": "ip-adapter"},
    )

    assert response.status_code == 422
    assert "has no IP-Adapter" in response.json()["detail"]


def test_the_studio_page_asks_the_model_list_so_its_form_can_adapt(family_client: TestClient) -> None:
    page = family_client.get("/")

    assert page.status_code == 200
    assert 'data-models-url="/api/models"' in page.text
    assert '<script src="/static/js/model_form.js" defer></script>' in page.text
    assert family_client.get("/static/js/model_form.js").status_code == 200
