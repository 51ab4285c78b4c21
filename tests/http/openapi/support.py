"""Reading the gateway's OpenAPI descriptions the way a client would, and running their examples.

The convention the descriptions follow (written at the top of each YAML file): a response
example carrying ``x-caller`` is *runnable*. Its request is made of each parameter's example of
the same name (else the parameter's ``example``, if it is required) and the request body's
example of that name (else the body's ``example``); it is sent as ``x-caller`` (a credential the
test provides), and the answer must have the example's status and media type and be valid
against the description (openapi-core). Documented values that only a live fixture can supply
(a licence's code, a camera, an image's bytes) are swapped for the fixture's by
``substitutions``: a parameter or body value equal to a key is sent as its value.
"""

from __future__ import annotations

import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
from openapi_core import Config, OpenAPI
from openapi_core.deserializing.media_types.util import plain_loads
from openapi_core.testing import MockRequest, MockResponse
from starlette.routing import BaseRoute, Route

METHODS = ("get", "put", "post", "delete", "patch")
TEMPLATE = re.compile(r"\{([^}:]+)(?::[^}]+)?\}")


@dataclass(frozen=True)
class Credential:
    """What a caller adds to a request: headers (a bearer token) and query parameters (an
    Open311 ``api_key``)."""

    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)


ANONYMOUS = Credential()


@dataclass(frozen=True)
class Example:
    """A runnable response example of one operation."""

    path: str  # as the description writes it (under its server)
    method: str
    name: str
    status: int
    media_type: str
    caller: str
    needs_model: bool

    def __str__(self) -> str:
        return f"{self.method.upper()} {self.path} {self.name} ({self.status})"


def checker(spec: Mapping[str, Any]) -> OpenAPI:
    """openapi-core over ``spec``, reading the text media types it has no reader of its own for
    (it would hand their bodies to the schema as bytes)."""
    text = {media: plain_loads for media in ("text/csv", "application/jwt", "text/event-stream")}
    return OpenAPI.from_dict(spec, config=Config(extra_media_type_deserializers=text))


def resolve(spec: Mapping[str, Any], node: Any) -> Any:
    """``node``, its local ``$ref`` followed (as many times as it takes)."""
    while isinstance(node, Mapping) and "$ref" in node:
        target: Any = spec
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def server_path(spec: Mapping[str, Any]) -> str:
    """The path of the description's (relative) server URL, without a trailing slash."""
    url: str = spec["servers"][0]["url"]
    return url.rstrip("/")


def operations(spec: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(path, method, operation) of every operation, in the order written."""
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def described_routes(spec: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of each operation as the gateway routes it: under the server's path, a
    path parameter with an ``enum`` (Open311's ``format``) spelled out for each of its values,
    any other written ``{}``."""
    found: set[tuple[str, str]] = set()
    for path, method, operation in operations(spec):
        spelled = [server_path(spec) + path]
        for parameter in (resolve(spec, p) for p in operation.get("parameters", [])):
            enum = parameter.get("schema", {}).get("enum")
            if parameter["in"] == "path" and enum:
                marker = "{" + parameter["name"] + "}"
                spelled = [p.replace(marker, str(value)) for p in spelled for value in enum]
        found |= {(method.upper(), TEMPLATE.sub("{}", p)) for p in spelled}
    return found


def served_routes(
    routes: Sequence[BaseRoute], prefixes: set[str] | None = None
) -> set[tuple[str, str]]:
    """(method, path) of each route (under ``prefixes``, first path segments, if given), its
    parameters written ``{}``. HEAD is left out: Starlette answers it for every GET route."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        assert isinstance(route, Route), f"{route!r}: not a plain route, not understood here"
        if prefixes is not None and first_segment(route.path) not in prefixes:
            continue
        for method in route.methods or ():
            if method != "HEAD":
                found.add((method, TEMPLATE.sub("{}", route.path)))
    return found


def first_segment(path: str) -> str:
    return "/" + path.lstrip("/").split("/", 1)[0].split(".", 1)[0]


def runnable(spec: Mapping[str, Any]) -> list[Example]:
    """The runnable examples, operation by operation, each operation's in the order written."""
    found = []
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            for media_type, media in (resolve(spec, response).get("content") or {}).items():
                for name, example in (media.get("examples") or {}).items():
                    if "x-caller" in example:
                        found.append(
                            Example(
                                path, method, name, int(status), media_type,
                                example["x-caller"], bool(example.get("x-needs-model")),
                            )
                        )  # fmt: skip
    return found


@dataclass
class ExampleRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    content_type: str


def _substituted(value: Any, substitutions: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return substitutions.get(value, value)
    if isinstance(value, list):
        return [_substituted(v, substitutions) for v in value]
    if isinstance(value, dict):
        return {k: _substituted(v, substitutions) for k, v in value.items()}
    return value


def _operation(spec: Mapping[str, Any], example: Example) -> dict[str, Any]:
    operation: dict[str, Any] = spec["paths"][example.path][example.method]
    return operation


def request_of(
    spec: Mapping[str, Any],
    example: Example,
    credential: Credential,
    substitutions: Mapping[str, Any],
) -> ExampleRequest:
    """The request ``example`` documents, as ``credential`` sends it."""
    operation = _operation(spec, example)
    path = server_path(spec) + example.path
    query: dict[str, str] = {}
    headers: dict[str, str] = {}
    for parameter in (resolve(spec, p) for p in operation.get("parameters", [])):
        named = parameter.get("examples", {}).get(example.name)
        if named is not None:
            value = named["value"]
        elif parameter.get("required") and "example" in parameter:
            value = parameter["example"]
        else:
            continue
        value = str(_substituted(value, substitutions))
        where = parameter["in"]
        if where == "path":
            path = path.replace("{" + parameter["name"] + "}", quote(value, safe=""))
        elif where == "query":
            query[parameter["name"]] = value
        elif where == "header":
            headers[parameter["name"]] = value
    query.update(credential.query)
    headers.update(credential.headers)
    body, content_type = _body(spec, operation, example, substitutions)
    if content_type:
        headers["Content-Type"] = content_type
    return ExampleRequest(example.method, path, query, headers, body, content_type)


def _body(
    spec: Mapping[str, Any],
    operation: Mapping[str, Any],
    example: Example,
    substitutions: Mapping[str, Any],
) -> tuple[bytes, str]:
    described = resolve(spec, operation.get("requestBody"))
    if described is None:
        return b"", ""
    content: dict[str, Any] = described["content"]
    chosen = next(
        ((t, m["examples"][example.name]["value"]) for t, m in content.items()
         if example.name in m.get("examples", {})),
        None,
    ) or next(((t, m["example"]) for t, m in content.items() if "example" in m), None)  # fmt: skip
    assert chosen is not None, f"{example}: the request body has no example to send"
    media_type, value = chosen
    value = _substituted(value, substitutions)
    if media_type == "application/json":
        return orjson.dumps(value), media_type
    if media_type == "application/x-www-form-urlencoded":
        return urlencode(value).encode(), media_type
    return (value if isinstance(value, bytes) else str(value).encode()), media_type


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


async def run(
    http: httpx.AsyncClient,
    spec: Mapping[str, Any],
    openapi: OpenAPI,
    example: Example,
    credential: Credential,
    substitutions: Mapping[str, Any],
) -> httpx.Response:
    """Send ``example``'s request and check the answer against the description; the answer."""
    sent = request_of(spec, example, credential, substitutions)
    response = await http.request(
        sent.method, sent.path, params=sent.query, headers=sent.headers, content=sent.body
    )
    assert response.status_code == example.status, (str(example), response.text[:500])
    media_type = _media_type(response.headers.get("content-type", ""))
    assert media_type == example.media_type, (str(example), media_type)
    request = MockRequest(
        str(http.base_url).rstrip("/"),
        sent.method,
        sent.path,
        args=sent.query,
        headers=sent.headers,
        data=sent.body,
        content_type=sent.content_type or "application/json",
    )
    if 200 <= example.status < 300:
        # What the example sends is what the description takes. openapi-core checks no OAuth2
        # scheme (it warns, and lets it pass); the bearer and api_key schemes beside it it does.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Unsupported scheme type")
            openapi.validate_request(request)
    data, content_type = response.content, response.headers.get("content-type", "")
    if media_type == "text/xml":
        # Read through the schema's `xml` names into the JSON shape, and checked as JSON.
        data = orjson.dumps(from_xml(spec, _schema_of(spec, example), response.content))
        content_type = "application/json"
    openapi.validate_response(
        request,
        MockResponse(
            data,
            status_code=response.status_code,
            headers=dict(response.headers),
            content_type=content_type,
        ),
    )
    return response


def _schema_of(spec: Mapping[str, Any], example: Example) -> Any:
    response = resolve(spec, _operation(spec, example)["responses"][str(example.status)])
    return response["content"][example.media_type]["schema"]


def from_xml(spec: Mapping[str, Any], schema: Any, document: bytes) -> Any:
    """An XML document read into the JSON shape ``schema`` describes, through its ``xml``
    names (OpenAPI's XML object); an element the schema does not name fails."""
    root = ET.fromstring(document)
    schema = resolve(spec, schema)
    expected = schema.get("xml", {}).get("name")
    assert root.tag == expected, f"the root element is <{root.tag}>, described as <{expected}>"
    return _read(spec, schema, root)


def _read(spec: Mapping[str, Any], schema: Any, element: ET.Element) -> Any:
    schema = resolve(spec, schema)
    kinds = schema.get("type", "object")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    if "array" in kinds:
        items = resolve(spec, schema["items"])
        name = items.get("xml", {}).get("name")
        for child in element:
            assert child.tag == name, f"<{child.tag}> in <{element.tag}>, described as <{name}>"
        return [_read(spec, items, child) for child in element]
    if "object" in kinds:
        properties = schema.get("properties", {})
        value: dict[str, Any] = {}
        for child in element:
            assert child.tag in properties, f"<{child.tag}> is not described in <{element.tag}>"
            value[child.tag] = _read(spec, properties[child.tag], child)
        return value
    text = element.text
    if text is None:
        return None if "null" in kinds else ""
    if "integer" in kinds:
        return int(text)
    if "number" in kinds:
        return float(text)
    if "boolean" in kinds:
        return {"true": True, "false": False}[text]
    return text
