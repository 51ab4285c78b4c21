"""Compiled documents: a registered query the planner compiled is answered by one SQL statement,
and the answer is the resolver path's, byte for byte, with the same audit record.

The differential test draws random documents over incidents (fields, aliases, nested bureaus,
assets, events and work orders with their arguments, page sizes in and out of range, and now
and then a field the planner leaves to the resolvers), registers them, and sends each for random
principals (every development principal: bureaus' staff, the city, auditors, licensees, a
caller with no scope) over random demo data, once by ``documentId`` (the compiled path when the
document compiled) and once as text (always the resolver path). Status, body bytes and the
audit records' decision, policies and resources must be equal.
"""

from __future__ import annotations

import os
import random
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from graphql.execution.values import VariableValues, get_variable_values

from api.auth.dev_principals import DEV_PRINCIPALS, DevPrincipal
from api.graph.core.compiled import NeedsValues, NotCompiled, Plan, Planner
from api.graph.core.fast_path import MAX_KEPT_VALUES, CompiledDocuments
from api.graph.core.ids import encode_id
from api.graph.core.schema import build_schema
from api.graph.domains import DOMAINS
from api.repositories.assets import ASSET_ORDERINGS
from api.repositories.incidents import INCIDENT_ORDERINGS
from api.repositories.sql import encode_cursor
from api.settings import Settings
from tests.auth.test_oauth_server import cli
from tests.graph.core.test_trusted_documents import manifest
from tests.support import DatabaseUnderTest, GatewayProcess
from tests.tokens import TokenFactory

pytestmark = pytest.mark.db

DOCUMENTS = int(os.environ.get("LIGHTHOUSE_COMPILED_EXAMPLES", "60"))
BOARD = """query Board {
  incidents(first: 50) {
    edges { node {
      id title status reportedAt
      responsibleBureau { code nameZh }
      asset { code kind }
      events(limit: 3) { kind toStatus occurredAt }
      workOrders(status: [OPEN]) { crew status }
    } }
  }
}"""

STATUSES = ["DETECTED", "VERIFIED", "DISPATCHED", "IN_PROGRESS", "RESOLVED", "CLOSED"]
CATEGORIES = ["POTHOLE", "FLOODING", "ILLEGAL_DUMPING", "ILLEGAL_PARKING"]
# Words of the seed's titles, a case number, a wildcard taken literally, and a refused search.
SEARCHES = ["坑洞", "人行道 停車", "KH-00000003", "%", " "]
BUREAU = ["id", "code", "nameZh", "nameEn", "kind", "jointServiceCentre", "__typename"]
LOCATION = ["latitude", "longitude"]
CATEGORY = ["code", "nameZh", "nameEn", "slaWorkingDays", "slaHours"]
TRANSFER = ["id", "reason", "actor", "transferredAt"]
EVENT = ["id", "kind", "fromStatus", "toStatus", "actor", "note", "data", "occurredAt"]
WORK_ORDER = ["id", "status", "crew", "instructions", "dueAt", "createdAt", "createdBy",
              "finishedAt"]  # fmt: skip
INCIDENT = ["id", "caseNumber", "title", "description", "status", "statusClass",
            "closingReason", "source", "reportedAt", "dueAt", "closedAt", "updatedAt",
            "version", "__typename"]  # fmt: skip


# A principal who reads every bureau's incidents and assets.
CITY_READER = "city-viewer"


def _reads_the_board(principal: DevPrincipal) -> bool:
    """Whether the rule book lets ``principal`` read the board: incidents with their assets."""
    return {"incidents:read", "assets:read"} <= set(principal.scopes)


def planner() -> Planner:
    settings = Settings()
    return Planner(build_schema(settings, tuple(DOMAINS.values())), settings.graph)


class Documents:
    """Random documents over the incident board, each valid against the schema."""

    def __init__(self, rng: random.Random, cursors: dict[str, list[str]], ids: list[str]) -> None:
        self.rng = rng
        self.cursors = cursors  # valid cursors of the data, by ordering
        self.ids = ids  # incidents' ids, and ids of nothing, of another type, of no type
        self.declared: dict[str, str] = {}  # the document's variables and their types

    def variable(self, name: str, type_: str) -> str:
        self.declared[name] = type_
        return f"${name}"

    def pick(self, fields: list[str], at_least: int = 1) -> list[str]:
        chosen = self.rng.sample(fields, self.rng.randint(at_least, len(fields)))
        return [self.alias(name) for name in chosen]

    def alias(self, name: str) -> str:
        return f"a{self.rng.randint(0, 999)}_{name}: {name}" if self.rng.random() < 0.15 else name

    def incident(self) -> str:
        rng = self.rng
        parts = self.pick(INCIDENT)
        if rng.random() < 0.3:
            parts.append(f"location {{ {' '.join(self.pick(LOCATION))} }}")
        for relation in ("responsibleBureau", "reportingBureau"):
            if rng.random() < 0.5:
                parts.append(f"{self.alias(relation)} {{ {' '.join(self.pick(BUREAU))} }}")
        if rng.random() < 0.4:
            inner = self.pick(["id", "code", "kind", "name", "installedOn"])
            if rng.random() < 0.3:
                inner.append("location { latitude longitude }")
            if rng.random() < 0.3:
                inner.append(f"bureau {{ {' '.join(self.pick(BUREAU))} }}")
            parts.append(f"{self.alias('asset')} {{ {' '.join(inner)} }}")
        if rng.random() < 0.6:
            arguments = []
            if rng.random() < 0.2:
                arguments.append(f"limit: {self.variable('limit', 'Int!')}")
            elif rng.random() < 0.6:
                arguments.append(f"limit: {rng.choice([1, 2, 3, 5, 20, 100, 0, 101])}")
            if rng.random() < 0.4:
                arguments.append(f"order: {rng.choice(['NEWEST_FIRST', 'OLDEST_FIRST'])}")
            called = f"({', '.join(arguments)})" if arguments else ""
            parts.append(f"{self.alias('events')}{called} {{ {' '.join(self.pick(EVENT))} }}")
        if rng.random() < 0.5:
            statuses = rng.sample(["OPEN", "IN_PROGRESS", "COMPLETED", "CANCELLED"],
                                  rng.randint(0, 2))  # fmt: skip
            called = f"(status: [{', '.join(statuses)}])" if rng.random() < 0.7 else ""
            if rng.random() < 0.25:
                called = f"(status: {self.variable('statuses', '[WorkOrderStatus!]')})"
            inner = self.pick(WORK_ORDER)
            if rng.random() < 0.3:
                inner.append(f"bureau {{ {' '.join(self.pick(BUREAU))} }}")
            parts.append(f"{self.alias('workOrders')}{called} {{ {' '.join(inner)} }}")
        if rng.random() < 0.3:
            inner = self.pick(CATEGORY)
            if rng.random() < 0.3:
                inner.append(f"responsibleBureau {{ {' '.join(self.pick(BUREAU))} }}")
            parts.append(f"{self.alias('category')} {{ {' '.join(inner)} }}")
        if rng.random() < 0.3:
            inner = self.pick(TRANSFER)
            for end in ("fromBureau", "toBureau"):
                if rng.random() < 0.4:
                    inner.append(f"{end} {{ {' '.join(self.pick(BUREAU))} }}")
            parts.append(f"{self.alias('transfers')} {{ {' '.join(inner)} }}")
        if rng.random() < 0.08:
            parts.append(rng.choice(["overdue", "allowedActions", "duplicateOf { id }"]))
        return " ".join(parts)

    def asset(self) -> str:
        inner = self.pick(["id", "code", "kind", "name", "installedOn", "__typename"])
        if self.rng.random() < 0.3:
            inner.append("location { latitude longitude }")
        if self.rng.random() < 0.4:
            inner.append(f"{self.alias('bureau')} {{ {' '.join(self.pick(BUREAU))} }}")
        return " ".join(inner)

    def assets_document(self, name: str) -> str:
        """The asset register: ``assets`` (a page by code, a filter, a cursor) and ``asset(id)``."""
        rng = self.rng
        arguments = []
        if rng.random() < 0.7:
            arguments.append(f"first: {rng.choice([1, 3, 10, 50, 0, 101])}")
        if rng.random() < 0.3:
            kinds = rng.sample(["CAMERA", "STREET_LIGHT", "DRAIN", "HYDRANT"], rng.randint(0, 2))
            arguments.append(f"filter: {{ kind: [{', '.join(kinds)}] }}")
        elif rng.random() < 0.15:
            arguments.append(f"filter: {self.variable('assetFilter', 'AssetFilterInput')}")
        if rng.random() < 0.2:
            arguments.append(f"after: {self.variable('assetAfter', 'String')}")
        elif rng.random() < 0.2:
            arguments.append(f'after: "{rng.choice([*self.cursors["CODE"], "bogus"])}"')
        extra = ""
        if rng.random() < 0.4:
            info = self.pick(["hasNextPage", "hasPreviousPage", "startCursor", "endCursor"])
            extra += f" pageInfo {{ {' '.join(info)} }}"
        if rng.random() < 0.3:
            extra += f" {self.alias('totalCount')}"
        edge = [self.alias("cursor")] if rng.random() < 0.3 else []
        called = f"({', '.join(arguments)})" if arguments else ""
        body = f"{self.alias('assets')}{called} {{ edges {{ {' '.join(edge)} node {{ {self.asset()} }} }}{extra} }}"
        if rng.random() < 0.3:
            given = (
                self.variable("assetId", "ID!")
                if rng.random() < 0.3
                else f'"{rng.choice(self.ids)}"'
            )
            body += f" {self.alias('asset')}(id: {given}) {{ {self.asset()} }}"
        declared = ", ".join(f"${k}: {v}" for k, v in self.declared.items())
        head = f"query {name}({declared})" if declared else f"query {name}"
        return f"{head} {{ {body} }}"

    def document(self, name: str) -> str:
        rng = self.rng
        self.declared = {}
        if rng.random() < 0.2:
            return self.assets_document(name)
        arguments = [f"first: {rng.choice([1, 2, 5, 10, 20, 50, 100, 0, 101])}"]
        if rng.random() < 0.25:
            arguments = [f"first: {self.variable('first', 'Int')}"]
        order = "NEWEST_FIRST"
        if rng.random() < 0.5:
            order = rng.choice(["NEWEST_FIRST", "OLDEST_FIRST", "DUE_SOONEST"])
            arguments.append(f"orderBy: {order}")
        if rng.random() < 0.1:
            arguments = arguments[1:]  # the default page
            self.declared.pop("first", None)
        if rng.random() < 0.15:
            arguments.append(f"filter: {self.variable('filter', 'IncidentFilterInput')}")
        elif rng.random() < 0.1:
            given = self.variable("statusFilter", "[IncidentStatus!]")
            rest = [part for part in self.filter() if not part.startswith("status:")]
            arguments.append(f"filter: {{ {', '.join([f'status: {given}', *rest])} }}")
        elif rng.random() < 0.3:
            arguments.append(f"filter: {{ {', '.join(self.filter())} }}")
        if rng.random() < 0.2:
            arguments.append(f"after: {self.variable('after', 'String')}")
        elif rng.random() < 0.2:
            # Most often a cursor of this ordering; now and then another's (refused).
            ordering = order if rng.random() < 0.8 else "OLDEST_FIRST"
            arguments.append(f'after: "{rng.choice(self.cursors[ordering])}"')
        extra = ""
        if rng.random() < 0.4:
            info = self.pick(["hasNextPage", "hasPreviousPage", "startCursor", "endCursor",
                              "__typename"])  # fmt: skip
            extra += f" {self.alias('pageInfo')} {{ {' '.join(info)} }}"
        if rng.random() < 0.2:
            extra += f" {self.alias('totalCount')}"
        if rng.random() < 0.03:
            extra += " pageInfo { hasNextPage } pageInfo { hasNextPage }"  # merged: resolvers
        edge = ["__typename"] if rng.random() < 0.1 else []
        if rng.random() < 0.3:
            edge.append(self.alias("cursor"))
        edges = f"edges {{ {' '.join(edge)} node {{ {self.incident()} }} }}"
        root = self.alias("incidents")
        one = ""
        if rng.random() < 0.3:
            # One incident by id too: a visible one, a missing one, another type's, garbage.
            if rng.random() < 0.3:
                given = self.variable("id", "ID!")
            else:
                given = f'"{rng.choice(self.ids)}"'
            one = f" {self.alias('incident')}(id: {given}) {{ {self.incident()} }}"
        called = f"({', '.join(arguments)})" if arguments else ""
        declared = ", ".join(f"${k}: {v}" for k, v in self.declared.items())
        head = f"query {name}({declared})" if declared else f"query {name}"
        return f"{head} {{ {root}{called} {{ {edges}{extra} }}{one} }}"

    def filter(self) -> list[str]:
        """A literal filter: the parts the planner compiles, and now and then one it leaves to
        the resolvers (overdue: the time of the request) or one they refuse (no time zone)."""
        rng = self.rng
        parts = []
        if rng.random() < 0.5:
            parts.append(f"status: [{', '.join(rng.sample(STATUSES, rng.randint(0, 3)))}]")
        if rng.random() < 0.3:
            parts.append(f"statusClass: [{rng.choice(['OPEN', 'FIXED', 'CLOSED'])}]")
        if rng.random() < 0.3:
            parts.append(f'category: ["{rng.choice(CATEGORIES)}"]')
        if rng.random() < 0.3:
            parts.append(f'bureauCode: ["{rng.choice(["PUBLIC_WORKS", "WATER_RESOURCES"])}"]')
        if rng.random() < 0.2:
            moment = rng.choice(["2026-01-01T00:00:00+08:00", "2026-11-01T00:00:00Z",
                                 "2026-11-01T00:00:00"])  # fmt: skip
            parts.append(f'{rng.choice(["reportedFrom", "reportedBefore"])}: "{moment}"')
        if rng.random() < 0.15:
            parts.append(f'search: "{rng.choice(SEARCHES)}"')
        if rng.random() < 0.05:
            parts.append("overdue: true")
        return parts or ["category: []"]

    def filter_value(self) -> dict[str, Any] | None:
        """A filter sent as a variable's value: what compiles, and now and then what stays on
        the resolvers (overdue), what they refuse (no time zone) or what does not coerce."""
        rng, value = self.rng, {}
        if rng.random() < 0.5:
            value["status"] = rng.sample(STATUSES, rng.randint(0, 3))
        if rng.random() < 0.3:
            value["statusClass"] = [rng.choice(["OPEN", "FIXED", "CLOSED"])]
        if rng.random() < 0.3:
            value["category"] = [rng.choice(CATEGORIES)]
        if rng.random() < 0.3:
            value["bureauCode"] = [rng.choice(["PUBLIC_WORKS", "WATER_RESOURCES"])]
        if rng.random() < 0.2:
            value[rng.choice(["reportedFrom", "reportedBefore"])] = rng.choice(
                ["2026-01-01T00:00:00+08:00", "2026-11-01T00:00:00Z", "2026-11-01T00:00:00"]
            )
        if rng.random() < 0.15:
            value["search"] = rng.choice(SEARCHES)
        if rng.random() < 0.05:
            value["overdue"] = True
        if rng.random() < 0.05:
            value["status"] = ["BOGUS"]
        return None if rng.random() < 0.1 else value

    def values(self, text: str) -> dict[str, Any] | None:
        """Variables for one request of ``text``: in range, out of range, of the wrong type,
        or missing."""
        rng, values = self.rng, {}
        choices: dict[str, list[Any]] = {
            "$first": [1, 5, 50, 100, 0, 101, "many", None],
            "$limit": [1, 3, 100, 0, 101],
            "$statuses": [[], ["OPEN"], ["OPEN", "COMPLETED"], ["CANCELLED"], ["BOGUS"]],
            "$filter": [self.filter_value() for _ in range(4)],
            "$statusFilter": [None, [], ["VERIFIED"], ["DETECTED", "CLOSED"], ["BOGUS"]],
            "$assetFilter": [
                None,
                {},
                {"kind": ["CAMERA"]},
                {"kind": ["DRAIN", "HYDRANT"]},
                {"bureau": ["bogus"]},
                {"kind": ["BOGUS"]},
            ],
            "$assetAfter": [None, "bogus", *self.rng.sample(self.cursors["CODE"], 2)],
            "$assetId": self.ids,
            "$id": self.ids,
            "$after": [
                None,
                "not-a-cursor",
                7,
                *self.rng.sample([c for cs in self.cursors.values() for c in cs], 4),
            ],
        }
        for variable, options in choices.items():
            if f"{variable}:" in text and rng.random() < 0.9:
                values[variable[1:]] = rng.choice(options)
        return values or None


async def sample_of(database: DatabaseUnderTest) -> tuple[dict[str, list[str]], list[str]]:
    """Cursors of some of the data's incidents, for each ordering, as the API writes them; and
    their ids, with ids of nothing, of another type and of no type."""
    owner = await asyncpg.connect(database.owner_url)
    try:
        rows = await owner.fetch(
            "SELECT id, reported_at, due_at FROM lighthouse.incident ORDER BY random() LIMIT 12"
        )
        assets = await owner.fetch(
            "SELECT id, code FROM lighthouse.asset ORDER BY random() LIMIT 8"
        )
    finally:
        await owner.close()
    cursors = {
        name: [encode_cursor(o, [row[c] for c in o.columns]) for row in rows]
        for name, o in INCIDENT_ORDERINGS.items()
    }
    by_code = ASSET_ORDERINGS["CODE"]
    cursors["CODE"] = [encode_cursor(by_code, [row[c] for c in by_code.columns]) for row in assets]
    ids = [encode_id("Incident", row["id"]) for row in rows]
    ids += [encode_id("Asset", row["id"]) for row in assets[:4]]
    return cursors, [*ids, encode_id("Incident", 10**9), encode_id("Asset", 10**9), "bogus"]


async def audit_of(database: DatabaseUnderTest, request_ids: list[str]) -> dict[str, Any]:
    owner = await asyncpg.connect(database.owner_url)
    try:
        rows = await owner.fetch(
            "SELECT request_id, category, operation, document_hash, decision, policy_ids,"
            " personal_data, array(SELECT unnest(resource_ids) ORDER BY 1) AS resources"
            " FROM lighthouse.audit_record WHERE request_id = ANY($1::text[])",
            request_ids,
        )
    finally:
        await owner.close()
    return {row["request_id"]: {k: v for k, v in row.items() if k != "request_id"} for row in rows}


async def test_the_board_compiles_to_one_statement_that_reads_what_the_resolvers_read() -> None:
    plan = planner().plan(BOARD, "Board")
    assert isinstance(plan, Plan), plan
    assert plan.sql.count("SELECT") >= 5 and plan.params == (50, 51, 3, ["OPEN"])
    assert [action for action, _ in plan.asked] == ["ListIncidents"]
    assert [action for action, _, _ in plan.guarded] == ["ListAssets"]
    reasons = {
        "query Q { incidents { edges { node { overdue } } } }": "Incident.overdue is computed",
        "query Q($o: IncidentOrder!) { incidents(orderBy: $o) { edges { node { id } } } }": (
            "orderBy given by a variable"
        ),
        "query Q($s: WorkOrderStatus!) { incidents { edges { node { workOrders(status: [$s]) "
        "{ id } } } } }": "a variable inside a list",
        'mutation M { registerDocuments(client: "x", documents: {}) { registered } }': "only queries",
        "query Q { incidents(last: 5) { pageInfo { hasNextPage } } }": "incidents(last)",
        'query Q { incidents(after: "bogus") { edges { node { id } } } }': "a cursor the resolver",
        "query Q { incidents(filter: {overdue: true}) { edges { node { id } } } }": "overdue",
        "query Q($s: [IncidentStatus!]) { incidents(filter: {status: $s}) { totalCount } }": (
            "a filter given by variables"
        ),
        'query Q { incidents(filter: {reportedFrom: "2026-01-01T00:00:00"}) { totalCount } }': (
            "a filter the resolver path refuses"
        ),
        "query Q { incidents(first: 500) { edges { node { id } } } }": "first out of range",
        "query Q { incidents { edges { node { id id } } } }": "asked twice",
        "query Q { incidents { edges { node { reporter { name } } } } }": "Incident.reporter",
        "query Q { bureaus { code } }": "Query.bureaus has no SQL mapping",
        'query Q { incident(id: "bogus") { title } }': "an id the resolver path refuses",
        "query Q { incidents { edges { node { id @include(if: true) } } } }": "directives",
    }
    # A variable's value is checked when a request sends it: a page size out of range goes to
    # the resolver path (which answers with the error), a missing one takes the default.
    paged = planner().plan(
        "query P($n: Int) { incidents(first: $n) { edges { node { id } } } }", None
    )
    assert isinstance(paged, Plan)
    assert paged.parameters({"n": 7}) == [7, 8] and paged.parameters({}) == [20, 21]
    with pytest.raises(NotCompiled, match="first out of range"):
        paged.parameters({"n": 101})
    filtered = planner().plan(
        'query F { incidents(filter: {status: [VERIFIED], bureauCode: ["PUBLIC_WORKS"]}) '
        "{ totalCount edges { node { id } } } }",
        None,
    )
    assert isinstance(filtered, Plan), filtered
    assert ["VERIFIED"] in filtered.params and ["PUBLIC_WORKS"] in filtered.params
    assert "status = ANY(" in filtered.sql and "WHERE (status = ANY(" in filtered.sql
    one = planner().plan(
        f'query One {{ incident(id: "{encode_id("Incident", 7)}") {{ title }} }}', None
    )
    assert isinstance(one, Plan) and one.params == (7,) and one.seen[0][0] == "Incident"
    # A filter given by variables compiles once their values are known (one plan per value).
    by_values = (
        "query V($s: [IncidentStatus!], $f: IncidentFilterInput) {"
        " a: incidents(filter: {status: $s}) { totalCount }"
        " b: incidents(filter: $f) { totalCount } }"
    )
    needs = planner().plan(by_values, None)
    assert isinstance(needs, NeedsValues) and needs.variables == ("s",), needs
    values = get_variable_values(
        planner()._schema._schema,
        needs.definitions,
        {"s": ["VERIFIED"], "f": {"bureauCode": ["PUBLIC_WORKS"], "statusClass": ["OPEN"]}},
    )
    assert isinstance(values, VariableValues)
    coerced = values.coerced
    more = planner().plan(by_values, None, {"s": coerced["s"]})
    assert isinstance(more, NeedsValues) and more.variables == ("f",), more
    both = planner().plan(by_values, None, coerced)
    assert isinstance(both, Plan), both
    assert ["VERIFIED"] in both.params and ["PUBLIC_WORKS"] in both.params
    overdue = planner().plan(by_values, None, {**coerced, "f": {"overdue": True}})
    assert isinstance(overdue, NotCompiled) and "overdue" in overdue.reason
    # The asset register: listed under ListAssets, and (as on the resolvers) not noted in the
    # audit record; a place-based filter stays on the resolvers.
    register = planner().plan(
        "query A { assets(first: 5, filter: {kind: [CAMERA]}) { totalCount"
        " edges { cursor node { id code bureau { code } } } } }",
        None,
    )
    assert isinstance(register, Plan), register
    assert register.params == (5, 6, ["CAMERA"]) and not register.seen
    assert [action for action, _ in register.asked] == ["ListAssets"]
    placed = planner().plan(
        "query P { assets(filter: {near: {point: {wgs84: {latitude: 22.6, longitude: 120.3}},"
        " radiusMeters: 300}}) { totalCount } }",
        None,
    )
    assert isinstance(placed, NotCompiled) and "near" in placed.reason, placed
    for text, reason in reasons.items():
        refused = planner().plan(text, None)
        assert isinstance(refused, NotCompiled) and reason in refused.reason, (text, refused)


def drawn(generator: Documents, plans: Planner, seed: int) -> tuple[dict[str, str], set[str]]:
    """``DOCUMENTS`` documents by id, the board first, and the ids of those the planner compiles
    (or compiles per value of the variables a filter is given by): at least half of them.

    About 60% of random documents compile, so a fixed draw of 60 now and then holds fewer than
    half; documents the planner leaves to the resolvers are drawn until half are, and no more.
    A planner that compiled far less than it does would run out of draws and fail."""
    texts: dict[str, str] = {}
    compiled: set[str] = set()
    for attempt in range(20 * DOCUMENTS):
        if len(texts) == DOCUMENTS:
            break
        text = BOARD if attempt == 0 else generator.document(f"D{len(texts)}")
        document_id = f"diff-{uuid.uuid4().hex[:10]}"
        if isinstance(plans.plan(text, None), Plan | NeedsValues):
            compiled.add(document_id)
        elif len(texts) - len(compiled) >= DOCUMENTS - DOCUMENTS // 2:
            continue
        texts[document_id] = text
    assert len(texts) == DOCUMENTS, f"seed {seed}: too few random documents compiled"
    return texts, compiled


async def test_compiled_and_resolved_answers_are_the_same_bytes_and_audit(
    database: DatabaseUnderTest,
    gateway: GatewayProcess,
    tokens: TokenFactory,
    clean: None,
    tmp_path: Path,
) -> None:
    seed = int(os.environ.get("LIGHTHOUSE_COMPILED_SEED") or random.randrange(2**32))
    rng = random.Random(seed)
    seeded = cli(database, gateway, "seed", "--assets", "40", "--incidents", "90",
                 "--random-seed", str(seed % 100_000), "--reset")  # fmt: skip
    assert seeded.returncode == 0, seeded.stderr
    generator = Documents(rng, *await sample_of(database))
    texts, compiled = drawn(generator, planner(), seed)
    registered = cli(database, gateway, "documents", "register", str(manifest(tmp_path, texts)),
                     "--client", "differential")  # fmt: skip
    assert registered.returncode == 0, registered.stderr

    principals = sorted(DEV_PRINCIPALS)
    pairs: list[tuple[str, str, str]] = []  # the compiled request, the resolved one, what
    # by_values, register: answered compiled, with a filter by variables, over the assets
    fast = sent = by_values = register = 0
    # The board is asked by every principal; each other document by a reader of the whole city
    # (whose requests the planner answers unless a field needs more than reading) and two drawn
    # from all, so that how many requests the compiled path answers does not hang on the draw.
    board_compiled: set[str] = set()
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
        for document_id, text in texts.items():
            others = [name for name in principals if name != CITY_READER]
            for name in (
                [CITY_READER, *rng.sample(others, 2)]
                if document_id != next(iter(texts))
                else principals
            ):
                headers = {"authorization": f"Bearer {tokens.named(name)}"}
                variables = generator.values(text)
                by_id = await http.post(
                    "/graphql",
                    json={"documentId": document_id, "variables": variables},
                    headers=headers,
                )
                by_text = await http.post(
                    "/graphql", json={"query": text, "variables": variables}, headers=headers
                )
                context = f"seed {seed}, {name}, {document_id}, {variables}:\n{text}"
                assert by_id.status_code == by_text.status_code, context
                assert by_id.content == by_text.content, context
                assert by_id.headers["content-type"] == by_text.headers["content-type"], context
                took = "compiled;" in by_id.headers.get("server-timing", "")
                assert not took or document_id in compiled, context
                assert "compiled;" not in by_text.headers.get("server-timing", ""), context
                fast, sent = fast + took, sent + 1
                if took and document_id == next(iter(texts)):
                    board_compiled.add(name)
                by_values += took and ("filter: $" in text or "status: $" in text)
                register += took and "assets" in text
                if took:
                    # (Two runs of the resolver path may audit different decisions when an
                    # error cuts sibling fields short: which loaders ran first is timing.)
                    pairs.append((by_id.headers["x-request-id"],
                                  by_text.headers["x-request-id"], context))  # fmt: skip
    # Every principal who may read the board's incidents, assets and work orders is answered
    # by its one statement; the others are refused by the resolvers, which audit the refusal.
    readers = {name for name, principal in DEV_PRINCIPALS.items() if _reads_the_board(principal)}
    assert board_compiled == readers, f"seed {seed}: the board compiled for {board_compiled}"
    assert fast >= sent // 4, f"seed {seed}: the compiled path answered only {fast} of {sent}"
    given_by_values = sum("filter: $" in t or "status: $" in t for t in texts.values())
    assert by_values > 0 or given_by_values < 4, f"seed {seed}: no filter by variables compiled"
    over_assets = sum("assets" in t for t in texts.values())
    assert register > 0 or over_assets < 4, f"seed {seed}: no asset register compiled"
    records = await audit_of(database, [p[0] for p in pairs] + [p[1] for p in pairs])
    for compiled_request, resolved_request, context in pairs:
        assert records[compiled_request] == records[resolved_request], context


async def test_the_plan_command_prints_the_statement_or_why_not(
    database: DatabaseUnderTest, gateway: GatewayProcess, tmp_path: Path
) -> None:
    board, overdue = f"plan-board-{uuid.uuid4().hex[:6]}", f"plan-overdue-{uuid.uuid4().hex[:6]}"
    paged = f"plan-paged-{uuid.uuid4().hex[:6]}"
    texts = {board: BOARD, overdue: "query Late { incidents { edges { node { overdue } } } }",
             paged: "query Paged($first: Int) { incidents(first: $first) { totalCount } }"}  # fmt: skip
    done = cli(database, gateway, "documents", "register", str(manifest(tmp_path, texts)),
               "--client", "plans")  # fmt: skip
    assert done.returncode == 0, done.stderr
    compiled = cli(database, gateway, "documents", "plan", board)
    assert compiled.returncode == 0, compiled.stderr
    first, statement = compiled.stdout.split("\n", 1)
    assert first == "Board\tcompiled\tone statement, parameters [50, 51, 3, ['OPEN']]"
    assert statement.startswith("WITH more2 AS (SELECT * FROM incident WHERE TRUE ORDER BY")
    # A parameter a request's variable gives is named by the variable, not as a Python object.
    by_variable = cli(database, gateway, "documents", "plan", paged)
    assert by_variable.returncode == 0, by_variable.stderr
    head = by_variable.stdout.split("\n", 1)[0]
    assert head.startswith("Paged\tcompiled\tone statement, parameters [") and "$first" in head
    assert "<function" not in by_variable.stdout and "Slot(" not in by_variable.stdout, head
    resolved = cli(database, gateway, "documents", "plan", overdue)
    assert resolved.stdout == "Late\tresolvers\tIncident.overdue is computed in Python\n"
    # A refused document is named by its id (which looks like markup to a terminal library).
    refused = cli(database, gateway, "documents", "register",
                  str(manifest(tmp_path, {"bad-one": "query Bad { nope }"})), "--client", "plans")  # fmt: skip
    assert refused.returncode == 2 and "documents[bad-one]: is not valid" in refused.stderr
    missing = cli(database, gateway, "documents", "plan", "no-such-document")
    assert missing.returncode == 1 and "no document is registered as no-such-document" in (
        missing.stderr
    )


def test_plans_per_value_are_kept_within_bounds() -> None:
    """One plan per distinct filter value, reused; a value too large to key a kept plan by is
    planned for its request alone, so what a caller sends never grows the plan memory."""
    settings = Settings()
    documents = CompiledDocuments(build_schema(settings, tuple(DOMAINS.values())), settings.graph)
    text = "query V($s: [IncidentStatus!]) { incidents(filter: {status: $s}) { totalCount } }"
    needs = documents.plan(text, None)
    assert isinstance(needs, NeedsValues)
    few = documents._coerced(needs.definitions, {"s": ["VERIFIED"]})
    small = documents.plan(text, None, few)
    assert isinstance(small, Plan) and documents.plan(text, None, few) is small
    kept = len(documents._plans)
    many = documents._coerced(needs.definitions, {"s": ["VERIFIED"] * (MAX_KEPT_VALUES // 4)})
    large = documents.plan(text, None, many)
    assert isinstance(large, Plan) and len(documents._plans) == kept
