"""Safetensors headers: a file's tensor names, dtypes and shapes and its metadata, read without loading weights.

The header is JSON behind an 8-byte little-endian length, so the web side can inspect LoRAs and
checkpoints without torch; a length past ``MAX_HEADER_BYTES`` is refused before anything is read.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

MAX_HEADER_BYTES = 100 * 1024 * 1024


class UnreadableSafetensors(ValueError):
    """The file is not a safetensors file whose header can be read; the message says why."""


def header_length(stream: BinaryIO, name: str) -> int:
    """Reads the 8-byte length prefix; the stream is left at the header's first byte."""
    prefix = stream.read(8)
    if len(prefix) != 8:
        raise UnreadableSafetensors(f"{name} is too short to be a safetensors file")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER_BYTES:
        raise UnreadableSafetensors(f"{name} has a {length}-byte header; not a safetensors file")
    return int(length)


def read_header(path: Path) -> dict[str, Any]:
    """The header: each tensor's dtype and shape by name, and ``__metadata__`` when the file has one."""
    with path.open("rb") as stream:
        length = header_length(stream, path.name)
        try:
            header = json.loads(stream.read(length))
        except ValueError as error:
            raise UnreadableSafetensors(f"{path.name} has an unreadable header: {error}") from error
    if not isinstance(header, dict):
        raise UnreadableSafetensors(f"{path.name} has an unreadable header")
    return header


def readable_files(folder: Path) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """(name, path, header) of every readable ``.safetensors`` file under ``folder`` (subfolders too), by name.

    The name is the path under ``folder`` without the suffix. A half-copied or foreign file is
    skipped: it is not listed, so it cannot be asked for either.
    """
    if not folder.is_dir():
        return
    for path in sorted(folder.rglob("*.safetensors")):
        if not path.is_file():
            continue
        try:
            header = read_header(path)
        except (OSError, UnreadableSafetensors):
            continue
        yield path.relative_to(folder).with_suffix("").as_posix(), path, header
