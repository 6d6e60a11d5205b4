"""ControlNet folders read without torch: listed with the family their config tells, refused when they don't fit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app.engine.controlnets import family_of, find, kind_refusal, mismatch, scan


def write_controlnet(
    folder: Path, config: dict[str, Any], *, weights: str = "diffusion_pytorch_model.safetensors"
) -> Path:
    """A ControlNet folder with ``config`` and a weights file (its bytes are not read by the catalog)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", **config}))
    (folder / weights).write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return folder


@pytest.mark.parametrize(
    ("config", "family"),
    [
        ({"cross_attention_dim": 768}, "sd1"),
        ({"cross_attention_dim": 1024}, "sd2"),
        ({"cross_attention_dim": 2048, "addition_embed_type": "text_time"}, "sdxl"),
        ({"cross_attention_dim": 80, "addition_embed_type": "text_time"}, "sdxl"),
        ({"_class_name": "FluxControlNetModel"}, "flux"),
        ({"_class_name": "SD3ControlNetModel"}, "sd3"),
        ({"cross_attention_dim": 32}, None),
    ],
)
def test_the_family_is_told_from_the_config(config: dict[str, Any], family: str | None) -> None:
    assert family_of(config) == family


def test_scan_lists_safetensors_folders_and_skips_pickles_and_empty_ones(tmp_path: Path) -> None:
    root = tmp_path / "controlnet"
    canny = write_controlnet(root / "canny-sd15", {"cross_attention_dim": 768, "block_out_channels": [320, 640]})
    write_controlnet(root / "pickled", {"cross_attention_dim": 768}, weights="diffusion_pytorch_model.bin")
    (root / "no-weights").mkdir()
    (root / "no-weights" / "config.json").write_text("{}")
    (root / "no-config").mkdir()
    (root / "no-config" / "diffusion_pytorch_model.safetensors").write_bytes(b"")

    listed = scan(tmp_path)

    assert [found.name for found in listed] == ["canny-sd15"]
    [found] = listed
    assert found.family == "sd1"
    assert found.block_out_channels == (320, 640)
    assert found.size == sum(path.stat().st_size for path in canny.iterdir())
    assert find(tmp_path, "canny-sd15") == found
    assert find(tmp_path, "../canny-sd15") is None
    assert scan(tmp_path / "nowhere") == []


def test_mismatch_names_the_family_the_width_and_the_blocks(tmp_path: Path) -> None:
    root = tmp_path / "controlnet"
    write_controlnet(root / "xl", {"cross_attention_dim": 2048, "addition_embed_type": "text_time"})
    write_controlnet(root / "tiny", {"cross_attention_dim": 32, "block_out_channels": [32, 64]})
    xl, tiny = find(tmp_path, "xl"), find(tmp_path, "tiny")
    assert xl is not None and tiny is not None
    sd1_unet = {"cross_attention_dim": 768, "block_out_channels": [320, 640, 1280, 1280]}
    tiny_unet = {"cross_attention_dim": 32, "block_out_channels": [32, 64]}

    assert mismatch(xl, family="sd1", family_label="Stable Diffusion 1.x", unet_config=sd1_unet) == (
        "ControlNet 'xl' is for the sdxl family; this model is Stable Diffusion 1.x"
    )
    assert "takes text 32 wide; this model's UNet takes 768" in str(
        mismatch(tiny, family="sd1", family_label="Stable Diffusion 1.x", unet_config=sd1_unet)
    )
    assert "UNet blocks [32, 64]; this model's are [32, 128]" in str(
        mismatch(
            tiny,
            family="sd1",
            family_label="Stable Diffusion 1.x",
            unet_config={"cross_attention_dim": 32, "block_out_channels": [32, 128]},
        )
    )
    assert "not an SDXL ControlNet" in str(
        mismatch(
            tiny,
            family="sdxl",
            family_label="Stable Diffusion XL",
            unet_config={**tiny_unet, "addition_embed_type": "text_time"},
        )
    )
    assert mismatch(tiny, family="sd1", family_label="Stable Diffusion 1.x", unet_config=tiny_unet) is None


def test_a_transformer_controlnet_fits_only_its_family_at_its_width(tmp_path: Path) -> None:
    root = tmp_path / "controlnet"
    flux = {"_class_name": "FluxControlNetModel", "num_attention_heads": 2, "attention_head_dim": 16}
    write_controlnet(root / "flux-canny", {**flux, "joint_attention_dim": 32})
    write_controlnet(root / "flux-union", {**flux, "joint_attention_dim": 32, "num_mode": 10})
    write_controlnet(root / "unet", {"cross_attention_dim": 32, "block_out_channels": [32, 64]})
    canny, union, unet = find(tmp_path, "flux-canny"), find(tmp_path, "flux-union"), find(tmp_path, "unet")
    assert canny is not None and union is not None and unet is not None
    transformer = {"num_attention_heads": 2, "attention_head_dim": 16, "joint_attention_dim": 32}

    assert (canny.inner_dim, canny.joint_attention_dim, canny.union_modes) == (32, 32, None)
    assert union.union_modes == 10
    assert mismatch(canny, family="flux", family_label="FLUX.1", unet_config=transformer) is None
    assert mismatch(unet, family="flux", family_label="FLUX.1", unet_config=transformer) == (
        "ControlNet 'unet' is a UNet ControlNet; this model is FLUX.1"
    )
    assert mismatch(
        canny, family="flux", family_label="FLUX.1", unet_config={**transformer, "num_attention_heads": 24}
    ) == ("ControlNet 'flux-canny' is 32 wide; this model's transformer is 384")
    assert "reads text 32 wide; this model's transformer reads 4096" in str(
        mismatch(canny, family="flux", family_label="FLUX.1", unet_config={**transformer, "joint_attention_dim": 4096})
    )
    assert "is for the flux family; this model is Stable Diffusion 1.x" in str(
        mismatch(canny, family="sd1", family_label="Stable Diffusion 1.x", unet_config={"cross_attention_dim": 768})
    )
    # A union ControlNet is told its map by mode: canny has one, scribble and an image as is have none.
    assert kind_refusal(union, "canny") is None
    assert "union ControlNet" in str(kind_refusal(union, "scribble"))
    assert "canny (mode 0)" in str(kind_refusal(union, "none"))
    assert kind_refusal(canny, "scribble") is None
