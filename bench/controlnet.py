"""What a ControlNet guide costs: studio-tiny at 64x64 and 20 steps, painted with and without a canny guide,
alternated, through the engine; and the canny and scribble maps alone at 512x512. Prints medians and ratios.

The ControlNet is made from studio-tiny's own UNet (``ControlNetModel.from_unet``) in a temporary models folder
beside a link to the model: random, but with the compute of a trained one of that shape.

python bench/controlnet.py [--model models/studio-tiny] [--rounds 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from alternation import alternated, report  # noqa: E402
from diffusers import ControlNetModel, UNet2DConditionModel  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from app.engine.control_maps import control_map  # noqa: E402
from app.engine.control_pipelines import ControlGuide  # noqa: E402
from app.engine.registry import ModelRegistry  # noqa: E402
from app.engine.runner import GenerationSpec, run  # noqa: E402


def guide_image(side: int) -> Image.Image:
    image = Image.new("RGB", (side, side), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse((side // 6, side // 6, side * 5 // 6, side * 5 // 6), outline="black", width=max(1, side // 40))
    draw.line((0, side - 1, side - 1, 0), fill="black", width=max(1, side // 60))
    return image


def make_controlnet(model: Path, out: Path) -> None:
    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    stages = len(json.loads((model / "vae" / "config.json").read_text())["block_out_channels"])
    channels = tuple(16 * 2**stage for stage in range(stages))
    ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=channels).save_pretrained(out)


def median_ms(work, rounds: int) -> float:  # type: ignore[no-untyped-def]
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/studio-tiny"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / args.model.name).symlink_to(args.model.resolve())
        make_controlnet(args.model, root / "controlnet" / "bench-canny")
        registry = ModelRegistry(root)
        registry.pipeline(args.model.name, args.device)
        print(f"model: {args.model}  device: {args.device}  torch threads: {torch.get_num_threads()}")
        guide = guide_image(args.size)

        def paint(seed: int, guided: bool) -> float:
            control = [ControlGuide(image=guide, kind="canny", model="bench-canny")] if guided else []
            spec = GenerationSpec(
                model=args.model.name,
                prompt="a red boat on a lake at sunset",
                seed=seed,
                steps=args.steps,
                width=args.size,
                height=args.size,
                preview_every=0,
                control=control,
            )
            return run(registry, spec, device=args.device).seconds

        timings = alternated(paint, args.rounds)
    report(
        timings,
        without="without a guide",
        with_="with a guide",
        ratio="overhead ratio",
        setting=f"{args.size}x{args.size}, {args.steps} steps",
    )

    large = guide_image(512)
    for kind in ("canny", "scribble"):
        took = median_ms(lambda kind=kind: control_map(large, kind), args.rounds)
        print(f"{kind} map at 512x512: {took:.1f} ms (median)")


if __name__ == "__main__":
    main()
