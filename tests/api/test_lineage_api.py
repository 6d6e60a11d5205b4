"""Lineage API: the tree with labelled edges, variations, grids, and reading parameters from PNGs."""

from __future__ import annotations

import io
from typing import Any

from fastapi.testclient import TestClient
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app.services.metadata import png_text_chunks

A1111_INFOTEXT = (
    "masterpiece, best quality, a lighthouse on a rocky cliff at dusk, (dramatic clouds:1.2), <lora:oilpaint:0.7>\n"
    "Negative prompt: lowres, bad anatomy, (worst quality:1.4), watermark\n"
    "Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 2837461923, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.45, Clip skip: 2, "
    'Hires upscale: 2, Hires steps: 10, Hires upscaler: R-ESRGAN 4x+, Lora hashes: "oilpaint: 1a2b3c4d5e6f", '
    "Version: v1.7.0"
)


def png_with_text(chunks: dict[str, str]) -> bytes:
    info = PngInfo()
    for key, value in chunks.items():
        info.add_itxt(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def prompt_job(client: TestClient, **fields: Any) -> int:
    body: dict[str, Any] = {"prompt": "a red barn under a blue sky", "steps": 2, "width": 64, "height": 64, "seed": 7}
    body.update(fields)
    response = client.post("/api/generate/prompt", json=body)
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def walk(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node] + [item for child in node["children"] for item in walk(child)]


def test_refining_twice_and_varying_once_gives_a_lineage_naming_changed_words_and_parameters(
    idle_client: TestClient,
) -> None:
    root = prompt_job(idle_client)
    refined = prompt_job(idle_client, prompt="a red barn under a stormy sky", parent_id=root)
    refined_again = prompt_job(idle_client, prompt="a red barn under a stormy sky at dusk", steps=4, parent_id=refined)
    varied = idle_client.post(f"/api/generations/{root}/vary")
    assert varied.status_code == 202, varied.text
    varied_id = varied.json()["id"]

    response = idle_client.get(f"/api/generations/{refined_again}/lineage")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["focus_id"] == refined_again
    assert body["root_id"] == root
    assert body["ancestor_ids"] == [refined, root]
    assert body["node_count"] == 4
    nodes = {node["id"]: node for node in walk(body["root"])}
    assert set(nodes) == {root, refined, refined_again, varied_id}
    assert nodes[refined_again]["is_focus"]
    assert [child["id"] for child in body["root"]["children"]] == [refined, varied_id]

    first_edge = nodes[refined]["edge"]
    assert first_edge["action"] == "refine"
    assert first_edge["prompt_diff"]["added"] == ["stormy"]
    assert first_edge["prompt_diff"]["removed"] == ["blue"]
    second_edge = nodes[refined_again]["edge"]
    assert second_edge["prompt_diff"]["added"] == ["at", "dusk"]
    assert second_edge["changes"] == [{"name": "steps", "label": "steps", "before": 2, "after": 4}]
    assert second_edge["summary"] == 'refine: +"at" +"dusk"; steps 2 → 4'
    vary_edge = nodes[varied_id]["edge"]
    assert vary_edge["action"] == "vary"
    assert [change["name"] for change in vary_edge["changes"]] == ["seed"]


def test_vary_takes_a_chosen_seed_and_is_recorded_as_a_step(idle_client: TestClient) -> None:
    root = prompt_job(idle_client)
    response = idle_client.post(f"/api/generations/{root}/vary", json={"seed": 99})
    assert response.status_code == 202
    generation = idle_client.get(response.json()["url"]).json()
    assert (generation["seed"], generation["parent_id"], generation["prompt"]) == (
        99,
        root,
        "a red barn under a blue sky",
    )


def test_lineage_and_vary_of_an_unknown_generation_are_not_found(idle_client: TestClient) -> None:
    assert idle_client.get("/api/generations/999/lineage").status_code == 404
    assert idle_client.post("/api/generations/999/vary").status_code == 404


def test_seed_grid_and_prompt_matrix_answer_one_batch_of_cells(idle_client: TestClient) -> None:
    seeds = idle_client.post(
        "/api/generate/seeds",
        json={"prompt": "a red barn", "steps": 2, "width": 64, "height": 64, "seed": 40, "count": 3},
    )
    assert seeds.status_code == 202, seeds.text
    cells = [idle_client.get(f"/api/generations/{cell}").json() for cell in seeds.json()["ids"]]
    assert [cell["seed"] for cell in cells] == [40, 41, 42]
    assert seeds.json()["url"] == f"/batches/{seeds.json()['batch']}"

    matrix = idle_client.post(
        "/api/generate/matrix",
        json={
            "prompt": "a red barn at dusk",
            "steps": 2,
            "width": 64,
            "height": 64,
            "replace": "red barn",
            "alternatives": ["lighthouse", "castle"],
        },
    )
    assert matrix.status_code == 202, matrix.text
    prompts = [idle_client.get(f"/api/generations/{cell}").json()["prompt"] for cell in matrix.json()["ids"]]
    assert prompts == ["a red barn at dusk", "a lighthouse at dusk", "a castle at dusk"]

    refused = idle_client.post(
        "/api/generate/matrix", json={"prompt": "a red barn", "replace": "castle", "alternatives": ["tower"]}
    )
    assert refused.status_code == 422
    assert "does not occur in the prompt" in refused.json()["detail"]


def test_a_studio_png_reads_back_with_the_same_parameters(idle_client: TestClient) -> None:
    params = {
        "prompt": "a lighthouse at dusk, oil on canvas",
        "negative_prompt": "blurry, text",
        "seed": 3735928559,
        "steps": 20,
        "guidance": 7.5,
        "width": 512,
        "height": 768,
        "scheduler": "euler-a",
        "model": "studio-tiny",
        "mode": "txt2img",
        "generation_id": 17,
        "index": 0,
        "strength": None,
    }
    response = idle_client.post(
        "/api/parameters/read", files={"file": ("ours.png", png_with_text(png_text_chunks(params)), "image/png")}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == "studio"
    for name in ("prompt", "negative_prompt", "seed", "steps", "guidance", "width", "height", "scheduler", "model"):
        assert body[name] == params[name], name
    assert body["sampler"] == "Euler a"


def test_an_a1111_png_reads_back_with_our_names_for_its_parameters(idle_client: TestClient) -> None:
    data = png_with_text({"parameters": A1111_INFOTEXT})
    body = idle_client.post("/api/parameters/read", files={"file": ("a1111.png", data, "image/png")}).json()
    assert body["source"] == "a1111"
    assert body["prompt"].startswith("masterpiece, best quality, a lighthouse")
    assert body["negative_prompt"] == "lowres, bad anatomy, (worst quality:1.4), watermark"
    assert (body["steps"], body["guidance"], body["seed"]) == (28, 6.5, 2837461923)
    assert (body["width"], body["height"]) == (512, 768)
    assert (body["sampler"], body["scheduler"]) == ("DPM++ 2M Karras", "dpm++-2m-karras")
    assert body["model"] == "v1-5-pruned-emaonly"
    assert body["extra"]["Lora hashes"] == "oilpaint: 1a2b3c4d5e6f"
    assert body["extra"]["Clip skip"] == "2"


def test_a_png_without_parameters_reads_as_none_and_a_jpeg_is_refused(idle_client: TestClient) -> None:
    plain = idle_client.post("/api/parameters/read", files={"file": ("plain.png", png_with_text({}), "image/png")})
    assert plain.json()["source"] == "none"
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    jpeg = idle_client.post("/api/parameters/read", files={"file": ("photo.jpg", buffer.getvalue(), "image/jpeg")})
    assert jpeg.status_code == 415
    assert "PNG" in jpeg.json()["detail"]
