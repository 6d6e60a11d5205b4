"""Reading a safetensors header without torch: what it holds, and refusals that say why."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from app.engine.safetensors_header import MAX_HEADER_BYTES, UnreadableSafetensors, read_header


def test_the_header_names_each_tensor_with_its_shape_and_the_metadata(tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    save_file({"a.weight": np.zeros((4, 3), dtype=np.float32)}, str(path), metadata={"ss_base_model_version": "sd_v1"})
    header = read_header(path)
    assert header["a.weight"]["shape"] == [4, 3]
    assert header["__metadata__"] == {"ss_base_model_version": "sd_v1"}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\x01\x02", "too short"),
        (struct.pack("<Q", MAX_HEADER_BYTES + 1), "byte header"),
        (struct.pack("<Q", 5) + b"{nope", "unreadable header"),
        (struct.pack("<Q", 3) + json.dumps([1]).encode(), "unreadable header"),
    ],
)
def test_a_file_that_is_not_safetensors_is_refused_saying_why(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "odd.safetensors"
    path.write_bytes(content)
    with pytest.raises(UnreadableSafetensors, match=reason):
        read_header(path)
