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
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console

from api.auth.principal import Principal, PrincipalKind
from api.command import command_settings, run_as
from api.listing import AsJson, emit

if TYPE_CHECKING:
    from api.access.scope import AccessGate, AccessScope, OperationDescription
    from api.domain.evaluation import CategoryFigures
    from api.domain.quality import Interval
    from api.domain.thresholds import Proposal
    from api.repositories.evaluation import SetRecord
    from api.repositories.registry import DecisionRecord
    from api.repositories.thresholds import ThresholdRecord
    from api.services.vision.evaluation import RunReport
    from api.services.vision.thresholds import ThresholdDecisions
    from api.settings import Settings

T = TypeVar("T")

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


# --- evaluation sets and runs ------------------------------------------------------------------

sets_app = typer.Typer(
    help="Evaluation sets: a bureau's frames labelled by people.", no_args_is_help=True
)
models_app.add_typer(sets_app, name="sets")

Bureau = Annotated[str, typer.Option(help="The bureau whose frames the set holds (its code).")]


def officer_of(bureau_id: int, bureau_code: str) -> Principal:
    """A model officer of a bureau, at the command line: sets and runs are a bureau's."""
    return Principal(
        subject=f"cli:{getpass.getuser()}",
        kind=PrincipalKind.STAFF,
        bureau_id=bureau_id,
        bureau_code=bureau_code,
        scopes=frozenset({"incidents:read", "incidents:write", "models:admin"}),
    )


def _as_officer(
    settings: Settings, bureau: str, work: Callable[[AccessGate, Principal], Awaitable[T]]
) -> T:
    """``work`` with a gate over the database, as a model officer of ``bureau``; a
    DomainError or an unknown bureau is printed and exits 2."""
    from api.access.scope import AccessGate
    from api.db.database import Database
    from api.db.endpoints import resolve_endpoints
    from api.db.pool import create_pool
    from api.domain.errors import DomainError, InvalidInput
    from api.metrics import Metrics
    from api.policy.engine import PolicyEngine
    from api.repositories.audit import AuditRepository
    from api.repositories.system import SystemRepository

    async def main() -> T:
        endpoints = await asyncio.to_thread(resolve_endpoints, settings)
        pool = await create_pool(endpoints.app_url, settings)
        try:
            bureaus = await SystemRepository(pool).bureaus()
            found = next((b for b in bureaus if b.code == bureau), None)
            if found is None:
                known = ", ".join(sorted(b.code for b in bureaus))
                raise InvalidInput("bureau", f"no bureau {bureau!r} (the bureaus: {known})")
            policy = PolicyEngine(
                settings.policy.dir, [(b.code, b.joint_service_centre) for b in bureaus]
            )
            await AuditRepository(pool).record_policy_version(policy.version, policy.text)
            gate = AccessGate(Database(pool, Metrics().record_statements), policy)
            return await work(gate, officer_of(found.id, found.code))
        finally:
            await pool.close()
            await asyncio.to_thread(endpoints.release)

    try:
        return asyncio.run(main())
    except DomainError as error:
        console.print(f"{error.message}", style="red", markup=False)
        raise typer.Exit(2) from None


def _described(name: str) -> Callable[[], OperationDescription]:
    from api.access.scope import OperationDescription

    description = OperationDescription(category="cli", name=name, kind="cli")
    return lambda: description


def _said_set(record: SetRecord) -> None:
    console.print(
        f"evaluation set {record.label}: {record.frames} frames, categories "
        f"{', '.join(record.categories)}; `lighthouse models evaluate MODEL VERSION --set "
        f"{record.name} --bureau {record.bureau_code}` runs a version over it"
    )


@sets_app.command("add")
def sets_add(
    name: Annotated[str, typer.Argument(help="The set's name (a new version if it exists).")],
    manifest: Annotated[
        Path,
        typer.Option(
            help="CSV (file,camera,captured_at,categories with ';' between them) or JSON Lines "
            "({file, camera, captured_at, categories: [...]}); files relative to it."
        ),
    ],
    bureau: Bureau,
    description: Annotated[str, typer.Option(help="What the set is, for whoever reads it.")] = "",
) -> None:
    """Register a labelled evaluation set from a manifest: every line is checked first, and the
    images are stored like any frame (never analysed live)."""
    from api.services.vision.evaluation import EvaluationSets, read_manifest
    from api.vision.store import FrameStore

    settings = command_settings()

    async def work(gate: AccessGate, principal: Principal) -> SetRecord:
        lines = read_manifest(manifest)
        async with gate.transaction(
            principal, "models-sets-add", _described("models sets add")
        ) as access:
            store = FrameStore(settings.vision.frames_dir)
            return await EvaluationSets(access, store, settings.vision).from_manifest(
                name, description, lines
            )

    _said_set(_as_officer(settings, bureau, work))


@sets_app.command("from-reviews")
def sets_from_reviews(
    name: Annotated[str, typer.Argument(help="The set's name (a new version if it exists).")],
    bureau: Bureau,
    days: Annotated[int, typer.Option(help="Detections reviewed in the last DAYS days.")] = 90,
    description: Annotated[str, typer.Option(help="What the set is, for whoever reads it.")] = "",
) -> None:
    """Register a set from what people did: the bureau's frames they confirmed or rejected a
    finding of, labelled with the categories they confirmed."""
    from api.services.vision.evaluation import EvaluationSets
    from api.vision.store import FrameStore

    settings = command_settings()

    async def work(gate: AccessGate, principal: Principal) -> SetRecord:
        async with gate.transaction(
            principal, "models-sets-reviews", _described("models sets from-reviews")
        ) as access:
            store = FrameStore(settings.vision.frames_dir)
            return await EvaluationSets(access, store, settings.vision).from_reviews(
                name, description, days
            )

    _said_set(_as_officer(settings, bureau, work))


@sets_app.command("list")
def sets_list(bureau: Bureau, as_json: AsJson = False) -> None:
    """The evaluation sets you may see, newest version first."""
    from api.services.vision.evaluation import EvaluationSets
    from api.vision.store import FrameStore

    settings = command_settings()

    async def work(gate: AccessGate, principal: Principal) -> list[SetRecord]:
        async with gate.transaction(
            principal, "models-sets-list", _described("models sets list")
        ) as access:
            store = FrameStore(settings.vision.frames_dir)
            return await EvaluationSets(access, store, settings.vision).sets()

    found = _as_officer(settings, bureau, work)
    emit(
        ("id", "name", "version", "bureau", "source", "frames", "categories", "created_by"),
        (
            {
                "id": s.id, "name": s.name, "version": s.version, "bureau": s.bureau_code,
                "source": s.source, "frames": s.frames, "categories": ",".join(s.categories),
                "created_by": s.created_by,
            }
            for s in found
        ),
        as_json,
    )  # fmt: skip


@models_app.command("evaluate")
def evaluate(
    model: Annotated[str, typer.Argument(help="The model, as the serving tier serves it.")],
    version: Annotated[str, typer.Argument(help="The version that names it.")],
    set_name: Annotated[str, typer.Option("--set", help="The evaluation set's name.")],
    bureau: Bureau,
    set_version: Annotated[
        int | None, typer.Option(help="The set's version (default: the newest).")
    ] = None,
    concurrency: Annotated[int, typer.Option(min=1, max=256, help="Frames asked at once.")] = 8,
    compare: Annotated[
        int | None, typer.Option(help="Another run over the same set, to compare with.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Run a model version over an evaluation set through the serving tier, with the workers'
    prompt; every answer is recorded as it comes, so running it again resumes a run that
    stopped. Prints precision, recall and F1 per category with their intervals."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from api.inference.client import ServingClient, ServingUnavailable
    from api.services.vision.analysis import VisionModel
    from api.services.vision.evaluation import EvaluationReads, EvaluationRunner
    from api.vision.store import FrameStore

    settings = command_settings()

    async def work(gate: AccessGate, principal: Principal) -> list[RunReport]:
        serving = settings.serving
        client = ServingClient(
            serving.url,
            secret_file=serving.secret_file,
            timeout_seconds=serving.timeout_seconds,
            retries=serving.retries,
        )
        vision_model = VisionModel(client, model, version, settings.vision.max_answer_tokens)
        runner = EvaluationRunner(
            gate, principal, FrameStore(settings.vision.frames_dir), vision_model,
            concurrency=concurrency,
        )  # fmt: skip
        with Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=console, transient=True,
        ) as bar:  # fmt: skip
            task = bar.add_task(f"{model} {version} over {set_name}", total=None)
            try:
                run = await runner.run(
                    set_name,
                    set_version,
                    lambda done, of: bar.update(task, completed=done, total=of),
                )
            except ServingUnavailable as error:
                console.print(
                    f"the serving tier stopped answering ({error}); the answers so far are kept: "
                    "run the same command again to resume",
                    style="red",
                    markup=False,
                )
                raise typer.Exit(3) from None
            finally:
                await client.close()
        reports = []
        for run_id in [run.id] + ([compare] if compare is not None else []):
            async with gate.transaction(
                principal, "models-evaluate", _described("models evaluate")
            ) as access:
                reports.append(await EvaluationReads(access, settings.vision).report(run_id))
        return reports

    reports = _as_officer(settings, bureau, work)
    _print_reports(reports, as_json)


def _print_reports(reports: Sequence[RunReport], as_json: bool) -> None:
    first = reports[0]
    other = reports[1] if len(reports) > 1 else None
    if other is not None and other.set.id != first.set.id:
        console.print(f"run {other.run.id} is over another set: not compared", style="red")
        raise typer.Exit(2)
    for report in reports:
        figures = report.figures
        console.print(
            f"run {report.run.id}: {report.run.model} {report.run.model_version} (prompt "
            f"{report.run.prompt_version}) over {report.set.label}: {figures.answered} of "
            f"{figures.frames} frames answered, {figures.unusable} unusable"
        )
    rows = []
    for index, item in enumerate(first.figures.categories):
        row: dict[str, object] = {"run": first.run.id, **_category_row(item)}
        rows.append(row)
        if other is not None:
            rows.append({"run": other.run.id, **_category_row(other.figures.categories[index])})
    emit(
        ("run", "category", "threshold", "labelled", "tp", "fp", "fn", "precision",
         "precision_low", "precision_high", "recall", "recall_low", "recall_high", "f1",
         "f1_low", "f1_high", "curve"),
        rows,
        as_json,
    )  # fmt: skip


def _category_row(item: CategoryFigures) -> dict[str, object]:
    def bounds(interval: Interval | None) -> tuple[float | None, float | None]:
        return (
            (None, None) if interval is None else (round(interval.low, 4), round(interval.high, 4))
        )

    precision_low, precision_high = bounds(item.precision_interval)
    recall_low, recall_high = bounds(item.recall_interval)
    f1_low, f1_high = bounds(item.f1_interval)
    return {
        "category": item.category, "threshold": item.threshold, "labelled": item.labelled,
        "tp": item.true_positives, "fp": item.false_positives, "fn": item.false_negatives,
        "precision": _share(item.precision), "precision_low": precision_low,
        "precision_high": precision_high, "recall": _share(item.recall),
        "recall_low": recall_low, "recall_high": recall_high, "f1": _share(item.f1),
        "f1_low": f1_low, "f1_high": f1_high,
        "curve": [[p.threshold, round(p.precision, 6), round(p.recall, 6)] for p in item.curve],
    }  # fmt: skip


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
                "precision": _share(chosen.precision) if chosen else None,
                "precision_low": round(interval.low, 4) if interval else None,
                "recall": _share(chosen.recall) if chosen else None,
                "best_precision": _share(proposal.best.precision) if proposal.best else None,
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
        f"reviews give precision {_share(record.expected_precision)}, recall "
        f"{_share(record.expected_recall)} over {record.judged} judged detections)"
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
                "expected_precision": _share(r.expected_precision),
                "expected_recall": _share(r.expected_recall), "judged": r.judged,
                "decided_by": r.decided_by, "decided_at": r.decided_at.isoformat(),
                "reason": r.reason,
            }
            for r in found
        ),
        as_json,
    )  # fmt: skip
