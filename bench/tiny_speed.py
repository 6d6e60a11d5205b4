"""Seconds per 64x64 studio-tiny image at 20 steps, through the engine, batch of 1 and of 8.

python bench/tiny_speed.py [--model models/studio-tiny] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from app.engine.registry import ModelRegistry  # noqa: E402
from app.engine.runner import GenerationSpec, run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/studio-tiny"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--scheduler", default="dpm++-2m")
    args = parser.parse_args()

    registry = ModelRegistry(args.model.parent)
    started = time.perf_counter()
    registry.pipeline(args.model.name, "cpu")
    print(f"model: {args.model}  torch threads: {torch.get_num_threads()}  load: {time.perf_counter() - started:.2f} s")
    for batch in (1, 8):
        spec = GenerationSpec(
            model=args.model.name,
            prompt="a red boat on the left at sunset",
            seed=0,
            steps=args.steps,
            n_images=batch,
            scheduler=args.scheduler,
            preview_every=0,
        )
        run(registry, spec, device="cpu")  # warm-up
        timings = []
        for repeat in range(args.repeats):
            spec.seed = repeat
            timings.append(run(registry, spec, device="cpu").seconds / batch)
        print(
            f"batch {batch}: {statistics.median(timings):.3f} s per image "
            f"(median of {args.repeats}, min {min(timings):.3f}, {args.steps} steps)"
        )


if __name__ == "__main__":
    main()
