"""Writes a diffusers SD 1.x or SDXL folder as one checkpoint file in the original (LDM) layout.

The inverse of the conversion ``from_single_file`` does, written out here so the import is tested
against the names the files artists download carry: ``model.diffusion_model.input_blocks...``,
``first_stage_model...``, ``cond_stage_model.transformer...`` and SDXL's
``conditioner.embedders.{0,1}`` (the second an OpenCLIP encoder with fused q/k/v).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING
from safetensors.torch import load_file, save_file

_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    [file] = sorted(folder.glob("*.safetensors"))
    return load_file(file)


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new) :]
    return rest


def unet_to_ldm(state: dict[str, torch.Tensor], config: dict[str, object]) -> dict[str, torch.Tensor]:
    per_block = int(config["layers_per_block"])  # type: ignore[call-overload]
    up_types = list(config["up_block_types"])  # type: ignore[call-overload]
    fixed = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"] | DIFFUSERS_TO_LDM_MAPPING["unet"]["addition_embed_type"]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        if key in fixed:
            name = fixed[key]
        elif parts[0] == "down_blocks":
            block, kind = int(parts[1]), parts[2]
            if kind == "downsamplers":
                name = f"input_blocks.{(block + 1) * (per_block + 1)}.0.op." + ".".join(parts[5:])
            else:
                index = 1 + block * (per_block + 1) + int(parts[3])
                rest = ".".join(parts[4:])
                name = f"input_blocks.{index}." + (f"0.{_resnet(rest)}" if kind == "resnets" else f"1.{rest}")
        elif parts[0] == "up_blocks":
            block, kind = int(parts[1]), parts[2]
            if kind == "upsamplers":
                slot = 2 if "CrossAttn" in str(up_types[block]) else 1
                name = f"output_blocks.{block * (per_block + 1) + per_block}.{slot}." + ".".join(parts[4:])
            else:
                index = block * (per_block + 1) + int(parts[3])
                rest = ".".join(parts[4:])
                name = f"output_blocks.{index}." + (f"0.{_resnet(rest)}" if kind == "resnets" else f"1.{rest}")
        elif parts[0] == "mid_block":
            rest = ".".join(parts[3:])
            if parts[1] == "attentions":
                name = f"middle_block.1.{rest}"
            else:
                name = f"middle_block.{2 * int(parts[2])}.{_resnet(rest)}"
        else:
            raise AssertionError(f"no original name for {key}")
        out["model.diffusion_model." + name] = value
    return out


def vae_to_ldm(state: dict[str, torch.Tensor], blocks: int) -> dict[str, torch.Tensor]:
    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    attention = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        parts = key.split(".")
        coder = parts[0]
        if key in fixed:
            name = fixed[key]
        elif parts[1] == "down_blocks":
            block = int(parts[2])
            if parts[3] == "downsamplers":
                name = f"{coder}.down.{block}.downsample." + ".".join(parts[5:])
            else:
                rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                name = f"{coder}.down.{block}.block.{parts[4]}.{rest}"
        elif parts[1] == "up_blocks":
            block = blocks - 1 - int(parts[2])
            if parts[3] == "upsamplers":
                name = f"{coder}.up.{block}.upsample." + ".".join(parts[5:])
            else:
                rest = ".".join(parts[5:]).replace("conv_shortcut", "nin_shortcut")
                name = f"{coder}.up.{block}.block.{parts[4]}.{rest}"
        elif parts[1] == "mid_block" and parts[2] == "resnets":
            name = f"{coder}.mid.block_{int(parts[3]) + 1}." + ".".join(parts[4:])
        elif parts[1] == "mid_block" and parts[2] == "attentions":
            rest = ".".join(parts[4:])
            for new, old in attention.items():
                if rest.startswith(new + "."):
                    rest = old + rest[len(new) :]
                    break
            name = f"{coder}.mid.attn_1.{rest}"
            if value.ndim == 2:  # the original attention is 1x1 convolutions
                value = value[:, :, None, None]
        else:
            raise AssertionError(f"no original name for {key}")
        out["first_stage_model." + name] = value
    return out


def open_clip_to_ldm(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    layers = {new: old for new, old in DIFFUSERS_TO_LDM_MAPPING["openclip"]["layers"].items()}
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key in layers:
            out[prefix + layers[key]] = value.T.contiguous() if key == "text_projection.weight" else value
            continue
        if key.endswith("position_ids"):
            continue
        name = key.replace("text_model.encoder.layers.", "resblocks.")
        name = name.replace("layer_norm1", "ln_1").replace("layer_norm2", "ln_2")
        name = (
            name.replace(".mlp.fc1.", ".mlp.c_fc.").replace(".mlp.fc2.", ".mlp.c_proj.").replace(".self_attn", ".attn")
        )
        for projection in ("q_proj", "k_proj", "v_proj"):
            if f".attn.{projection}." in name:
                stem, kind = name.split(f".attn.{projection}.")
                fused.setdefault(f"{stem}.attn.in_proj_{kind}", {})[projection] = value
                break
        else:
            out[prefix + "transformer." + name] = value
    for name, parts in fused.items():
        out[prefix + "transformer." + name] = torch.cat([parts["q_proj"], parts["k_proj"], parts["v_proj"]])
    return out


def write_original_checkpoint(folder: Path, file: Path) -> Path:
    """``folder`` (a StableDiffusionPipeline or StableDiffusionXLPipeline) as one original-layout file."""
    index = json.loads((folder / "model_index.json").read_text())
    unet_config = json.loads((folder / "unet" / "config.json").read_text())
    vae_config = json.loads((folder / "vae" / "config.json").read_text())
    state = unet_to_ldm(_weights(folder / "unet"), unet_config)
    state |= vae_to_ldm(_weights(folder / "vae"), len(vae_config["block_out_channels"]))
    # The original names keep CLIP's ``text_model.`` level, which transformers 5 flattened away.
    text = {
        (key if key.startswith("text_model.") else "text_model." + key): value
        for key, value in _weights(folder / "text_encoder").items()
        if "position_ids" not in key
    }
    if index["_class_name"] == "StableDiffusionXLPipeline":
        state |= {"conditioner.embedders.0.transformer." + key: value for key, value in text.items()}
        state |= open_clip_to_ldm(_weights(folder / "text_encoder_2"), "conditioner.embedders.1.model.")
    else:
        state |= {"cond_stage_model.transformer." + key: value for key, value in text.items()}
    save_file({key: value.contiguous() for key, value in state.items()}, file)
    return file


def config_folder(folder: Path, target: Path) -> Path:
    """The folder's configs and tokenizers without its weights: what ``--config`` takes."""
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix != ".safetensors":
            destination = target / path.relative_to(folder)
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(path.read_bytes())
    return target
