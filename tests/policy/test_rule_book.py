"""The rule book's table (policies/README.md, "Who may take which step") played cell by cell
against the running gateway, for every seeded principal: prose and code cannot drift apart.

Each cell is tried on an incident of the principal's own bureau and on one of another bureau,
each in the state the step starts from. A step the table allows must succeed; one it does not
must be refused (Forbidden, or NotFound where the caller may not even see the incident).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from api.auth.dev_principals import DEV_PRINCIPALS
from tests.graph.helpers import global_id
from tests.support import REPOSITORY, GraphQLClient
from tests.tokens import TokenFactory

RULE_BOOK = REPOSITORY / "policies" / "README.md"

# Each column of the table: the steps it stands for, and the state each starts from.
COLUMN_STEPS: dict[str, list[str]] = {
    "verify": ["verify"],
    "dispatch": ["dispatch"],
    "start, resolve, reopen": ["start", "resolve", "reopen"],
    "work orders": ["work order"],
    "transfer": ["transfer"],
    "mark duplicate": ["mark duplicate"],
    "share": ["share"],
    "close FIXED": ["close FIXED"],
    "close FALSE_POSITIVE": ["close FALSE_POSITIVE"],
    "close NOT_RESPONSIBLE": ["close NOT_RESPONSIBLE"],
    "close TRANSFERRED": ["close TRANSFERRED"],
}
STARTS_FROM = {
    "verify": "DETECTED",
    "dispatch": "VERIFIED",
    "start": "DISPATCHED",
    "resolve": "IN_PROGRESS",
    "reopen": "RESOLVED",
    "work order": "DISPATCHED",
    "transfer": "VERIFIED",
    "mark duplicate": "VERIFIED",
    "share": "VERIFIED",
    "close FIXED": "RESOLVED",
    "close FALSE_POSITIVE": "VERIFIED",
    "close NOT_RESPONSIBLE": "VERIFIED",
    "close TRANSFERRED": "VERIFIED",
}
REFUSED = {"Forbidden", "NotFound"}


@dataclass(frozen=True)
class Row:
    who: str
    principals: tuple[str, ...]
    cells: dict[str, str]  # column -> "own" | "any" | "—"


def rule_book() -> list[Row]:
    text = RULE_BOOK.read_text()
    section = text[text.index("### Who may take which step") :].splitlines()
    start = next(i for i, line in enumerate(section) if line.startswith("|"))
    lines = []
    for line in section[start:]:
        if not line.startswith("|"):
            break  # the table ends at its first line that is not a row
        lines.append(line)
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = []
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        who = cells[0]
        named = re.search(r"\(([^)]*)\)", who)
        assert named, f"the row {who!r} names no seeded principal"
        rows.append(
            Row(
                who=who,
                principals=tuple(p.strip() for p in named.group(1).split(",")),
                cells=dict(zip(header[1:], cells[1:], strict=True)),
            )
        )
    return rows


def test_the_table_covers_every_seeded_principal_and_every_step() -> None:
    rows = rule_book()
    named = [p for row in rows for p in row.principals]
    assert sorted(named) == sorted(DEV_PRINCIPALS), "each seeded principal in exactly one row"
    for row in rows:
        assert set(row.cells) == set(COLUMN_STEPS), row.who
        assert set(row.cells.values()) <= {"own", "any", "—"}, row.who


CASES = [
    (row.who, principal, column, step, whose)
    for row in rule_book()
    for principal in row.principals
    for column, steps in COLUMN_STEPS.items()
    for step in steps
    # A principal without a bureau (city-wide viewer, auditor) has no incidents of its own.
    for whose in (("own", "other") if DEV_PRINCIPALS[principal].bureau else ("other",))
]


def expected(cell: str, whose: str) -> bool:
    return cell == "any" or (cell == "own" and whose == "own")


async def insert_incident(
    owner: asyncpg.Connection, bureau_id: int, status: str, *, closing: str | None = None
) -> tuple[int, int]:
    """An incident in ``status``, responsible to ``bureau_id``; its key and version."""
    row = await owner.fetchrow(
        "INSERT INTO lighthouse.incident (title, category, status, closing_reason, source,"
        " responsible_bureau_id, latitude, longitude, reported_at, due_at, created_by)"
        " VALUES ('規則表', 'POTHOLE', $1, $2, 'STAFF', $3, 22.62, 120.30, now(),"
        " now() + interval '3 days', 'rule-book') RETURNING id, version",
        status,
        closing,
        bureau_id,
    )
    assert row is not None
    return int(row["id"]), int(row["version"])


def step_call(
    step: str, key: int, version: int, other: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """The mutation document and variables for ``step`` on incident ``key``."""
    target = {"id": global_id("Incident", key), "expectedVersion": version}
    fields = {
        "verify": ("verifyIncident", "IncidentStepInput", target),
        "start": ("startWork", "IncidentStepInput", target),
        "resolve": ("resolveIncident", "IncidentStepInput", target),
        "reopen": ("reopenIncident", "IncidentStepInput", target),
        "dispatch": ("dispatchIncident", "DispatchIncidentInput", {**target, "workOrder": {"crew": "一隊"}}),
        "transfer": ("transferIncident", "TransferIncidentInput", {**target, "toBureauId": other["to"], "reason": "移交"}),
        "share": ("shareIncident", "ShareIncidentInput", {**target, "bureauId": other["to"], "reason": "協辦"}),
        "mark duplicate": ("markDuplicate", "MarkDuplicateInput", {**target, "duplicateOf": other["canonical"]}),
        "work order": ("createWorkOrder", "CreateWorkOrderInput", {"incidentId": target["id"], "workOrder": {"crew": "二隊"}}),
    }  # fmt: skip
    if step.startswith("close "):
        field, input_type, variables = (
            "closeIncident",
            "CloseIncidentInput",
            {**target, "reason": step.removeprefix("close ")},
        )
    else:
        field, input_type, variables = fields[step]
    document = f"""
    mutation Step($input: {input_type}!) {{
      result: {field}(input: $input) {{ __typename ... on Error {{ message code }} }}
    }}"""
    return document, {"input": variables}


@pytest.mark.parametrize(
    ("who", "principal", "column", "step", "whose"),
    CASES,
    ids=[f"{c[1]}-{c[3]}-{c[4]}" for c in CASES],
)
async def test_every_cell_of_the_rule_book_holds(
    who: str,
    principal: str,
    column: str,
    step: str,
    whose: str,
    http: httpx.AsyncClient,
    tokens: TokenFactory,
    owner: asyncpg.Connection,
) -> None:
    row = next(r for r in rule_book() if r.who == who)
    bureaus = {
        r["code"]: r["id"] for r in await owner.fetch("SELECT code, id FROM lighthouse.bureau")
    }
    own = DEV_PRINCIPALS[principal].bureau
    # Another bureau: Public Works, unless that is the principal's own (then the police's).
    other = "POLICE" if own == "PUBLIC_WORKS" else "PUBLIC_WORKS"
    responsible = bureaus[own] if whose == "own" and own is not None else bureaus[other]
    key, version = await insert_incident(owner, responsible, STARTS_FROM[step])
    canonical, _ = await insert_incident(owner, responsible, "VERIFIED")
    to = "FIRE" if own != "FIRE" else "TAIPOWER"
    document, variables = step_call(
        step,
        key,
        version,
        {"to": global_id("Bureau", bureaus[to]), "canonical": global_id("Incident", canonical)},
    )
    body = await GraphQLClient(http, tokens.named(principal)).execute(document, variables)
    assert "errors" not in body, body
    outcome = body["data"]["result"]["__typename"]
    assert "message" in body["data"]["result"] or outcome not in REFUSED
    allowed = expected(row.cells[column], whose)
    if allowed:
        assert outcome not in REFUSED and "message" not in body["data"]["result"], (
            f"{principal} ({who}) should {step} an incident of {whose} bureau: {body}"
        )
    else:
        assert outcome in REFUSED, f"{principal} ({who}) should not {step} ({whose}): {body}"
