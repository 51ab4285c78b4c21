"""What every ``lighthouse`` command shares: its settings, loaded and checked, its logs, and
(for the commands that act as a person of the city) one authorized, audited transaction."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer
from rich.console import Console

from api.domain.errors import DomainError
from api.settings import LogFormat, Settings, SettingsError, load_settings

if TYPE_CHECKING:
    import asyncpg

    from api.access.scope import AccessScope
    from api.auth.principal import Principal
    from api.policy.engine import Entity

# The command line imports what a command needs when it runs (not when it starts): an operator's
# `lighthouse --help` or `lighthouse token` should not wait for the whole graph, the policy
# engine and the migrations to load.

T = TypeVar("T")
console = Console(stderr=True)


def command_settings(*, service: bool = False, **overrides: object) -> Settings:
    """The settings, or a message naming what is wrong and exit code 2."""
    from api.logging import configure_logging

    try:
        settings = load_settings(**overrides)
    except SettingsError as error:
        console.print(f"{error}", style="red", markup=False)
        raise typer.Exit(2) from None
    # Commands talk to a person: readable logs unless JSON was asked for explicitly. Services
    # (the gateway, the workers) log as the settings say, JSON lines by default.
    explicit = service or "LIGHTHOUSE_LOG_FORMAT" in os.environ
    configure_logging(
        settings.logging.level, settings.logging.format if explicit else LogFormat.CONSOLE
    )
    return settings


def run_as(
    settings: Settings,
    principal: Principal,
    name: str,
    permission: tuple[str, Entity],
    step: Callable[[AccessScope], Awaitable[T]],
) -> T:
    """``step`` in one transaction as ``principal`` (the application role, row-level security
    on), after the policies allowed ``permission`` (an action on a resource), with the audit
    record in the same transaction. A DomainError is printed and exits 2."""
    from api.access.scope import AccessScope, OperationDescription
    from api.db.endpoints import resolve_endpoints
    from api.db.pool import create_pool
    from api.db.unit_of_work import UnitOfWork
    from api.policy.engine import PolicyEngine
    from api.repositories.audit import AuditRepository
    from api.repositories.system import SystemRepository

    async def main() -> T:
        endpoints = await asyncio.to_thread(resolve_endpoints, settings)
        pool = await create_pool(endpoints.app_url, settings)
        try:
            bureaus = await SystemRepository(pool).bureaus()
            policy = PolicyEngine(
                settings.policy.dir, [(b.code, b.joint_service_centre) for b in bureaus]
            )
            await AuditRepository(pool).record_policy_version(policy.version, policy.text)
            async with UnitOfWork(pool, principal.database_settings()) as uow:
                access = AccessScope(principal, uuid.uuid4().hex, uow, policy)
                access.authorize(*permission)
                result = await step(access)
                await access.record(OperationDescription(category="cli", name=name, kind="cli"))
                return result
        finally:
            await pool.close()
            await asyncio.to_thread(endpoints.release)

    try:
        return asyncio.run(main())
    except DomainError as error:
        console.print(f"{error.message}", style="red", markup=False)
        raise typer.Exit(2) from None


async def with_owner(settings: Settings, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """``work`` on a connection as the schema owner (the city's operators' own tables: OAuth
    clients, signing keys, Open311 keys)."""
    from api.db.endpoints import require_owner, resolve_endpoints
    from api.db.pool import connect

    connection = await connect(
        require_owner(resolve_endpoints(settings)), settings, "lighthouse-cli"
    )
    try:
        return await work(connection)
    finally:
        await connection.close()
