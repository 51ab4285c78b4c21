"""``lighthouse models sets|evaluate|cards``: a bureau's model officers register labelled
evaluation sets, run model versions over them through the serving tier, and publish the model
cards licensees read. Each command acts as a model officer of the bureau it names
(``cli:<user>``, staff granted ``models:admin``): the policies and row-level security apply, and
each step is audited.
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
from api.command import command_settings
from api.listing import AsJson, emit

if TYPE_CHECKING:
    from api.access.scope import AccessGate, OperationDescription
    from api.domain.evaluation import CategoryFigures
    from api.domain.quality import Interval
    from api.repositories.evaluation import SetRecord
    from api.repositories.model_cards import CardRecord
    from api.services.vision.evaluation import RunReport
    from api.settings import Settings

T = TypeVar("T")

console = Console(stderr=True)


def share(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


# --- evaluation sets and runs ------------------------------------------------------------------

sets_app = typer.Typer(
    help="Evaluation sets: a bureau's frames labelled by people.", no_args_is_help=True
)

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
        "precision": share(item.precision), "precision_low": precision_low,
        "precision_high": precision_high, "recall": share(item.recall),
        "recall_low": recall_low, "recall_high": recall_high, "f1": share(item.f1),
        "f1_low": f1_low, "f1_high": f1_high,
        "curve": [[p.threshold, round(p.precision, 6), round(p.recall, 6)] for p in item.curve],
    }  # fmt: skip


# --- model cards -------------------------------------------------------------------------------

cards_app = typer.Typer(
    help="Model cards: a finished run's figures, published for the licensees of its version.",
    no_args_is_help=True,
)


@cards_app.command("publish")
def cards_publish(
    run: Annotated[int, typer.Argument(help="A finished evaluation run's id.")],
    bureau: Bureau,
    summary: Annotated[str, typer.Option(help="What licensees should know.")] = "",
) -> None:
    """Publish the model card of a finished run (every frame answered): frozen, read by the
    licensees whose licences pin its version. Publishing again gives the same card."""
    from api.services.vision.model_cards import ModelCards

    settings = command_settings()

    async def work(gate: AccessGate, principal: Principal) -> CardRecord:
        async with gate.transaction(
            principal, "models-cards-publish", _described("models cards publish")
        ) as access:
            return await ModelCards(access, settings.vision).publish(run, summary)

    card = _as_officer(settings, bureau, work)
    console.print(
        f"card {card.id}: {card.model} {card.version}, measured on {card.set_name} "
        f"v{card.set_version} ({card.set_frames} frames), published by {card.published_by}",
        markup=False,
    )


@cards_app.command("list")
def cards_list(
    bureau: Bureau,
    model: Annotated[str | None, typer.Option(help="Only this model's.")] = None,
    version: Annotated[str | None, typer.Option(help="Only this version's.")] = None,
    as_json: AsJson = False,
) -> None:
    """The model cards published, newest first per version."""
    from api.services.vision.model_cards import ModelCards

    settings = command_settings()

    async def work(gate: AccessGate, principal: Principal) -> list[CardRecord]:
        async with gate.transaction(
            principal, "models-cards-list", _described("models cards list")
        ) as access:
            return await ModelCards(access, settings.vision).cards(model, version, 200)

    found = _as_officer(settings, bureau, work)
    emit(
        ("id", "model", "version", "set", "frames", "categories", "published_by", "published_at"),
        (
            {
                "id": c.id, "model": c.model, "version": c.version,
                "set": f"{c.set_name} v{c.set_version}", "frames": c.set_frames,
                "categories": ",".join(c.categories), "published_by": c.published_by,
                "published_at": c.published_at.isoformat(),
            }
            for c in found
        ),
        as_json,
    )  # fmt: skip
