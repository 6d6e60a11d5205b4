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


# -- SD3: the MMDiT as Stability ships it (``model.diffusion_model.joint_blocks...``) ----------------------

_SD3_FIXED = {
    "pos_embed.proj": "x_embedder.proj",
    "time_text_embed.timestep_embedder.linear_1": "t_embedder.mlp.0",
    "time_text_embed.timestep_embedder.linear_2": "t_embedder.mlp.2",
    "time_text_embed.text_embedder.linear_1": "y_embedder.mlp.0",
    "time_text_embed.text_embedder.linear_2": "y_embedder.mlp.2",
    "context_embedder": "context_embedder",
    "proj_out": "final_layer.linear",
}
_SD3_BLOCK = {
    "attn.to_out.0": "x_block.attn.proj",
    "attn.to_add_out": "context_block.attn.proj",
    "attn.norm_q": "x_block.attn.ln_q",
    "attn.norm_k": "x_block.attn.ln_k",
    "attn.norm_added_q": "context_block.attn.ln_q",
    "attn.norm_added_k": "context_block.attn.ln_k",
    "norm1.linear": "x_block.adaLN_modulation.1",
    "norm1_context.linear": "context_block.adaLN_modulation.1",
    "ff.net.0.proj": "x_block.mlp.fc1",
    "ff.net.2": "x_block.mlp.fc2",
    "ff_context.net.0.proj": "context_block.mlp.fc1",
    "ff_context.net.2": "context_block.mlp.fc2",
}


def _swap_halves(value: torch.Tensor) -> torch.Tensor:
    """The original final norms give (shift, scale) where diffusers' give (scale, shift); its own inverse."""
    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def sd3_transformer_to_original(state: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    """The inverse of diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers``: q/k/v fused, names Stability's."""
    out: dict[str, torch.Tensor] = {"pos_embed": state["pos_embed.pos_embed"]}
    for key, value in state.items():
        stem, kind = key.rsplit(".", 1)
        if stem in _SD3_FIXED:
            out[f"{_SD3_FIXED[stem]}.{kind}"] = value
        elif stem == "norm_out.linear":
            out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(value)
        elif key.startswith("transformer_blocks."):
            _, index, rest = key.split(".", 2)
            stem = rest.rsplit(".", 1)[0]
            if stem in _SD3_BLOCK:
                # The last block's context norm has only a shift and a scale, in the original's order.
                last_context_norm = stem == "norm1_context.linear" and int(index) == layers - 1
                out[f"joint_blocks.{index}.{_SD3_BLOCK[stem]}.{kind}"] = (
                    _swap_halves(value) if last_context_norm else value
                )
    for index in range(layers):
        for kind in ("weight", "bias"):
            for side, names in (
                ("x_block", ("to_q", "to_k", "to_v")),
                ("context_block", ("add_q_proj", "add_k_proj", "add_v_proj")),
            ):
                parts = [state[f"transformer_blocks.{index}.attn.{name}.{kind}"] for name in names]
                out[f"joint_blocks.{index}.{side}.attn.qkv.{kind}"] = torch.cat(parts)
    return {"model.diffusion_model." + key: value for key, value in out.items()}


def write_sd3_transformer(folder: Path, file: Path, *, with_vae: bool = False) -> Path:
    """The MMDiT of ``folder`` (a StableDiffusion3Pipeline) as one file in Stability's layout, with its VAE if asked."""
    config = json.loads((folder / "transformer" / "config.json").read_text())
    state = sd3_transformer_to_original(_weights(folder / "transformer"), int(config["num_layers"]))
    if with_vae:
        vae = json.loads((folder / "vae" / "config.json").read_text())
        state |= vae_to_ldm(_weights(folder / "vae"), len(vae["block_out_channels"]))
    save_file({key: value.contiguous() for key, value in state.items()}, file)
    return file


# -- FLUX.1: the transformer as Black Forest Labs ships it (``double_blocks``, ``single_blocks``) ----------

_FLUX_FIXED = {
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "context_embedder": "txt_in",
    "x_embedder": "img_in",
    "proj_out": "final_layer.linear",
}
_FLUX_DOUBLE = {
    "norm1.linear": "img_mod.lin",
    "norm1_context.linear": "txt_mod.lin",
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
    "ff.net.0.proj": "img_mlp.0",
    "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0",
    "ff_context.net.2": "txt_mlp.2",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
}
_FLUX_SINGLE = {
    "norm.linear": "modulation.lin",
    "attn.norm_q": "norm.query_norm",
    "attn.norm_k": "norm.key_norm",
    "proj_out": "linear2",
}


def flux_transformer_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of diffusers' ``convert_flux_transformer_checkpoint_to_diffusers``."""
    out: dict[str, torch.Tensor] = {}

    def norm_name(name: str, kind: str) -> str:
        # The original RMS norms call their weight ``scale``.
        return f"{name}.scale" if name.endswith("_norm") else f"{name}.{kind}"

    for key, value in state.items():
        stem, kind = key.rsplit(".", 1)
        if stem in _FLUX_FIXED:
            out[f"{_FLUX_FIXED[stem]}.{kind}"] = value
        elif stem == "norm_out.linear":
            out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(value)
        elif key.startswith("transformer_blocks."):
            _, index, rest = key.split(".", 2)
            stem = rest.rsplit(".", 1)[0]
            if stem in _FLUX_DOUBLE:
                out[norm_name(f"double_blocks.{index}.{_FLUX_DOUBLE[stem]}", kind)] = value
        elif key.startswith("single_transformer_blocks."):
            _, index, rest = key.split(".", 2)
            stem = rest.rsplit(".", 1)[0]
            if stem in _FLUX_SINGLE:
                out[norm_name(f"single_blocks.{index}.{_FLUX_SINGLE[stem]}", kind)] = value
    doubles = {int(key.split(".")[1]) for key in state if key.startswith("transformer_blocks.")}
    singles = {int(key.split(".")[1]) for key in state if key.startswith("single_transformer_blocks.")}
    for kind in ("weight", "bias"):
        for index in doubles:
            block = f"transformer_blocks.{index}.attn"
            image = [state[f"{block}.{name}.{kind}"] for name in ("to_q", "to_k", "to_v")]
            text = [state[f"{block}.{name}.{kind}"] for name in ("add_q_proj", "add_k_proj", "add_v_proj")]
            out[f"double_blocks.{index}.img_attn.qkv.{kind}"] = torch.cat(image)
            out[f"double_blocks.{index}.txt_attn.qkv.{kind}"] = torch.cat(text)
        for index in singles:
            block = f"single_transformer_blocks.{index}"
            parts = [state[f"{block}.attn.{name}.{kind}"] for name in ("to_q", "to_k", "to_v")]
            out[f"single_blocks.{index}.linear1.{kind}"] = torch.cat([*parts, state[f"{block}.proj_mlp.{kind}"]])
    return {"model.diffusion_model." + key: value for key, value in out.items()}


def write_flux_transformer(folder: Path, file: Path) -> Path:
    """The transformer of ``folder`` (a FluxPipeline) as one file in Black Forest Labs' layout."""
    state = flux_transformer_to_original(_weights(folder / "transformer"))
    save_file({key: value.contiguous() for key, value in state.items()}, file)
    return file


def write_sd3_checkpoint(folder: Path, file: Path) -> Path:
    """``folder`` (a StableDiffusion3Pipeline) as one whole file, as Stability's ``..._incl_clips_t5`` files are:
    the MMDiT, the VAE under ``first_stage_model.`` and the encoders under ``text_encoders.{clip_l,clip_g,t5xxl}``."""
    write_sd3_transformer(folder, file, with_vae=True)
    state = load_file(file)
    for component, name in (("text_encoder", "clip_l"), ("text_encoder_2", "clip_g"), ("text_encoder_3", "t5xxl")):
        weights = _weights(folder / component)
        state |= {f"text_encoders.{name}.transformer.{key}": value for key, value in weights.items()}
    save_file({key: value.contiguous() for key, value in state.items()}, file)
    return file


# -- FLUX.2: the transformer as Black Forest Labs ships it (shared modulations, fused single blocks) -------

_FLUX2_FIXED = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
    "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
    "single_stream_modulation.linear": "single_stream_modulation.lin",
    "proj_out": "final_layer.linear",
}
_FLUX2_DOUBLE = {
    "attn.norm_q": "img_attn.norm.query_norm",
    "attn.norm_k": "img_attn.norm.key_norm",
    "attn.to_out.0": "img_attn.proj",
    "ff.linear_in": "img_mlp.0",
    "ff.linear_out": "img_mlp.2",
    "attn.norm_added_q": "txt_attn.norm.query_norm",
    "attn.norm_added_k": "txt_attn.norm.key_norm",
    "attn.to_add_out": "txt_attn.proj",
    "ff_context.linear_in": "txt_mlp.0",
    "ff_context.linear_out": "txt_mlp.2",
}
_FLUX2_SINGLE = {
    "attn.to_qkv_mlp_proj": "linear1",
    "attn.to_out": "linear2",
    "attn.norm_q": "norm.query_norm",
    "attn.norm_k": "norm.key_norm",
}


def flux2_transformer_to_original(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of diffusers' ``convert_flux2_transformer_checkpoint_to_diffusers`` (no name prefix)."""
    out: dict[str, torch.Tensor] = {}

    def named(name: str, kind: str) -> str:
        # The original RMS norms call their weight ``scale``.
        return f"{name}.scale" if name.endswith("_norm") else f"{name}.{kind}"

    for key, value in state.items():
        stem, kind = key.rsplit(".", 1)
        if stem in _FLUX2_FIXED:
            out[f"{_FLUX2_FIXED[stem]}.{kind}"] = value
        elif stem == "norm_out.linear":
            out[f"final_layer.adaLN_modulation.1.{kind}"] = _swap_halves(value)
        elif key.startswith(("transformer_blocks.", "single_transformer_blocks.")):
            prefix, index, rest = key.split(".", 2)
            stem = rest.rsplit(".", 1)[0]
            if prefix == "transformer_blocks" and stem in _FLUX2_DOUBLE:
                out[named(f"double_blocks.{index}.{_FLUX2_DOUBLE[stem]}", kind)] = value
            elif prefix == "single_transformer_blocks" and stem in _FLUX2_SINGLE:
                out[named(f"single_blocks.{index}.{_FLUX2_SINGLE[stem]}", kind)] = value
    for index in {int(key.split(".")[1]) for key in state if key.startswith("transformer_blocks.")}:
        block = f"transformer_blocks.{index}.attn"
        for kind in ("weight", "bias"):
            if f"{block}.to_q.{kind}" not in state:
                continue  # FLUX.2's projections have no biases
            image = [state[f"{block}.{name}.{kind}"] for name in ("to_q", "to_k", "to_v")]
            text = [state[f"{block}.{name}.{kind}"] for name in ("add_q_proj", "add_k_proj", "add_v_proj")]
            out[f"double_blocks.{index}.img_attn.qkv.{kind}"] = torch.cat(image)
            out[f"double_blocks.{index}.txt_attn.qkv.{kind}"] = torch.cat(text)
    return out


def write_flux2_transformer(folder: Path, file: Path) -> Path:
    """The transformer of ``folder`` (a Flux2Pipeline) as one file in Black Forest Labs' layout."""
    state = flux2_transformer_to_original(_weights(folder / "transformer"))
    save_file({key: value.contiguous() for key, value in state.items()}, file)
    return file
