"""The ``studio`` command: serve, worker, migrate, models (and models import), users, train-tiny, export."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from app.config import SettingsError, get_settings

app = typer.Typer(help="Painting Studio: paint with diffusion models from a browser.", no_args_is_help=True)
users_app = typer.Typer(help="Manage artists' accounts.", no_args_is_help=True)
export_app = typer.Typer(help="Export data sets.", no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(export_app, name="export")
models_app = typer.Typer(help="List the models, and import single-file checkpoints.")
app.add_typer(models_app, name="models")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default: STUDIO_HOST or 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default: STUDIO_PORT or 8000).")] = None,
) -> None:
    """Start the studio: web server plus, in embedded mode, a worker thread per device."""
    import uvicorn

    from app.main import create_app

    settings = get_settings()
    if host is not None:
        settings.host = host
    if port is not None:
        settings.port = port
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    typer.echo(
        f"Painting Studio on http://{settings.host}:{settings.port} "
        f"(auth: {settings.auth_mode}, queue: {settings.queue}, devices: {settings.devices or 'auto'})"
    )
    try:
        studio = create_app(settings)
    except SettingsError as error:
        typer.echo(f"not starting: {error}", err=True)
        raise typer.Exit(2) from error
    uvicorn.run(studio, host=settings.host, port=settings.port, log_level="info")


@app.command()
def worker() -> None:
    """Run a Celery worker for this machine's devices (scaled mode)."""
    settings = get_settings()
    if settings.queue != "celery":
        typer.echo(
            "not starting: studio worker runs the jobs of scaled mode, and STUDIO_QUEUE is "
            f"{settings.queue!r}; set STUDIO_QUEUE=celery here and on every web process (in embedded "
            "mode studio serve runs the jobs itself)",
            err=True,
        )
        raise typer.Exit(2)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from app.db.migrate import upgrade_database
    from app.workers.celery_app import run_worker

    # A worker may start before any web process on a fresh database: it migrates too (under the
    # migration lock, so any number of processes may do this at once).
    upgrade_database(settings.sqlalchemy_url)
    run_worker(settings)


@app.command()
def migrate() -> None:
    """Bring the database schema up to date."""
    from app.db.migrate import upgrade_database

    settings = get_settings()
    upgrade_database(settings.sqlalchemy_url)
    typer.echo(f"database at {settings.sqlalchemy_url} is up to date")


@models_app.callback(invoke_without_command=True)
def models(context: typer.Context) -> None:
    """List the models in the models directory, and any that were refused."""
    if context.invoked_subcommand is not None:
        return
    from app.engine.catalog import ModelCatalog

    settings = get_settings()
    specs, refused = ModelCatalog(settings.models_dir).scan()
    for spec in specs:
        marker = "*" if spec.name == settings.default_model else " "
        size = f"{spec.default_width}x{spec.default_height}"
        typer.echo(f"{marker} {spec.name:24} {spec.family.name:10} {spec.pipeline_class:32} {size}")
    for model in refused:
        typer.echo(f"! {model.name:24} refused: {model.reason}")
    if not specs:
        typer.echo(f"no models in {settings.models_dir}")


@models_app.command("import")
def import_model(
    file: Annotated[Path, typer.Argument(help="A single-file checkpoint (.safetensors) in the original layout.")],
    config: Annotated[
        Path | None,
        typer.Option(
            help="A diffusers folder of the same model whose configs to use (needed beyond SD 1.x and SDXL); "
            "for an SD3 or FLUX file holding only the transformer, with the other components' weights."
        ),
    ] = None,
    name: Annotated[str | None, typer.Option(help="The model's name (default: the file's name).")] = None,
) -> None:
    """Convert a single-file checkpoint into a diffusers folder in the models directory, offline."""
    from app.engine.single_file import CheckpointError, import_checkpoint

    settings = get_settings()
    try:
        folder = import_checkpoint(file, settings.models_dir, config=config, name=name)
    except CheckpointError as error:
        typer.echo(f"not imported: {error}", err=True)
        raise typer.Exit(1) from error
    typer.echo(f"imported {file.name} as {folder.name} in {settings.models_dir}")


@users_app.command("create")
def create_user(
    name: str,
    admin: Annotated[bool, typer.Option("--admin", help="Give the account the admin role.")] = False,
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)] = "",
) -> None:
    """Create an account."""
    from app.db.migrate import upgrade_database
    from app.db.models import Role
    from app.db.session import make_engine, make_session_factory
    from app.services import users
    from app.services.errors import StudioError

    settings = get_settings()
    upgrade_database(settings.sqlalchemy_url)
    factory = make_session_factory(make_engine(settings.sqlalchemy_url))
    with factory() as session:
        try:
            user = users.create_user(
                session, username=name, password=password, role=Role.ADMIN if admin else Role.ARTIST
            )
        except StudioError as error:
            typer.echo(f"error: {error.message}", err=True)
            raise typer.Exit(1) from error
    typer.echo(f"created {user.role.value} {user.username}")


@app.command("train-tiny")
def train_tiny(
    out: Annotated[Path, typer.Option(help="Where to write the diffusers folder.")] = Path("models/studio-tiny"),
    work_dir: Annotated[Path, typer.Option(help="Data, latents and checkpoints (resumable).")] = Path(".tiny-work"),
    samples: Annotated[int, typer.Option(help="Procedural paintings to train on.")] = 24_000,
    vae_steps: Annotated[int, typer.Option(help="Autoencoder training steps.")] = 1_400,
    vae_batch: Annotated[int, typer.Option(help="Autoencoder batch size.")] = 32,
    unet_steps: Annotated[int, typer.Option(help="UNet training steps.")] = 5_500,
    unet_batch: Annotated[int, typer.Option(help="UNet batch size.")] = 48,
    checkpoint_every: Annotated[int, typer.Option(help="Steps between checkpoints.")] = 500,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ...")] = "cpu",
    threads: Annotated[int, typer.Option(help="CPU threads for torch (0: one per core).")] = 0,
) -> None:
    """Train studio-tiny, the embedded default model, from procedurally painted data."""
    from app.tiny.train import TrainConfig, train

    folder = train(
        TrainConfig(
            out_dir=out,
            work_dir=work_dir,
            samples=samples,
            vae_steps=vae_steps,
            vae_batch=vae_batch,
            unet_steps=unet_steps,
            unet_batch=unet_batch,
            checkpoint_every=checkpoint_every,
            device=device,
            threads=threads,
        )
    )
    typer.echo(f"saved {folder}")


@export_app.command("preferences")
def export_preferences(
    out: Annotated[Path | None, typer.Option(help="File to write (default: standard output).")] = None,
) -> None:
    """Write everyone's A/B preference picks as JSON Lines (prompt, negative_prompt, chosen, rejected,
    parameters); ``chosen`` and ``rejected`` are the PNG files' paths in the image store."""
    import json

    from app.db.migrate import upgrade_database
    from app.db.session import make_engine, make_session_factory
    from app.services import feedback
    from app.services.storage import ImageStore

    settings = get_settings()
    upgrade_database(settings.sqlalchemy_url)
    factory = make_session_factory(make_engine(settings.sqlalchemy_url))
    store = ImageStore(settings.images_dir)
    count = 0
    with factory() as session:
        sink = out.open("w", encoding="utf-8") if out is not None else None
        try:
            for row in feedback.export_rows(session, user=None, locate=store):
                line = json.dumps(row)
                if sink is not None:
                    sink.write(line + "\n")
                else:
                    typer.echo(line)
                count += 1
        finally:
            if sink is not None:
                sink.close()
    typer.echo(f"exported {count} preference pairs", err=True)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
