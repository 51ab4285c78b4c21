"""``lighthouse audit export``: an auditor takes the records of an investigation away, as CSV or
JSON Lines, written as they are read (any number of records in a page's memory), in one
transaction as an auditor (``cli:<user>``, ``audit:read``): the policies and row-level security
apply, and the export is itself recorded, with its filter and how many records it wrote."""

from __future__ import annotations

import csv
import dataclasses
import getpass
import sys
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import orjson
import typer
from rich.console import Console

from api.auth.principal import Principal, PrincipalKind
from api.command import command_settings, run_as

if TYPE_CHECKING:
    from api.access.scope import AccessScope
    from api.repositories.audit import AuditRecordRow

console = Console(stderr=True)
BATCH = 500
COLUMNS = ("seq", "occurred_at", "request_id", "subject", "client_id", "bureau",
           "principal_kind", "category", "operation", "decision", "resource_ids", "policy_ids",
           "policy_version", "personal_data", "document_hash", "hash")  # fmt: skip


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


def auditor() -> Principal:
    return Principal(
        subject=f"cli:{getpass.getuser()}",
        kind=PrincipalKind.AUDITOR,
        scopes=frozenset({"audit:read"}),
    )


def audit_export(
    resource: Annotated[
        str | None,
        typer.Option(help='A resource as recorded ("Incident:42"), an ID, or a case number.'),
    ] = None,
    subject: Annotated[str | None, typer.Option(help="Records of this principal.")] = None,
    since: Annotated[
        datetime | None, typer.Option(help="From this time (ISO 8601, with its offset).")
    ] = None,
    until: Annotated[datetime | None, typer.Option(help="Before this time.")] = None,
    decision: Annotated[str | None, typer.Option(help="ALLOW, DENY or PARTIAL.")] = None,
    format: Annotated[ExportFormat, typer.Option(help="csv or jsonl.")] = ExportFormat.CSV,
    output: Annotated[Path | None, typer.Option(help="Write here (default: stdout).")] = None,
) -> None:
    """Export the audit records that match, newest first, as CSV or JSON Lines; the export is
    recorded in the trail too."""
    from api.domain.errors import InvalidInput
    from api.policy import resources
    from api.repositories.audit import NEWEST_FIRST, AuditFilter, AuditRepository
    from api.repositories.sql import encode_cursor, page_request
    from api.services.audit import recorded_resource

    settings = command_settings()
    if decision is not None and decision.upper() not in ("ALLOW", "DENY", "PARTIAL"):
        console.print("--decision is ALLOW, DENY or PARTIAL", style="red", markup=False)
        raise typer.Exit(2)
    try:
        named = None if resource is None else recorded_resource(resource)
    except InvalidInput as error:
        console.print(f"--resource: {error.reason}", style="red", markup=False)
        raise typer.Exit(2) from None
    where = AuditFilter(
        subject=subject,
        resource=named,
        decision=decision.upper() if decision else None,
        occurred_from=since,
        occurred_before=until,
    )

    async def export(access: AccessScope) -> int:
        repository = AuditRepository(access.uow)
        sink = output.open("w", encoding="utf-8", newline="") if output else sys.stdout
        try:
            write = _writer(sink, format)
            written, after = 0, None
            while True:
                request = page_request(NEWEST_FIRST, first=BATCH, after=after, last=None,
                                       before=None, default_size=BATCH, max_size=BATCH)  # fmt: skip
                page = await repository.page(where, request)
                for row in page.items:
                    write(row)
                written += len(page.items)
                if not page.has_next or not page.items:
                    break
                after = encode_cursor(NEWEST_FIRST, [page.items[-1].seq])
        finally:
            if output:
                sink.close()
        asked = ", ".join(
            f"{f.name}={getattr(where, f.name)}"
            for f in dataclasses.fields(where)
            if getattr(where, f.name) is not None
        )
        access.audit.notes.append(
            f"exported {written} record(s) as {format.value} ({asked or 'every record'})"
        )
        return written

    written = run_as(
        settings, auditor(), "audit export", ("ReadAuditTrail", resources.AUDIT_TRAIL), export
    )
    console.print(f"{written} record(s) exported", markup=False)


def _writer(sink: TextIO, format: ExportFormat) -> Any:
    if format is ExportFormat.JSONL:

        def line(row: AuditRecordRow) -> None:
            sink.write(orjson.dumps(_fields(row)).decode() + "\n")

        return line
    table = csv.writer(sink)
    table.writerow(COLUMNS)

    def csv_row(row: AuditRecordRow) -> None:
        fields = _fields(row)
        for name in ("resource_ids", "policy_ids"):
            fields[name] = " ".join(fields[name])
        table.writerow([fields[name] for name in COLUMNS])

    return csv_row


def _fields(row: AuditRecordRow) -> dict[str, Any]:
    return {
        "seq": row.seq,
        "occurred_at": row.occurred_at.isoformat(),
        "request_id": row.request_id,
        "subject": row.subject,
        "client_id": row.client_id,
        "bureau": row.bureau,
        "principal_kind": row.principal_kind,
        "category": row.category,
        "operation": row.operation,
        "decision": row.decision,
        "resource_ids": sorted(row.resource_ids),
        "policy_ids": sorted(row.policy_ids),
        "policy_version": row.policy_version,
        "personal_data": row.personal_data,
        "document_hash": row.document_hash,
        "hash": row.hash.hex(),
    }
