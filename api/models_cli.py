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
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from api.auth.principal import Principal, PrincipalKind
from api.command import command_settings, run_as
from api.evaluation_cli import cards_app, evaluate, sets_app, share
from api.listing import AsJson, emit

if TYPE_CHECKING:
    from api.access.scope import AccessScope
    from api.domain.thresholds import Proposal
    from api.repositories.registry import DecisionRecord
    from api.repositories.thresholds import ThresholdRecord
    from api.services.vision.thresholds import ThresholdDecisions
    from api.settings import Settings

T = TypeVar("T")

console = Console(stderr=True)
models_app = typer.Typer(
    help="Model versions: which one the vision workers use, and every decision.",
    no_args_is_help=True,
)
# Evaluation sets, runs and model cards: api/evaluation_cli.py.
models_app.add_typer(sets_app, name="sets")
models_app.add_typer(cards_app, name="cards")
models_app.command("evaluate")(evaluate)


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
                "production_precision": share(item.production.precision),
                "candidate_precision": share(item.candidate.precision),
                "both": item.both,
                "production_only": item.production_only,
                "candidate_only": item.candidate_only,
                "agreement": share(item.agreement),
            }
            for item in found.comparison.categories
        ),
        as_json,
    )  # fmt: skip


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


# --- thresholds from evidence ------------------------------------------------------------------

thresholds_app = typer.Typer(
    help="Category thresholds: proposed from what people judged, applied by an officer.",
    no_args_is_help=True,
)
models_app.add_typer(thresholds_app, name="thresholds")


def _threshold_decisions(settings: Settings, access: AccessScope) -> ThresholdDecisions:
    from api.services.vision.thresholds import ThresholdDecisions

    configured = (settings.serving.model, settings.serving.model_version)
    return ThresholdDecisions(access, settings.vision, configured)


@thresholds_app.command("propose")
def thresholds_propose(
    precision: Annotated[float, typer.Option(help="The precision the bureau asks for.")],
    category: Annotated[
        list[str] | None, typer.Option(help="A category (again for more; default: all judged).")
    ] = None,
    min_judged: Annotated[
        int, typer.Option(help="Judged detections a threshold must rest on.")
    ] = 20,
    as_json: AsJson = False,
) -> None:
    """Per category, the lowest threshold at which the production version's judged findings
    reach PRECISION, with the precision (and its interval) and recall it promises."""
    from api.policy import resources

    settings = command_settings()

    async def step(access: AccessScope) -> list[Proposal]:
        return await _threshold_decisions(settings, access).propose(precision, category, min_judged)

    found = run_as(
        settings, officer(), "models thresholds propose",
        ("DecideModelVersion", resources.MODELS), step,
    )  # fmt: skip
    rows = []
    for proposal in found:
        chosen = proposal.proposed
        interval = chosen.precision_interval if chosen is not None else None
        rows.append(
            {
                "category": proposal.category,
                "current": proposal.current,
                "judged": proposal.judged,
                "proposed": chosen.threshold if chosen else None,
                "precision": share(chosen.precision) if chosen else None,
                "precision_low": round(interval.low, 4) if interval else None,
                "recall": share(chosen.recall) if chosen else None,
                "best_precision": share(proposal.best.precision) if proposal.best else None,
            }
        )
    emit(
        ("category", "current", "judged", "proposed", "precision", "precision_low", "recall",
         "best_precision"),
        rows,
        as_json,
    )  # fmt: skip


@thresholds_app.command("apply")
def thresholds_apply(
    category: Annotated[str, typer.Argument(help="The category's code.")],
    threshold: Annotated[float, typer.Argument(help="The confidence a finding needs.")],
    reason: Reason,
    precision: Annotated[
        float | None, typer.Option(help="The precision the bureau asked for, if it did.")
    ] = None,
) -> None:
    """Decide a category's threshold: recorded with what the reviews give at it, audited; the
    vision workers follow it from their next batch."""
    from api.policy import resources

    settings = command_settings()

    async def step(access: AccessScope) -> ThresholdRecord:
        return await _threshold_decisions(settings, access).apply(
            category, threshold, reason, precision
        )

    record = run_as(
        settings, officer(), "models thresholds apply",
        ("DecideModelVersion", resources.MODELS), step,
    )  # fmt: skip
    console.print(
        f"decision {record.id}: {record.category} needs {record.threshold} from now on (the "
        f"reviews give precision {share(record.expected_precision)}, recall "
        f"{share(record.expected_recall)} over {record.judged} judged detections)"
    )


@thresholds_app.command("list")
def thresholds_list(
    last: Annotated[int, typer.Option(min=1, max=200, help="How many, newest first.")] = 20,
    as_json: AsJson = False,
) -> None:
    """The threshold decisions, newest first."""
    from api.policy import resources

    settings = command_settings()

    async def step(access: AccessScope) -> list[ThresholdRecord]:
        return await _threshold_decisions(settings, access).history(last)

    found = run_as(
        settings, officer(), "models thresholds list", ("ViewModelRegistry", resources.MODELS), step
    )
    emit(
        ("id", "category", "threshold", "target_precision", "expected_precision",
         "expected_recall", "judged", "decided_by", "decided_at", "reason"),
        (
            {
                "id": r.id, "category": r.category, "threshold": r.threshold,
                "target_precision": r.target_precision,
                "expected_precision": share(r.expected_precision),
                "expected_recall": share(r.expected_recall), "judged": r.judged,
                "decided_by": r.decided_by, "decided_at": r.decided_at.isoformat(),
                "reason": r.reason,
            }
            for r in found
        ),
        as_json,
    )  # fmt: skip
