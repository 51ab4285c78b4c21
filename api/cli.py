"""The ``lighthouse`` command: serve, migrate, seed, demo."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from api.audit_cli import audit_export
from api.command import command_settings
from api.command import with_owner as _with_owner
from api.documents_cli import documents_app
from api.federation_cli import subgraph, supergraph
from api.licensing_cli import licensing_app
from api.listing import AsJson, emit
from api.models_cli import models_app
from api.open311_cli import open311_app
from api.schema_cli import schema_app
from api.serve_cli import serve
from api.settings import Environment, LogFormat, Settings, SettingsError

if TYPE_CHECKING:
    import subprocess

    import asyncpg

# Each command imports what it needs when it runs (see api/command.py).
T = TypeVar("T")

app = typer.Typer(
    name="lighthouse",
    help="Lighthouse: the city's sovereign AI platform (GraphQL gateway and tools).",
    no_args_is_help=True,
    add_completion=False,
    # Tracebacks must not print local variables: they can hold secrets and personal data.
    pretty_exceptions_show_locals=False,
)
console = Console(stderr=True)


def _version(shown: bool) -> None:
    if shown:
        import platform
        from importlib.metadata import version

        from api.bundled import directory
        from api.db.migrations import head_revision

        head = head_revision(directory("migrations"))
        typer.echo(
            f"lighthouse {version('lighthouse')} (schema revision {head}, "
            f"Python {platform.python_version()})"
        )
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Lighthouse: the city's sovereign AI platform (GraphQL gateway and tools)."""


_settings = command_settings


def _migrate(settings: Settings) -> None:
    from api.db import migrations
    from api.db.endpoints import redact, require_owner, resolve_endpoints

    endpoints = resolve_endpoints(settings)
    owner = require_owner(endpoints)
    console.print(f"Migrating {redact(owner)} …")
    head = migrations.upgrade(
        owner,
        settings.database.migrations_dir,
        settings.database.app_role,
        on_step=lambda revision, doc: console.print(f"  applied {revision}: {doc}"),
    )
    console.print(f"[green]Database is at revision {head}.[/green]")


@app.command()
def migrate() -> None:
    """Bring the database schema to the newest revision (as the schema owner)."""
    try:
        _migrate(_settings())
    except SettingsError as error:
        console.print(f"{error}", style="red", markup=False)
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
    from api.db.endpoints import require_owner, resolve_endpoints

    settings = _settings()
    if reset and settings.environment is Environment.PRODUCTION:
        console.print("[red]--reset deletes history and is refused in production.[/red]")
        raise typer.Exit(2)
    try:
        owner = require_owner(resolve_endpoints(settings))
    except SettingsError as error:
        console.print(f"{error}", style="red", markup=False)
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
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

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
                    SlaCalendar(settings.city.timezone),
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


audit_app = typer.Typer(
    help="The audit trail: its export, and the chain's external anchors.", no_args_is_help=True
)
app.add_typer(audit_app, name="audit")
audit_app.command("export")(audit_export)


@asynccontextmanager
async def _auditing(connection: asyncpg.Connection) -> AsyncIterator[None]:
    """A transaction in which the audit trail reads as it does for an auditor."""
    async with connection.transaction():
        await connection.execute(
            "SELECT set_config('lighthouse.scopes', 'audit:read', true),"
            " set_config('lighthouse.kind', 'auditor', true)"
        )
        yield


@audit_app.command("anchor")
def audit_anchor() -> None:
    """Sign the audit chain's head now and print the anchor; keep a copy outside this database.
    (The gateway publishes one every LIGHTHOUSE_AUDIT_ANCHOR_SECONDS too.)"""
    from api.auth.keys import KeyRing
    from api.repositories.audit import AuditRepository
    from api.repositories.oauth import OAuthRepository
    from api.services.audit_chain import AuditAnchors

    settings = _settings()

    async def publish(connection: asyncpg.Connection) -> str:
        oauth = OAuthRepository(connection)
        keys = KeyRing(settings)
        await keys.ensure_signing_key(oauth)
        anchors = AuditAnchors(AuditRepository(connection), oauth, keys, settings.issuer)
        return (await anchors.publish()).token

    print(asyncio.run(_with_owner(settings, publish)))


@audit_app.command("check-anchor")
def audit_check_anchor(
    anchor: Annotated[str, typer.Argument(help="The anchor, or a file holding it (- for stdin).")],
) -> None:
    """Check that the audit chain still holds the record an anchor signed, unchanged, and is
    intact to its head. Exits 1 if not, saying what is wrong."""
    import sys
    from pathlib import Path

    from api.repositories.audit import AuditRepository
    from api.repositories.oauth import OAuthRepository
    from api.services.audit_chain import AnchorCheck, AuditAnchors

    settings = _settings()
    if anchor == "-":
        token = sys.stdin.read()
    elif anchor.count(".") == 2 and "/" not in anchor:
        token = anchor  # a compact JWS, not a path
    elif Path(anchor).is_file():
        token = Path(anchor).read_text()
    else:
        console.print(
            f"{anchor!r} is neither an anchor nor a file holding one.", style="red", markup=False
        )
        raise typer.Exit(2)

    async def check(connection: asyncpg.Connection) -> AnchorCheck:
        from api.auth.keys import KeyRing

        async with _auditing(connection):
            anchors = AuditAnchors(
                AuditRepository(connection),
                OAuthRepository(connection),
                KeyRing(settings),
                settings.issuer,
            )
            return await anchors.check(token)

    outcome = asyncio.run(_with_owner(settings, check))
    if not outcome.holds:
        console.print(f"The anchor does not hold: {outcome.reason}.", style="red", markup=False)
        raise typer.Exit(1)
    console.print(f"[green]The anchor holds: {outcome.reason}.[/green]")


worker_app = typer.Typer(help="Background workers.", no_args_is_help=True)
app.add_typer(worker_app, name="worker")


@worker_app.command("vision")
def worker_vision(
    drain: Annotated[
        bool, typer.Option(help="Stop once the queue is empty (for scripts and tests).")
    ] = False,
) -> None:
    """Analyse queued camera frames with the serving tier's vision model. Run as many as you
    like, on any machine that reaches the database; stop with Ctrl-C (frames under way finish)."""
    from api.vision.worker import run_until_signalled

    settings = _settings(service=True)
    console.print(
        f"Vision worker: frames from the queue, analysed by {settings.serving.model} at "
        f"{settings.serving.url} (at most {settings.vision.worker_concurrency} at once)."
    )
    asyncio.run(run_until_signalled(settings, drain=drain))


@worker_app.command("status")
def worker_status() -> None:
    """Frames waiting, under way, and held as failed (dead letters)."""
    from api.vision.worker import QueueCounts, queue_counts, queue_queries

    settings = _settings()

    async def counts(connection: asyncpg.Connection) -> QueueCounts:
        return await queue_counts(queue_queries(connection))

    found = asyncio.run(_with_owner(settings, counts))
    print(f"queued {found.queued}, under way {found.picked}, failed {found.failed}")


@worker_app.command("requeue")
def worker_requeue(
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="At most this many.")] = 1000,
) -> None:
    """Send frames held as failed round again (after fixing what failed them)."""
    from api.vision.worker import requeue_failed

    settings = _settings()

    async def requeue(connection: asyncpg.Connection) -> int:
        return await requeue_failed(connection, limit)

    count = asyncio.run(_with_owner(settings, requeue))
    console.print(f"[green]{count} frame(s) queued again.[/green]")


serving_app = typer.Typer(
    help="The serving tier on this machine (Ray Serve LLM with vLLM, in its own environment).",
    no_args_is_help=True,
)
app.add_typer(serving_app, name="serving")


def _serving(*arguments: str) -> None:
    from pathlib import Path

    from api.vision.serving import ServingEnvMissing, run

    try:
        code = run(Path.cwd(), *arguments)
    except ServingEnvMissing as missing:
        console.print(f"{missing}", style="red", markup=False)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@serving_app.command("up")
def serving_up(
    config: Annotated[
        str | None,
        typer.Option(
            help="A serving config (default: LIGHTHOUSE_SERVING_CONFIG, else the tiny "
            "CPU model's, serving/configs/cpu-tiny.yaml)."
        ),
    ] = None,
) -> None:
    """Start Ray (bounded CPUs and memory, in a network of its own) and the serving app on
    the port of LIGHTHOUSE_SERVING_URL, answering holders of LIGHTHOUSE_SERVING_SECRET_FILE's
    secret (made when missing); returns once the models answer."""
    from api.vision.serving import DEFAULT_CONFIG, port_of

    settings = _settings()
    chosen = config or (str(settings.serving.config) if settings.serving.config else None)
    _serving(
        "up",
        "--config",
        chosen or str(DEFAULT_CONFIG),
        "--port",
        str(port_of(settings.serving.url)),
        *_secret_file_option(settings),
    )


def _secret_file_option(settings: Settings) -> list[str]:
    secret = settings.serving.secret_file
    return ["--secret-file", str(secret)] if secret is not None else []


@serving_app.command("down")
def serving_down() -> None:
    """Stop the serving app and the Ray it started."""
    _serving("down")


@serving_app.command("status")
def serving_status() -> None:
    """Whether the serving tier answers, and what it serves (exit 1 if it does not answer)."""
    settings = _settings()
    _serving("status", "--url", settings.serving.url, *_secret_file_option(settings))


keys_app = typer.Typer(help="Token signing keys.", no_args_is_help=True)
clients_app = typer.Typer(help="OAuth clients (machine principals).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(clients_app, name="clients")
app.add_typer(licensing_app, name="licensing")
app.command()(serve)
app.command()(subgraph)
app.command()(supergraph)
app.add_typer(documents_app, name="documents")
app.add_typer(models_app, name="models")
app.add_typer(open311_app, name="open311")
app.add_typer(schema_app, name="schema")


@keys_app.command("rotate")
def keys_rotate(
    delay: Annotated[
        int | None,
        typer.Option(
            help="Seconds before the new key signs (default LIGHTHOUSE_KEY_ACTIVATION_DELAY_SECONDS)."
        ),
    ] = None,
) -> None:
    """Create a new signing key; it is published at once and signs after the delay."""
    from api.auth.keys import KeyRing
    from api.repositories.oauth import OAuthRepository

    settings = _settings()

    async def rotate(connection: asyncpg.Connection) -> str:
        ring = KeyRing(settings)
        repository = OAuthRepository(connection)
        await ring.load(repository)
        wait = settings.oauth.key_activation_delay_seconds if delay is None else delay
        return await ring.rotate(repository, activation_delay=wait)

    kid = asyncio.run(_with_owner(settings, rotate))
    console.print(f"[green]New signing key {kid} published.[/green]")


@keys_app.command("list")
def keys_list(as_json: AsJson = False) -> None:
    """The published keys and when each signs."""
    from api.repositories.oauth import OAuthRepository

    settings = _settings()
    records = asyncio.run(_with_owner(settings, lambda c: OAuthRepository(c).published_keys()))
    emit(
        ("kid", "algorithm", "signs_from", "signs_until", "published_until"),
        (
            {
                "kid": record.kid,
                "algorithm": record.algorithm,
                "signs_from": record.activates_at,
                "signs_until": record.retires_at,
                "published_until": record.expires_at,
            }
            for record in records
        ),
        as_json,
    )


@clients_app.command("list")
def clients_list(as_json: AsJson = False) -> None:
    """The registered machine clients: what each is, may ask for, and whether it is disabled
    (never their secrets)."""
    from api.repositories.oauth import OAuthRepository

    settings = _settings()
    records = asyncio.run(_with_owner(settings, lambda c: OAuthRepository(c).clients()))
    emit(
        ("client_id", "name", "kind", "bureau", "licensee_id", "roles", "scopes", "disabled_at",
         "secret_rotating"),
        (
            {
                "client_id": record.client_id,
                "name": record.name,
                "kind": record.kind,
                "bureau": record.bureau_code,
                "licensee_id": record.licensee_id,
                "roles": list(record.roles),
                "scopes": list(record.scopes),
                "disabled_at": record.disabled_at,
                "secret_rotating": record.previous_secret_hash is not None,
            }
            for record in records
        ),
        as_json,
    )  # fmt: skip


@clients_app.command("create")
def clients_create(
    client_id: Annotated[str, typer.Argument(help="e.g. pwb-camera-gateway")],
    name: Annotated[str, typer.Option(help="What the client is.")],
    scopes: Annotated[str, typer.Option(help="Space-separated scopes it may ask for.")],
    kind: Annotated[str, typer.Option(help="service or licensee")] = "service",
    bureau: Annotated[str | None, typer.Option(help="Bureau code, for a service.")] = None,
    roles: Annotated[str, typer.Option(help="Comma-separated roles.")] = "",
    licensee: Annotated[
        str | None, typer.Option(help="Licensee code, for a licensee's client (required).")
    ] = None,
) -> None:
    """Register a machine client; prints its secret once."""
    from api.auth.clients import ClientRegistration, ClientRegistry, RegisteredClient
    from api.auth.principal import PrincipalKind
    from api.domain.errors import InvalidInput
    from api.licensing_cli import officer
    from api.repositories.licensing import licensee_id_by_code
    from api.repositories.oauth import OAuthRepository
    from api.repositories.system import SystemRepository

    settings = _settings()

    async def create(connection: asyncpg.Connection) -> RegisteredClient:
        bureau_id = None
        if bureau is not None:
            known = {b.code: b.id for b in await SystemRepository(connection).bureaus()}
            if bureau not in known:
                raise InvalidInput("bureau", f"unknown bureau {bureau!r}")
            bureau_id = known[bureau]
        try:
            client_kind = PrincipalKind(kind)
        except ValueError:
            raise InvalidInput("kind", "must be service or licensee") from None
        licensee_id = None
        if (client_kind is PrincipalKind.LICENSEE) != (licensee is not None):
            raise InvalidInput("licensee", "a licensee's client names its licensee; no other does")
        if licensee is not None:
            licensee_id = await licensee_id_by_code(
                connection, officer().database_settings(), licensee
            )
            if licensee_id is None:
                raise InvalidInput("licensee", f"unknown licensee {licensee!r}")
        registration = ClientRegistration(
            client_id=client_id,
            name=name,
            kind=client_kind,
            scopes=scopes.split(),
            roles=[r for r in roles.split(",") if r],
            bureau_id=bureau_id,
            licensee_id=licensee_id,
        )
        return await ClientRegistry(OAuthRepository(connection)).register(registration)

    try:
        registered = asyncio.run(_with_owner(settings, create))
    except InvalidInput as error:
        console.print(f"{error.message}", style="red", markup=False)
        raise typer.Exit(2) from None
    console.print(f"client_id: {registered.client_id}")
    console.print(f"client_secret: {registered.secret}")
    console.print("[yellow]Store the secret now: it is not shown again.[/yellow]")


@clients_app.command("rotate-secret")
def clients_rotate_secret(
    client_id: str,
    overlap_hours: Annotated[
        float,
        typer.Option(min=0, max=24 * 30, help="How long the old secret keeps working."),
    ] = 24.0,
) -> None:
    """Give a client a new secret; prints it once. The old one works for the overlap, then
    stops, so deployments can move over without an outage."""
    from datetime import timedelta

    from api.auth.clients import ClientRegistry
    from api.repositories.oauth import OAuthRepository

    settings = _settings()
    overlap = timedelta(hours=overlap_hours)
    rotated = asyncio.run(
        _with_owner(
            settings, lambda c: ClientRegistry(OAuthRepository(c)).rotate(client_id, overlap)
        )
    )
    if rotated is None:
        console.print(f"No enabled client {client_id!r}.", style="red", markup=False)
        raise typer.Exit(2)
    console.print(f"client_id: {rotated.client_id}")
    console.print(f"client_secret: {rotated.secret}")
    console.print(
        f"[yellow]Store the secret now: it is not shown again. The old secret works for "
        f"{overlap_hours:g} more hours.[/yellow]"
    )


@clients_app.command("disable")
def clients_disable(client_id: str) -> None:
    """Disable a client: it gets no new tokens and its tokens stop working at once."""
    from api.auth.clients import ClientRegistry
    from api.repositories.oauth import OAuthRepository

    settings = _settings()
    done = asyncio.run(
        _with_owner(settings, lambda c: ClientRegistry(OAuthRepository(c)).disable(client_id))
    )
    if not done:
        console.print(f"No enabled client {client_id!r}.", style="red", markup=False)
        raise typer.Exit(2)
    console.print(f"Client {client_id} disabled.")


@app.command("verify-release")
def verify_release(
    directory: Annotated[Path, typer.Argument(help="The downloaded release's directory.")],
    manifest: Annotated[Path, typer.Option(help="The signed manifest (GET /v1/releases/{id}).")],
    jwks: Annotated[
        str, typer.Option(help="The city's published keys: a file, or the URL of /oauth/jwks.")
    ],
) -> None:
    """Check a model release: the manifest's signature against the city's keys, and every file
    against the manifest (none missing, changed or added). Exit 0 if it holds, 1 if not."""
    import json

    import httpx

    from api.services.metering import releases

    if jwks.startswith(("https://", "http://")):
        try:
            keys = httpx.get(jwks, timeout=10).raise_for_status().json()
        except httpx.HTTPError as error:
            console.print(f"Cannot read the keys at {jwks}: {error}", style="red", markup=False)
            raise typer.Exit(2) from None
    else:
        keys = json.loads(Path(jwks).read_text(encoding="utf-8"))
    result = releases.verify(directory, manifest.read_text(encoding="utf-8"), keys)
    if not result.holds:
        for problem in result.problems:
            console.print(f"{problem}", style="red", markup=False)
        console.print(
            "[red]The release does not hold: do not run it; ask the city for it again.[/red]"
        )
        raise typer.Exit(1)
    claims = result.claims
    console.print(
        f"[green]{claims['model']} {claims['version']}: signed by {claims['iss']}, "
        f"{len(claims['files'])} files as released.[/green]"
    )


@app.command()
def token(
    as_: Annotated[str | None, typer.Option("--as", help="A named development principal.")] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the named principals.")] = False,
    kind: Annotated[str, typer.Option(help="staff, service, licensee or auditor")] = "staff",
    bureau: Annotated[str | None, typer.Option(help="Bureau code.")] = None,
    roles: Annotated[str, typer.Option(help="Comma-separated roles.")] = "",
    scopes: Annotated[str, typer.Option(help="Space-separated scopes.")] = "",
    subject: Annotated[str, typer.Option(help="The token's subject.")] = "developer",
    ttl: Annotated[int, typer.Option(min=60, max=86_400, help="Lifetime in seconds.")] = 3600,
    url: Annotated[
        str | None,
        typer.Option(
            help="The gateway the token is for (its issuer is read from its metadata); "
            "defaults to LIGHTHOUSE_OAUTH_ISSUER, or http://HOST:PORT."
        ),
    ] = None,
) -> None:
    """Mint an access token for development and the demo; refused in production."""
    from api.auth.dev_principals import DEV_PRINCIPALS
    from api.auth.keys import KeyRing
    from api.auth.principal import PrincipalKind
    from api.auth.tokens import mint
    from api.repositories.oauth import OAuthRepository

    settings = _settings()
    if settings.environment is Environment.PRODUCTION:
        console.print(
            "[red]`lighthouse token` is for development; in production use the OAuth token endpoint.[/red]"
        )
        raise typer.Exit(2)
    if list_:
        for name, principal in DEV_PRINCIPALS.items():
            console.print(f"{name:18} {principal.about}")
        return
    if as_ is not None:
        named = DEV_PRINCIPALS.get(as_)
        if named is None:
            console.print(
                f"No principal {as_!r}; see `lighthouse token --list`.", style="red", markup=False
            )
            raise typer.Exit(2)
        kind, bureau, subject = named.kind.value, named.bureau, named.subject
        role_list, scope_list = list(named.roles), list(named.scopes)
    else:
        role_list, scope_list = [r for r in roles.split(",") if r], scopes.split()
    if url is not None:
        settings = _for_gateway(settings, url)
    console.print(f"A token for {settings.issuer} (pass --url to mint for another gateway).")

    async def sign(connection: asyncpg.Connection) -> str:
        ring = KeyRing(settings)
        await ring.ensure_signing_key(OAuthRepository(connection))
        issued = mint(
            ring,
            settings,
            subject=subject,
            client_id="lighthouse-cli",
            kind=PrincipalKind(kind),
            scopes=scope_list,
            bureau=bureau,
            roles=role_list,
            ttl=ttl,
        )
        return issued.access_token

    print(asyncio.run(_with_owner(settings, sign)))


def _for_gateway(settings: Settings, url: str) -> Settings:
    """The settings with the issuer of the gateway at ``url`` (from its RFC 8414 metadata)."""
    import httpx

    metadata_url = url.rstrip("/") + "/.well-known/oauth-authorization-server"
    try:
        issuer = httpx.get(metadata_url, timeout=5).json()["issuer"]
    except (httpx.HTTPError, ValueError, KeyError) as error:
        console.print(
            f"[red]Cannot read {escape(metadata_url)} ({escape(str(error))}); is the gateway running "
            "there?[/red]"
        )
        raise typer.Exit(2) from None
    return settings.model_copy(
        update={"oauth": settings.oauth.model_copy(update={"issuer": str(issuer)})}
    )


class _Terminated(KeyboardInterrupt):
    """SIGTERM (a service manager stopping the demo), taken as Ctrl-C is: what runs is
    interrupted, and everything the demo started is stopped."""


def _terminated(signum: int, frame: object) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # once: the stopping is not cut short
    raise _Terminated


@app.command()
def demo(
    port: Annotated[int | None, typer.Option(help="Overrides LIGHTHOUSE_PORT.")] = None,
    serving: Annotated[
        bool,
        typer.Option(
            help="Start the serving tier (Ray, vLLM, the tiny model) and a vision worker."
        ),
    ] = True,
) -> None:
    """Start everything on embedded defaults with demo data: migrate, seed (once), the serving
    tier and a vision worker, and the gateway. Ctrl-C, or SIGTERM (a service manager's stop),
    stops it all."""
    # One log format in the demo's terminal: readable, for the gateway and the worker it starts
    # as for the demo itself, unless one was asked for.
    os.environ.setdefault("LIGHTHOUSE_LOG_FORMAT", LogFormat.CONSOLE.value)
    settings = _settings()
    if not settings.uses_embedded_database:
        console.print("The demo runs on the embedded PostgreSQL; unset LIGHTHOUSE_DATABASE_URL.")
        raise typer.Exit(2)
    # Without this, SIGTERM would end the process as soon as the gateway has stopped (uvicorn
    # raises it again, and its default is to die there): the worker, the serving tier and the
    # embedded PostgreSQL would be left running.
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        _demo(settings, port, serving)
    except _Terminated:
        console.print("Stopped (SIGTERM).")
    finally:
        signal.signal(signal.SIGTERM, previous)


def _demo(settings: Settings, port: int | None, serving: bool) -> None:
    """The demo's parts, each stopped on the way out (the last started first), however it
    ends: Ctrl-C or SIGTERM (uvicorn ends its server on either and returns), a part that
    fails to start, or a signal in the middle of starting one."""
    import subprocess
    import sys
    from contextlib import ExitStack

    from api.db.endpoints import resolve_endpoints
    from api.vision.serving import (
        DEFAULT_CONFIG,
        ServingEnvMissing,
        port_of,
        serving_command,
        serving_environment,
    )

    checkout = Path.cwd()
    with ExitStack() as started:
        # The demo's own handle on the embedded PostgreSQL (the worker and the gateway take
        # theirs): let go last, so the server stops once nothing else uses it.
        started.callback(resolve_endpoints(settings).release)
        _migrate(settings)
        seed(assets=300, incidents=400, random_seed=7, reset=False, if_empty=True)
        if serving:
            console.print(
                "Starting the serving tier (Ray Serve with vLLM on CPU and the tiny model; a "
                "cold start takes one to three minutes) …"
            )
            try:
                up = serving_command(
                    checkout, "up", "--config", str(settings.serving.config or DEFAULT_CONFIG),
                    "--port", str(port_of(settings.serving.url)), *_secret_file_option(settings),
                )  # fmt: skip
            except ServingEnvMissing as missing:
                console.print(
                    f"[red]{escape(str(missing))}[/red] (or run the demo with --no-serving)"
                )
                raise typer.Exit(2) from None
            # Stopped even if its start is interrupted: `down` stops what `up` had started.
            started.callback(
                subprocess.run, serving_command(checkout, "down"), cwd=checkout,
                env=serving_environment(checkout), check=False,
            )  # fmt: skip
            answered = subprocess.run(
                up, cwd=checkout, env=serving_environment(checkout), check=False,
                stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            if answered.returncode != 0:
                console.print(
                    "[red]The serving tier did not start; see .lighthouse/serving/serving.log, "
                    "or run the demo with --no-serving.[/red]"
                )
                raise typer.Exit(1)
            worker = subprocess.Popen([sys.executable, "-m", "api.cli", "worker", "vision"])
            started.callback(_stop, worker)
        where = f"http://{settings.http.host}:{port or settings.http.port}"
        _register_console(settings)
        console.print(
            f"The operations console is at {where}/console/ (sign in as any demo principal)."
        )
        console.print(
            f"Queries need an access token: `.venv/bin/lighthouse token --as pwb-supervisor "
            f"--url {where}` (`--list` shows the demo principals); send it as "
            "`Authorization: Bearer …`."
        )
        console.print(
            f"Open311 GeoReport v2 is at {where}/open311/v2/services.json; an app's key comes "
            "from `.venv/bin/lighthouse open311 issue-key 'demo app' --bureau RDEC`."
        )
        serve(host=None, port=port, workers=None)


def _register_console(settings: Settings) -> None:
    """Deploying the console includes registering its documents (it sends their ids only)."""
    from api.documents_cli import register_documents
    from api.http.console import CONSOLE_CLIENT, CONSOLE_MANIFEST

    if not settings.console.enabled:
        return
    if not CONSOLE_MANIFEST.is_file():
        console.print("[yellow]The console is not built: run `make install`.[/yellow]")
        return
    register_documents(CONSOLE_MANIFEST, client=CONSOLE_CLIENT)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process as Ctrl-C would (the worker lets the frames under way finish)."""
    import subprocess

    process.terminate()
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


if __name__ == "__main__":
    app()
