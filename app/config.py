"""Settings: every knob of the studio, read from the environment (prefix ``STUDIO_``)."""

from __future__ import annotations

import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class SettingsError(ValueError):
    """Settings the studio refuses to start with; the message says which to set and why."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STUDIO_", env_file=".env", extra="ignore")

    data_dir: Path = Path("./data")
    database_url: str | None = None
    # Connections each web or worker process keeps to PostgreSQL (SQLite has no pool to size).
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)
    models_dir: Path = Path("./models")
    default_model: str = "studio-tiny"
    # "cpu", or a comma-separated list such as "cuda:0,cuda:1"; empty means every GPU, else cpu.
    devices: str = ""
    # "local": requests without a session act as the built-in local artist; "required": login.
    # Empty means: local when bound to loopback, required otherwise.
    auth: Literal["local", "required", ""] = ""
    queue: Literal["embedded", "celery"] = "embedded"
    # Progress events and cancel signals between processes (scaled mode); keys start with the prefix.
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "studio"
    # Celery's broker (scaled mode). RabbitMQ hands a dead worker's message to another at once;
    # redis:// works too, redelivering only after the visibility timeout, which must exceed the
    # longest job or a job still painting gets a second message (harmless: claims are atomic).
    broker_url: str = "amqp://guest:guest@127.0.0.1:5672//"
    broker_visibility_timeout_seconds: float = Field(default=6 * 3600.0, gt=0)
    celery_queue: str = "studio.generations"
    secret_key: str = Field(default_factory=lambda: secrets.token_urlsafe(32))
    host: str = "127.0.0.1"
    port: int = 8000
    # Host names (or addresses) the server answers to, comma-separated; "*" answers any, and
    # "*.example.org" any subdomain. Empty: the loopback names when bound to loopback; bound
    # elsewhere it must be set (a page on another origin can point its own name at this server).
    allowed_hosts: str = ""
    # The address people reach the studio at, e.g. https://studio.example.org; when it is https,
    # cookies are sent only over https (as they are for any request that arrived over https).
    public_url: str = ""
    # Rate limits (the ``limits`` library's notation): failed logins per username and per
    # address, and new accounts per address.
    login_failure_limit: str = "10 per 15 minutes"
    register_limit: str = "10 per hour"
    # Unfinished images (queued or being painted) one artist may have; a seed grid of 16 counts 16.
    max_queued_per_user: int = Field(default=50, ge=1)

    # Inputs
    max_upload_bytes: int = 20 * 1024 * 1024
    max_upload_pixels: int = 4096 * 4096
    max_request_bytes: int = 25 * 1024 * 1024

    # Workers
    start_workers: bool = True
    preload_default_model: bool = True
    pipeline_cache_size: int = 2
    # Torch threads the engine paints with on the CPU; 0 leaves torch's default (one per core).
    # Several studio processes on one machine each want fewer, or they oversubscribe its cores.
    device_threads: int = Field(default=0, ge=0, le=256)
    # On CUDA: keep weights in CPU memory and move each component onto the GPU while it runs.
    low_vram: bool = False
    # On CUDA: the GPU fast path (app/engine/fast_path.py): channels-last UNet, fused QKV projections
    # and the denoiser compiled with torch.compile in compile_mode, warmed at each model's default
    # size when it loads (minutes for a large model). The CPU paints as it is.
    compile: bool = False
    compile_mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = (
        "max-autotune-no-cudagraphs"
    )
    # Images one pipeline call may paint for queued jobs that can share it (dynamic batching):
    # 0 chooses per device (8 on the CPU, by free memory on CUDA), 1 paints every job alone.
    max_batch: int = Field(default=0, ge=0, le=64)
    heartbeat_seconds: float = 2.0
    # Latent previews go to a job's event stream only while someone watches it, at most one per
    # this many seconds (and further apart where painting one would cost over 2% of the job).
    preview_seconds: float = Field(default=1.0, ge=0)
    stale_after_seconds: float = 60.0
    max_attempts: int = 3
    poll_seconds: float = 0.5
    # Scaled mode: a queued job older than this that no broker message covers is dispatched again.
    redispatch_after_seconds: float = Field(default=30.0, gt=0)
    # Image files no row references are removed once this old (an upload's row is written after
    # its file, so a young file may be about to be referenced), checked this often.
    orphan_grace_seconds: float = Field(default=3600.0, ge=0)
    cleanup_interval_seconds: float = Field(default=600.0, gt=0)

    # Provenance: every output is signed with Content Credentials (C2PA). Without these two, the
    # studio makes its own key and certificate chain in data_dir/c2pa on first start; with them, a
    # PEM ES256 private key and its PEM chain (signer first, then up to the root).
    c2pa_key_file: Path | None = None
    c2pa_cert_file: Path | None = None
    # An invisible watermark in every output's pixels (pictures of 256x256 pixels or more).
    watermark: bool = False

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'studio.db').resolve()}"

    @property
    def device_list(self) -> list[str]:
        """The devices to run jobs on. With ``devices`` unset this imports torch to count GPUs,
        which takes seconds: only worker code (the pool's start-up thread, a Celery worker) asks."""
        if self.devices.strip():
            return [device.strip() for device in self.devices.split(",") if device.strip()]
        try:
            import torch

            if torch.cuda.is_available():
                return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
        except ImportError:  # pragma: no cover - torch is a hard dependency
            pass
        return ["cpu"]

    @property
    def auth_mode(self) -> Literal["local", "required"]:
        if self.auth:
            return self.auth
        return "local" if self.host in LOOPBACK_HOSTS else "required"

    @property
    def allowed_host_list(self) -> list[str]:
        """The Host names requests may carry (lowercase, no port); empty when none were given off loopback."""
        if self.allowed_hosts.strip():
            return [name.strip().lower().strip("[]") for name in self.allowed_hosts.split(",") if name.strip()]
        return sorted(LOOPBACK_HOSTS) if self.host in LOOPBACK_HOSTS else []

    @property
    def images_dir(self) -> Path:
        return self.data_dir / "images"


@lru_cache
def get_settings() -> Settings:
    return Settings()
