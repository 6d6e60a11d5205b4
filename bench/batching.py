"""Dynamic batching: 8 compatible jobs submitted at once against the same 8 one after another, through the studio.

python bench/batching.py [--rounds 3] [--jobs 8] [--steps 20] [--threads 2] [--gap 0.02]

One process holds an embedded studio (its worker pool on the CPU, studio-tiny, 64x64) driven
through its JSON API in-process, with the default STUDIO_MAX_BATCH (8 images a call on the CPU).
Each round submits the same ``--jobs`` jobs (different prompts and seeds; same model, size, steps,
scheduler and guidance) twice: all at once, which the worker claims and paints as one batch, and
one after another, each submitted once the one before was fetched, so each is painted alone.
The worker claims the first job of a burst the instant it arrives; the others, arriving while its
call paints its first steps, join it (the call starts again with them).
A round is timed from the first submit to the last PNG fetched. Prints images per second for
both (median over rounds; also per CPU-second of the process, steadier on a shared machine), their
ratio, and each batched image's largest difference, in levels
of 255, from the same job painted alone. Figures, never pass/fail.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from PIL import Image  # noqa: E402

from app.config import Settings  # noqa: E402
from app.engine.runner import Cancelled  # noqa: E402
from app.main import create_app  # noqa: E402
from app.workers import batches  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [
    "a red boat on the left at sunset",
    "a yellow sun over a green field",
    "a blue house at night",
    "a white bird in a blue sky",
    "a green tree by a lake",
    "an orange cat in a garden",
    "a purple flower in the rain",
    "a black car in a city street",
]
FINAL = ("succeeded", "failed", "cancelled")


def submit(client: TestClient, *, prompt: str, seed: int, steps: int, scheduler: str) -> dict[str, Any]:
    accepted = client.post(
        "/api/generate/prompt",
        json={"prompt": prompt, "seed": seed, "steps": steps, "width": 64, "height": 64, "scheduler": scheduler},
    )
    accepted.raise_for_status()
    job: dict[str, Any] = accepted.json()
    return job


def fetch(client: TestClient, job: dict[str, Any]) -> bytes:
    """Waits on the job's event stream for its end, as the studio page does, then fetches its PNG."""
    with client.stream("GET", job["events_url"]) as events:
        for line in events.iter_lines():
            if line.startswith("data:") and '"status"' in line and any(final in line for final in FINAL):
                break
    done = client.get(job["url"]).json()
    if done["status"] != "succeeded":
        raise SystemExit(f"job {job['id']} ended {done['status']}: {done['error']}")
    png = client.get(done["images"][0]["url"])
    png.raise_for_status()
    return png.content


def at_once(
    client: TestClient, jobs: list[tuple[str, int]], *, steps: int, scheduler: str, gap: float = 0.0
) -> tuple[float, float, list[bytes]]:
    started, cpu = time.perf_counter(), time.process_time()
    submitted = []
    for index, (prompt, seed) in enumerate(jobs):
        if gap and index:
            time.sleep(gap)
        submitted.append(submit(client, prompt=prompt, seed=seed, steps=steps, scheduler=scheduler))
    pngs = [fetch(client, job) for job in submitted]
    return time.perf_counter() - started, time.process_time() - cpu, pngs


def one_by_one(
    client: TestClient, jobs: list[tuple[str, int]], *, steps: int, scheduler: str
) -> tuple[float, float, list[bytes]]:
    started, cpu = time.perf_counter(), time.process_time()
    pngs = [
        fetch(client, submit(client, prompt=prompt, seed=seed, steps=steps, scheduler=scheduler))
        for prompt, seed in jobs
    ]
    return time.perf_counter() - started, time.process_time() - cpu, pngs


def largest_difference(a: bytes, b: bytes) -> int:
    pixels = [np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16) for png in (a, b)]
    return int(np.abs(pixels[0] - pixels[1]).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--scheduler", default="dpm++-2m")
    # A burst spread out: the worker then claims the first job alone while the others arrive.
    parser.add_argument("--gap", type=float, default=0.0, help="seconds between the submits of a burst")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    jobs = [(PROMPTS[index % len(PROMPTS)], 1000 + index) for index in range(args.jobs)]

    batched_rates, solo_rates, batched_cpu, solo_cpu, differences = [], [], [], [], []
    # How the worker grouped the jobs: the size of every shared call (a job painted alone is none),
    # and, in the rounds at once, every call (1: alone) that stopped for jobs that joined it.
    shared_calls: list[int] = []
    restarted: list[list[int]] = []
    # Seconds inside pipeline calls per round, at once and one after another: the rest of a round
    # is the studio's own work (requests, rows, PNGs, events), which batching does not share.
    in_calls: dict[str, list[float]] = {"at once": [], "one after another": []}
    phase = ["warm-up"]
    paint_alone, paint_batch = batches.run, batches.run_batch

    def counted(paint: Any, shared: bool) -> Any:
        def call(*arguments: Any, **options: Any) -> Any:
            jobs = len(arguments[1]) if shared else 1
            if shared:
                shared_calls.append(jobs)
            started = time.perf_counter()
            try:
                return paint(*arguments, **options)
            except Cancelled:  # nothing is cancelled here: stopped for jobs that joined
                if restarted:
                    restarted[-1].append(jobs)
                raise
            finally:
                if phase[0] in in_calls:
                    in_calls[phase[0]][-1] += time.perf_counter() - started

        return call

    batches.run = counted(paint_alone, False)  # type: ignore[assignment]
    batches.run_batch = counted(paint_batch, True)  # type: ignore[assignment]
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
            # Warm the model and the first call before timing anything.
            one_by_one(client, jobs[:1], steps=args.steps, scheduler=args.scheduler)
            for _ in range(args.rounds):
                restarted.append([])
                phase[0] = "at once"
                in_calls[phase[0]].append(0.0)
                seconds, cpu, batched = at_once(client, jobs, steps=args.steps, scheduler=args.scheduler, gap=args.gap)
                batched_rates.append(len(jobs) / seconds)
                batched_cpu.append(len(jobs) / cpu)
                phase[0] = "one after another"
                in_calls[phase[0]].append(0.0)
                seconds, cpu, alone = one_by_one(client, jobs, steps=args.steps, scheduler=args.scheduler)
                solo_rates.append(len(jobs) / seconds)
                solo_cpu.append(len(jobs) / cpu)
                differences.append([largest_difference(a, b) for a, b in zip(batched, alone, strict=True)])
    batched_rate, solo_rate = statistics.median(batched_rates), statistics.median(solo_rates)
    print(
        f"studio-tiny 64x64, {args.steps} steps, {args.scheduler}, {args.threads} torch threads, "
        f"{args.jobs} jobs, {args.rounds} rounds" + (f", {args.gap:.3f} s between submits at once" if args.gap else "")
    )
    print(f"at once (batched):  median {batched_rate:.2f} images/s  (rounds: {_rates(batched_rates)})")
    print(f"one after another:  median {solo_rate:.2f} images/s  (rounds: {_rates(solo_rates)})")
    print(f"ratio of medians: {batched_rate / solo_rate:.2f}x")
    # On a machine others share, the process's own CPU time says what each image cost it.
    cpu_batched, cpu_solo = statistics.median(batched_cpu), statistics.median(solo_cpu)
    print(f"images per CPU-second of this process: at once {cpu_batched:.2f}, one after another {cpu_solo:.2f}")
    print(f"ratio of medians (CPU time): {cpu_batched / cpu_solo:.2f}x")
    print(f"jobs per shared call, every round: {shared_calls}")
    print(f"calls (jobs in each) stopped for jobs that joined them, per round at once: {restarted}")
    for name, seconds_in_calls in in_calls.items():
        rounds = ", ".join(f"{seconds:.2f}" for seconds in seconds_in_calls)
        print(f"seconds inside pipeline calls per round, {name}: {rounds}")
    worst = [max(round_) for round_ in differences]
    print(f"largest difference of a batched image from its solo painting, per image (levels of 255): {differences[-1]}")
    print(f"largest over every round: {max(worst)}")


def _rates(rates: list[float]) -> str:
    return ", ".join(f"{rate:.2f}" for rate in rates)


if __name__ == "__main__":
    main()
