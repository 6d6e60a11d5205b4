"""Seconds per image, denoising it/s and peak GPU memory of each family at its real size, random weights.

python bench/gpu.py [--family sd15 sdxl flux] [--repeats 2] [--flux-depth 19/38] [--compile [MODE]]

Speed does not depend on the weights' values, so every model is built from its real config with
random weights straight on the GPU (no download, no disk): SD 1.5 at 512 px / 30 steps, SDXL at
1024 px / 30 steps, FLUX.1-dev at 1024 px / 28 steps, in the dtype the studio runs each family in
on CUDA (``app.engine.families``) with PyTorch's SDPA attention. ``--flux-depth D/S`` builds FLUX
with fewer double/single blocks where memory demands (the figures then say so). ``--compile`` first
applies the studio's GPU fast path (``STUDIO_COMPILE=1``, ``app.engine.fast_path``: channels-last,
fused QKV, the denoiser compiled in MODE, default max-autotune-no-cudagraphs) and prints its warm-up
time; run once without and once with it for the before/after. Each line also prints the MFU it
implies: the FLOPs of one step (counted by ``torch.utils.flop_counter`` on one step) times
the steps per second, over the GPU's dense 16-bit peak (``--peak-tflops``, 989 for an H100/H200 SXM).
Runs only where CUDA exists; elsewhere it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from app.engine import fast_path  # noqa: E402
from app.engine.families import family_named  # noqa: E402
from app.engine.registry import dtype_for  # noqa: E402
from app.engine.single_file import CONFIGS, clip_tokenizer_files  # noqa: E402

CASES = {"sd15": ("sd1", 512, 30), "sdxl": ("sdxl", 1024, 30), "flux": ("flux", 1024, 28)}


def _config(path: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((CONFIGS / path).read_text())
    return {key: value for key, value in loaded.items() if not key.startswith("_")}


def _randomise(module: torch.nn.Module, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """Materialises a meta-device module on ``device`` with small random weights."""
    module = module.to_empty(device=device)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0.0, 0.02)
        for name, buffer in module.named_buffers():
            if name.endswith("position_ids"):
                buffer.copy_(torch.arange(buffer.shape[-1], device=device).expand_as(buffer))
    return module.to(dtype).eval()


def _clip_tokenizer(work: Path, name: str, pad: str = "<|endoftext|>") -> Any:
    from transformers import CLIPTokenizer

    clip_tokenizer_files(work / name, pad_token=pad)
    return CLIPTokenizer.from_pretrained(work / name, local_files_only=True)


def build_sd15(device: str, dtype: torch.dtype, work: Path, _depth: str) -> tuple[Any, str]:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(_config("sd1/unet/config.json"))
        vae = AutoencoderKL.from_config(_config("sd1/vae/config.json"))
        text = CLIPTextModel(CLIPTextConfig(**_config("sd1/text_encoder/config.json")))
    pipeline = StableDiffusionPipeline(
        vae=_randomise(vae, device, dtype),
        text_encoder=_randomise(text, device, dtype),
        tokenizer=_clip_tokenizer(work, "sd15-tokenizer"),
        unet=_randomise(unet, device, dtype),
        scheduler=EulerDiscreteScheduler.from_config(_config("sdxl/scheduler/scheduler_config.json")),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return pipeline, "SD 1.5 (UNet 860M)"


def build_sdxl(device: str, dtype: torch.dtype, work: Path, _depth: str) -> tuple[Any, str]:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(_config("sdxl/unet/config.json"))
        vae = AutoencoderKL.from_config(_config("sdxl/vae/config.json"))
        text = CLIPTextModel(CLIPTextConfig(**_config("sdxl/text_encoder/config.json")))
        text_2 = CLIPTextModelWithProjection(CLIPTextConfig(**_config("sdxl/text_encoder_2/config.json")))
    pipeline = StableDiffusionXLPipeline(
        vae=_randomise(vae, device, dtype),  # the pipeline upcasts SDXL's VAE to decode (force_upcast)
        text_encoder=_randomise(text, device, dtype),
        text_encoder_2=_randomise(text_2, device, dtype),
        tokenizer=_clip_tokenizer(work, "sdxl-tokenizer"),
        tokenizer_2=_clip_tokenizer(work, "sdxl-tokenizer-2", pad="!"),
        unet=_randomise(unet, device, dtype),
        scheduler=EulerDiscreteScheduler.from_config(_config("sdxl/scheduler/scheduler_config.json")),
    )
    return pipeline, "SDXL 1.0 (UNet 2.6B)"


def build_flux(device: str, dtype: torch.dtype, work: Path, depth: str) -> tuple[Any, str]:
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel, T5Tokenizer

    double, single = (int(part) for part in depth.split("/"))
    with torch.device("meta"):
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=64,
            num_layers=double,
            num_single_layers=single,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            guidance_embeds=True,
            axes_dims_rope=[16, 56, 56],
        )
        vae = AutoencoderKL.from_config(
            _config("sd1/vae/config.json")
            | {"latent_channels": 16, "scaling_factor": 0.3611, "shift_factor": 0.1159, "sample_size": 1024}
            | {"use_quant_conv": False, "use_post_quant_conv": False}
        )
        clip = CLIPTextModel(CLIPTextConfig(**_config("sd1/text_encoder/config.json")))
        t5 = T5EncoderModel(
            T5Config(
                vocab_size=32128,
                d_model=4096,
                d_kv=64,
                d_ff=10240,
                num_layers=24,
                num_heads=64,
                feed_forward_proj="gated-gelu",
                is_encoder_decoder=False,
            )
        )
    # A character-level T5 vocabulary: the encoder's cost is its 512 positions, not its vocabulary.
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(chr(c), -1.0) for c in range(32, 127)]
    pipeline = FluxPipeline(
        transformer=_randomise(transformer, device, dtype),
        vae=_randomise(vae, device, dtype),
        text_encoder=_randomise(clip, device, dtype),
        text_encoder_2=_randomise(t5, device, dtype),
        tokenizer=_clip_tokenizer(work, "flux-tokenizer"),
        tokenizer_2=T5Tokenizer(vocab=pieces, extra_ids=0),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
    )
    full = depth == "19/38"
    return pipeline, "FLUX.1-dev (12B)" if full else f"FLUX.1-dev at reduced depth {double} double / {single} single"


BUILDERS: dict[str, Callable[[str, torch.dtype, Path, str], tuple[Any, str]]] = {
    "sd15": build_sd15,
    "sdxl": build_sdxl,
    "flux": build_flux,
}


def step_flops(pipeline: Any, arguments: dict[str, Any]) -> float:
    """FLOPs of one denoising step (with guidance's doubled batch), counted by torch's FLOP counter.

    A one-step call to latents: the text encoders run in it too (a small share), the VAE does not.
    Counted before any compile, since the counter follows eager operators.
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        pipeline(**arguments | {"num_inference_steps": 1, "output_type": "latent"})
    return float(counter.get_total_flops())


def measure(
    case: str, *, repeats: int, depth: str, device: str, compile_mode: str | None = None, peak_tflops: float = 989.0
) -> None:
    family_name, size, steps = CASES[case]
    family = family_named(family_name)
    dtype = dtype_for(device, family)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        pipeline, label = BUILDERS[case](device, dtype, Path(scratch), depth)
        pipeline.set_progress_bar_config(disable=True)
        built = time.perf_counter() - started
    arguments: dict[str, Any] = {
        "prompt": "a lighthouse on a cliff at dusk, oil painting",
        "num_inference_steps": steps,
        "width": size,
        "height": size,
        family.guidance_argument: family.capabilities.guidance_default,
        "output_type": "pil",
    }
    flops = step_flops(pipeline, arguments)
    compiled = ""
    if compile_mode is not None:
        # The studio's own fast path, as STUDIO_COMPILE=1 applies it, warmed at this size.
        started = time.perf_counter()
        fast_path.prepare(pipeline, device, mode=compile_mode, width=size, height=size)  # type: ignore[arg-type]
        torch.cuda.synchronize(device)
        compiled = f"  [compiled {compile_mode}, warm-up {time.perf_counter() - started:.0f} s]"
    step_times: list[float] = []

    def on_step(_pipe: Any, _step: int, _timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        torch.cuda.synchronize(device)
        step_times.append(time.perf_counter())
        return kwargs

    with torch.inference_mode():
        pipeline(**arguments | {"num_inference_steps": 2})  # warm-up: kernels, allocator
        torch.cuda.reset_peak_memory_stats(device)
        seconds, rates = [], []
        for repeat in range(repeats):
            step_times.clear()
            generator = torch.Generator("cpu").manual_seed(repeat)
            torch.cuda.synchronize(device)
            started = time.perf_counter()
            pipeline(**arguments, generator=generator, callback_on_step_end=on_step)
            torch.cuda.synchronize(device)
            seconds.append(time.perf_counter() - started)
            rates.append((len(step_times) - 1) / (step_times[-1] - step_times[0]))
    peak = torch.cuda.max_memory_allocated(device) / 1024**3
    mfu = flops * max(rates) / (peak_tflops * 1e12)
    print(
        f"{label:52} {size}px {steps} steps {str(dtype).removeprefix('torch.'):8} "
        f"{min(seconds):6.2f} s/image  {max(rates):6.2f} it/s  {flops / 1e12:6.2f} TFLOP/step  MFU {mfu:5.1%}  "
        f"peak {peak:5.1f} GiB  (built in {built:.0f} s){compiled}",
        flush=True,
    )
    del pipeline
    torch.cuda.empty_cache()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--family", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--flux-depth", default="19/38", help="double/single transformer blocks (19/38 is FLUX.1)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument(
        "--compile",
        nargs="?",
        const=fast_path.DEFAULT_COMPILE_MODE,
        default=None,
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        metavar="MODE",
        help="apply the STUDIO_COMPILE fast path first (mode: default max-autotune-no-cudagraphs)",
    )
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="the GPU's dense bf16/fp16 peak, for MFU")
    return parser.parse_args(argv)


def main() -> None:
    args = parse_args()
    if not torch.cuda.is_available():
        print(
            "bench/gpu.py measures on a CUDA GPU and this machine has none (torch.cuda.is_available() is False); "
            "nothing was measured.",
            file=sys.stderr,
        )
        raise SystemExit(2)
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"{torch.cuda.get_device_name(args.device)}, torch {torch.__version__}, SDPA attention", flush=True)
    for case in args.family:
        try:
            measure(
                case,
                repeats=args.repeats,
                depth=args.flux_depth,
                device=args.device,
                compile_mode=args.compile,
                peak_tflops=args.peak_tflops,
            )
        except torch.cuda.OutOfMemoryError:
            print(f"{case}: out of GPU memory; try --flux-depth 10/20", flush=True)
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
