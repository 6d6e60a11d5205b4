"""Reading a safetensors header without torch: what it holds, and refusals that say why."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from app.engine.safetensors_header import MAX_HEADER_BYTES, UnreadableSafetensors, read_header, readable_files


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


def test_readable_files_are_named_by_their_path_and_broken_ones_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "loras"
    (folder / "styles").mkdir(parents=True)
    save_file({"b": np.zeros(2, dtype=np.float32)}, str(folder / "styles" / "ink.safetensors"))
    save_file({"a": np.zeros(2, dtype=np.float32)}, str(folder / "base.safetensors"))
    (folder / "half-copied.safetensors").write_bytes(b"\x10\x00")
    (folder / "notes.txt").write_text("not weights")
    found = [(name, sorted(header)) for name, _path, header in readable_files(folder)]
    assert found == [("base", ["a"]), ("styles/ink", ["b"])]
    assert list(readable_files(tmp_path / "missing")) == []
