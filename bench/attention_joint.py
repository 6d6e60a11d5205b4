"""What recording attention maps costs on the chat-template transformer families: random Qwen-Image,
Z-Image and FLUX.2 transformers (4 joint layers of width 256) called on one image's tokens with and
without the recorder, alternated; prints each family's medians and their ratio.

At a 32x32 token grid every joint layer is recorded; at 64x64 every fourth, pooled to 32x32.
The text encoders and the VAE, which recording leaves alone, are not run: the ratio is the
denoiser's own.

python bench/attention_joint.py [--grid 32] [--rounds 10] [--text 128] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from diffusers import (  # noqa: E402
    Flux2Transformer2DModel,
    QwenImageTransformer2DModel,
    ZImageTransformer2DModel,
)

from app.engine.attention_maps import recording  # noqa: E402
from app.engine.families import family_named  # noqa: E402

WIDTH, HEADS, LAYERS = 256, 4, 4


def qwen(grid: int, text: int, device: str) -> tuple[torch.nn.Module, Callable[[], Any]]:
    model = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=LAYERS,
        attention_head_dim=WIDTH // HEADS,
        num_attention_heads=HEADS,
        joint_attention_dim=128,
        axes_dims_rope=(16, 24, 24),
    ).to(device)
    latents = torch.randn(1, grid * grid, 64, device=device)
    context = torch.randn(1, text, 128, device=device)
    mask = torch.ones(1, text, dtype=torch.bool, device=device)
    timestep = torch.tensor([0.5], device=device)

    def call() -> Any:
        return model(
            hidden_states=latents,
            encoder_hidden_states=context,
            encoder_hidden_states_mask=mask,
            timestep=timestep,
            img_shapes=[[(1, grid, grid)]],
            return_dict=False,
        )

    return model, call


def zimage(grid: int, text: int, device: str) -> tuple[torch.nn.Module, Callable[[], Any]]:
    model = ZImageTransformer2DModel(
        all_patch_size=(2,),
        all_f_patch_size=(1,),
        in_channels=16,
        dim=WIDTH,
        n_layers=LAYERS,
        n_refiner_layers=1,
        n_heads=HEADS,
        n_kv_heads=HEADS,
        cap_feat_dim=128,
        axes_dims=[16, 24, 24],
        axes_lens=[1024, 128, 128],
    ).to(device)
    with torch.no_grad():
        model.x_pad_token.copy_(torch.ones_like(model.x_pad_token))
        model.cap_pad_token.copy_(torch.ones_like(model.cap_pad_token))
    latents = [torch.randn(16, 1, grid * 2, grid * 2, device=device)]
    captions = [torch.randn(text, 128, device=device)]
    timestep = torch.tensor([0.5], device=device)

    def call() -> Any:
        return model(latents, timestep, captions, return_dict=False)

    return model, call


def flux2(grid: int, text: int, device: str) -> tuple[torch.nn.Module, Callable[[], Any]]:
    model = Flux2Transformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=LAYERS,
        num_single_layers=LAYERS,
        attention_head_dim=WIDTH // HEADS,
        num_attention_heads=HEADS,
        joint_attention_dim=192,
        timestep_guidance_channels=256,
        axes_dims_rope=[16, 16, 16, 16],
    ).to(device)
    latents = torch.randn(1, grid * grid, 64, device=device)
    rows, columns = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    image_ids = torch.zeros(1, grid * grid, 4, device=device)
    image_ids[0, :, 1], image_ids[0, :, 2] = rows.flatten(), columns.flatten()
    text_ids = torch.zeros(1, text, 4, device=device)
    text_ids[0, :, 3] = torch.arange(text)
    context = torch.randn(1, text, 192, device=device)
    timestep, guidance = torch.tensor([0.5], device=device), torch.tensor([4.0], device=device)

    def call() -> Any:
        return model(
            hidden_states=latents,
            encoder_hidden_states=context,
            timestep=timestep,
            img_ids=image_ids,
            txt_ids=text_ids,
            guidance=guidance,
            return_dict=False,
        )

    return model, call


def _timed(pipeline: Any, call: Callable[[], Any], side: int, record: bool) -> float:
    """Seconds of one denoiser call, recording its attention maps or not."""
    with torch.inference_mode(), recording(pipeline, width=side, height=side, enabled=record) as recorded:
        started = time.perf_counter()
        call()
        seconds = time.perf_counter() - started
    assert (recorded.token_maps is not None) == record
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=32, help="image tokens per side")
    parser.add_argument("--text", type=int, default=128, help="text tokens")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    print(f"device: {args.device}  torch threads: {torch.get_num_threads()}  grid {args.grid}x{args.grid}")

    for name, build in (("qwenimage", qwen), ("zimage", zimage), ("flux2", flux2)):
        torch.manual_seed(0)
        model, call = build(args.grid, args.text, args.device)
        model.eval()
        # What the recorder reads of a pipeline: its family and denoiser (no tokenizer: no words are found).
        pipeline = SimpleNamespace(
            transformer=model, tokenizer=None, vae_scale_factor=8, _studio_family=family_named(name)
        )
        side = args.grid * 16  # the canvas these tokens paint, in pixels

        def once(record: bool, pipeline: Any = pipeline, call: Callable[[], Any] = call, side: int = side) -> float:
            return _timed(pipeline, call, side, record)

        once(True)  # warm-up, both ways
        once(False)
        timings: dict[bool, list[float]] = {True: [], False: []}
        for round_ in range(args.rounds):
            # Alternate which goes first, so drift in the machine's load falls on both alike.
            for record in (True, False) if round_ % 2 == 0 else (False, True):
                timings[record].append(once(record))
        plain, recorded = statistics.median(timings[False]), statistics.median(timings[True])
        print(
            f"{name:10s} without maps {plain * 1000:7.1f} ms  with maps {recorded * 1000:7.1f} ms  "
            f"ratio {recorded / plain:.3f} (medians), {min(timings[True]) / min(timings[False]):.3f} (minimums)"
        )


if __name__ == "__main__":
    main()
