"""What the studio costs over the pipeline it wraps: studio jobs and bare pipeline calls, alternated.

python bench/overhead.py [--rounds 10] [--steps 20] [--threads 2]

One process holds both: an embedded studio (its worker pool on the CPU, studio-tiny) driven
through its JSON API in-process, and the same warm diffusers pipeline called directly with the
same prompt, seed, steps, size, scheduler and torch threads. A studio job is timed from the submit
to the PNG fetched (the client waits on the job's event stream, as the studio page does); a bare
call from the call to the PIL image. Prints both medians and their ratio; figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from app.config import Settings  # noqa: E402
from app.engine.runner import make_scheduler  # noqa: E402
from app.main import create_app  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROMPT = "a red boat on the left at sunset"


def studio_job(client: TestClient, *, steps: int, seed: int, scheduler: str) -> float:
    started = time.perf_counter()
    accepted = client.post(
        "/api/generate/prompt",
        json={"prompt": PROMPT, "seed": seed, "steps": steps, "width": 64, "height": 64, "scheduler": scheduler},
    )
    accepted.raise_for_status()
    job = accepted.json()
    with client.stream("GET", job["events_url"]) as events:
        for line in events.iter_lines():
            if (
                line.startswith("data:")
                and '"status"' in line
                and any(final in line for final in ("succeeded", "failed", "cancelled"))
            ):
                break
    done = client.get(job["url"]).json()
    if done["status"] != "succeeded":
        raise SystemExit(f"job {job['id']} ended {done['status']}: {done['error']}")
    client.get(done["images"][0]["url"]).raise_for_status()
    return time.perf_counter() - started


def bare_call(pipeline: object, *, steps: int, seed: int, scheduler: str) -> float:
    started = time.perf_counter()
    pipeline.scheduler = make_scheduler(scheduler, pipeline._studio_scheduler_config)  # type: ignore[attr-defined]
    generator = torch.Generator("cpu").manual_seed(seed)
    pipeline(  # type: ignore[operator]
        prompt=PROMPT, num_inference_steps=steps, width=64, height=64, generator=generator, guidance_scale=7.0
    )
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--scheduler", default="dpm++-2m")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=Path(data_dir),
            models_dir=REPO / "models",
            devices="cpu",
            device_threads=args.threads,
            secret_key="bench",
        )
        app = create_app(settings)
        with TestClient(app, base_url="http://127.0.0.1") as client:
            # Warm both paths (model load, first run) before timing anything.
            studio_job(client, steps=args.steps, seed=0, scheduler=args.scheduler)
            pool = app.state.pool
            pipeline = pool.context.registry.pipeline(settings.default_model, "cpu")
            bare_call(pipeline, steps=args.steps, seed=0, scheduler=args.scheduler)
            studio, bare = [], []
            for round_ in range(args.rounds):
                studio.append(studio_job(client, steps=args.steps, seed=round_, scheduler=args.scheduler))
                bare.append(bare_call(pipeline, steps=args.steps, seed=round_, scheduler=args.scheduler))
    studio_median, bare_median = statistics.median(studio), statistics.median(bare)
    print(
        f"studio-tiny 64x64, {args.steps} steps, {args.scheduler}, {args.threads} torch threads, {args.rounds} rounds"
    )
    print(f"studio job (submit to PNG fetched): median {studio_median:.3f} s  (min {min(studio):.3f})")
    print(f"bare pipeline call:                 median {bare_median:.3f} s  (min {min(bare):.3f})")
    print(f"ratio of medians: {studio_median / bare_median:.2f}")


if __name__ == "__main__":
    main()
