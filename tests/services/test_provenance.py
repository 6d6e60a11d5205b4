"""Tests for app.services.provenance: XMP source type, C2PA manifests, their checks, the watermark."""

from __future__ import annotations

import io
import json
import re
import struct
import zlib
from pathlib import Path
from typing import Any

import c2pa
import numpy as np
import pytest
from PIL import Image

from app.config import Settings
from app.services import provenance
from app.services.imageio import encode_png
from app.services.metadata import png_text_chunks, read_png_parameters

MAX_PIXELS = 4096 * 4096
PARAMS: dict[str, Any] = {
    "prompt": "a red boat on the left",
    "negative_prompt": "",
    "seed": 7,
    "steps": 2,
    "guidance": 7.5,
    "width": 64,
    "height": 64,
    "scheduler": "euler",
    "model": "studio-tiny",
    "mode": "txt2img",
    "generation_id": 3,
    "index": 0,
}


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> provenance.SigningIdentity:
    return provenance.load_or_create_identity(tmp_path_factory.mktemp("c2pa"))


@pytest.fixture(scope="module")
def writer(identity: provenance.SigningIdentity) -> provenance.Provenance:
    return provenance.Provenance(identity)


def picture(size: tuple[int, int] = (64, 64), seed: int = 0) -> Image.Image:
    """A smooth gradient with grain, closer to a painting than flat colour."""
    rng = np.random.default_rng(seed)
    width, height = size
    x, y = np.meshgrid(np.linspace(0, 1, width), np.linspace(0, 1, height))
    channels = np.stack([x * y, (1 - x) * y, x * (1 - y)], axis=-1) * 255
    return Image.fromarray((channels + rng.normal(0, 8, channels.shape)).clip(0, 255).astype(np.uint8))


def png_of(image: Image.Image) -> bytes:
    return encode_png(image)


def text_chunks_raw(data: bytes) -> dict[str, tuple[bytes, str]]:
    """Every text chunk of a PNG: key -> (chunk type, text)."""
    found: dict[str, tuple[bytes, str]] = {}
    offset = 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length
        if kind == b"tEXt":
            key, _, value = body.partition(b"\x00")
            found[key.decode("latin-1")] = (kind, value.decode("latin-1"))
        elif kind == b"iTXt":
            key, _, rest = body.partition(b"\x00")
            compressed, rest = rest[0], rest[2:]
            _, _, rest = rest.partition(b"\x00")
            _, _, value = rest.partition(b"\x00")
            found[key.decode("latin-1")] = (kind, (zlib.decompress(value) if compressed else value).decode("utf-8"))
    return found


def txt2img_origin() -> provenance.Origin:
    return provenance.Origin(model="studio-tiny", mode="txt2img", title="painting 3")


def inpaint_origin() -> provenance.Origin:
    return provenance.Origin(
        model="studio-tiny",
        mode="inpaint",
        title="painting 4",
        source_type=provenance.source_type_for("inpaint", source_is_upload=True),
        ingredients=(
            provenance.Ingredient(role="source", title="source: upload (image 1)", png=png_of(picture(seed=1))),
            provenance.Ingredient(role="mask", title="mask: mask (image 2)", png=png_of(Image.new("L", (64, 64), 255))),
            provenance.Ingredient(role="style", title="style: painting 2 (image 5)", png=png_of(picture(seed=2))),
        ),
    )


def independent_read(data: bytes) -> dict[str, Any]:
    """The manifest store as c2pa-python's reader sees it with default settings (no trust of ours)."""
    with c2pa.Reader("image/png", io.BytesIO(data)) as reader:
        store: dict[str, Any] = json.loads(reader.json())
        store["state"] = reader.get_validation_state()
    return store


def active(store: dict[str, Any]) -> dict[str, Any]:
    manifest: dict[str, Any] = store["manifests"][store["active_manifest"]]
    return manifest


def actions(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        action
        for assertion in manifest["assertions"]
        if assertion["label"].startswith("c2pa.actions")
        for action in assertion["data"]["actions"]
    ]


def test_the_signing_identity_is_made_once_and_reused(tmp_path: Path) -> None:
    first = provenance.load_or_create_identity(tmp_path / "c2pa")
    second = provenance.load_or_create_identity(tmp_path / "c2pa")

    assert first == second
    assert first.chain_pem.count(b"BEGIN CERTIFICATE") == 2
    assert b"PRIVATE KEY" in first.key_pem
    assert (tmp_path / "c2pa" / "signing.pem").stat().st_mode & 0o077 == 0  # the key is the owner's alone


def test_a_configured_key_and_chain_are_used_as_given(tmp_path: Path, identity: provenance.SigningIdentity) -> None:
    (tmp_path / "key.pem").write_bytes(identity.key_pem)
    (tmp_path / "chain.pem").write_bytes(identity.chain_pem)

    loaded = provenance.load_or_create_identity(
        tmp_path / "unused", key_file=tmp_path / "key.pem", cert_file=tmp_path / "chain.pem"
    )

    assert loaded == identity
    assert not (tmp_path / "unused").exists()
    with pytest.raises(ValueError, match="together"):
        provenance.load_or_create_identity(tmp_path, key_file=tmp_path / "key.pem")


def test_output_keeps_both_text_chunks_and_adds_xmp_with_the_source_type(writer: provenance.Provenance) -> None:
    chunks = png_text_chunks(PARAMS)
    signed = writer.output_png(picture(), text_chunks=chunks, origin=txt2img_origin())

    found = text_chunks_raw(signed)
    assert found["parameters"][1] == chunks["parameters"]
    assert found["studio"][1] == chunks["studio"]
    assert read_png_parameters(signed) == json.loads(chunks["studio"])
    kind, xmp = found[provenance.XMP_KEY]
    assert kind == b"iTXt"
    source_type = re.search(r'Iptc4xmpExt:DigitalSourceType="([^"]+)"', xmp)
    assert source_type is not None
    assert source_type.group(1) == "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
    assert "studio-tiny" in xmp


def test_an_inpainted_upload_is_a_composite_in_xmp(writer: provenance.Provenance) -> None:
    signed = writer.output_png(picture(), text_chunks=png_text_chunks(PARAMS), origin=inpaint_origin())

    xmp = text_chunks_raw(signed)[provenance.XMP_KEY][1]
    assert (
        'DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/compositeWithTrainedAlgorithmicMedia"' in xmp
    )


def test_source_types_by_mode() -> None:
    assert provenance.source_type_for("txt2img", source_is_upload=False) == provenance.TRAINED
    assert provenance.source_type_for("txt2img", source_is_upload=True) == provenance.COMPOSITE  # img2img of an upload
    assert provenance.source_type_for("style", source_is_upload=True) == provenance.COMPOSITE
    assert provenance.source_type_for("style", source_is_upload=False) == provenance.TRAINED
    assert provenance.source_type_for("inpaint", source_is_upload=False) == provenance.COMPOSITE


def test_a_painting_from_a_prompt_validates_as_created_by_the_model(writer: provenance.Provenance) -> None:
    signed = writer.output_png(picture(), text_chunks=png_text_chunks(PARAMS), origin=txt2img_origin())

    store = independent_read(signed)
    assert store["state"] == "Valid"
    manifest = active(store)
    assert manifest["claim_generator_info"][0]["name"] == "Painting Studio"
    (created,) = actions(manifest)
    assert created["action"] == "c2pa.created"
    assert created["digitalSourceType"] == provenance.TRAINED
    assert created["softwareAgent"]["model"] == "studio-tiny"
    assert manifest.get("ingredients", []) == []


def test_an_inpainting_lists_source_mask_and_style_as_ingredients(writer: provenance.Provenance) -> None:
    signed = writer.output_png(picture(), text_chunks=png_text_chunks(PARAMS), origin=inpaint_origin())

    store = independent_read(signed)
    assert store["state"] == "Valid"
    manifest = active(store)
    assert [action["action"] for action in actions(manifest)] == ["c2pa.opened", "c2pa.edited"]
    assert actions(manifest)[1]["digitalSourceType"] == provenance.COMPOSITE
    ingredients = {item["title"]: item["relationship"] for item in manifest["ingredients"]}
    assert ingredients == {
        "source: upload (image 1)": "parentOf",
        "mask: mask (image 2)": "inputTo",
        "style: painting 2 (image 5)": "inputTo",
    }


def test_check_reports_our_valid_manifest(writer: provenance.Provenance, identity: provenance.SigningIdentity) -> None:
    signed = writer.output_png(picture(), text_chunks=png_text_chunks(PARAMS), origin=inpaint_origin())

    report = provenance.check(signed, max_pixels=MAX_PIXELS, identity=identity)

    assert report.has_manifest and report.valid and report.ours
    assert report.generator == "Painting Studio"
    assert report.model == "studio-tiny"
    assert report.source_type == provenance.COMPOSITE
    assert [ingredient.role for ingredient in report.ingredients] == ["source", "mask", "style"]
    assert report.watermark is False


def test_another_studios_manifest_validates_but_is_not_ours(
    tmp_path: Path, writer: provenance.Provenance, identity: provenance.SigningIdentity
) -> None:
    stranger = provenance.Provenance(provenance.load_or_create_identity(tmp_path / "other"))
    signed = stranger.output_png(picture(), text_chunks={}, origin=txt2img_origin())

    report = provenance.check(signed, max_pixels=MAX_PIXELS, identity=identity)

    assert report.has_manifest and report.valid
    assert not report.ours


def test_a_re_encoded_or_cropped_image_does_not_validate(
    writer: provenance.Provenance, identity: provenance.SigningIdentity
) -> None:
    signed = writer.output_png(picture(), text_chunks=png_text_chunks(PARAMS), origin=txt2img_origin())
    with Image.open(io.BytesIO(signed)) as opened:
        opened.load()
        re_encoded, cropped = io.BytesIO(), io.BytesIO()
        opened.save(re_encoded, format="PNG")
        opened.crop((0, 0, 48, 48)).save(cropped, format="PNG")
        jpeg = io.BytesIO()
        opened.convert("RGB").save(jpeg, format="JPEG", quality=90)

    for data in (re_encoded.getvalue(), cropped.getvalue(), jpeg.getvalue()):
        report = provenance.check(data, max_pixels=MAX_PIXELS, identity=identity)
        assert not report.valid
        assert not report.ours


def test_changed_pixels_under_a_kept_manifest_do_not_validate(
    writer: provenance.Provenance, identity: provenance.SigningIdentity
) -> None:
    signed = writer.output_png(picture(), text_chunks={}, origin=txt2img_origin())
    other = encode_png(picture(seed=9))
    # Swap the image data for another picture's, leaving every other chunk (the manifest) as it was.
    start, end = signed.index(b"IDAT") - 4, signed.index(b"IEND") - 4
    other_start, other_end = other.index(b"IDAT") - 4, other.index(b"IEND") - 4
    tampered = signed[:start] + other[other_start:other_end] + signed[end:]
    assert b"caBX" in tampered

    report = provenance.check(tampered, max_pixels=MAX_PIXELS, identity=identity)

    assert report.has_manifest
    assert not report.valid
    assert report.problems  # says what failed
    assert independent_read(tampered)["state"] == "Invalid"


def test_a_watermarking_writer_marks_outputs_big_enough_and_check_finds_it(
    identity: provenance.SigningIdentity,
) -> None:
    marking = provenance.Provenance(identity, watermark=True)
    signed = marking.output_png(picture((256, 256)), text_chunks={}, origin=txt2img_origin())
    small = marking.output_png(picture(), text_chunks={}, origin=txt2img_origin())

    assert provenance.check(signed, max_pixels=MAX_PIXELS, identity=identity).watermark
    with Image.open(io.BytesIO(small)) as opened:
        assert np.array_equal(np.asarray(opened.convert("RGB")), np.asarray(picture()))  # too small: left as it was


def test_settings_choose_the_watermark_and_the_studio_key_lives_in_the_data_dir(settings: Settings) -> None:
    plain = provenance.provenance_for(settings)
    marking = provenance.provenance_for(settings.model_copy(update={"watermark": True}))

    assert not plain.watermark and marking.watermark
    assert plain.identity == marking.identity
    assert (settings.data_dir / "c2pa" / "signing.pem").is_file()
