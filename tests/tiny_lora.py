"""Tiny LoRAs: seeded PEFT LoRAs for a tiny pipeline's UNet, saved as diffusers' ``save_lora_weights`` writes them.

The LoRA is made by peft and written by diffusers, clients the studio did not write, so a test
that loads it reads the same layout a downloaded LoRA has.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import torch
from diffusers import StableDiffusionPipeline, UNet2DConditionModel
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig, get_peft_model_state_dict

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


def build_tiny_lora(model_folder: Path, out_file: Path, *, seed: int = 1, strength: float = 0.5) -> Path:
    """A rank-4 LoRA on every attention projection of ``model_folder``'s UNet, its up matrices random
    (peft starts them at zero, which would change nothing), written to ``out_file``."""
    unet = UNet2DConditionModel.from_pretrained(model_folder / "unet", local_files_only=True)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=TARGETS, init_lora_weights="gaussian"))
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, strength)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    out_file.parent.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(out_file.parent, unet_lora_layers=layers, weight_name=out_file.name)
    return out_file


def write_header_only(path: Path, tensors: dict[str, list[int]], metadata: dict[str, str] | None = None) -> Path:
    """A safetensors file of zero-filled float16 tensors of these shapes: enough to tell a layout by."""
    header: dict[str, Any] = {}
    offset = 0
    for key, shape in tensors.items():
        size = 2
        for side in shape:
            size *= side
        header[key] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if metadata:
        header["__metadata__"] = metadata
    encoded = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(encoded)) + encoded + b"\x00" * offset)
    return path


def as_kohya(diffusers_file: Path, out_file: Path) -> Path:
    """The same LoRA in kohya's layout (``lora_unet_..._to_q.lora_down.weight`` and an ``alpha`` per layer,
    alpha = rank so the scale stays 1), as sd-scripts writes SD 1.x LoRAs."""
    from safetensors.torch import load_file, save_file

    kohya: dict[str, torch.Tensor] = {}
    for key, tensor in load_file(diffusers_file).items():
        module, kind = key.removeprefix("unet.").split(".lora.")
        base = "lora_unet_" + module.replace(".", "_")
        kohya[f"{base}.lora_{kind}"] = tensor
        if kind == "down.weight":
            kohya[f"{base}.alpha"] = torch.tensor(float(tensor.shape[0]))
    save_file(kohya, out_file, metadata={"ss_network_module": "networks.lora"})
    return out_file
