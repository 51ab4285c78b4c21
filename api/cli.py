"""The ``lighthouse`` command: serve, migrate, seed, demo."""

from __future__ import annotations

import asyncio
import os
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from api.db import migrations
from api.db.endpoints import redact, require_owner, resolve_endpoints
from api.logging import configure_logging
from api.settings import Environment, LogFormat, Settings, SettingsError, load_settings

app = typer.Typer(
    name="lighthouse",
    help="Lighthouse: the city's sovereign AI platform (GraphQL gateway and tools).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)


def _settings(**overrides: object) -> Settings:
    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    # Commands talk to a person: readable logs unless JSON was asked for explicitly.
    log_format = settings.log_format if "LIGHTHOUSE_LOG_FORMAT" in os.environ else LogFormat.CONSOLE
    configure_logging(settings.log_level, log_format)
    return settings


def _migrate(settings: Settings) -> None:
    endpoints = resolve_endpoints(settings)
    owner = require_owner(endpoints)
    console.print(f"Migrating {redact(owner)} …")
    head = migrations.upgrade(
        owner,
        settings.migrations_dir,
        settings.database_app_role,
        on_step=lambda revision, doc: console.print(f"  applied {revision}: {doc}"),
    )
    console.print(f"[green]Database is at revision {head}.[/green]")


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest revision (as the schema owner)."""
    try:
        _migrate(_settings())
    except SettingsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None


@app.command()
def seed(
    assets: Annotated[int, typer.Option(min=0, max=100_000, help="Assets to create.")] = 300,
    incidents: Annotated[
        int, typer.Option(min=0, max=1_000_000, help="Incidents to create.")
    ] = 400,
    random_seed: Annotated[int, typer.Option(help="Seed for reproducible data.")] = 7,
    reset: Annotated[
        bool, typer.Option(help="Delete existing assets and incidents first.")
    ] = False,
    if_empty: Annotated[bool, typer.Option(help="Do nothing if incidents exist.")] = False,
) -> None:
    """Load demo data: assets across Kaohsiung and incidents at every stage of the workflow."""
    settings = _settings()
    if reset and settings.environment is Environment.PRODUCTION:
        console.print("[red]--reset deletes history and is refused in production.[/red]")
        raise typer.Exit(2)
    try:
        owner = require_owner(resolve_endpoints(settings))
    except SettingsError as error:
        console.print(f"[red]{error}[/red]")
        raise typer.Exit(2) from None
    asyncio.run(_seed(settings, owner, assets, incidents, random_seed, reset, if_empty))


async def _seed(
    settings: Settings,
    owner_url: str,
    assets: int,
    incidents: int,
    random_seed: int,
    reset: bool,
    if_empty: bool,
) -> None:
    from api.db.pool import connect
    from api.domain.sla import SlaCalendar
    from api.repositories.demo import TABLES, DemoDataRepository
    from api.seed.demo import DemoCity

    connection = await connect(owner_url, settings, "lighthouse-seed")
    try:
        repository = DemoDataRepository(connection)
        if if_empty and await repository.incident_count() > 0:
            console.print("Demo data already present; nothing to do.")
            return
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
        ]
        with Progress(*columns, console=console) as progress:
            async with connection.transaction():
                if reset:
                    await repository.reset()
                city = DemoCity(
                    await repository.bureaus(),
                    await repository.categories(),
                    SlaCalendar(settings.city_timezone),
                    await repository.next_ids(),
                    random_seed,
                )
                task = progress.add_task("generating", total=assets + incidents)
                city.add_assets(assets)
                progress.update(task, advance=assets)
                batch = 500
                for start in range(0, incidents, batch):
                    city.add_incidents(min(batch, incidents - start))
                    progress.update(task, advance=min(batch, incidents - start))
                load = progress.add_task("loading", total=len(TABLES))
                for table in TABLES:
                    count = await repository.load(city.data, table)
                    progress.update(load, advance=1, description=f"loaded {count} rows of {table}")
        console.print(
            f"[green]Seeded {len(city.data.assets)} assets, {len(city.data.incidents)} incidents, "
            f"{len(city.data.events)} events, {len(city.data.work_orders)} work orders.[/green]"
        )
    finally:
        await connection.close()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Overrides LIGHTHOUSE_HOST.")] = None,
    port: Annotated[int | None, typer.Option(help="Overrides LIGHTHOUSE_PORT.")] = None,
    workers: Annotated[int | None, typer.Option(help="Overrides LIGHTHOUSE_WORKERS.")] = None,
) -> None:
    """Run the GraphQL gateway."""
    import uvicorn

    settings = _settings()
    console.print(
        f"Lighthouse gateway on http://{host or settings.host}:{port or settings.port}/graphql"
    )
    uvicorn.run(
        "api.main:app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        workers=workers or settings.workers,
        log_config=None,
        access_log=False,
        lifespan="on",
        ws="websockets",
        proxy_headers=False,
    )


@app.command()
def demo(
    port: Annotated[int | None, typer.Option(help="Overrides LIGHTHOUSE_PORT.")] = None,
) -> None:
    """Start everything on embedded defaults with demo data: migrate, seed (once), serve."""
    settings = _settings()
    if not settings.uses_embedded_database:
        console.print("The demo runs on the embedded PostgreSQL; unset LIGHTHOUSE_DATABASE_URL.")
        raise typer.Exit(2)
    _migrate(settings)
    seed(assets=300, incidents=400, random_seed=7, reset=False, if_empty=True)
    serve(host=None, port=port, workers=None)


if __name__ == "__main__":
    app()
