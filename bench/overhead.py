"""What the studio costs over the pipeline it wraps: studio jobs and bare pipeline calls, alternated.

python bench/overhead.py [--rounds 10] [--steps 20] [--threads 2] [--scheduler dpm++-2m]
                         [--client stream|poll|wait] [--poll-ms 50] [--phases] [--verbose]

Measured as an outside client sees it. The studio runs as a real server, ``studio serve`` on a
free loopback port, with a fresh data directory, this repository's models folder, the CPU as its
one device and ``--threads`` torch threads (STUDIO_DEVICE_THREADS); the bench waits until
/healthz says the default model (studio-tiny) is ready. A studio job is an httpx client's
``POST /api/generate/prompt`` (prompt, seed, steps, 64x64, scheduler, guidance 7.0: the API's
default), then the job's end, heard on its event stream as the studio page hears it (and so with
the previews the page gets) or, with ``--client poll``, by asking for the job every ``--poll-ms``
as a plain API client would, or, with ``--client wait``, by one request that waits for the job's
end and answers with it (``?wait=60``, a long poll), then the job, then its PNG: timed from the
submit to the PNG fetched.

A bare call is what a diffusers user writes: this process loads the same folder with
``StableDiffusionPipeline.from_pretrained`` (its text encoder, the MiniLM BERT shipped as a Python
package, loaded by the studio's ``load_minilm``, as the folder names no text encoder of its own),
sets the same scheduler once, before any timing, and calls it with the same prompt, seed (a CPU
``torch.Generator``), steps, size and guidance, with ``torch.set_num_threads(--threads)``: timed
from the call to the PIL image.

Why the bare call runs in another process than the studio: on the CPU, torch's OpenMP runtime
(libgomp) runs 2-2.5x slower in a process where two OS threads have each run torch ops while both
are alive (its threads then outnumber the cores and it throttles its spin-wait). An earlier version
of this bench ran the studio in-process (FastAPI's TestClient) and called the pipeline on the main
thread beside the studio's worker thread: a bare call took 210-230 ms alone but about 550 ms with
the worker pool alive, and 210 ms again once the pool's threads had ended, so both sides were
inflated and their ratio meant nothing. Here the server's worker thread is the only thread that runs
torch in its process, and this process's main thread the only one in this one; the two sides take
turns, so they do not compete for the cores either.

After one warm-up of each, rounds alternate which side goes first (drift in a shared machine's load
then falls on both). Prints both medians and minimums, the ratio of medians, the median of the
rounds' own ratios (steadier when the load drifts), the load average before and after and the
cores; with ``--phases``, also where a studio job's time went as the client saw it. Figures, never
pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
MODEL = "studio-tiny"
PROMPT = "a red boat on the left at sunset"
# The API's default guidance (app.params.ParameterFields), sent explicitly so both sides use it.
GUIDANCE = 7.0
SIZE = 64
FINAL = frozenset({"succeeded", "failed", "cancelled"})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2, help="torch threads on both sides")
    parser.add_argument("--scheduler", default="dpm++-2m")
    parser.add_argument("--client", choices=("stream", "poll", "wait"), default="stream")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="how often a polling client asks for its job")
    parser.add_argument("--phases", action="store_true", help="also print where a studio job's time went")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds to wait for the server to be ready")
    parser.add_argument("--verbose", action="store_true", help="show the server's own output")
    return parser.parse_args(argv)


# -- the studio, as a server process --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_env(data_dir: Path, *, threads: int) -> dict[str, str]:
    """This process's environment without its STUDIO_ settings, plus the server's own."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("STUDIO_")}
    env.update(
        STUDIO_DATA_DIR=str(data_dir),
        STUDIO_MODELS_DIR=str(REPO / "models"),
        STUDIO_DEVICES="cpu",
        STUDIO_DEVICE_THREADS=str(threads),
        STUDIO_SECRET_KEY="bench",
        HF_HUB_OFFLINE="1",
    )
    return env


def studio_command(port: int) -> list[str]:
    """``studio serve`` from this interpreter's environment (the console script beside it)."""
    script = Path(sys.executable).with_name("studio")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "app.cli"]
    return [*command, "serve", "--host", "127.0.0.1", "--port", str(port)]


@contextmanager
def studio_server(*, threads: int, verbose: bool) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """A running ``studio serve``: its base URL, its process and its log; stopped on the way out, however."""
    with tempfile.TemporaryDirectory(prefix="studio-overhead-") as temp:
        data_dir = Path(temp) / "data"
        log_path = Path(temp) / "server.log"
        port = free_port()
        with log_path.open("wb") as log:
            server = subprocess.Popen(
                studio_command(port),
                cwd=REPO,
                env=server_env(data_dir, threads=threads),
                stdout=None if verbose else log,
                stderr=subprocess.STDOUT if not verbose else None,
                # Its own session: a Ctrl-C here reaches this process only, which then stops the server.
                start_new_session=True,
            )
            try:
                yield f"http://127.0.0.1:{port}", server, log_path
            finally:
                if server.poll() is None:
                    server.send_signal(signal.SIGINT)
                    try:
                        server.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        server.kill()
                        server.wait()


def server_failed(server: subprocess.Popen[bytes], log_path: Path, what: str) -> SystemExit:
    tail = log_path.read_text(errors="replace").splitlines()[-20:] if log_path.exists() else []
    shown = "\n".join(tail) or "(no output; run with --verbose)"
    return SystemExit(f"{what} (server exit code {server.poll()}); the server's last lines:\n{shown}")


def wait_until_ready(client: httpx.Client, server: subprocess.Popen[bytes], log_path: Path, *, limit: float) -> None:
    """Until /healthz answers 200 with the default model's state "ready" (loaded on the worker thread)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise server_failed(server, log_path, "the server exited before its model was ready")
        try:
            answer = client.get("/healthz")
        except httpx.TransportError:
            answer = None
        if answer is not None and answer.status_code == 200:
            model = answer.json().get("model") or {}
            if model.get("state") == "ready":
                return
            if model.get("state") == "failed":
                raise server_failed(server, log_path, f"the default model failed to load: {model.get('error')}")
        time.sleep(0.1)
    raise server_failed(server, log_path, f"the model was not ready after {limit:.0f} s")


# -- a studio job, from the client's side ------------------------------------------------------------


@dataclass(frozen=True)
class StudioJob:
    """perf_counter() seconds since the submit at each point the client reached; the server's own run."""

    submitted: float  # the 202 came back
    ended: float  # the final status was heard (stream) or seen (poll)
    fetched: float  # the job's JSON came back
    png: float  # the PNG's bytes came back: the job's time
    queued: float | None  # the job's created_at to started_at, as the server recorded them
    run: float | None  # the job's started_at to finished_at


def final_status(lines: Iterable[str]) -> str | None:
    """The first final status a server-sent event stream carries, reading no further; None if it ends first.

    The studio sends ``event: status`` with ``data: {"status": ...}``; ``progress`` events
    (steps, previews) come before it.
    """
    event = "message"
    for line in lines:
        if not line:
            event = "message"  # a blank line ends an event
        elif line.startswith("event:"):
            event = line[len("event:") :].strip()
        elif line.startswith("data:") and event == "status":
            status = json.loads(line[len("data:") :]).get("status")
            if status in FINAL:
                return str(status)
    return None


def server_seconds(job: dict[str, Any], start: str, end: str) -> float | None:
    """Seconds between two of the job's recorded times (``created_at``, ``started_at``, ``finished_at``)."""
    if not job.get(start) or not job.get(end):
        return None
    return (datetime.fromisoformat(job[end]) - datetime.fromisoformat(job[start])).total_seconds()


def studio_job(client: httpx.Client, args: argparse.Namespace, seed: int) -> StudioJob:
    body = {
        "prompt": PROMPT,
        "seed": seed,
        "steps": args.steps,
        "guidance": GUIDANCE,
        "width": SIZE,
        "height": SIZE,
        "scheduler": args.scheduler,
    }
    started = time.perf_counter()
    accepted = client.post("/api/generate/prompt", json=body)
    accepted.raise_for_status()
    submitted = time.perf_counter()
    job_url = accepted.json()["url"]
    if args.client == "stream":
        with client.stream("GET", accepted.json()["events_url"]) as events:
            events.raise_for_status()
            final_status(events.iter_lines())
        ended = time.perf_counter()
        job = client.get(job_url).raise_for_status().json()
        fetched = time.perf_counter()
    elif args.client == "poll":
        # The poll that sees the final status is also the job's fetch.
        while (job := client.get(job_url).raise_for_status().json())["status"] not in FINAL:
            time.sleep(args.poll_ms / 1000)
        ended = fetched = time.perf_counter()
    elif args.client == "wait":
        # One long poll: the answer comes when the job has ended, with the job.
        while (job := client.get(job_url, params={"wait": 60}).raise_for_status().json())["status"] not in FINAL:
            pass
        ended = fetched = time.perf_counter()
    if job["status"] != "succeeded":
        raise SystemExit(f"job {job['id']} ended {job['status']}: {job['error']}")
    client.get(job["images"][0]["url"]).raise_for_status()
    done = time.perf_counter()
    return StudioJob(
        submitted=submitted - started,
        ended=ended - started,
        fetched=fetched - started,
        png=done - started,
        queued=server_seconds(job, "created_at", "started_at"),
        run=server_seconds(job, "started_at", "finished_at"),
    )


# -- the bare pipeline, in this process, on its main thread only ---------------------------------------


def load_bare(threads: int, scheduler: str) -> Any:
    """studio-tiny as a diffusers user loads it, on the scheduler the studio calls ``scheduler``, set once."""
    import diffusers
    import torch
    import transformers
    from diffusers import StableDiffusionPipeline

    from app.engine.runner import make_scheduler
    from app.engine.text_encoders import load_minilm

    # Loading reports the MiniLM's unused pooler and a BERT where CLIP is usual: expected, and not figures.
    diffusers.logging.set_verbosity_error()
    diffusers.logging.disable_progress_bar()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    torch.set_num_threads(threads)
    folder = REPO / "models" / MODEL
    index = json.loads((folder / "model_index.json").read_text())
    tokenizer, text_encoder = load_minilm(
        max_tokens=index.get("_studio_max_tokens") or 77, package=index["_studio_text_encoder_package"]
    )
    pipeline = StableDiffusionPipeline.from_pretrained(
        folder,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
        dtype=torch.float32,  # what the studio runs on the CPU
        use_safetensors=True,
        local_files_only=True,
    )
    pipeline.set_progress_bar_config(disable=True)
    # The same scheduler class and settings as the studio's name for it, on the folder's own config.
    pipeline.scheduler = make_scheduler(scheduler, pipeline.scheduler.config)
    return pipeline


def bare_call(pipeline: Any, args: argparse.Namespace, seed: int) -> float:
    import torch

    started = time.perf_counter()
    generator = torch.Generator("cpu").manual_seed(seed)
    pipeline(
        prompt=PROMPT,
        num_inference_steps=args.steps,
        guidance_scale=GUIDANCE,
        width=SIZE,
        height=SIZE,
        generator=generator,
    ).images[0]
    return time.perf_counter() - started


# -- the rounds and the report -------------------------------------------------------------------------


def phase_medians(jobs: list[StudioJob]) -> dict[str, float]:
    """Median seconds of each gap the client saw, in order."""
    return {
        "submit (202 back)": statistics.median(job.submitted for job in jobs),
        "to the end heard": statistics.median(job.ended - job.submitted for job in jobs),
        "job fetched": statistics.median(job.fetched - job.ended for job in jobs),
        "PNG fetched": statistics.median(job.png - job.fetched for job in jobs),
    }


def report(args: argparse.Namespace, jobs: list[StudioJob], bare: list[float], load_before: float) -> None:
    studio = [job.png for job in jobs]
    studio_median, bare_median = statistics.median(studio), statistics.median(bare)
    client_says = {
        "stream": "on the event stream",
        "poll": f"polling every {args.poll_ms:g} ms",
        "wait": "waiting in one request (?wait=60)",
    }[args.client]
    print(
        f"{MODEL} {SIZE}x{SIZE}, {args.steps} steps, {args.scheduler}, guidance {GUIDANCE:g}, "
        f"{args.threads} torch threads on each side, {args.rounds} rounds, client {client_says}; "
        f"load average {load_before:.2f} before, {os.getloadavg()[0]:.2f} after, on {os.cpu_count()} cores"
    )
    print(f"studio job (submit to PNG fetched): median {studio_median:.3f} s  (min {min(studio):.3f})")
    print(f"bare pipeline call:                 median {bare_median:.3f} s  (min {min(bare):.3f})")
    print(f"ratio of medians: {studio_median / bare_median:.3f}")
    rounds = statistics.median(job / call for job, call in zip(studio, bare, strict=True))
    print(f"median of the rounds' ratios: {rounds:.3f}")
    if args.phases:
        print("where a studio job's time went, as the client saw it (medians):")
        for name, seconds in phase_medians(jobs).items():
            print(f"  {name + ':':<20} {seconds * 1000:7.1f} ms")
        queued = [job.queued for job in jobs if job.queued is not None]
        runs = [job.run for job in jobs if job.run is not None]
        if queued and runs:
            print(
                f"as the server recorded it (medians): queued {statistics.median(queued) * 1000:.1f} ms, "
                f"run {statistics.median(runs) * 1000:.1f} ms (started_at to finished_at: painting, PNG, "
                f"rows), against the bare call's {bare_median * 1000:.1f} ms"
            )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    # A `kill` ends this process through its finally blocks too, so the server is stopped.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    load_before = os.getloadavg()[0]
    with studio_server(threads=args.threads, verbose=args.verbose) as (base_url, server, log_path):
        # Loaded while the server loads its own copy: two processes, each with one thread running torch.
        pipeline = load_bare(args.threads, args.scheduler)
        with httpx.Client(base_url=base_url, timeout=120) as client:
            wait_until_ready(client, server, log_path, limit=args.limit)
            studio_job(client, args, seed=0)
            bare_call(pipeline, args, seed=0)
            jobs: list[StudioJob] = []
            bare: list[float] = []
            for round_ in range(args.rounds):
                # Which side goes first alternates, so drift in the machine's load falls on both.
                if round_ % 2 == 0:
                    jobs.append(studio_job(client, args, seed=round_))
                    bare.append(bare_call(pipeline, args, seed=round_))
                else:
                    bare.append(bare_call(pipeline, args, seed=round_))
                    jobs.append(studio_job(client, args, seed=round_))
    report(args, jobs, bare, load_before)


if __name__ == "__main__":
    main()
