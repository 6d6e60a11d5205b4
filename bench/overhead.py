"""What the studio costs over the pipeline it wraps: studio jobs and bare pipeline calls, alternated.

python bench/overhead.py [--rounds 10] [--steps 20] [--threads 2] [--client stream|poll]

One process holds both: an embedded studio (its worker pool on the CPU, studio-tiny) driven
through its JSON API in-process, and the same warm diffusers pipeline called directly with the
same prompt, seed, steps, size, scheduler and torch threads. A studio job is timed from the submit
to the PNG fetched; the client waits on the job's event stream, as the studio page does (and so
gets its previews), or with ``--client poll`` asks for the job every ``--poll-ms`` as a plain API
client would. A bare call is timed from the call to the PIL image. Prints both medians, their
ratio, the median of the rounds' own ratios (steadier when the machine's load drifts) and the
load average around the run; figures, never pass/fail.
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


FINAL = ("succeeded", "failed", "cancelled")


def studio_job(client: TestClient, *, steps: int, seed: int, scheduler: str, poll_ms: float | None) -> float:
    started = time.perf_counter()
    accepted = client.post(
        "/api/generate/prompt",
        json={"prompt": PROMPT, "seed": seed, "steps": steps, "width": 64, "height": 64, "scheduler": scheduler},
    )
    accepted.raise_for_status()
    job = accepted.json()
    if poll_ms is None:
        with client.stream("GET", job["events_url"]) as events:
            for line in events.iter_lines():
                if line.startswith("data:") and '"status"' in line and any(final in line for final in FINAL):
                    break
        done = client.get(job["url"]).json()
    else:
        while (done := client.get(job["url"]).json())["status"] not in FINAL:
            time.sleep(poll_ms / 1000)
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
    parser.add_argument("--client", choices=("stream", "poll"), default="stream")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="how often a polling client asks for its job")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    poll_ms = args.poll_ms if args.client == "poll" else None
    load_before = os.getloadavg()[0]

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
            studio_job(client, steps=args.steps, seed=0, scheduler=args.scheduler, poll_ms=poll_ms)
            pool = app.state.pool
            pipeline = pool.context.registry.pipeline(settings.default_model, "cpu")
            bare_call(pipeline, steps=args.steps, seed=0, scheduler=args.scheduler)
            studio, bare = [], []
            for round_ in range(args.rounds):
                studio.append(
                    studio_job(client, steps=args.steps, seed=round_, scheduler=args.scheduler, poll_ms=poll_ms)
                )
                bare.append(bare_call(pipeline, steps=args.steps, seed=round_, scheduler=args.scheduler))
    studio_median, bare_median = statistics.median(studio), statistics.median(bare)
    client_says = "on the event stream" if poll_ms is None else f"polling every {poll_ms:g} ms"
    print(
        f"studio-tiny 64x64, {args.steps} steps, {args.scheduler}, {args.threads} torch threads, "
        f"{args.rounds} rounds, client {client_says}; load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores"
    )
    print(f"studio job (submit to PNG fetched): median {studio_median:.3f} s  (min {min(studio):.3f})")
    print(f"bare pipeline call:                 median {bare_median:.3f} s  (min {min(bare):.3f})")
    print(f"ratio of medians: {studio_median / bare_median:.3f}")
    rounds = statistics.median(job / call for job, call in zip(studio, bare, strict=True))
    print(f"median of the rounds' ratios: {rounds:.3f}")


if __name__ == "__main__":
    main()
