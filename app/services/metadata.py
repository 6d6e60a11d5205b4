"""Metadata: the generation parameters that PNGs carry in text chunks (ours and AUTOMATIC1111's).

Every PNG the studio writes has two text chunks:

- ``parameters``: AUTOMATIC1111's "infotext", so other tools (A1111, ComfyUI, Civitai, InvokeAI's
  importer) read our prompts and settings;
- ``studio``: the exact parameters as sorted JSON, which we read back first because it is lossless.

The infotext format is A1111's ``create_infotext`` / ``parse_generation_parameters``: the prompt
(any number of lines), then ``Negative prompt: ...`` when there is one, then one last line of
``Key: value`` pairs joined by ", ", where a value holding a comma, colon or newline is quoted with
``json.dumps``.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Mapping
from typing import Any

from app.services.errors import InvalidInput, UnsupportedMedia

PARAMETERS_KEY = "parameters"
STUDIO_KEY = "studio"
# The infotext key of regional prompts: [{"prompt", "box" | "mask_id", "weight"}] as JSON.
REGIONS_KEY = "Regions"

# Our scheduler names -> A1111's sampler names. PLMS in A1111 is what diffusers calls PNDM.
SCHEDULER_TO_SAMPLER: dict[str, str] = {
    "ddim": "DDIM",
    "euler": "Euler",
    "euler-a": "Euler a",
    "dpm++-2m": "DPM++ 2M",
    "dpm++-2m-karras": "DPM++ 2M Karras",
    "unipc": "UniPC",
    "pndm": "PLMS",
    "ddpm": "DDPM",
    # A1111 has an LCM sampler; TCD is Forge's and ComfyUI's name.
    "lcm": "LCM",
    "tcd": "TCD",
}
SAMPLER_TO_SCHEDULER: dict[str, str] = {sampler.lower(): name for name, sampler in SCHEDULER_TO_SAMPLER.items()}
# Older A1111 versions folded the noise schedule into the sampler name ("DPM++ 2M Karras"). A name
# we have a scheduler for (DPM++ 2M Karras) maps to it; otherwise the schedule suffix is dropped
# before looking the sampler up.
_SCHEDULE_SUFFIXES = (" karras", " exponential", " sgm uniform", " polyexponential")
# Names from A1111's k-diffusion aliases and other front ends that mean the same samplers.
_SAMPLER_ALIASES = {
    "k_euler": "euler",
    "k_euler_a": "euler-a",
    "k_euler_ancestral": "euler-a",
    "euler ancestral": "euler-a",
    "k_dpmpp_2m": "dpm++-2m",
    "dpmpp_2m": "dpm++-2m",
    "dpm++ 2m": "dpm++-2m",
    "pndm": "pndm",
    "uni_pc": "unipc",
}

# A1111's re_param_code: a key, then a JSON-quoted value (escapes allowed) or anything up to a comma.
_RE_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_RE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE_PREFIX = "Negative prompt:"

# Bounds on what read_png_parameters will inflate from a zTXt/iTXt chunk, so a hostile PNG
# cannot expand a few bytes into gigabytes.
_MAX_TEXT_BYTES = 1024 * 1024


def scheduler_to_sampler(scheduler: str) -> str:
    """A1111's name for one of our schedulers; unknown names pass through unchanged."""
    return SCHEDULER_TO_SAMPLER.get(scheduler.lower(), scheduler)


def sampler_to_scheduler(sampler: str) -> str | None:
    """Our scheduler name for an A1111 sampler name ("Euler a", "DPM++ 2M Karras"), or None."""
    name = sampler.strip().lower()
    if name in SAMPLER_TO_SCHEDULER:
        return SAMPLER_TO_SCHEDULER[name]
    for suffix in _SCHEDULE_SUFFIXES:
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    if name in SAMPLER_TO_SCHEDULER:
        return SAMPLER_TO_SCHEDULER[name]
    if name in SCHEDULER_TO_SAMPLER:
        return name
    return _SAMPLER_ALIASES.get(name)


def quote(value: object) -> str:
    """A1111's infotext quoting: JSON-quote a value that holds a comma, colon or newline."""
    text = str(value)
    if "," not in text and ":" not in text and "\n" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def _number(value: float) -> str:
    # A1111 prints CFG 7 as "7" and 7.5 as "7.5".
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def a1111_parameters(
    *,
    prompt: str,
    negative_prompt: str,
    steps: int,
    sampler: str,
    guidance: float,
    seed: int,
    width: int,
    height: int,
    model: str | None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """The infotext A1111 would write; ``sampler`` may be ours ("euler-a") or A1111's ("Euler a")."""
    fields: dict[str, Any] = {
        "Steps": steps,
        "Sampler": scheduler_to_sampler(sampler),
        "CFG scale": _number(guidance),
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model": model or None,
    }
    for key, value in (extra or {}).items():
        fields.setdefault(key, value)
    # As A1111 does: None means "leave out", and a key equal to its value is written bare.
    params_line = ", ".join(
        key if key == value else f"{key}: {quote(value)}" for key, value in fields.items() if value is not None
    )
    negative = f"\n{_NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{params_line}".strip()


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float_or_none(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def parse_a1111(text: str) -> dict[str, Any]:
    """Read an A1111 infotext back, following A1111's own ``parse_generation_parameters``.

    Returns ``prompt``, ``negative_prompt``, ``steps``, ``sampler``, ``cfg_scale``, ``seed``,
    ``width``, ``height``, ``model`` (None where absent or unreadable) and every other key under its
    A1111 name with its value unquoted (``"Hires upscale": "2"``, ``"Lora hashes": "a: 1, b: 2"``).
    """
    *lines, last_line = text.replace("\r\n", "\n").strip().split("\n")
    # As A1111 does: a last line with fewer than three "Key: value" pairs is still the prompt.
    if len(_RE_PARAM.findall(last_line)) < 3:
        lines.append(last_line)
        last_line = ""

    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for raw in lines:
        line = raw.strip()
        if line.startswith(_NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(_NEGATIVE_PREFIX) :].strip()
        (negative_lines if in_negative else prompt_lines).append(line)

    raw_fields: dict[str, str] = {}
    for key, value in _RE_PARAM.findall(last_line):
        raw_fields[key.strip()] = unquote(value.strip())

    result: dict[str, Any] = {
        "prompt": "\n".join(prompt_lines),
        "negative_prompt": "\n".join(negative_lines),
        "steps": _int_or_none(raw_fields.pop("Steps", None)),
        "sampler": raw_fields.pop("Sampler", None),
        "cfg_scale": _float_or_none(raw_fields.pop("CFG scale", None)),
        "seed": _int_or_none(raw_fields.pop("Seed", None)),
        "width": None,
        "height": None,
        "model": raw_fields.pop("Model", None),
    }
    size = raw_fields.pop("Size", None)
    size_match = _RE_SIZE.match(size) if size else None
    if size_match:
        result["width"], result["height"] = int(size_match.group(1)), int(size_match.group(2))
    elif size is not None:
        raw_fields["Size"] = size
    result.update(raw_fields)
    return result


_RE_CONTROL_UNIT = re.compile(
    r"preprocessor: (?P<kind>[^,]+), model: (?P<model>.+), weight: (?P<weight>[-\d.e]+), "
    r"starting/ending: \((?P<start>[-\d.e]+), (?P<end>[-\d.e]+)\)"
)


def control_unit_text(unit: Mapping[str, Any]) -> str:
    """A ControlNet unit's infotext value: ``preprocessor: canny, model: name, weight: 1, starting/ending: (0, 1)``."""
    return (
        f"preprocessor: {unit.get('kind', 'none')}, model: {unit['model']}, "
        f"weight: {float(unit.get('weight', 1.0)):g}, "
        f"starting/ending: ({float(unit.get('start', 0.0)):g}, {float(unit.get('end', 1.0)):g})"
    )


def read_control_unit(text: str) -> dict[str, Any] | None:
    """A ``ControlNet N`` infotext value back as ``{kind, model, weight, start, end}``, or None if unreadable."""
    match = _RE_CONTROL_UNIT.fullmatch(text.strip())
    if match is None:
        return None
    try:
        numbers = {key: float(match.group(key)) for key in ("weight", "start", "end")}
    except ValueError:
        return None
    return {"kind": match.group("kind").strip(), "model": match.group("model").strip(), **numbers}


def png_text_chunks(params: Mapping[str, Any]) -> dict[str, str]:
    """The two text chunks for an output PNG, from our parameters.

    ``params`` holds prompt, negative_prompt, seed, steps, guidance, width, height, scheduler,
    model, mode, generation_id, index and any extra keys; all of them go into the ``studio`` JSON,
    the A1111 ones (plus ``strength`` as "Denoising strength") into ``parameters``.
    """
    extra: dict[str, Any] = {}
    if params.get("strength") is not None:
        extra["Denoising strength"] = params["strength"]
    prompt = str(params.get("prompt", ""))
    loras = [lora for lora in params.get("loras") or [] if isinstance(lora, Mapping) and lora.get("name")]
    if loras:
        # As A1111 writes them: each LoRA as <lora:name:weight> in the prompt, its short hash in "Lora hashes".
        prompt = " ".join([prompt, *(f"<lora:{lora['name']}:{float(lora.get('weight', 1.0)):g}>" for lora in loras)])
        hashes = [f"{lora['name']}: {lora['hash']}" for lora in loras if lora.get("hash")]
        if hashes:
            extra["Lora hashes"] = ", ".join(hashes)
    controls = [unit for unit in params.get("control") or [] if isinstance(unit, Mapping) and unit.get("model")]
    for index, unit in enumerate(controls):
        # As the sd-webui-controlnet extension names its units in A1111's infotext ("ControlNet 0", ...).
        extra[f"ControlNet {index}"] = control_unit_text(unit)
    regions = [region for region in params.get("regions") or [] if isinstance(region, Mapping)]
    if regions:
        # A1111 has no regional prompts of its own: "Regions" carries them as JSON, quoted as any value.
        extra[REGIONS_KEY] = json.dumps(regions, ensure_ascii=False, separators=(",", ":"))
    if params.get("upscaler"):
        # A1111's hires fix is the same two passes (an upscaler, then image-to-image) and names it so.
        extra["Hires upscaler"] = params["upscaler"]
    infotext = a1111_parameters(
        prompt=prompt,
        negative_prompt=str(params.get("negative_prompt") or ""),
        steps=int(params["steps"]),
        sampler=str(params.get("scheduler", "")),
        guidance=float(params["guidance"]),
        seed=int(params["seed"]),
        width=int(params["width"]),
        height=int(params["height"]),
        model=params.get("model"),
        extra=extra,
    )
    # default=str: an odd value (a datetime, a Path) degrades to text instead of losing the image.
    studio = json.dumps(dict(params), sort_keys=True, ensure_ascii=False, default=str)
    return {PARAMETERS_KEY: infotext, STUDIO_KEY: studio}


def _png_text(data: bytes) -> dict[str, str]:
    """The tEXt/zTXt/iTXt chunks of a PNG, read chunk by chunk: no pixel data is ever inflated."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        raise UnsupportedMedia("parameters can only be read from a PNG image")
    texts: dict[str, str] = {}
    offset = 8
    while offset + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[offset : offset + 8])
        body = data[offset + 8 : offset + 8 + length]
        offset += 12 + length  # length + type + body + CRC
        if len(body) < length or kind == b"IEND":
            break
        try:
            if kind == b"tEXt":
                key, _, value = body.partition(b"\x00")
                texts[key.decode("latin-1")] = value.decode("latin-1")
            elif kind == b"zTXt":
                key, _, rest = body.partition(b"\x00")
                texts[key.decode("latin-1")] = _inflate(rest[1:]).decode("latin-1")
            elif kind == b"iTXt":
                key, _, rest = body.partition(b"\x00")
                compressed, rest = rest[0], rest[2:]
                _language, _, rest = rest.partition(b"\x00")
                _translated, _, value = rest.partition(b"\x00")
                texts[key.decode("latin-1")] = (_inflate(value) if compressed else value).decode("utf-8")
        except (IndexError, UnicodeDecodeError, zlib.error, InvalidInput):
            continue  # one damaged chunk should not hide the others
    return texts


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(data, _MAX_TEXT_BYTES)
    if inflater.unconsumed_tail:
        raise InvalidInput(f"a PNG text chunk inflates past {_MAX_TEXT_BYTES} bytes")
    return out


def read_png_parameters(data: bytes) -> dict[str, Any]:
    """The parameters a PNG carries: our ``studio`` JSON when present, else A1111's ``parameters``.

    From an A1111 infotext the result uses our names (``guidance``, ``scheduler``, ``width``, ...),
    keeps A1111's ``sampler`` name as well, and carries its other keys as they were. A PNG with
    neither chunk gives ``{}``.
    """
    texts = _png_text(data)
    studio = texts.get(STUDIO_KEY)
    if studio is not None:
        try:
            decoded = json.loads(studio)
        except ValueError:
            decoded = None
        if isinstance(decoded, dict):
            return decoded
    infotext = texts.get(PARAMETERS_KEY)
    if infotext is None:
        return {}
    parsed = parse_a1111(infotext)
    sampler = parsed.get("sampler")
    parsed["guidance"] = parsed.pop("cfg_scale")
    parsed["scheduler"] = sampler_to_scheduler(sampler) if sampler else None
    units = [(key, read_control_unit(value)) for key, value in parsed.items() if key.startswith("ControlNet ")]
    if any(unit is not None for _, unit in units):
        parsed["control"] = [unit for _, unit in units if unit is not None]
    if isinstance(parsed.get(REGIONS_KEY), str):
        try:
            regions = json.loads(parsed[REGIONS_KEY])
        except ValueError:
            regions = None
        if isinstance(regions, list):
            parsed["regions"] = regions
            del parsed[REGIONS_KEY]
    return parsed
