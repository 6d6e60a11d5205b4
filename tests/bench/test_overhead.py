"""bench/overhead.py's client side: its defaults, the server it starts, and how it hears a job end."""

from __future__ import annotations

from pathlib import Path

import pytest

import bench.overhead as overhead


def test_defaults_are_twenty_dpm_steps_on_two_threads_on_the_event_stream() -> None:
    args = overhead.parse_args([])

    assert (args.rounds, args.steps, args.threads, args.scheduler) == (10, 20, 2, "dpm++-2m")
    assert (args.client, args.poll_ms, args.phases) == ("stream", 50.0, False)
    assert overhead.parse_args(["--client", "poll", "--poll-ms", "20", "--phases"]).poll_ms == 20.0


def test_the_server_gets_its_own_settings_and_none_of_the_callers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_QUEUE", "celery")
    monkeypatch.setenv("STUDIO_DEVICES", "cuda:0")

    env = overhead.server_env(tmp_path, threads=1)

    assert "STUDIO_QUEUE" not in env
    assert env["STUDIO_DEVICES"] == "cpu"
    assert env["STUDIO_DEVICE_THREADS"] == "1"
    assert env["STUDIO_DATA_DIR"] == str(tmp_path)
    assert env["HF_HUB_OFFLINE"] == "1"
    assert Path(env["STUDIO_MODELS_DIR"]) == overhead.REPO / "models"


def test_a_stream_ends_at_the_first_final_status_after_progress() -> None:
    lines = iter(
        [
            "event: progress",
            'data: {"step": 1, "total": 20}',
            "id: 1",
            "",
            "event: status",
            'data: {"status": "running"}',
            "",
            "event: status",
            'data: {"status": "succeeded"}',
            "",
            "event: status",
            'data: {"status": "never read"}',
        ]
    )

    assert overhead.final_status(lines) == "succeeded"
    assert next(lines) == ""  # nothing past the final status was read


def test_a_status_in_a_progress_event_is_not_the_end() -> None:
    lines = ["event: progress", 'data: {"status": "succeeded"}', "", ": ping", ""]

    assert overhead.final_status(lines) is None


def test_the_server_records_its_times_and_the_bench_reads_them() -> None:
    job = {"created_at": "2026-12-01T10:00:00.000+00:00", "started_at": "2026-12-01T10:00:00.250+00:00"}

    assert overhead.server_seconds(job, "created_at", "started_at") == pytest.approx(0.25)
    assert overhead.server_seconds(job, "started_at", "finished_at") is None
