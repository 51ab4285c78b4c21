"""Trusted documents: registered by a developer from a manifest (checked once, all or nothing,
never changed), run by ``documentId`` or by the automatic persisted queries' hash, and — on a
gateway that takes registered documents only — nothing else."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.auth.principal import Principal, PrincipalKind
from tests.auth.test_oauth_server import cli
from tests.conftest import gateway_env
from tests.support import DatabaseUnderTest, GatewayProcess, GraphQLClient

pytestmark = pytest.mark.db

BUREAUS = "query TrustedBureaus { bureaus { code } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def manifest(tmp_path: Path, documents: dict[str, str]) -> Path:
    path = tmp_path / f"manifest-{uuid.uuid4().hex[:6]}.json"
    path.write_text(json.dumps(documents))
    return path


async def post(gateway_url: str, token: str, body: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=gateway_url) as http:
        return await http.post("/graphql", json=body, headers={"authorization": f"Bearer {token}"})


async def registered(database: DatabaseUnderTest, ids: list[str]) -> dict[str, str]:
    owner = await asyncpg.connect(database.owner_url)
    try:
        rows = await owner.fetch(
            "SELECT id, document FROM lighthouse.trusted_document WHERE id = ANY($1::text[])", ids
        )
    finally:
        await owner.close()
    return {row["id"]: row["document"] for row in rows}


async def test_a_registered_document_runs_by_its_id_and_by_its_hash(
    database: DatabaseUnderTest,
    gateway: GatewayProcess,
    client: GraphQLClient,
    tmp_path: Path,
    owner: asyncpg.Connection,
) -> None:
    named = f"pwb-board-{uuid.uuid4().hex[:8]}"
    hashed = "query TrustedCategories { categories { code } }"
    documents = {named: BUREAUS, sha(hashed): hashed}
    done = cli(database, gateway, "documents", "register", str(manifest(tmp_path, documents)),
               "--client", "pwb-board")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 document(s) registered" in done.stderr
    # Audited with each document as a resource of its own, in the one canonical form.
    recorded = await owner.fetchval(
        "SELECT resource_ids FROM audit_record WHERE $1 = ANY(resource_ids) ORDER BY seq DESC"
        " LIMIT 1",
        f"Document:{named}",
    )
    assert sorted(recorded) == sorted([f"Document:{named}", f"Document:{sha(hashed)}"])
    assert client.token is not None
    by_text = (await post(gateway.base_url, client.token, {"query": BUREAUS})).json()
    by_id = await post(gateway.base_url, client.token, {"documentId": named})
    assert by_id.status_code == 200 and by_id.json() == by_text
    assert by_text["data"]["bureaus"]
    by_prefixed = await post(
        gateway.base_url, client.token, {"documentId": f"sha256:{sha(hashed)}"}
    )
    apq = await post(gateway.base_url, client.token, {"extensions": {
        "persistedQuery": {"version": 1, "sha256Hash": sha(hashed)}}})  # fmt: skip
    assert by_prefixed.json() == apq.json() and apq.json()["data"]["categories"]

    # Apollo's manifest (generate-persisted-query-manifest): its ids are the bodies' hashes,
    # which its persisted-query link sends.
    apollo_text = "query TrustedByApollo { bureaus { nameEn } }"
    apollo = tmp_path / "persisted-query-manifest.json"
    apollo.write_text(json.dumps({"format": "apollo-persisted-query-manifest", "version": 1,
        "operations": [{"id": sha(apollo_text), "name": "TrustedByApollo", "type": "query",
                        "body": apollo_text}]}))  # fmt: skip
    done = cli(database, gateway, "documents", "register", str(apollo), "--client", "apollo")
    assert done.returncode == 0 and "1 document(s) registered" in done.stderr, done.stderr
    apq = await post(gateway.base_url, client.token, {"extensions": {
        "persistedQuery": {"version": 1, "sha256Hash": sha(apollo_text)}}})  # fmt: skip
    assert apq.json()["data"]["bureaus"][0]["nameEn"], apq.text
    assert await registered(database, [sha(apollo_text)]) == {sha(apollo_text): apollo_text}

    # Registering the same manifest again changes nothing; the listing shows them.
    again = cli(database, gateway, "documents", "register", str(manifest(tmp_path, documents)),
                "--client", "pwb-board")  # fmt: skip
    assert again.returncode == 0 and "0 document(s) registered, 2 already were" in again.stderr
    listed = cli(database, gateway, "documents", "list", "--client", "pwb-board")
    assert listed.returncode == 0
    rows = {line.split("\t")[0]: line.split("\t") for line in listed.stdout.splitlines()[1:]}
    assert rows[named][1:3] == ["pwb-board", "TrustedBureaus"]
    assert rows[named][3].startswith("cli:")
    as_json = cli(database, gateway, "documents", "list", "--client", "pwb-board", "--json")
    assert as_json.returncode == 0, as_json.stderr
    entries = {entry["id"]: entry for entry in json.loads(as_json.stdout)}
    assert entries[named]["operations"] == ["TrustedBureaus"]
    assert datetime.fromisoformat(entries[named]["registered_at"])


async def test_an_unknown_id_asks_for_the_text_as_automatic_persisted_queries_expect(
    gateway: GatewayProcess, client: GraphQLClient
) -> None:
    assert client.token is not None
    text = "query NotRegisteredYet { bureaus { id } }"
    hashed = {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}
    missing = await post(gateway.base_url, client.token, {"extensions": hashed})
    assert missing.status_code == 400
    error = missing.json()["errors"][0]
    assert error["message"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    # The client sends the text with its hash next: it runs (this gateway takes any document).
    sent = await post(gateway.base_url, client.token, {"query": text, "extensions": hashed})
    assert sent.status_code == 200 and sent.json()["data"]["bureaus"]
    # A hash that is not the text's is refused.
    wrong = {"persistedQuery": {"version": 1, "sha256Hash": sha("something else")}}
    refused = await post(gateway.base_url, client.token, {"query": text, "extensions": wrong})
    assert refused.status_code == 400 and "SHA-256" in refused.json()["errors"][0]["message"]
    for bad in ({"documentId": ""}, {"documentId": 7}, {"extensions": {"persistedQuery": {}}}):
        answer = await post(gateway.base_url, client.token, bad)
        assert answer.status_code == 400, bad


@pytest.mark.parametrize(
    ("document_id", "text", "problem"),
    [
        ("bad-field", "query BadField { bureaus { nonsense } }", "not valid against the schema"),
        ("unnamed", "{ bureaus { code } }", "must be named"),
        ("syntax", "query Broken { bureaus { code }", "does not parse"),
        ("aliases", "query Many { " + " ".join(f"a{n}: bureaus {{ code }}" for n in range(40))
         + " }", "not valid against the schema"),
        (sha("query Other { bureaus { code } }"), BUREAUS, "not the document's"),
        ("white space", BUREAUS, "an id is"),
    ],
    ids=["unknown-field", "unnamed", "syntax", "too-many-aliases", "hash-mismatch", "bad-id"],
)  # fmt: skip
async def test_a_manifest_with_a_bad_document_registers_nothing(
    database: DatabaseUnderTest,
    gateway: GatewayProcess,
    tmp_path: Path,
    document_id: str,
    text: str,
    problem: str,
) -> None:
    good = f"good-{uuid.uuid4().hex[:8]}"
    path = manifest(tmp_path, {good: BUREAUS, document_id: text})
    done = cli(database, gateway, "documents", "register", str(path), "--client", "web")
    assert done.returncode == 2, done.stderr
    said = " ".join(done.stderr.split())
    assert problem in said and "nothing was registered" in said
    assert await registered(database, [good, document_id]) == {}


async def test_a_registered_id_never_names_another_text(
    database: DatabaseUnderTest, gateway: GatewayProcess, tmp_path: Path
) -> None:
    named = f"fixed-{uuid.uuid4().hex[:8]}"
    first = cli(database, gateway, "documents", "register",
                str(manifest(tmp_path, {named: BUREAUS})), "--client", "web")  # fmt: skip
    assert first.returncode == 0, first.stderr
    other = "query TrustedOther { categories { code } }"
    second = cli(database, gateway, "documents", "register",
                 str(manifest(tmp_path, {named: other})), "--client", "web")  # fmt: skip
    assert second.returncode == 2 and "never change" in " ".join(second.stderr.split())
    assert await registered(database, [named]) == {named: BUREAUS}
    # Not even the owner's role edits one: the table is append-only.
    owner = await asyncpg.connect(database.owner_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await owner.execute(
                "UPDATE lighthouse.trusted_document SET document = $1 WHERE id = $2", other, named
            )
    finally:
        await owner.close()


async def test_only_developers_register_documents(database: DatabaseUnderTest) -> None:
    """Row-level security says what the policy says: a developer inserts under its own name;
    nobody else, and not under another's name."""
    developer = Principal("dev-1", PrincipalKind.STAFF, roles=frozenset({"developer"}))
    dispatcher = Principal("disp-1", PrincipalKind.STAFF, roles=frozenset({"dispatcher"}))
    connection = await asyncpg.connect(database.app_url)
    try:
        for principal, registered_by, allowed in (
            (developer, "dev-1", True),
            (developer, "someone-else", False),
            (dispatcher, "disp-1", False),
        ):
            async with connection.transaction():
                identity = principal.database_settings()
                await connection.execute(
                    "SELECT set_config(n, v, true) FROM unnest($1::text[], $2::text[]) AS s(n, v)",
                    list(identity), list(identity.values()),
                )  # fmt: skip
                insert = connection.execute(
                    "INSERT INTO lighthouse.trusted_document (id, sha256, client, document,"
                    " operation_names, registered_by) VALUES ($1, $2, 'web', $3, '{TrustedBureaus}', $4)",
                    f"rls-{uuid.uuid4().hex[:8]}", sha(BUREAUS), BUREAUS, registered_by,
                )  # fmt: skip
                if allowed:
                    await insert
                else:
                    with pytest.raises(asyncpg.InsufficientPrivilegeError):
                        await insert
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def trusted_only(
    database: DatabaseUnderTest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    process = GatewayProcess({}, tmp_path_factory.mktemp("trusted-only") / "gateway.log")
    process.configure(gateway_env(database, issuer=process.base_url))
    process.configure({"LIGHTHOUSE_TRUSTED_DOCUMENTS_ONLY": "true"})
    process.start()
    yield process
    process.stop()


async def test_a_gateway_that_takes_registered_documents_only_refuses_any_other(
    database: DatabaseUnderTest, gateway: GatewayProcess, trusted_only: GatewayProcess,
    tmp_path: Path,
) -> None:  # fmt: skip
    from tests.tokens import TokenFactory

    named = f"only-{uuid.uuid4().hex[:8]}"
    done = cli(database, gateway, "documents", "register",
               str(manifest(tmp_path, {named: BUREAUS})), "--client", "web")  # fmt: skip
    assert done.returncode == 0, done.stderr
    token = TokenFactory(database.owner_url, trusted_only.base_url).named("pwb-supervisor")
    by_id = await post(trusted_only.base_url, token, {"documentId": named})
    assert by_id.status_code == 200 and by_id.json()["data"]["bureaus"]
    # Its text, sent whole, is a registered document too.
    by_text = await post(trusted_only.base_url, token, {"query": BUREAUS})
    assert by_text.status_code == 200 and by_text.json() == by_id.json()
    other = await post(trusted_only.base_url, token, {"query": "query Adhoc { bureaus { id } }"})
    assert other.status_code == 400
    assert other.json()["errors"][0]["extensions"]["code"] == "TRUSTED_DOCUMENT_REQUIRED"


REGISTER = """
mutation Register($client: String!, $documents: [DocumentInput!]!) {
  registerDocuments(client: $client, documents: $documents) {
    __typename
    ... on DocumentRegistration { registered unchanged }
    ... on Error { code message }
  }
}"""


async def test_developers_register_documents_through_the_graph_and_nobody_else_does(
    database: DatabaseUnderTest, gateway: GatewayProcess, tokens: Any, client: GraphQLClient
) -> None:
    developer = tokens.custom(
        subject="dev-graph", kind="staff", scopes=[], bureau="PUBLIC_WORKS", roles=["developer"]
    )
    named = f"graph-{uuid.uuid4().hex[:8]}"
    documents = [{"id": named, "document": BUREAUS}]
    variables = {"client": "pwb-board", "documents": documents}
    answer = await post(gateway.base_url, developer, {"query": REGISTER, "variables": variables})
    result = answer.json()["data"]["registerDocuments"]
    assert result == {"__typename": "DocumentRegistration", "registered": [named], "unchanged": []}
    again = await post(gateway.base_url, developer, {"query": REGISTER, "variables": variables})
    assert again.json()["data"]["registerDocuments"]["unchanged"] == [named]

    # A wrong document among good ones: a typed error, nothing registered.
    fresh = f"graph-{uuid.uuid4().hex[:8]}"
    mixed = {"client": "pwb-board", "documents": [
        {"id": fresh, "document": BUREAUS}, {"id": "broken", "document": "{ bureaus { code } }"}]}  # fmt: skip
    refused = await post(gateway.base_url, developer, {"query": REGISTER, "variables": mixed})
    error = refused.json()["data"]["registerDocuments"]
    assert error["__typename"] == "InvalidInput" and "must be named" in error["message"]
    assert await registered(database, [fresh]) == {}

    # A dispatcher is refused by the policies, with nothing registered.
    assert client.token is not None
    other = {"client": "pwb-board", "documents": [{"id": fresh, "document": BUREAUS}]}
    forbidden = await post(gateway.base_url, client.token, {"query": REGISTER, "variables": other})
    assert forbidden.json()["data"]["registerDocuments"]["__typename"] == "Forbidden"
    assert await registered(database, [fresh]) == {}


async def test_registered_documents_run_by_get_as_persisted_query_links_send_them(
    database: DatabaseUnderTest, gateway: GatewayProcess, client: GraphQLClient, tmp_path: Path
) -> None:
    """urql's persistedExchange and Apollo Client's persisted-query link send registered queries
    by GET: ``documentId``, or the hash in ``extensions``, with the variables as JSON."""
    text = "query ByGet($code: String!) { bureau(code: $code) { code nameEn } }"
    named = f"get-{uuid.uuid4().hex[:8]}"
    change = (
        "mutation ByGetNever($input: ShareIncidentInput!)"
        " { shareIncident(input: $input) { __typename } }"
    )
    done = cli(database, gateway, "documents", "register",
               str(manifest(tmp_path, {named: text, f"{named}-m": change,
                                       f"{named}-board": "query ByGetBoard {"
                                       " incidents(first: 3) { totalCount } }"})),
               "--client", "get")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert client.token is not None
    headers = {"authorization": f"Bearer {client.token}",
               "accept": "application/graphql-response+json, application/json"}  # fmt: skip
    variables = json.dumps({"code": "POLICE"})
    posted = await post(
        gateway.base_url, client.token, {"documentId": named, "variables": {"code": "POLICE"}}
    )
    assert posted.json()["data"]["bureau"]["code"] == "POLICE", posted.text
    persisted = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha(text)}})
    async with httpx.AsyncClient(base_url=gateway.base_url, timeout=30) as http:
        for params in (
            {"documentId": named, "variables": variables},
            {"documentId": f"sha256:{sha(text)}", "variables": variables,
             "operationName": "ByGet"},
            {"extensions": persisted, "variables": variables, "operationName": "ByGet"},
        ):  # fmt: skip
            answer = await http.get("/graphql", params=params, headers=headers)
            assert answer.status_code == 200, (params, answer.text)
            assert answer.json() == posted.json(), params
        # fetch() accepts anything (*/*): still the document's answer, not GraphiQL's page.
        anything = await http.get("/graphql", params={"documentId": named, "variables": variables},
                                  headers={**headers, "accept": "*/*"})  # fmt: skip
        assert anything.json() == posted.json(), anything.text
        # A registered mutation is never run by GET (a link or an <img> could send it).
        by_get = await http.get("/graphql", params={"documentId": f"{named}-m"}, headers=headers)
        assert by_get.status_code in (400, 405) and "GET" in by_get.text, by_get.text
        # Without a token, a registered query that needs one is told to sign in, by GET and
        # by POST (where the compiled statement would otherwise answer it).
        for anonymous in (
            http.get("/graphql", params={"documentId": f"{named}-board"}),
            http.post("/graphql", json={"documentId": f"{named}-board"}),
        ):
            refused = await anonymous
            assert refused.status_code == 401, refused.text
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        # What is not registered asks for the text, as the persisted-queries protocol expects.
        unknown = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha("nothing")}})
        for params in ({"documentId": "never-registered"}, {"extensions": unknown}):
            missing = await http.get("/graphql", params=params, headers=headers)
            assert missing.status_code == 400, (params, missing.text)
            assert missing.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        for params in ({"documentId": ""}, {"extensions": '{"persistedQuery": {}}'}):
            refused = await http.get("/graphql", params=params, headers=headers)
            assert refused.status_code == 400, (params, refused.text)
