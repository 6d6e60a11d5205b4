"""Load: N simulated artists against a running studio on loopback, for a bounded time.

Each artist loops: submit a small job now and then, poll its jobs, open a job's event stream,
load the studio and history pages, list generations and fetch finished images, with a short
pause between actions. When the time (or the request budget) is spent, the bench waits a bounded
while for every submitted job to end, then prints the requests made, 5xx answers, timeouts, jobs
lost (never ended, or ended failed) and p50/p95 per route.

It talks to the studio as the local artist (STUDIO_AUTH=local, loopback), so raise the per-artist
quota for the run (STUDIO_MAX_QUEUED_PER_USER=100000) or submits answer 429 (counted, not errors).

    studio serve &                                  # embedded, or scaled (see README, Scale out)
    .venv/bin/python bench/load.py --artists 50 --seconds 60
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
FINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    timeouts_by_route: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    requests: int = 0
    server_errors: int = 0
    timeouts: int = 0
    refused: int = 0  # 429: a quota or rate limit, the studio saying no on purpose
    other_errors: int = 0
    submitted: list[int] = field(default_factory=list)


class Artist:
    def __init__(self, number: int, client: httpx.AsyncClient, tally: Tally, budget: Budget) -> None:
        self.number = number
        self.client = client
        self.tally = tally
        self.budget = budget
        self.jobs: list[int] = []
        self.finished_images: list[int] = []
        self.random = random.Random(number)

    async def request(self, route: str, method: str, url: str, **kwargs: object) -> httpx.Response | None:
        if not self.budget.take():
            return None
        started = time.perf_counter()
        try:
            response = await self.client.request(method, url, **kwargs)  # type: ignore[arg-type]
        except httpx.TimeoutException:
            self.tally.requests += 1
            self.tally.timeouts += 1
            self.tally.timeouts_by_route[route] += 1
            return None
        except httpx.HTTPError:
            self.tally.requests += 1
            self.tally.other_errors += 1
            return None
        self.tally.requests += 1
        self.tally.latencies[route].append(time.perf_counter() - started)
        if response.status_code >= 500:
            self.tally.server_errors += 1
        elif response.status_code == 429:
            self.tally.refused += 1
        return response

    async def submit(self) -> None:
        body = {
            "prompt": f"artist {self.number}: a red barn under a blue sky",
            "steps": 2,
            "width": 64,
            "height": 64,
            "seed": self.random.randrange(1_000_000),
        }
        response = await self.request("POST /api/generate/prompt", "POST", "/api/generate/prompt", json=body)
        if response is not None and response.status_code == 202:
            job = int(response.json()["id"])
            self.jobs.append(job)
            self.tally.submitted.append(job)

    async def poll(self) -> None:
        if not self.jobs:
            return await self.submit()
        job = self.random.choice(self.jobs[-5:])
        response = await self.request("GET /api/generations/{id}", "GET", f"/api/generations/{job}")
        if response is not None and response.status_code == 200:
            answer = response.json()
            if answer.get("status") == "succeeded":
                self.finished_images.extend(image["id"] for image in answer.get("images", []))

    async def stream(self) -> None:
        """Opens a job's event stream and reads it until it ends or a few seconds pass."""
        if not self.jobs or not self.budget.take():
            return
        job = self.jobs[-1]
        started = time.perf_counter()
        try:
            async with self.client.stream("GET", f"/api/generations/{job}/events") as response:
                self.tally.requests += 1
                self.tally.latencies["GET /api/generations/{id}/events"].append(time.perf_counter() - started)
                if response.status_code >= 500:
                    self.tally.server_errors += 1
                    return
                # A queued job's stream may stay quiet longer than a request's timeout (the
                # server pings every 15 s): reading stops after 5 s, which is not a timeout.
                try:
                    async with asyncio.timeout(5):
                        async for line in response.aiter_lines():
                            if any(f'"status": "{status}"' in line for status in FINAL):
                                break
                except TimeoutError:
                    pass
        except httpx.TimeoutException:
            self.tally.timeouts += 1
            self.tally.timeouts_by_route["GET /api/generations/{id}/events"] += 1
        except httpx.HTTPError:
            self.tally.other_errors += 1

    async def page(self) -> None:
        path = self.random.choice(["/", "/history"])
        await self.request(f"GET {path}", "GET", path)

    async def listing(self) -> None:
        await self.request("GET /api/generations", "GET", "/api/generations")

    async def image(self) -> None:
        if not self.finished_images:
            return await self.listing()
        image = self.random.choice(self.finished_images)
        await self.request("GET /api/images/{id}", "GET", f"/api/images/{image}")

    async def run(self, until: float) -> None:
        actions = [self.submit, self.poll, self.poll, self.stream, self.page, self.listing, self.image]
        weights = [2, 4, 4, 1, 2, 2, 2]
        while time.monotonic() < until and not self.budget.spent:
            await self.random.choices(actions, weights)[0]()
            await asyncio.sleep(self.random.uniform(0.2, 1.0))


class Budget:
    """A ceiling on the requests of the whole run."""

    def __init__(self, requests: int) -> None:
        self.left = requests

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def take(self) -> bool:
        if self.left <= 0:
            return False
        self.left -= 1
        return True


async def drain(client: httpx.AsyncClient, jobs: list[int], within: float) -> dict[str, int]:
    """Waits up to ``within`` seconds for the submitted jobs to end; counts how they ended."""
    deadline = time.monotonic() + within
    status: dict[int, str] = {}
    while time.monotonic() < deadline:
        for job in jobs:
            if status.get(job) in FINAL:
                continue
            try:
                response = await client.get(f"/api/generations/{job}")
                status[job] = response.json().get("status", "unknown") if response.status_code == 200 else "missing"
            except httpx.HTTPError:
                status[job] = "unreachable"
        if all(status.get(job) in FINAL for job in jobs):
            break
        await asyncio.sleep(1.0)
    counts: dict[str, int] = defaultdict(int)
    for job in jobs:
        counts[status.get(job, "unknown")] += 1
    return dict(counts)


def percentile(values: list[float], share: float) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(share * 100) - 1]


async def main(arguments: argparse.Namespace) -> int:
    host = urlsplit(arguments.url).hostname or ""
    if host not in LOOPBACK:
        print(f"refusing to load {arguments.url}: this bench runs on loopback only", file=sys.stderr)
        return 2
    tally = Tally()
    budget = Budget(arguments.max_requests)
    limits = httpx.Limits(max_connections=arguments.artists * 2, max_keepalive_connections=arguments.artists)
    timeout = httpx.Timeout(arguments.timeout)
    async with httpx.AsyncClient(base_url=arguments.url, timeout=timeout, limits=limits) as client:
        started = time.monotonic()
        until = started + arguments.seconds
        artists = [Artist(number, client, tally, budget) for number in range(arguments.artists)]
        await asyncio.gather(*(artist.run(until) for artist in artists))
        elapsed = time.monotonic() - started
        ended = await drain(client, tally.submitted, arguments.drain)

    lost = sum(count for status, count in ended.items() if status not in {"succeeded", "cancelled"})
    print(f"{arguments.artists} artists for {elapsed:.0f} s against {arguments.url}")
    print(
        f"requests {tally.requests}  5xx {tally.server_errors}  timeouts {tally.timeouts}  "
        f"429 {tally.refused}  other errors {tally.other_errors}"
    )
    print(f"jobs submitted {len(tally.submitted)}  ended {dict(sorted(ended.items()))}  jobs lost {lost}")
    print(f"{'route':44} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'timeouts':>8}")
    for route, values in sorted(tally.latencies.items()):
        p50, p95 = percentile(values, 0.50) * 1000, percentile(values, 0.95) * 1000
        print(f"{route:44} {len(values):6d} {p50:8.1f} {p95:8.1f} {tally.timeouts_by_route.get(route, 0):8d}")
    return 1 if tally.server_errors or lost else 0


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="the studio, on loopback")
    parser.add_argument("--artists", type=int, default=50, help="simulated artists (default 50)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the artists work")
    parser.add_argument("--max-requests", type=int, default=50_000, help="a ceiling on requests")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a request counts as timed out")
    parser.add_argument("--drain", type=float, default=300.0, help="seconds to wait for submitted jobs to end")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse())))
