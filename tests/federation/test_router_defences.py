"""A federation router refuses what the unified gateway refuses, and tells no more than it does.

The gateway's own abuse cases (tests/http/test_abuse.py, tests/http/test_hardening.py,
tests/graph/test_bad_input.py, tests/auth/test_token_rejections.py) are sent through Hive Gateway
and Apollo Gateway, each configured as the city runs them (federation/gateway.config.mjs,
federation/apollo-gateway.mjs): refused, with a code, and nothing of the routers' insides — not
their files, not the subgraphs' addresses, not the schema. A document too large for the gateway
is refused before any work, so a legitimate caller does not wait behind it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from api.settings import GraphSettings, HttpSettings
from tests.federation.conftest import HIVE, REGISTERED, TOOLS, RouterProcess
from tests.federation.test_routers import CORPUS
from tests.support import GatewayProcess, free_port
from tests.tokens import TokenFactory

DEPTH = GraphSettings.model_fields["max_query_depth"].default
ALIASES = GraphSettings.model_fields["max_aliases"].default
TOKENS = GraphSettings.model_fields["max_tokens"].default
DOCUMENT_BYTES = GraphSettings.model_fields["max_document_bytes"].default
BODY_BYTES = HttpSettings.model_fields["max_body_bytes"].default
# What no answer may carry: the routers' stack traces and files, the subgraphs' addresses, the
# exchange with them, or which subgraph answered.
INTERNALS = (
    "stacktrace", "node_modules", "/work/", ".js:", "127.0.0.1", "http://", "ECONNREFUSED",
    '"response"', "serviceName", "Did you mean",
)  # fmt: skip


def deep(levels: int) -> str:
    """A query across the models and incidents subgraphs (detection → incident → detections →
    …) whose deepest field is ``levels`` below the top-level one, as the gateway counts."""
    chain = ["detections(first: 1)", "edges", "node"]
    while len(chain) < levels:
        chain.append("incident" if chain[-1] in ("node", "detections") else "detections")
    return "{ " + " { ".join(chain) + " { id" + " }" * len(chain) + " }"


def aliased(count: int) -> str:
    """``count`` aliased fields spread over the bureaus, assets and incidents subgraphs: no
    subgraph sees enough of them to refuse the document, only the router can."""
    fields = [
        "bureaus { code }",
        "assets(first: 1) { totalCount }",
        "incidents(first: 1) { totalCount }",
    ]
    return "{ " + " ".join(f"a{n}: {fields[n % 3]}" for n in range(count)) + " }"


def tokens_long(count: int) -> dict[str, Any]:
    """A request whose document has exactly ``count`` tokens, most of them in an operation it
    does not run (a list of enum values, one token each): a router sends none of them to a
    subgraph, so only the router can refuse the document."""
    statuses = " ".join(["VERIFIED"] * (count - 29))
    document = (
        "query A { bureaus { code } } "
        f"query B {{ incidents(first: 1, filter: {{status: [{statuses}]}}) {{ totalCount }} }}"
    )
    return {"query": document, "operationName": "A"}


# name → (the request, the refusal's words, or None: answered).
LIMITS = {
    "depth at the limit": ({"query": deep(DEPTH)}, None),
    "depth over the limit": (
        {"query": deep(DEPTH + 1)},
        f"exceeds maximum operation depth of {DEPTH}",
    ),
    "depth 12": ({"query": deep(12)}, f"exceeds maximum operation depth of {DEPTH}"),
    "aliases at the limit": ({"query": aliased(ALIASES)}, None),
    "aliases over the limit": (
        {"query": aliased(ALIASES + 1)},
        f"aliases found. Allowed: {ALIASES}",
    ),
    "75 aliases": ({"query": aliased(75)}, f"75 aliases found. Allowed: {ALIASES}"),
    "tokens at the limit": (tokens_long(TOKENS), None),
    "tokens over the limit": (tokens_long(TOKENS + 1), "token"),
    "2,500 tokens": (tokens_long(2_500), "token"),
}


def post(
    url: str, body: dict[str, Any], token: str | None = None, **headers: str
) -> httpx.Response:
    if token:
        headers["authorization"] = f"Bearer {token}"
    return httpx.post(url, json=body, headers=headers, timeout=60)


def assert_refused(answer: httpx.Response, codes: set[str], context: str) -> dict[str, Any]:
    """Refused as a whole, with a code, naming nothing inside; the first error."""
    body = answer.json()
    assert not body.get("data"), (context, body)
    assert body["errors"], (context, body)
    assert {error["extensions"]["code"] for error in body["errors"]} <= codes, (context, body)
    assert_no_internals(answer, context)
    first: dict[str, Any] = body["errors"][0]
    return first


def assert_no_internals(answer: httpx.Response, context: str) -> None:
    leaked = [word for word in INTERNALS if word in answer.text]
    assert not leaked, (context, leaked, answer.text[:2000])


def test_the_routers_limits_are_the_gateways_defaults() -> None:
    """federation/hardening.mjs reads the gateway's variables with the gateway's defaults."""
    script = "import('./hardening.mjs').then((m) => console.log(JSON.stringify(m.readLimits({}))))"
    out = subprocess.run(
        ["node", "--input-type=module", "-e", script], cwd=TOOLS, check=True,
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert json.loads(out) == {
        "maxQueryDepth": DEPTH,
        "maxAliases": ALIASES,
        "maxTokens": TOKENS,
        "maxDocumentBytes": DOCUMENT_BYTES,
        "maxBodyBytes": BODY_BYTES,
    }


@pytest.mark.parametrize("case", list(LIMITS))
def test_each_router_keeps_the_gateways_document_limits(
    routers: list[RouterProcess], gateway: GatewayProcess, tokens: TokenFactory, case: str
) -> None:
    request, refusal = LIMITS[case]
    token = tokens.named("city-viewer")
    unified = post(f"{gateway.base_url}/graphql", request, token)
    for router in routers:
        routed = post(router.url, request, token)
        context = f"{case} through {router.name}"
        if refusal is None:
            assert "errors" not in unified.json(), unified.text
            assert routed.json() == unified.json(), context
            continue
        assert_refused(unified, {"GRAPHQL_VALIDATION_FAILED"}, "the gateway")
        error = assert_refused(
            routed, {"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"}, context
        )
        message = error["message"].lower() if refusal == "token" else error["message"]
        assert refusal in message, (context, error)


@pytest.mark.parametrize(
    "query",
    ["{ __schema { types { name } } }", '{ __type(name: "Reporter") { fields { name } } }'],
)
def test_the_schema_is_not_introspected_through_a_router(
    routers: list[RouterProcess], tokens: TokenFactory, query: str
) -> None:
    for token in (None, tokens.named("pwb-supervisor")):
        for router in routers:
            answer = post(router.url, {"query": query}, token)
            error = assert_refused(answer, {"GRAPHQL_VALIDATION_FAILED"}, router.name)
            assert "introspection" in error["message"].lower(), error


def test_validation_errors_suggest_no_names(routers: list[RouterProcess]) -> None:
    for typo in ("{ incidnts }", "{ incidents(first: 1) { edges { node { titel } } } }"):
        for router in routers:
            answer = post(router.url, {"query": typo})
            error = assert_refused(answer, {"GRAPHQL_VALIDATION_FAILED"}, router.name)
            assert "Cannot query field" in error["message"], error
            assert "incidents" not in error["message"] and "title" not in error["message"], error


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def _bad_token(tokens: TokenFactory, kind: str) -> str:
    if kind == "garbage":
        return "garbage"
    if kind == "expired":
        now = int(time.time())
        return tokens.signed(tokens.valid_claims(exp=now - 120, iat=now - 900))
    # forged: a real token's signature over claims it was not made for
    header, _, signature = tokens.signed(tokens.valid_claims()).split(".")
    forged = _b64(tokens.valid_claims(scope="incidents:read audit:read pii:read", kind="auditor"))
    return f"{header}.{forged}.{signature}"


@pytest.mark.parametrize("kind", ["garbage", "forged", "expired"])
def test_a_bad_token_is_refused_as_the_gateway_refuses_it(
    routers: list[RouterProcess], gateway: GatewayProcess, tokens: TokenFactory, kind: str
) -> None:
    token = _bad_token(tokens, kind)
    unified = post(f"{gateway.base_url}/graphql", {"query": CORPUS["Board"]}, token)
    assert unified.status_code == 401
    reason = unified.json()["errors"][0]["message"]
    for router in routers:
        answer = post(router.url, {"query": CORPUS["Board"]}, token)
        context = f"a {kind} token through {router.name}"
        error = assert_refused(answer, {"UNAUTHENTICATED"}, context)
        assert error["message"] == reason, (context, error)
        assert answer.status_code == 401, (context, answer.status_code)
        assert 'error="invalid_token"' in answer.headers["www-authenticate"], context


def test_a_subgraphs_rate_limit_reaches_the_caller_as_its_refusal(
    routers: list[RouterProcess], tokens: TokenFactory
) -> None:
    """The documents subgraph throttles the routers' address after one refused request a minute
    (conftest.THROTTLED): its 429 is passed on as RATE_LIMITED with its retry hint, not as the
    router's internal error."""
    mutation = {"query": REGISTERED["router-register"]}
    token = _bad_token(tokens, "forged")
    for router in routers:
        limited = None
        for _ in range(5):
            answer = post(router.url, mutation, token)
            error = assert_refused(answer, {"UNAUTHENTICATED", "RATE_LIMITED"}, router.name)
            if error["extensions"]["code"] == "RATE_LIMITED":
                limited = answer
                break
        assert limited is not None, f"{router.name}: the subgraph's 429 never came through"
        error = limited.json()["errors"][0]
        assert isinstance(error["extensions"]["retryAfter"], int), error
        assert error["extensions"]["retryAfter"] > 0, error
        assert limited.status_code == 429, router.name
        assert int(limited.headers["retry-after"]) > 0, router.name


def test_subscriptions_are_refused_at_the_router_and_sent_to_the_gateway(
    routers: list[RouterProcess], tokens: TokenFactory
) -> None:
    subscription = {"query": "subscription { incidentChanged { incident { title } } }"}
    token = tokens.named("city-viewer")
    for router in routers:
        error = assert_refused(
            post(router.url, subscription, token), {"SUBSCRIPTIONS_NOT_ROUTED"}, router.name
        )
        assert "gateway" in error["message"], error
    # Over server-sent events, Hive Gateway's other transport for them, the same refusal.
    hive = routers[0]
    with httpx.stream(
        "POST", hive.url, json=subscription, timeout=10,
        headers={"authorization": f"Bearer {token}", "accept": "text/event-stream"},
    ) as stream:  # fmt: skip
        events = "".join(stream.iter_text())
    assert "SUBSCRIPTIONS_NOT_ROUTED" in events and "incidentChanged" not in events, events
    # And Hive Gateway serves no WebSocket.
    with socket.create_connection(("127.0.0.1", hive.port), timeout=10) as raw:
        raw.sendall(
            b"GET /graphql HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n"
        )
        assert not raw.recv(4096).startswith(b"HTTP/1.1 101")


def test_a_document_over_the_size_limit_is_refused_before_parsing(
    routers: list[RouterProcess], gateway: GatewayProcess
) -> None:
    padded = "{ bureaus { code } }\n#" + "x" * DOCUMENT_BYTES
    fits = "{ bureaus { code } }\n#" + "x" * (DOCUMENT_BYTES - 100)
    for url in (f"{gateway.base_url}/graphql", *(router.url for router in routers)):
        answer = post(url, {"query": padded})
        assert answer.status_code == 413, (url, answer.text)
        assert_refused(answer, {"DOCUMENT_TOO_LARGE"}, url)
        assert post(url, {"query": fits}).status_code == 200, url


def test_a_body_over_the_limit_is_refused_unread_and_as_it_arrives(
    routers: list[RouterProcess],
) -> None:
    for router in routers:
        with socket.create_connection(("127.0.0.1", router.port), timeout=10) as raw:
            raw.sendall(
                b"POST /graphql HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {2 * BODY_BYTES}\r\n\r\n".encode()
                + b'{"query": "'
            )
            # Answered without the rest ever being sent.
            assert raw.recv(4096).startswith(b"HTTP/1.1 413"), router.name

        def chunks() -> Iterator[bytes]:
            yield b'{"query": "'
            for _ in range(BODY_BYTES // 65536 + 1):
                yield b"x" * 65536
            yield b'"}'

        answer = httpx.post(
            router.url, content=chunks(), headers={"content-type": "application/json"}, timeout=60
        )
        assert answer.status_code == 413, router.name
        assert_refused(answer, {"PAYLOAD_TOO_LARGE"}, router.name)


@pytest.mark.parametrize(
    ("content_type", "content"),
    [
        ("application/x-www-form-urlencoded", b"query=%7B%20me%20%7B%20subject%20%7D%20%7D"),
        ("text/plain", b'{"query": "{ me { subject } }"}'),
    ],
)
def test_a_form_post_is_refused(
    routers: list[RouterProcess], tokens: TokenFactory, content_type: str, content: bytes
) -> None:
    """Cross-site request forgery: what a browser's form can send without asking first."""
    for router in routers:
        answer = httpx.post(
            router.url, content=content, timeout=10,
            headers={"content-type": content_type,
                     "authorization": f"Bearer {tokens.named('pwb-supervisor')}"},
        )  # fmt: skip
        assert answer.status_code in (403, 415), (router.name, answer.text)
        assert '"data"' not in answer.text, router.name


def _timed(url: str, answers: dict[str, tuple[int, float]], name: str, **request: Any) -> None:
    started = time.monotonic()
    answer = httpx.post(url, timeout=300, **request)
    answers[name] = (answer.status_code, time.monotonic() - started)


def test_a_legitimate_query_is_answered_while_an_oversized_document_is_handled(
    routers: list[RouterProcess], tokens: TokenFactory
) -> None:
    """An anonymous caller's document over the gateway's limits costs the router nothing: 214
    KiB repeating one field 20,000 times, and a 2 MB one, are refused at once, and a small query
    sent just after them is answered in well under a second."""
    repeated = "{ bureaus {" + " __typename" * 20_000 + " } }"
    huge = orjson.dumps({"query": "{ bureaus {" + " __typename" * 200_000 + " } }"})
    token = tokens.named("city-viewer")
    for router in routers:
        answers: dict[str, tuple[int, float]] = {}
        abusers = [
            threading.Thread(
                target=_timed, args=(router.url, answers, "repeated"),
                kwargs={"json": {"query": repeated}},
            ),
            threading.Thread(
                target=_timed, args=(router.url, answers, "huge"),
                kwargs={"content": huge, "headers": {"content-type": "application/json"}},
            ),
        ]  # fmt: skip
        for abuser in abusers:
            abuser.start()
        time.sleep(0.1)
        _timed(
            router.url, answers, "legitimate", json={"query": "{ bureaus { code } }"},
            headers={"authorization": f"Bearer {token}"},
        )  # fmt: skip
        for abuser in abusers:
            abuser.join(300)
        status, seconds = answers["legitimate"]
        assert status == 200 and seconds < 1, (router.name, answers)
        assert answers["repeated"][0] == 413 and answers["huge"][0] == 413, (router.name, answers)


def test_a_router_running_registered_documents_only(
    strict_routers: list[RouterProcess], tokens: TokenFactory
) -> None:
    """With LIGHTHOUSE_TRUSTED_DOCUMENTS_ONLY, a router runs the registered documents (by id, by
    hash, or as their exact text) and refuses any other, as the gateway does."""
    token = tokens.named("city-viewer")
    text = REGISTERED["router-bureaus"]
    digest = hashlib.sha256(text.encode()).hexdigest()
    for router in strict_routers:
        for body in (
            {"documentId": "router-bureaus"},
            {"extensions": {"documentId": "router-bureaus"}},
            {"extensions": {"persistedQuery": {"version": 1, "sha256Hash": digest}}},
            {"query": text},
        ):
            answer = post(router.url, body, token)
            assert answer.status_code == 200 and answer.json()["data"]["bureaus"], (body, answer)
        other = post(router.url, {"query": "{ bureaus { code nameEn } }"}, token)
        assert other.status_code == 400, router.name
        assert_refused(other, {"TRUSTED_DOCUMENT_REQUIRED"}, router.name)
        unknown = post(router.url, {"documentId": "not-registered"}, token)
        assert unknown.status_code == 400, router.name
        assert_refused(unknown, {"PERSISTED_QUERY_NOT_FOUND"}, router.name)


def test_a_subgraph_the_router_cannot_reach_is_an_internal_error_with_a_request_id(
    strict_routers: list[RouterProcess], tokens: TokenFactory
) -> None:
    """Nothing listens where the strict routers look for the documents subgraph: the caller
    learns the request id to quote, not the address or the router's stack."""
    for router in strict_routers:
        answer = post(router.url, {"documentId": "router-register"}, tokens.named("city-viewer"))
        error = assert_refused(answer, {"INTERNAL_ERROR"}, router.name)
        request_id = answer.headers["x-request-id"]
        assert error["extensions"]["requestId"] == request_id, (router.name, error)
        assert request_id in error["message"], error
        # The router's log has what the caller was not told.
        assert request_id in router.log_path.read_text(), router.name


@pytest.mark.parametrize("variable", ["APOLLO_KEY", "HIVE_REGISTRY_TOKEN", "HIVE_CDN_KEY"])
def test_a_router_told_to_report_to_a_vendor_does_not_start(
    bare_supergraph: Path, variable: str
) -> None:
    """Usage reporting, tracing and fetching the supergraph from a vendor's cloud are switched
    on by these variables; the city's routers call nothing outside, so they refuse to start."""
    env = {**os.environ, "NODE_NO_WARNINGS": "1", variable: "x"}
    port = str(free_port())
    for command in (
        ["node", str(TOOLS / "apollo-gateway.mjs"), str(bare_supergraph), port],
        ["node", str(HIVE), "supergraph", str(bare_supergraph), "--port", port],
    ):
        done = subprocess.run(
            command, cwd=TOOLS, env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode != 0, command
        assert variable in done.stdout + done.stderr, (command, done.stdout, done.stderr)
