"""Seconds per 64x64 studio-tiny image through the engine: batch 1 per setting, and batch 8.

python bench/tiny_speed.py [--model models/studio-tiny] [--repeats 5] [--settings default,1t,2t,...] [--compile]

Each setting is one row, measured in turns (every setting once per round, ``--repeats`` rounds) so
that a machine whose load drifts weighs on all of them alike:

- ``1t``, ``2t``: one or two torch threads, 20 steps of DPM++ 2M;
- ``1t-cl``, ``2t-cl``: the same with the UNet's weights channels-last;
- ``1t-Ns-SCHED``, ``2t-Ns-SCHED``: N steps of another scheduler (``2t-10s-euler``: Euler on
  studio-tiny's trailing timesteps, which `bench/tiny_adherence.py --scheduler euler --steps 10`
  finds as faithful as 20 steps of DPM++ 2M);
- ``--compile`` adds ``2t-compiled``: the UNet through ``torch.compile`` (inductor), timed after
  its warm-up, whose seconds are printed too.

Batch 8 (per image) is measured once at the end with the default threads. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from app.engine import prompt_cache  # noqa: E402
from app.engine.registry import ModelRegistry  # noqa: E402
from app.engine.runner import GenerationSpec, run  # noqa: E402

PROMPT = "a red boat on the left at sunset"
DEFAULT_SETTINGS = "1t,2t,1t-cl,2t-cl,1t-10s-euler,2t-10s-euler,1t-8s-euler,2t-8s-euler"


@dataclass(frozen=True)
class Setting:
    label: str
    threads: int
    steps: int = 20
    scheduler: str = "dpm++-2m"
    channels_last: bool = False
    compiled: bool = False


def parse(label: str) -> Setting:
    """``2t``, ``1t-cl``, ``2t-10s-unipc`` or ``2t-compiled`` as a setting."""
    threads, _, rest = label.partition("t")
    setting = Setting(label=label, threads=int(threads))
    rest = rest.removeprefix("-")
    if rest == "cl":
        return Setting(label=label, threads=setting.threads, channels_last=True)
    if rest == "compiled":
        return Setting(label=label, threads=setting.threads, compiled=True)
    if rest:
        steps, _, scheduler = rest.partition("s-")
        return Setting(label=label, threads=setting.threads, steps=int(steps), scheduler=scheduler)
    return setting


def paint(
    registry: ModelRegistry, model: str, setting: Setting, *, seed: int, batch: int = 1, new_prompt: bool = False
) -> float:
    """Seconds per image of one engine call under ``setting``.

    The engine keeps each prompt's text embeddings (app.engine.prompt_cache), so a repeated prompt is
    encoded once; ``new_prompt`` forgets this one first, so the call costs what a prompt never seen does.
    """
    torch.set_num_threads(setting.threads)
    pipeline = registry.pipeline(model, "cpu")
    if new_prompt:
        kept = getattr(pipeline.text_encoder, prompt_cache.ATTRIBUTE, None)
        if kept is not None:
            kept[1].pop(PROMPT, None)
    layout = torch.channels_last if setting.channels_last else torch.contiguous_format
    pipeline.unet.to(memory_format=layout)
    eager = getattr(pipeline, "_bench_eager_unet", None)
    if setting.compiled:
        if eager is None:
            pipeline._bench_eager_unet = pipeline.unet
            pipeline.unet = torch.compile(pipeline.unet)
    elif eager is not None:
        pipeline.unet = eager
        del pipeline._bench_eager_unet
    spec = GenerationSpec(
        model=model,
        prompt=PROMPT,
        seed=seed,
        steps=setting.steps,
        n_images=batch,
        scheduler=setting.scheduler,
        preview_every=0,
    )
    return run(registry, spec, device="cpu").seconds / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/studio-tiny"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--settings", default=DEFAULT_SETTINGS, help="comma-separated settings (see above)")
    parser.add_argument("--compile", action="store_true", help="add 2t-compiled (its warm-up takes minutes)")
    parser.add_argument(
        "--new-prompt", action="store_true", help="encode the prompt on every call, as a prompt never painted before"
    )
    args = parser.parse_args()

    labels = args.settings.split(",") + (["2t-compiled"] if args.compile else [])
    settings = [parse(label) for label in labels]
    default_threads = torch.get_num_threads()
    registry = ModelRegistry(args.model.parent)
    started = time.perf_counter()
    registry.pipeline(args.model.name, "cpu")
    print(
        f"model: {args.model}  cores: {os.cpu_count()}  load average: {os.getloadavg()[0]:.1f}  "
        f"load: {time.perf_counter() - started:.2f} s"
    )
    for setting in settings:  # warm-up (a compiled UNet compiles here)
        warming = time.perf_counter()
        paint(registry, args.model.name, setting, seed=0)
        if setting.compiled:
            print(f"{setting.label}: compiled and warmed in {time.perf_counter() - warming:.1f} s")
    timings: dict[str, list[float]] = {setting.label: [] for setting in settings}
    for repeat in range(args.repeats):
        for setting in settings:
            timings[setting.label].append(
                paint(registry, args.model.name, setting, seed=repeat, new_prompt=args.new_prompt)
            )
    for setting in settings:
        values = timings[setting.label]
        print(
            f"batch 1, {setting.label:16} {setting.threads} threads, {setting.steps:2} steps {setting.scheduler}"
            f"{', channels-last' if setting.channels_last else ''}{', compiled' if setting.compiled else ''}: "
            f"{statistics.median(values):.3f} s per image (median of {args.repeats}, min {min(values):.3f})"
            f"{', a new prompt each call' if args.new_prompt else ''}"
        )
    base = Setting(label="batch 8", threads=default_threads)
    paint(registry, args.model.name, base, seed=0, batch=8)
    per_image = [
        paint(registry, args.model.name, base, seed=repeat, batch=8, new_prompt=args.new_prompt)
        for repeat in range(args.repeats)
    ]
    print(
        f"batch 8, {default_threads} threads, 20 steps dpm++-2m: {statistics.median(per_image):.3f} s per image "
        f"(median of {args.repeats}, min {min(per_image):.3f}); load average after: {os.getloadavg()[0]:.1f}"
    )


if __name__ == "__main__":
    main()
