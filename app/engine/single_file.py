"""Single-file checkpoints: a ``.safetensors`` file in the original layout becomes a diffusers folder, offline.

Artists download SD 1.x and SDXL models as one file. diffusers' ``from_single_file`` converts
such a file when it is given a local folder of configs (``config=``) and never asks a hub for
one: the studio ships those configs for SD 1.x and SDXL (``checkpoint_configs/``, with the
CLIP tokenizers built from CLIP's byte-pair vocabulary), and takes a ``--config`` folder (a
diffusers folder of the same architecture) for any other family, SD3, FLUX.1 and FLUX.2 included.
A whole checkpoint needs only its configs; an SD3 or FLUX file holding the transformer alone (as
``flux1-dev.safetensors`` and ``flux2-dev.safetensors`` do), or with its VAE, takes the other
components' weights from that folder. Pickle checkpoints (``.ckpt``, ``.pt``, ...) are refused: unpickling runs code.

The family is read from the file's safetensors header (names and shapes, no weights), so a
file can be described without torch; the conversion itself imports diffusers.
"""

from __future__ import annotations

import gzip
import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

from app.engine import safetensors_header
from app.engine.catalog import (
    IMPORT_FAILED_SUFFIX,
    PICKLE_SUFFIXES,
    SINGLE_FILE_CONFIG_SUFFIX,
    names_unknown_code,
    read_json,
)

logger = logging.getLogger(__name__)

CONFIGS = Path(__file__).with_name("checkpoint_configs")
CLIP_BPE = CONFIGS / "clip" / "bpe_simple_vocab_16e6.txt.gz"
# The families whose configs the studio ships; the rest need a config folder.
SHIPPED = ("sd1", "sdxl")


class CheckpointError(ValueError):
    """The file can't be imported; the message says why and what to do."""


def header(file: Path) -> dict[str, Any]:
    """The safetensors header: each tensor's dtype and shape by name, read without loading weights."""
    try:
        data = safetensors_header.read_header(file)
    except safetensors_header.UnreadableSafetensors as error:
        raise CheckpointError(str(error)) from error
    data.pop("__metadata__", None)
    return data


def checkpoint_family(tensors: dict[str, Any]) -> str:
    """The family a single-file checkpoint is, from its tensor names."""
    names = tensors.keys()
    if any(name.startswith("conditioner.embedders.1.model.") for name in names):
        return "sdxl"
    if "cond_stage_model.model.token_embedding.weight" in names:
        return "sd2"
    if "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in names:
        return "sd1"
    if any("joint_blocks." in name for name in names):
        return "sd3"
    if any(name.endswith("double_stream_modulation_img.lin.weight") for name in names):
        return "flux2"  # FLUX.2's modulations are shared by all its blocks
    if any("double_blocks." in name for name in names):
        return "flux"
    if any(name.startswith("model.diffusion_model.input_blocks.") for name in names):
        return "sd1"
    raise CheckpointError(
        "the file is not a checkpoint the studio recognises "
        "(SD 1.x, SD 2.x, SDXL, SD3, FLUX.1 or FLUX.2 in the original layout)"
    )


def clip_tokenizer_files(folder: Path, *, pad_token: str = "<|endoftext|>") -> None:
    """Writes CLIP's tokenizer (vocab.json, merges.txt, configs) to ``folder`` from the shipped BPE list.

    The vocabulary is CLIP's own construction: the 256 byte symbols, each again word-final, then
    one token per merge, then the two special tokens (49,408 in all).
    """
    lines = gzip.decompress(CLIP_BPE.read_bytes()).decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    symbols = _byte_symbols()
    vocab = symbols + [symbol + "</w>" for symbol in symbols]
    vocab += ["".join(merge.split()) for merge in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({token: index for index, token in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
        "do_lower_case": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    specials = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
    (folder / "special_tokens_map.json").write_text(json.dumps(specials | {"pad_token": pad_token}))


def _byte_symbols() -> list[str]:
    """GPT-2's reversible byte-to-unicode table, in CLIP's order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


def shipped_config(family: str, tensors: dict[str, Any], work: Path) -> Path:
    """A config folder for ``family`` in ``work``: the shipped configs, tokenizers, and the file's own facts."""
    if family not in SHIPPED:
        raise CheckpointError(
            f"the studio ships configs for {' and '.join(SHIPPED)} checkpoints only; this one looks like {family}: "
            "pass --config DIR, a diffusers folder of the same model (its model_index.json and component configs)"
        )
    folder = work / "config"
    shutil.copytree(CONFIGS / family, folder)
    clip_tokenizer_files(folder / "tokenizer")
    if family == "sdxl":
        # SDXL's second tokenizer pads with "!" (token 0), as its OpenCLIP encoder was trained.
        clip_tokenizer_files(folder / "tokenizer_2", pad_token="!")
    first_conv = tensors.get("model.diffusion_model.input_blocks.0.0.weight", {}).get("shape", [])
    if len(first_conv) == 4 and first_conv[1] == 9:
        # An inpainting checkpoint: 4 latent + 4 masked-image + 1 mask channels.
        unet_config = folder / "unet" / "config.json"
        unet_config.write_text(json.dumps(read_json(unet_config) | {"in_channels": 9}))
    return folder


def import_checkpoint(file: Path, models_dir: Path, *, config: Path | None = None, name: str | None = None) -> Path:
    """Converts ``file`` into the diffusers folder ``models_dir/NAME`` (NAME: the file's stem) and returns it."""
    if file.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{file.name} is a pickle checkpoint, which can run code when loaded; the studio imports .safetensors only"
        )
    if file.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{file.name} is not a .safetensors file")
    if not file.is_file():
        raise CheckpointError(f"{file} does not exist")
    target = models_dir / (name or file.stem)
    if target.exists():
        raise CheckpointError(f"{target} already exists; remove it or pass another name")
    tensors = header(file)
    family = checkpoint_family(tensors)
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".import-") as scratch:
        work = Path(scratch)
        folder = config if config is not None else shipped_config(family, tensors, work)
        index = _config_index(folder)
        if _partial(family, tensors):
            pipeline = _from_partial_file(file, folder, index, tensors)
        else:
            pipeline = _from_single_file(file, folder, str(index["_class_name"]))
        _tie_and_check(pipeline, file)
        staging = work / "out"
        pipeline.save_pretrained(staging, safe_serialization=True)
        readme = f"# {target.name}\n\nImported from the single-file checkpoint {file.name}.\n"
        (staging / "README.md").write_text(readme)
        # One rename: a scan never sees a half-written model folder.
        staging.rename(target)
    logger.info("imported %s (%s) as %s", file.name, family, target)
    return target


def _tie_and_check(pipeline: Any, file: Path) -> None:
    """Ties the weights a checkpoint stores once (T5's token embeddings, which diffusers' single-file
    loader leaves empty), then refuses a pipeline with any weight still missing."""
    for name, component in pipeline.components.items():
        if hasattr(component, "tie_weights"):
            component.tie_weights()
        parameters = component.parameters() if hasattr(component, "parameters") else []
        if any(parameter.device.type == "meta" for parameter in parameters):
            raise CheckpointError(f"{file.name} lacks some of the {name}'s weights and the config folder has none")


def _config_index(folder: Path) -> dict[str, Any]:
    try:
        index = read_json(folder / "model_index.json")
    except (OSError, ValueError) as error:
        raise CheckpointError(f"the config folder {folder} has no readable model_index.json: {error}") from error
    refusal = names_unknown_code(index)
    if refusal:
        raise CheckpointError(f"the config folder is refused: {refusal}")
    return index


# Transformer families often ship the denoiser alone (FLUX.1's flux1-dev.safetensors, many SD3.5
# fine-tunes) or with its VAE but without the text encoders; these prefixes tell what a file holds.
_VAE_PREFIXES = ("first_stage_model.", "vae.")
_TEXT_ENCODER_PREFIXES = ("text_encoders.",)
_TRANSFORMER_FAMILIES = ("sd3", "flux", "flux2")
# Components that carry weights; schedulers and tokenizers are configs and vocabularies.
_WEIGHTLESS = {"scheduler", "tokenizer", "tokenizer_2", "tokenizer_3", "feature_extractor"}


def _holds(tensors: dict[str, Any], prefixes: tuple[str, ...]) -> bool:
    return any(name.startswith(prefixes) for name in tensors)


def _partial(family: str, tensors: dict[str, Any]) -> bool:
    """An SD3 or FLUX file without its VAE or text encoders: what it lacks comes from the config folder.

    (diffusers' whole-pipeline loader can't take a missing text encoder from a local folder: it looks
    for diffusers' weight file names, not transformers' ``model.safetensors``.)
    """
    whole = _holds(tensors, _VAE_PREFIXES) and _holds(tensors, _TEXT_ENCODER_PREFIXES)
    return family in _TRANSFORMER_FAMILIES and not whole


def _from_partial_file(file: Path, config: Path, index: dict[str, Any], tensors: dict[str, Any]) -> Any:
    """The transformer (and the VAE, if the file has one) converted from ``file``; the rest from ``config``."""
    import diffusers

    in_file = ["transformer"] + (["vae"] if _holds(tensors, _VAE_PREFIXES) else [])
    classes = {}
    for name in in_file:
        entry = index.get(name)
        if not isinstance(entry, list) or len(entry) != 2 or not hasattr(diffusers, str(entry[1])):
            raise CheckpointError(f"the config folder {config} has no {name} for {file.name} to be loaded into")
        classes[name] = getattr(diffusers, str(entry[1]))
    components = [name for name, value in index.items() if isinstance(value, list) and value[0] is not None]
    missing = [
        name
        for name in components
        if name not in in_file and name not in _WEIGHTLESS and not any((config / name).glob("*.safetensors"))
    ]
    if missing:
        held = " and ".join(in_file)
        raise CheckpointError(
            f"{file.name} holds only the {held}; the config folder must hold the weights of the rest "
            f"(.safetensors in {', '.join(missing)}), as a diffusers folder of the same model does"
        )
    pipeline_class = getattr(diffusers, str(index["_class_name"]), None)
    if pipeline_class is None:
        raise CheckpointError(f"{index['_class_name']} is not a diffusers pipeline")
    try:
        converted = {
            name: model_class.from_single_file(str(file), config=str(config), subfolder=name, local_files_only=True)
            for name, model_class in classes.items()
        }
        return pipeline_class.from_pretrained(str(config), local_files_only=True, use_safetensors=True, **converted)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"{file.name} could not be converted with the configs in {config}: {error}") from error


def _from_single_file(file: Path, config: Path, class_name: str) -> Any:
    import diffusers

    pipeline_class = getattr(diffusers, class_name, None)
    if pipeline_class is None or not hasattr(pipeline_class, "from_single_file"):
        raise CheckpointError(f"{class_name} pipelines can't be loaded from a single file")
    try:
        return pipeline_class.from_single_file(str(file), config=str(config), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as error:
        raise CheckpointError(f"{file.name} could not be converted with the configs in {config}: {error}") from error


def dropped_files(models_dir: Path) -> list[Path]:
    """``.safetensors`` files directly in the models folder that have no folder of their name yet."""
    if not models_dir.is_dir():
        return []
    return sorted(
        path
        for path in models_dir.glob("*.safetensors")
        if path.is_file() and not (models_dir / path.stem).exists() and not _failed_marker(path).exists()
    )


def _failed_marker(file: Path) -> Path:
    # Beside a dropped file that failed to convert, so a scan does not retry it every time.
    return file.with_name(file.stem + IMPORT_FAILED_SUFFIX)


def convert_dropped(models_dir: Path) -> list[Path]:
    """Converts every dropped single file; one that fails gets a note beside it and is left alone after."""
    converted = []
    for file in dropped_files(models_dir):
        config = file.with_name(file.stem + SINGLE_FILE_CONFIG_SUFFIX)
        try:
            converted.append(import_checkpoint(file, models_dir, config=config if config.is_dir() else None))
        except CheckpointError as error:
            if (models_dir / file.stem).exists():
                continue  # another worker converted it meanwhile
            logger.warning("could not import %s: %s", file.name, error)
            _failed_marker(file).write_text(f"{error}\n")
    return converted
