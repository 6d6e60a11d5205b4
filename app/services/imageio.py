"""Image I/O: safe decoding of uploaded bytes, clean PNG re-encoding, masks and thumbnails.

Uploads are untrusted: the format is recognised from the bytes (never from a file name), only
PNG, JPEG and WebP are handed to a decoder, and the pixel count is checked from the header
before any pixel data is decompressed. What comes out is a fully loaded RGB/RGBA image with its
EXIF orientation applied and no metadata left to carry forward.
"""

from __future__ import annotations

import io
import struct
import zlib
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageFile, ImageOps
from PIL.JpegImagePlugin import JpegImageFile
from PIL.PngImagePlugin import PngImageFile, PngInfo
from PIL.WebPImagePlugin import WebPImageFile

from app.services.errors import InvalidInput, TooLarge, UnsupportedMedia

ImageFormat = Literal["PNG", "JPEG", "WEBP"]

ACCEPTED = "PNG, JPEG or WebP"

# Signatures of formats people commonly try, only to name them in the refusal message;
# none of these is ever handed to a decoder.
_KNOWN_OTHERS: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"%PDF", "PDF"),
    (b"qoif", "QOI"),
)

_OPENERS: dict[ImageFormat, type[ImageFile.ImageFile]] = {
    "PNG": PngImageFile,
    "JPEG": JpegImageFile,
    "WEBP": WebPImageFile,
}

# Everything Pillow may raise while parsing a damaged file of an accepted format.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error)


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image
    format: ImageFormat
    width: int
    height: int


def sniff_format(data: bytes) -> ImageFormat | None:
    """The accepted format these bytes start with, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _describe_unsupported(data: bytes) -> str:
    for signature, name in _KNOWN_OTHERS:
        if data.startswith(signature):
            return f"{name} images are not accepted; upload a {ACCEPTED} image"
    return f"the file is not a {ACCEPTED} image"


def _too_large(width: int, height: int, max_pixels: int) -> TooLarge:
    megapixels = width * height / 1_000_000
    return TooLarge(
        f"image is {width}x{height} = {megapixels:.3g} megapixels; "
        f"the limit is {max_pixels / 1_000_000:.3g} megapixels ({max_pixels} pixels)"
    )


def has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or image.has_transparency_data


def decode_upload(data: bytes, *, max_pixels: int) -> DecodedImage:
    """Decode untrusted bytes into a loaded RGB or RGBA image.

    Raises InvalidInput (empty, truncated or corrupt), UnsupportedMedia (not PNG/JPEG/WebP) or
    TooLarge (more than ``max_pixels``, or what Pillow itself calls a decompression bomb).
    """
    if not data:
        raise InvalidInput("the upload is empty")
    image_format = sniff_format(data)
    if image_format is None:
        raise UnsupportedMedia(_describe_unsupported(data))

    try:
        # The plugin for the sniffed format reads the header only, and no other plugin ever sees
        # these bytes. Image.open would do the same, but would run Pillow's coarser bomb check
        # first and refuse a 20000x20000 header with a message that names neither size nor limit.
        image = _OPENERS[image_format](io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Should a Pillow version check for bombs while parsing the header, the answer is the same
        # (the warning arrives as an exception only where warnings are configured as errors).
        raise TooLarge(f"image is too large to decode safely ({exc}); the limit is {max_pixels} pixels") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidInput("the image data is truncated or corrupt") from exc

    # Only the header has been read: the size is known, no pixel data has been decompressed yet.
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidInput("the image data is truncated or corrupt")
    if width * height > max_pixels:
        raise _too_large(width, height, max_pixels)

    try:
        image.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise TooLarge(f"image is too large to decode safely; the limit is {max_pixels} pixels") from exc
    except _DECODE_ERRORS as exc:
        raise InvalidInput("the image data is truncated or corrupt") from exc

    try:
        oriented = ImageOps.exif_transpose(image)
    except _DECODE_ERRORS:
        # A malformed EXIF block should not cost the artist a good picture: keep it unrotated.
        oriented = image
    converted = _eight_bit(oriented).convert("RGBA" if has_alpha(oriented) else "RGB")
    # Nothing from the upload's metadata (EXIF, ICC, text) travels further.
    converted.info = {}
    return DecodedImage(image=converted, format=image_format, width=converted.width, height=converted.height)


def _eight_bit(image: Image.Image) -> Image.Image:
    """16-bit greyscale (PNG's only deep mode in Pillow) scaled to 8 bits; convert() alone would clip it to white."""
    if image.mode.startswith("I"):
        return image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    return image


def to_mask(image: Image.Image) -> Image.Image:
    """An inpainting mask in mode "L": white = repaint, black = keep.

    Where the image has alpha, transparent pixels mean keep: the browser's mask canvas paints
    strokes on a transparent layer, so the image is composited over black before taking luminance.
    """
    if has_alpha(image):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("L")
    return image.convert("L")


def _without_metadata(image: Image.Image) -> Image.Image:
    """A copy in a mode every encoder takes, with no info (EXIF, ICC, DPI, text) to carry over."""
    if image.mode in ("RGB", "RGBA", "L", "LA"):
        clean = image.copy()
    else:
        clean = image.convert("RGBA" if has_alpha(image) else "RGB")
    clean.info = {}
    return clean


def encode_png(image: Image.Image, text_chunks: dict[str, str] | None = None) -> bytes:
    """Re-encode as PNG carrying only ``text_chunks`` (as iTXt/tEXt) and no other metadata."""
    pnginfo = PngInfo()
    for key, value in (text_chunks or {}).items():
        # iTXt keeps non-Latin-1 prompts intact; plain tEXt where Latin-1 suffices, as A1111 writes.
        try:
            value.encode("latin-1")
            pnginfo.add_text(key, value)
        except UnicodeEncodeError:
            pnginfo.add_itxt(key, value)
    buffer = io.BytesIO()
    _without_metadata(image).save(buffer, format="PNG", pnginfo=pnginfo)
    return buffer.getvalue()


def make_thumbnail(image: Image.Image, max_side: int = 256) -> bytes:
    """A WebP thumbnail whose longer side is at most ``max_side`` (never enlarged)."""
    thumb = _without_metadata(image)
    thumb.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    if thumb.mode not in ("RGB", "RGBA"):
        thumb = thumb.convert("RGBA" if has_alpha(thumb) else "RGB")
    buffer = io.BytesIO()
    thumb.save(buffer, format="WEBP", quality=80, method=4)
    return buffer.getvalue()
