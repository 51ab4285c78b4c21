"""``lighthouse licensing …``: the city's licensing officers register licensees and issue,
suspend, resume and revoke their licences from the command line.

Each command runs as the application role with a licensing administrator's identity (the
operator's name, ``licensing:admin``), so row-level security applies as it does to the graph,
and each change is written to the audit trail in the same transaction.
"""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from api.auth.principal import Principal, PrincipalKind
from api.command import command_settings, run_as
from api.domain.errors import InvalidInput
from api.domain.licensing import Licence, LicenceTerms, QuotaPeriod
from api.listing import AsJson, emit
from api.repositories.licensing import Contact, LicensingRepository
from api.settings import Settings

if TYPE_CHECKING:
    from api.access.scope import AccessScope

T = TypeVar("T")
console = Console(stderr=True)
licensing_app = typer.Typer(
    help="Licensees and their licences (as a licensing officer).", no_args_is_help=True
)


def officer() -> Principal:
    return Principal(
        subject=f"cli:{getpass.getuser()}",
        kind=PrincipalKind.STAFF,
        scopes=frozenset({"licensing:admin"}),
    )


def _run(settings: Settings, name: str, step: Callable[[AccessScope], Awaitable[T]]) -> T:
    """``step`` in one transaction as a licensing officer, authorized and audited."""
    from api.policy import resources

    return run_as(settings, officer(), name, ("ManageLicensing", resources.LICENSING), step)


def _contact(text: str) -> Contact:
    """``Name <email>`` or ``Name <email> phone``."""
    name, _, rest = text.partition("<")
    email, _, phone = rest.partition(">")
    if not name.strip() or "@" not in email:
        raise InvalidInput("contact", f"{text!r}: write it as 'Name <email> [phone]'")
    return Contact(name.strip(), email.strip(), phone.strip() or None)


@licensing_app.command("add-licensee")
def add_licensee(
    code: Annotated[str, typer.Argument(help="A short name: lowercase letters, digits, '-'.")],
    company: Annotated[str, typer.Option(help="The company's registered name.")],
    tax_id: Annotated[str, typer.Option(help="Its unified business number (8 digits).")],
    contact: Annotated[list[str], typer.Option(help="'Name <email> [phone]'; repeat for several.")],
) -> None:
    """Register a company as a licensee."""
    settings = command_settings()

    async def step(access: AccessScope) -> int:
        contacts = [_contact(c) for c in contact]
        record = await LicensingRepository(access.uow).create_licensee(
            code, company, tax_id, contacts, access.principal.subject
        )
        access.audit.saw("Licensee", record.id)
        return record.id

    licensee_id = _run(settings, "licensing add-licensee", step)
    console.print(f"Licensee {code} registered (id {licensee_id}).")
    console.print(
        f"Give it a client: lighthouse clients create {code}-app --kind licensee "
        f"--licensee {code} --name '…' --scopes 'inference:invoke usage:read'"
    )


@licensing_app.command("add-licence")
def add_licence(
    code: Annotated[str, typer.Argument(help="The licence's code, e.g. LIC-2026-0001.")],
    licensee: Annotated[str, typer.Option(help="The licensee's code.")],
    model: Annotated[
        list[str],
        typer.Option(help="A model it covers, as NAME or NAME@VERSION; repeat for several."),
    ],
    purpose: Annotated[str, typer.Option(help="The approved application, as a tag.")],
    description: Annotated[str, typer.Option(help="The approved application, in words.")],
    valid_from: Annotated[datetime, typer.Option("--from", help="ISO 8601, with its offset.")],
    valid_until: Annotated[datetime, typer.Option("--until", help="ISO 8601, with its offset.")],
    period: Annotated[QuotaPeriod, typer.Option(help="What the quotas count over.")] = (
        QuotaPeriod.MONTH
    ),
    requests: Annotated[int, typer.Option(help="Requests per period.")] = 10_000,
    input_tokens: Annotated[int, typer.Option(help="Input tokens per period.")] = 10_000_000,
    output_tokens: Annotated[int, typer.Option(help="Output tokens per period.")] = 2_000_000,
    images: Annotated[int, typer.Option(help="Images per period.")] = 10_000,
    requests_per_minute: Annotated[int, typer.Option()] = 60,
    tokens_per_minute: Annotated[int, typer.Option()] = 200_000,
    concurrent: Annotated[int, typer.Option(help="Requests at once.")] = 8,
    max_tokens: Annotated[int, typer.Option(help="Answer tokens per request.")] = 1024,
    max_images: Annotated[int, typer.Option(help="Images per request.")] = 1,
    max_image_bytes: Annotated[int, typer.Option(help="Bytes per image.")] = 4 * 1024 * 1024,
    own_compute: Annotated[bool, typer.Option(help="May run a release on its own GPUs.")] = False,
) -> None:
    """Issue a licence to a licensee."""
    settings = command_settings()
    if valid_from.tzinfo is None or valid_until.tzinfo is None:
        console.print("[red]--from and --until need an offset (e.g. 2027-01-01T00:00+08:00).[/red]")
        raise typer.Exit(2)

    async def step(access: AccessScope) -> Licence:
        repository = LicensingRepository(access.uow)
        holder = await repository.licensee_by_code(licensee)
        if holder is None:
            raise InvalidInput("licensee", f"no licensee {licensee!r}")
        licence = await repository.create_licence(
            LicenceTerms(
                holder.id, code, model, purpose, description, valid_from, valid_until, period,
                requests, input_tokens, output_tokens, images, requests_per_minute,
                tokens_per_minute, concurrent, max_tokens, max_images, max_image_bytes,
                own_compute,
            ),
            access.principal.subject,
        )  # fmt: skip
        access.audit.saw("Licence", licence.id)
        return licence

    licence = _run(settings, "licensing add-licence", step)
    console.print(f"Licence {licence.code} issued to {licensee} (id {licence.id}).")


def _change(
    code: str, name: str, change: Callable[[LicensingRepository, int], Awaitable[Licence | None]]
) -> Licence:
    settings = command_settings()

    async def step(access: AccessScope) -> Licence:
        repository = LicensingRepository(access.uow)
        licence = await repository.licence_by_code(code)
        if licence is None:
            raise InvalidInput("licence", f"no licence {code!r}")
        access.audit.targeted("Licence", licence.id)
        changed = await change(repository, licence.id)
        if changed is None:
            raise InvalidInput("licence", f"{code} is already in that state")
        access.audit.saw("Licence", licence.id)
        return changed

    return _run(settings, name, step)


@licensing_app.command("suspend")
def suspend(
    code: str, reason: Annotated[str, typer.Option(help="Told to the licensee's callers.")]
) -> None:
    """Suspend a licence: its clients' calls are refused (403) until it is resumed."""
    _change(code, "licensing suspend", lambda r, i: r.suspend(i, reason))
    console.print(f"Licence {code} suspended.")


@licensing_app.command("resume")
def resume(code: str) -> None:
    """Lift a licence's suspension."""
    _change(code, "licensing resume", lambda r, i: r.resume(i))
    console.print(f"Licence {code} resumed.")


@licensing_app.command("revoke")
def revoke(code: str) -> None:
    """Revoke a licence for good."""
    _change(code, "licensing revoke", lambda r, i: r.revoke(i))
    console.print(f"Licence {code} revoked.")


@licensing_app.command("list")
def list_licences(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 200, as_json: AsJson = False
) -> None:
    """Every licence, with its state and terms."""
    settings = command_settings()
    licences = _run(
        settings,
        "licensing list",
        lambda access: LicensingRepository(access.uow).all_licences(limit),
    )
    emit(
        ("code", "licensee_id", "models", "purpose", "valid_from", "valid_until", "state",
         "quota_requests", "quota_input_tokens", "quota_output_tokens", "quota_images",
         "quota_period"),
        (
            {
                "code": licence.code,
                "licensee_id": licence.licensee_id,
                "models": list(licence.models),
                "purpose": licence.purpose,
                "valid_from": licence.valid_from,
                "valid_until": licence.valid_until,
                "state": "revoked" if licence.revoked_at
                else "suspended" if licence.suspended_at else "ok",
                "quota_requests": licence.quota_requests,
                "quota_input_tokens": licence.quota_input_tokens,
                "quota_output_tokens": licence.quota_output_tokens,
                "quota_images": licence.quota_images,
                "quota_period": str(licence.quota_period),
            }
            for licence in licences
        ),
        as_json,
    )  # fmt: skip


@licensing_app.command("statement")
def statement(
    code: Annotated[str, typer.Argument(help="The licence's code.")],
    period: Annotated[
        str, typer.Option(help="The quota period: YYYY-MM for a monthly licence, YYYY-MM-DD daily.")
    ],
) -> None:
    """A licence's statement for one quota period, as CSV on stdout: one line per request (failed
    and abandoned ones at zero), then the totals. The totals are checked against the quota
    ledger to the unit; a difference is an error (exit 1)."""
    import sys
    from zoneinfo import ZoneInfo

    from api.services.metering import statements

    settings = command_settings()
    zone = settings.city.timezone
    built = _run(
        settings,
        "licensing statement",
        lambda access: statements.statement(access, code, period, zone),
    )
    sys.stdout.write(built.csv(ZoneInfo(zone)))
    if not built.agrees:
        console.print(
            f"[red]The records {escape(str(built.totals))} and the quota ledger "
            f"{escape(str(built.ledger))} (requests, "
            "input tokens, output tokens, images) differ: do not send this statement; report "
            "it.[/red]"
        )
        raise typer.Exit(1)
    console.print(
        f"The records agree with the quota ledger: {len(built.lines)} requests, {built.totals}."
    )


@licensing_app.command("rollup")
def rollup(
    keep_days: Annotated[
        int | None,
        typer.Option(
            min=1, help="Keep usage records this long (LIGHTHOUSE_METERING_RETENTION_DAYS)."
        ),
    ] = None,
) -> None:
    """Roll the usage of the days that are over up into daily totals (per licence, day, model
    and status), and delete usage records past their retention whose day is rolled up. Run it
    daily (cron or a timer); running it again changes nothing."""
    from datetime import timedelta

    from api.repositories.licensing import UsageRecords

    settings = command_settings()
    keep = timedelta(days=keep_days or settings.metering.retention_days)

    async def step(access: AccessScope) -> tuple[int, int]:
        return await UsageRecords(access.uow).roll_up(settings.city.timezone, keep)

    rolled, deleted = _run(settings, "licensing rollup", step)
    console.print(
        f"{rolled} daily totals written; {deleted} usage records past {keep.days} days deleted."
    )


@licensing_app.command("publish-release")
def publish_release(
    model: Annotated[str, typer.Argument(help="The served model's name, as licences list it.")],
    version: Annotated[str, typer.Argument(help="The release's version, e.g. 2027.03.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="The model directory (weights, config, tokenizer).")
    ],
    config: Annotated[Path, typer.Option(help="The serving config the release runs with.")],
    terms: Annotated[
        str, typer.Option(help="The licence terms that go with it, as words or a file's path.")
    ],
) -> None:
    """Publish a model release for licensees with their own compute: every file hashed, the
    manifest (files, serving config, terms) signed with the city's key. Licensees whose licence
    allows their own compute download it from /v1/releases and check it with
    `lighthouse verify-release`."""
    from api.auth.keys import KeyRing
    from api.repositories.licensing import ReleaseRepository
    from api.repositories.oauth import OAuthRepository
    from api.services.metering import releases

    settings = command_settings()
    directory = directory.resolve()
    terms_text = Path(terms).read_text(encoding="utf-8") if Path(terms).is_file() else terms

    async def step(access: AccessScope) -> int:
        console.print(f"Hashing {directory} …")
        files = await asyncio.to_thread(releases.scan, directory)
        content = releases.manifest(
            model, version, files, config.read_text(encoding="utf-8"), {"text": terms_text}
        )
        ring = KeyRing(settings)
        await ring.load(OAuthRepository(access.uow))
        key = ring.current()
        if key is None:
            raise InvalidInput("keys", "no active signing key: run `lighthouse keys rotate`")
        signed = releases.sign(content, key.key, key.kid, key.algorithm, settings.issuer)
        record = await ReleaseRepository(access.uow).add(
            model, version, str(directory), content, signed, access.principal.subject
        )
        access.audit.saw("Release", record.id)
        console.print(f"{len(files)} files, {sum(f.bytes for f in files)} bytes.")
        return record.id

    release_id = _run(settings, "licensing publish-release", step)
    console.print(f"Release {model} {version} published (id {release_id}).")
