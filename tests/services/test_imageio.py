"""Tests for app.services.imageio: what an upload may be, and what comes out of decoding it."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from PIL import Image
from PIL.PngImagePlugin import PngImageFile

from app.services.errors import InvalidInput, TooLarge, UnsupportedMedia
from app.services.imageio import decode_upload, encode_png, make_thumbnail, to_mask

MAX_PIXELS = 4096 * 4096


def encoded(image: Image.Image, image_format: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format, **options)
    return buffer.getvalue()


def noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    # Random pixels compress badly, so the pixel data is most of the file and truncating it bites.
    bands = len(mode)
    return Image.frombytes(
        mode, (width, height), bytes((i * 7919 + i // 3) % 251 for i in range(width * height * bands))
    )


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_claiming(width: int, height: int) -> bytes:
    """A valid-looking PNG of a few dozen bytes whose header claims width x height RGB pixels."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(("image_format", "expected"), [("PNG", "PNG"), ("JPEG", "JPEG"), ("WEBP", "WEBP")])
def test_png_jpeg_and_webp_are_accepted_and_fully_loaded(image_format: str, expected: str) -> None:
    data = encoded(noise(48, 32), image_format)

    decoded = decode_upload(data, max_pixels=MAX_PIXELS)

    assert decoded.format == expected
    assert (decoded.width, decoded.height) == (48, 32)
    assert decoded.image.mode == "RGB"
    assert decoded.image.getpixel((0, 0)) is not None  # loaded: the bytes are no longer needed


@pytest.mark.parametrize(("image_format", "name"), [("GIF", "GIF"), ("BMP", "BMP"), ("TIFF", "TIFF")])
def test_other_image_formats_are_refused_with_415_naming_what_is_accepted(image_format: str, name: str) -> None:
    data = encoded(noise(16, 16), image_format)

    with pytest.raises(UnsupportedMedia) as refused:
        decode_upload(data, max_pixels=MAX_PIXELS)

    assert refused.value.status_code == 415
    assert name in refused.value.message
    assert "PNG, JPEG or WebP" in refused.value.message


def test_a_text_file_is_refused_whatever_it_was_called() -> None:
    # The name "cat.png" never reaches the decoder: only the bytes do.
    with pytest.raises(UnsupportedMedia, match="not a PNG, JPEG or WebP image"):
        decode_upload(b"this is not a picture, it is cat.png\n", max_pixels=MAX_PIXELS)


def test_an_empty_body_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="empty") as refused:
        decode_upload(b"", max_pixels=MAX_PIXELS)
    assert refused.value.status_code == 422


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP"])
def test_a_truncated_file_is_invalid_input(image_format: str) -> None:
    data = encoded(noise(128, 128), image_format)

    with pytest.raises(InvalidInput, match="truncated or corrupt") as refused:
        decode_upload(data[: len(data) // 2], max_pixels=MAX_PIXELS)

    assert refused.value.status_code == 422


def test_a_png_cut_inside_its_header_is_invalid_input() -> None:
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        decode_upload(png_claiming(64, 64)[:20], max_pixels=MAX_PIXELS)


def test_a_png_with_garbage_pixel_data_is_invalid_input() -> None:
    header = struct.pack(">IIBBBBB", 32, 32, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", b"definitely not zlib")
        + png_chunk(b"IEND", b"")
    )
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        decode_upload(data, max_pixels=MAX_PIXELS)


def test_a_decompression_bomb_is_refused_from_its_header_with_413() -> None:
    bomb = png_claiming(30000, 30000)
    assert len(bomb) < 200

    with pytest.raises(TooLarge) as refused:
        decode_upload(bomb, max_pixels=MAX_PIXELS)

    assert refused.value.status_code == 413
    assert "30000x30000 = 900 megapixels" in refused.value.message
    assert "the limit is 16.8 megapixels" in refused.value.message


def test_the_pixel_limit_is_the_callers() -> None:
    data = encoded(noise(100, 100), "PNG")

    with pytest.raises(TooLarge, match="100x100"):
        decode_upload(data, max_pixels=9_999)
    assert decode_upload(data, max_pixels=10_000).width == 100


def test_exif_orientation_is_applied_and_exif_dropped() -> None:
    # Left half red, right half blue, stored sideways with "rotate 90 degrees clockwise to view".
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (20, 0, 40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encoded(image, "JPEG", exif=exif.tobytes(), quality=95)

    decoded = decode_upload(data, max_pixels=MAX_PIXELS)

    assert (decoded.width, decoded.height) == (20, 40)
    top = decoded.image.getpixel((10, 5))
    bottom = decoded.image.getpixel((10, 35))
    assert isinstance(top, tuple) and isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # red came to the top
    assert bottom[2] > 200 and bottom[0] < 60
    assert "exif" not in decoded.image.info


def test_alpha_is_kept() -> None:
    image = Image.new("RGBA", (8, 8), (10, 20, 30, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))

    decoded = decode_upload(encoded(image, "PNG"), max_pixels=MAX_PIXELS)

    assert decoded.image.mode == "RGBA"
    assert decoded.image.getpixel((0, 0)) == (0, 0, 0, 0)
    assert decoded.image.getpixel((4, 4)) == (10, 20, 30, 255)


def test_palette_transparency_becomes_rgba_and_plain_palette_rgb() -> None:
    transparent = Image.new("P", (4, 4), 0)
    transparent.putpalette([0, 0, 0, 255, 0, 0])
    transparent.putpixel((1, 1), 1)
    plain = transparent.copy()

    assert decode_upload(encoded(transparent, "PNG", transparency=0), max_pixels=MAX_PIXELS).image.mode == "RGBA"
    assert decode_upload(encoded(plain, "PNG"), max_pixels=MAX_PIXELS).image.mode == "RGB"


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    deep = Image.frombytes("I;16", (2, 1), (0x0100).to_bytes(2, "little") + (0xFF00).to_bytes(2, "little"))

    decoded = decode_upload(encoded(deep, "PNG"), max_pixels=MAX_PIXELS)

    assert decoded.image.mode == "RGB"
    assert [decoded.image.getpixel((x, 0)) for x in range(2)] == [(1, 1, 1), (255, 255, 255)]


def test_to_mask_is_white_where_to_repaint_and_reads_alpha() -> None:
    strokes = Image.new("RGBA", (4, 1), (0, 0, 0, 0))
    strokes.putpixel((1, 0), (255, 255, 255, 255))
    strokes.putpixel((2, 0), (255, 255, 255, 128))
    opaque = Image.new("RGB", (2, 1), (0, 0, 0))
    opaque.putpixel((1, 0), (255, 255, 255))

    mask = to_mask(strokes)

    assert mask.mode == "L"
    assert [mask.getpixel((x, 0)) for x in range(4)] == [0, 255, 128, 0]
    assert [to_mask(opaque).getpixel((x, 0)) for x in range(2)] == [0, 255]


def test_encode_png_keeps_the_text_chunks_and_nothing_else() -> None:
    image = Image.new("RGB", (8, 8), (1, 2, 3))
    image.info["icc_profile"] = b"not really a profile"
    image.info["dpi"] = (300, 300)

    data = encode_png(image, {"parameters": "a cat\nSteps: 2", "studio": '{"prompt": "一只猫"}'})

    with Image.open(io.BytesIO(data)) as reread:
        assert isinstance(reread, PngImageFile)
        reread.load()
        assert reread.format == "PNG"
        assert reread.text == {"parameters": "a cat\nSteps: 2", "studio": '{"prompt": "一只猫"}'}
        assert "icc_profile" not in reread.info
        assert "dpi" not in reread.info
        assert reread.getpixel((0, 0)) == (1, 2, 3)
    assert b"eXIf" not in data and b"iCCP" not in data


def test_encode_png_without_chunks_has_no_text() -> None:
    data = encode_png(Image.new("RGB", (4, 4)), None)
    assert b"tEXt" not in data and b"iTXt" not in data


def test_thumbnail_is_webp_bounded_and_never_enlarged() -> None:
    wide = make_thumbnail(Image.new("RGB", (1024, 512), (200, 100, 50)), max_side=256)
    small = make_thumbnail(Image.new("RGBA", (40, 30), (0, 0, 0, 0)), max_side=256)

    with Image.open(io.BytesIO(wide)) as thumb:
        assert thumb.format == "WEBP"
        assert thumb.size == (256, 128)
    with Image.open(io.BytesIO(small)) as thumb:
        assert thumb.size == (40, 30)
        assert thumb.mode == "RGBA"
