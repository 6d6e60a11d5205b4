"""What regional prompts cost: studio-tiny at 64x64 and 20 steps, painted with no regions and with two
boxes ("a red boat" left, "a yellow sun" right), alternated, through the engine; prints the medians
and their ratio.

python bench/regions.py [--model models/studio-tiny] [--rounds 10] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from alternation import alternated, report  # noqa: E402

from app.engine.regions import RegionPrompt  # noqa: E402
from app.engine.registry import ModelRegistry  # noqa: E402
from app.engine.runner import GenerationSpec, run  # noqa: E402

BOXES = [
    RegionPrompt("a red boat", (0.0, 0.0, 0.5, 1.0)),
    RegionPrompt("a yellow sun", (0.5, 0.0, 1.0, 1.0)),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/studio-tiny"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    registry = ModelRegistry(args.model.parent)
    started = time.perf_counter()
    registry.pipeline(args.model.name, args.device)
    print(
        f"model: {args.model}  device: {args.device}  torch threads: {torch.get_num_threads()}  "
        f"load: {time.perf_counter() - started:.2f} s"
    )

    def paint(seed: int, regional: bool) -> float:
        spec = GenerationSpec(
            model=args.model.name,
            prompt="a red boat and a yellow sun",
            seed=seed,
            steps=args.steps,
            width=args.size,
            height=args.size,
            preview_every=0,
            regions=BOXES if regional else [],
        )
        return run(registry, spec, device=args.device).seconds

    timings = alternated(paint, args.rounds)
    report(
        timings,
        without="no regions",
        with_="two regions",
        ratio="ratio",
        setting=f"{args.size}x{args.size}, {args.steps} steps",
    )


if __name__ == "__main__":
    main()
