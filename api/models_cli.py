"""``lighthouse models …``: the city's model officers decide which model version the vision
workers use, and anyone who reads the registry sees the decisions.

``promote`` acts as a model officer (``cli:<user>``, staff granted ``models:admin``): the
policies and row-level security apply, the serving tier is asked first whether it serves the
model, and the decision is audited in its transaction. The workers take it up for their next
frames without a restart. Rolling back is promoting the version before again. ``shadow`` and
``canary`` try a candidate beside production first, ``end-trial`` ends the trial, ``trial`` shows
how the candidate compares.
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


def _try_out(
    role: str,
    model: str,
    version: str,
    share: float,
    reason: str,
    rejected_bound: float | None = None,
    min_reviewed: int | None = None,
) -> None:
    from api.policy import resources
    from api.services.vision.registry import ModelRegistry

    settings = command_settings()
    served = _served(settings)

    async def step(access: AccessScope) -> DecisionRecord:
        return await ModelRegistry(access).try_out(
            model,
            version,
            role,
            share,
            reason,
            served,
            rejected_bound=rejected_bound,
            min_reviewed=min_reviewed,
        )

    decision = run_as(
        settings,
        officer(),
        f"models {role.lower()}",
        ("DecideModelVersion", resources.MODELS),
        step,
    )
    console.print(
        f"decision {decision.id}: {decision.model} {decision.version} is tried as {role} on "
        f"{decision.share:.0%} of the frames (by {decision.decided_by}); `lighthouse models "
        "trial` compares it with production"
    )


Share = Annotated[float, typer.Option(min=0.0, max=1.0, help="The share of frames it takes.")]
Reason = Annotated[str, typer.Option(help="Why (kept for good, in the audit record too).")]
Model = Annotated[str, typer.Argument(help="The candidate, as the serving tier serves it.")]
Version = Annotated[str, typer.Argument(help="The version that names it.")]


@models_app.command("shadow")
def shadow(model: Model, version: Version, reason: Reason, share: Share = 1.0) -> None:
    """Have a candidate analyse a share of the frames beside production, acting on nothing."""
    _try_out("SHADOW", model, version, share, reason)


@models_app.command("canary")
def canary(
    model: Model,
    version: Version,
    reason: Reason,
    rejected_bound: Annotated[
        float, typer.Option(help="Ended when people reject more than this share of its findings.")
    ],
    share: Share = 0.1,
    min_reviewed: Annotated[
        int, typer.Option(min=1, help="...once at least this many were reviewed.")
    ] = 20,
) -> None:
    """Have a candidate analyse a share of the frames instead of production, for real."""
    _try_out("CANARY", model, version, share, reason, rejected_bound, min_reviewed)


@models_app.command("end-trial")
def end_trial(reason: Reason) -> None:
    """End the trial under way: production alone analyses the frames again."""
    from api.policy import resources
    from api.services.vision.registry import ModelRegistry

    settings = command_settings()

    async def step(access: AccessScope) -> DecisionRecord:
        return await ModelRegistry(access).end_trial(reason)

    decision = run_as(
        settings, officer(), "models end-trial", ("DecideModelVersion", resources.MODELS), step
    )
    console.print(f"decision {decision.id}: the trial of {decision.model} {decision.version} ended")


@models_app.command("trial")
def trial(
    decision: Annotated[
        int | None, typer.Argument(help="The trial's decision (default: the one under way).")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """How a trial's candidate compares with production, per category."""
    from api.policy import resources
    from api.services.vision.trials import Trial, TrialReads

    settings = command_settings()

    async def step(access: AccessScope) -> Trial | None:
        configured = (settings.serving.model, settings.serving.model_version)
        return await TrialReads(access, settings.vision, configured).trial(decision)

    found = run_as(
        settings, officer(), "models trial", ("ViewModelRegistry", resources.MODELS), step
    )
    if found is None:
        console.print("no trial is under way")
        return
    console.print(
        f"{found.decision.role} {found.decision.model} {found.decision.version} against "
        f"{found.production[0]} {found.production[1]} since {found.decision.decided_at:%Y-%m-%d %H:%M}"
        f" ({'ended ' + f'{found.ended_at:%Y-%m-%d %H:%M}' if found.ended_at else 'under way'}); "
        f"frames: production {found.comparison.production_frames}, candidate "
        f"{found.comparison.candidate_frames}"
    )
    emit(
        ("category", "production_precision", "candidate_precision", "both", "production_only",
         "candidate_only", "agreement"),
        (
            {
                "category": item.category,
                "production_precision": _share(item.production.precision),
                "candidate_precision": _share(item.candidate.precision),
                "both": item.both,
                "production_only": item.production_only,
                "candidate_only": item.candidate_only,
                "agreement": _share(item.agreement),
            }
            for item in found.comparison.categories
        ),
        as_json,
    )  # fmt: skip


def _share(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


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
        ("id", "model", "version", "role", "share", "decided_by", "decided_at", "reason"),
        (
            {
                "id": decision.id,
                "model": decision.model,
                "version": decision.version,
                "role": decision.role,
                "share": decision.share,
                "decided_by": decision.decided_by,
                "decided_at": decision.decided_at.isoformat(),
                "reason": decision.reason,
            }
            for decision in found
        ),
        as_json,
    )
