"""Seconds from `studio serve` to a healthy server, to the default model ready, and to the first image.

Starts the real command in a subprocess on a free loopback port with a fresh data directory,
submits one prompt through the JSON API as soon as /healthz answers (so it waits in the queue
while the model loads), and polls until it has painted.

python bench/startup.py [--runs 3] [--models-dir models] [--devices cpu] [--steps 20]
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
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
POLL_SECONDS = 0.05


@dataclass
class Run:
    healthy: float
    ready: float
    first_image: float
    model_state_at_healthy: str
    job_status_at_submit: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(url: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def wait_for(what: str, check: Any, server: subprocess.Popen[bytes], limit: float) -> Any:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited (code {server.returncode}) while waiting for {what}")
        try:
            found = check()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            found = None
        if found is not None:
            return found
        time.sleep(POLL_SECONDS)
    raise SystemExit(f"gave up waiting for {what} after {limit:.0f} s")


def one_run(args: argparse.Namespace) -> Run:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="studio-startup-") as data_dir:
        env = {key: value for key, value in os.environ.items() if not key.startswith("STUDIO_")}
        env.update(
            HF_HUB_OFFLINE="1",
            STUDIO_DATA_DIR=data_dir,
            STUDIO_MODELS_DIR=str(args.models_dir.resolve()),
            STUDIO_AUTH="local",
        )
        if args.devices:
            env["STUDIO_DEVICES"] = args.devices
        started = time.monotonic()
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL if not args.verbose else None,
            stderr=subprocess.DEVNULL if not args.verbose else None,
        )
        try:

            def healthy() -> dict[str, Any] | None:
                status, body = call(f"{base}/healthz")
                return body if status == 200 else None

            health = wait_for("/healthz", healthy, server, args.limit)
            healthy_at = time.monotonic() - started
            state_at_healthy = str((health.get("model") or {}).get("state"))

            prompt = {"prompt": args.prompt, "steps": args.steps, "seed": 1}
            status, accepted = call(f"{base}/api/generate/prompt", prompt)
            if status != 202:
                raise SystemExit(f"the prompt was refused ({status}): {accepted}")
            job_url = f"{base}/api/generations/{accepted['id']}"
            status_at_submit = call(job_url)[1]["status"]

            def ready() -> str | None:
                state = (call(f"{base}/healthz")[1].get("model") or {}).get("state")
                if state == "failed":
                    raise SystemExit("the default model failed to load; see --verbose")
                return state if state == "ready" else None

            wait_for("the model to be ready", ready, server, args.limit)
            ready_at = time.monotonic() - started

            def painted() -> dict[str, Any] | None:
                body = call(job_url)[1]
                if body["status"] in ("failed", "cancelled"):
                    raise SystemExit(f"the job ended {body['status']}: {body.get('error')}")
                return body if body["status"] == "succeeded" else None

            wait_for("the first image", painted, server, args.limit)
            first_image_at = time.monotonic() - started
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
    return Run(healthy_at, ready_at, first_image_at, state_at_healthy, status_at_submit)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--devices", default="", help="STUDIO_DEVICES for the server (default: auto)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--prompt", default="a red circle in the centre under a blue sky")
    parser.add_argument("--limit", type=float, default=300.0, help="seconds to wait for each stage")
    parser.add_argument("--verbose", action="store_true", help="show the server's own output")
    args = parser.parse_args()

    runs = []
    for index in range(args.runs):
        run = one_run(args)
        runs.append(run)
        print(
            f"run {index + 1}: healthy {run.healthy:.2f} s (model {run.model_state_at_healthy}), "
            f"model ready {run.ready:.2f} s, first image {run.first_image:.2f} s "
            f"(job {run.job_status_at_submit} when submitted)"
        )
    print(
        f"median of {len(runs)}: healthy {statistics.median(r.healthy for r in runs):.2f} s, "
        f"model ready {statistics.median(r.ready for r in runs):.2f} s, "
        f"first image {statistics.median(r.first_image for r in runs):.2f} s"
    )


if __name__ == "__main__":
    main()
