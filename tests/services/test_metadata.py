"""Tests for app.services.metadata: our PNG chunks, and A1111 infotext as it is found in the wild."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app.services.errors import UnsupportedMedia
from app.services.imageio import encode_png
from app.services.metadata import (
    SCHEDULER_TO_SAMPLER,
    a1111_parameters,
    parse_a1111,
    png_text_chunks,
    read_png_parameters,
    sampler_to_scheduler,
    scheduler_to_sampler,
)

PARAMS = {
    "prompt": "a lighthouse at dusk, oil on canvas\nthick brush strokes",
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
    "index": 1,
    "strength": None,
    "style_method": "shared-attention",
}

# Real-world shapes: SD 1.5 with hires fix and LoRA (A1111 1.6), a multi-line prompt whose first
# line ends in a comma and holds "(weight:1.2)" colons.
HIRES_LORA = """masterpiece, best quality, 1girl, solo, (cherry blossoms:1.2), looking at viewer,
wind, petals, <lora:add_detail:0.6> <lora:epiNoiseoffset_v2:0.5>
Negative prompt: (worst quality, low quality:1.4), easynegative, bad-hands-5
Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 3735928559, Size: 512x768, Model hash: 7f96a1a9ca, \
Model: anything-v5, Denoising strength: 0.45, Clip skip: 2, Hires upscale: 2, Hires steps: 15, \
Hires upscaler: R-ESRGAN 4x+ Anime6B, Lora hashes: "add_detail: 7c6bad76eb54, epiNoiseoffset_v2: d1131f7207d6", \
Version: v1.6.0"""

# A1111 1.10: no negative prompt, the schedule in its own field.
NO_NEGATIVE = """a watercolor painting of a lighthouse at dusk, soft light
Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7.5, Seed: 1234, Size: 512x512, \
Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Version: v1.10.1"""

# SDXL with ADetailer: a multi-line negative prompt, quoted values with commas and escaped quotes.
ADETAILER = """portrait photo of an old fisherman, weathered skin
Negative prompt: blurry,
lowres, watermark
Steps: 30, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 5.5, Seed: 42, Size: 832x1216, \
Model hash: 31e35c80fc, Model: sd_xl_base_1.0, ADetailer model: face_yolov8n.pt, \
ADetailer prompt: "detailed face, sharp \\"blue\\" eyes", ADetailer confidence: 0.3, \
TI hashes: "easynegative: c74b4e810b03", Version: v1.7.0"""


def png_with(text_chunks: dict[str, str], *, compressed: bool = False) -> bytes:
    info = PngInfo()
    for key, value in text_chunks.items():
        info.add_text(key, value, zip=compressed)
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def test_a1111_parameters_writes_infotext_as_a1111_does() -> None:
    text = a1111_parameters(
        prompt="a red fox in the snow",
        negative_prompt="blurry",
        steps=20,
        sampler="euler-a",
        guidance=7.5,
        seed=1234,
        width=512,
        height=512,
        model="studio-tiny",
        extra={"Denoising strength": 0.75, "Lora hashes": "a: 1, b: 2", "Skipped": None},
    )

    assert text == (
        "a red fox in the snow\n"
        "Negative prompt: blurry\n"
        "Steps: 20, Sampler: Euler a, CFG scale: 7.5, Seed: 1234, Size: 512x512, Model: studio-tiny, "
        'Denoising strength: 0.75, Lora hashes: "a: 1, b: 2"'
    )


def test_a1111_parameters_leaves_out_an_empty_negative_prompt_and_writes_whole_cfg_bare() -> None:
    text = a1111_parameters(
        prompt="a cat",
        negative_prompt="",
        steps=2,
        sampler="DPM++ 2M",
        guidance=7.0,
        seed=0,
        width=64,
        height=64,
        model=None,
    )

    assert text == "a cat\nSteps: 2, Sampler: DPM++ 2M, CFG scale: 7, Seed: 0, Size: 64x64"


def test_hires_fix_and_lora_infotext_parses_to_the_right_fields() -> None:
    parsed = parse_a1111(HIRES_LORA)

    assert parsed["prompt"] == (
        "masterpiece, best quality, 1girl, solo, (cherry blossoms:1.2), looking at viewer,\n"
        "wind, petals, <lora:add_detail:0.6> <lora:epiNoiseoffset_v2:0.5>"
    )
    assert parsed["negative_prompt"] == "(worst quality, low quality:1.4), easynegative, bad-hands-5"
    assert parsed["steps"] == 28
    assert parsed["sampler"] == "DPM++ 2M Karras"
    assert parsed["cfg_scale"] == 7.0
    assert parsed["seed"] == 3735928559
    assert (parsed["width"], parsed["height"]) == (512, 768)
    assert parsed["model"] == "anything-v5"
    assert parsed["Model hash"] == "7f96a1a9ca"
    assert parsed["Hires upscale"] == "2"
    assert parsed["Hires upscaler"] == "R-ESRGAN 4x+ Anime6B"
    assert parsed["Lora hashes"] == "add_detail: 7c6bad76eb54, epiNoiseoffset_v2: d1131f7207d6"
    assert parsed["Clip skip"] == "2"
    assert parsed["Version"] == "v1.6.0"


def test_infotext_without_a_negative_prompt_parses() -> None:
    parsed = parse_a1111(NO_NEGATIVE)

    assert parsed["prompt"] == "a watercolor painting of a lighthouse at dusk, soft light"
    assert parsed["negative_prompt"] == ""
    assert parsed["sampler"] == "Euler a"
    assert parsed["Schedule type"] == "Automatic"
    assert parsed["cfg_scale"] == 7.5
    assert (parsed["steps"], parsed["seed"], parsed["width"], parsed["height"]) == (20, 1234, 512, 512)
    assert parsed["model"] == "v1-5-pruned-emaonly"


def test_multi_line_negative_prompt_and_escaped_quotes_parse() -> None:
    parsed = parse_a1111(ADETAILER)

    assert parsed["prompt"] == "portrait photo of an old fisherman, weathered skin"
    assert parsed["negative_prompt"] == "blurry,\nlowres, watermark"
    assert parsed["ADetailer prompt"] == 'detailed face, sharp "blue" eyes'
    assert parsed["ADetailer confidence"] == "0.3"
    assert parsed["TI hashes"] == "easynegative: c74b4e810b03"
    assert (parsed["width"], parsed["height"]) == (832, 1216)
    assert parsed["model"] == "sd_xl_base_1.0"


def test_a_prompt_alone_is_all_prompt() -> None:
    parsed = parse_a1111("just a prompt: with a colon, and a comma")

    assert parsed["prompt"] == "just a prompt: with a colon, and a comma"
    assert parsed["negative_prompt"] == ""
    assert parsed["steps"] is None and parsed["seed"] is None and parsed["width"] is None


def test_windows_line_endings_parse() -> None:
    parsed = parse_a1111(NO_NEGATIVE.replace("\n", "\r\n"))
    assert parsed["prompt"] == "a watercolor painting of a lighthouse at dusk, soft light"
    assert parsed["steps"] == 20


def test_what_we_write_parses_back() -> None:
    text = png_text_chunks({**PARAMS, "strength": 0.6})["parameters"]

    parsed = parse_a1111(text)

    assert parsed["prompt"] == PARAMS["prompt"]
    assert parsed["negative_prompt"] == PARAMS["negative_prompt"]
    assert parsed["sampler"] == "Euler a"
    assert parsed["cfg_scale"] == 7.5
    assert (parsed["steps"], parsed["seed"]) == (20, 3735928559)
    assert (parsed["width"], parsed["height"]) == (512, 768)
    assert parsed["model"] == "studio-tiny"
    assert parsed["Denoising strength"] == "0.6"


def test_our_chunks_round_trip_through_a_png() -> None:
    chunks = png_text_chunks(PARAMS)
    assert chunks["studio"] == json.dumps(PARAMS, sort_keys=True, ensure_ascii=False)

    data = encode_png(Image.new("RGB", (8, 8)), chunks)

    assert read_png_parameters(data) == PARAMS


def test_non_latin_prompts_round_trip() -> None:
    params = {**PARAMS, "prompt": "一只在雪地里的红狐狸", "negative_prompt": "flou"}
    data = encode_png(Image.new("RGB", (8, 8)), png_text_chunks(params))

    assert read_png_parameters(data)["prompt"] == "一只在雪地里的红狐狸"


@pytest.mark.parametrize("compressed", [False, True])
def test_an_a1111_png_is_read_through_its_parameters_chunk(compressed: bool) -> None:
    data = png_with({"parameters": HIRES_LORA}, compressed=compressed)

    params = read_png_parameters(data)

    assert params["guidance"] == 7.0
    assert params["scheduler"] == "dpm++-2m-karras"
    assert params["sampler"] == "DPM++ 2M Karras"
    assert params["seed"] == 3735928559
    assert params["Hires upscale"] == "2"


def test_a_damaged_studio_chunk_falls_back_to_parameters() -> None:
    data = png_with({"studio": "{not json", "parameters": NO_NEGATIVE})
    assert read_png_parameters(data)["scheduler"] == "euler-a"


def test_a_png_without_parameters_reads_as_empty_and_a_jpeg_is_refused() -> None:
    assert read_png_parameters(png_with({})) == {}
    with pytest.raises(UnsupportedMedia):
        read_png_parameters(b"\xff\xd8\xff\xe0 a jpeg")


@pytest.mark.parametrize(
    ("scheduler", "sampler"),
    [
        ("ddim", "DDIM"),
        ("euler", "Euler"),
        ("euler-a", "Euler a"),
        ("dpm++-2m", "DPM++ 2M"),
        ("dpm++-2m-karras", "DPM++ 2M Karras"),
        ("unipc", "UniPC"),
        ("pndm", "PLMS"),
        ("ddpm", "DDPM"),
        ("lcm", "LCM"),
        ("tcd", "TCD"),
    ],
)
def test_scheduler_and_sampler_names_map_both_ways(scheduler: str, sampler: str) -> None:
    assert scheduler_to_sampler(scheduler) == sampler
    assert sampler_to_scheduler(sampler) == scheduler


def test_every_scheduler_has_a_sampler_name() -> None:
    assert set(SCHEDULER_TO_SAMPLER) == {
        "ddim",
        "euler",
        "euler-a",
        "dpm++-2m",
        "dpm++-2m-karras",
        "unipc",
        "pndm",
        "ddpm",
        "lcm",
        "tcd",
    }


@pytest.mark.parametrize(
    ("sampler", "scheduler"),
    [
        ("DPM++ 2M Karras", "dpm++-2m-karras"),
        ("DPM++ 2M SDE Karras", None),
        ("DDIM Karras", "ddim"),
        ("euler A", "euler-a"),
        ("k_euler_a", "euler-a"),
        ("Euler", "euler"),
        ("DPM++ SDE", None),
        ("Heun", None),
    ],
)
def test_sampler_names_from_the_wild_map_to_a_scheduler_or_none(sampler: str, scheduler: str | None) -> None:
    assert sampler_to_scheduler(sampler) == scheduler


def test_unknown_scheduler_names_pass_through() -> None:
    assert scheduler_to_sampler("LCM") == "LCM"
