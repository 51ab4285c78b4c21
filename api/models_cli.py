"""``lighthouse models …``: the city's model officers decide which model version the vision
workers use, and anyone who reads the registry sees the decisions.

``promote`` acts as a model officer (``cli:<user>``, staff granted ``models:admin``): the
policies and row-level security apply, the serving tier is asked first whether it serves the
model, and the decision is audited in its transaction. The workers take it up for their next
frames without a restart. Rolling back is promoting the version before again.
"""

from __future__ import annotations

import asyncio
import getpass
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from api.auth.principal import Principal, PrincipalKind
from api.command import command_settings, run_as
from api.listing import AsJson, emit

if TYPE_CHECKING:
    from api.access.scope import AccessScope
    from api.repositories.registry import DecisionRecord
    from api.settings import Settings

console = Console(stderr=True)
models_app = typer.Typer(
    help="Model versions: which one the vision workers use, and every decision.",
    no_args_is_help=True,
)


def officer() -> Principal:
    return Principal(
        subject=f"cli:{getpass.getuser()}",
        kind=PrincipalKind.STAFF,
        scopes=frozenset({"incidents:read", "models:admin"}),
    )


def _served(settings: Settings) -> set[str] | None:
    """The models the serving tier serves now (None: it cannot be asked)."""
    from api.inference.client import ServingClient, ServingRefused, ServingUnavailable

    async def ask() -> set[str] | None:
        serving = settings.serving
        client = ServingClient(
            serving.url, secret_file=serving.secret_file, timeout_seconds=10, retries=1
        )
        try:
            return {str(item.get("id")) for item in await client.models()}
        except (ServingUnavailable, ServingRefused):
            return None
        finally:
            await client.close()

    return asyncio.run(ask())


@models_app.command("promote")
def promote(
    model: Annotated[str, typer.Argument(help="The model, as the serving tier serves it.")],
    version: Annotated[str, typer.Argument(help="The version that names it.")],
    reason: Annotated[str, typer.Option(help="Why (kept for good, in the audit record too).")],
) -> None:
    """Put a model version in production: the vision workers analyse the next frames with it."""
    from api.policy import resources
    from api.services.vision.registry import ModelRegistry

    settings = command_settings()
    served = _served(settings)

    async def step(access: AccessScope) -> DecisionRecord:
        return await ModelRegistry(access).promote(model, version, reason, served)

    decision = run_as(
        settings, officer(), "models promote", ("DecideModelVersion", resources.MODELS), step
    )
    console.print(
        f"decision {decision.id}: {decision.model} {decision.version} is in production "
        f"(by {decision.decided_by}); the vision workers take it up for their next frames"
    )


@models_app.command("decisions")
def decisions(
    last: Annotated[int, typer.Option(min=1, max=100, help="How many, newest first.")] = 20,
    as_json: AsJson = False,
) -> None:
    """The registry's decisions on model versions, newest first."""
    from api.policy import resources
    from api.services.vision.registry import ModelRegistry

    settings = command_settings()

    async def step(access: AccessScope) -> list[DecisionRecord]:
        return await ModelRegistry(access).decisions(last)

    found = run_as(
        settings, officer(), "models decisions", ("ViewModelRegistry", resources.MODELS), step
    )
    emit(
        ("id", "model", "version", "role", "decided_by", "decided_at", "reason"),
        (
            {
                "id": decision.id,
                "model": decision.model,
                "version": decision.version,
                "role": decision.role,
                "decided_by": decision.decided_by,
                "decided_at": decision.decided_at.isoformat(),
                "reason": decision.reason,
            }
            for decision in found
        ),
        as_json,
    )
