"""``lighthouse open311 …``: the city issues and revokes the API keys of the apps that speak
Open311 GeoReport v2 (the 1999 hotline's, citizens' apps), and lists them.

Each change is written to the audit trail with the key's owner and the operator who made it,
in the same transaction as the change.
"""

from __future__ import annotations

import asyncio
import getpass
import uuid
from typing import Annotated

import asyncpg
import typer
from rich.console import Console
from rich.markup import escape

from api.audit.entries import AuditEntry
from api.auth.principal import Principal, PrincipalKind
from api.command import command_settings, with_owner
from api.domain.errors import InvalidInput
from api.listing import AsJson, emit
from api.repositories.audit import AuditRepository
from api.repositories.open311 import Open311Clients

console = Console(stderr=True)
open311_app = typer.Typer(
    help="Open311 API keys for the city's citizen and 1999 apps.", no_args_is_help=True
)


def _operator() -> Principal:
    return Principal(subject=f"cli:{getpass.getuser()}", kind=PrincipalKind.STAFF)


def _audit(operation: str, client: str, details: dict[str, object]) -> AuditEntry:
    return AuditEntry.of(
        _operator(),
        request_id=uuid.uuid4().hex,
        category="cli",
        operation=operation,
        decision="ALLOW",
        policy_version="-",
        resource_ids=[f"Open311Client:{client}"],
        details={"type": "cli", **details},
    )


@open311_app.command("issue-key")
def issue_key(
    name: Annotated[str, typer.Argument(help="The app, e.g. '1999 citizen app'.")],
    bureau: Annotated[
        str, typer.Option(help="The bureau the app acts for (RDEC runs the 1999 centre).")
    ],
    submit: Annotated[
        bool, typer.Option("--submit/--read-only", help="May it submit service requests?")
    ] = True,
) -> None:
    """Issue an app its API key; prints the key once."""
    from api.auth.api_keys import digest, new_key

    settings = command_settings()
    key = new_key()
    operator = _operator().subject

    async def issue(connection: asyncpg.Connection) -> int:
        async with connection.transaction():
            client_id = await Open311Clients(connection).issue(
                name, digest(key), bureau, submit, operator
            )
            await AuditRepository(connection).append(
                _audit("open311 issue-key", name, {"bureau": bureau, "may_submit": submit})
            )
            return client_id

    try:
        client_id = asyncio.run(with_owner(settings, issue))
    except InvalidInput as error:
        console.print(error.message, style="red", markup=False)
        raise typer.Exit(2) from None
    console.print(f"client: {client_id} ({escape(name)}, acts for {bureau})")
    print(f"api_key: {key}")
    console.print("[yellow]Give the key to the app now: it is not shown again.[/yellow]")


@open311_app.command("revoke-key")
def revoke_key(name: Annotated[str, typer.Argument(help="The app's name.")]) -> None:
    """Revoke an app's key: its next request is refused."""
    settings = command_settings()

    async def revoke(connection: asyncpg.Connection) -> bool:
        async with connection.transaction():
            done = await Open311Clients(connection).revoke(name)
            if done:
                await AuditRepository(connection).append(_audit("open311 revoke-key", name, {}))
            return done

    if not asyncio.run(with_owner(settings, revoke)):
        console.print(f"No app {name!r} holds a key that is in use.", style="red", markup=False)
        raise typer.Exit(2)
    console.print(f"The key of {escape(name)} is revoked.")


@open311_app.command("keys")
def keys(as_json: AsJson = False) -> None:
    """The apps holding keys, what each may do and whether its key is revoked."""
    settings = command_settings()
    clients = asyncio.run(with_owner(settings, lambda c: Open311Clients(c).all()))
    emit(
        ("id", "name", "bureau", "may", "issued_at", "issued_by", "revoked_at"),
        (
            {
                "id": client.id,
                "name": client.name,
                "bureau": client.bureau_code,
                "may": "submits and reads" if client.may_submit else "reads",
                "issued_at": client.issued_at,
                "issued_by": client.issued_by,
                "revoked_at": client.revoked_at,
            }
            for client in clients
        ),
        as_json,
    )
