"""The gateway serves an OpenAPI 3.1 description of each REST API its domains bring, to anyone,
and the descriptions and the routes cannot drift apart: every route under a described API's
prefix is described, and every described operation is routed."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import yaml
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.routing import Route

from api.app import create_app
from api.graph.domains import DOMAINS
from api.http.openapi.description import ApiDescription
from api.settings import Settings
from tests.http.openapi.support import (
    described_routes,
    first_segment,
    operations,
    resolve,
    served_routes,
)

pytestmark = pytest.mark.db

NAMES = {"v1", "open311", "frames"}


def written(description: ApiDescription) -> Any:
    return yaml.load(description.source.read_bytes(), Loader=yaml.CSafeLoader)


def descriptions() -> list[ApiDescription]:
    return [api for domain in DOMAINS.values() for api in domain.apis]


async def test_each_description_is_served_to_anyone_as_valid_openapi_3_1(
    http: httpx.AsyncClient,
) -> None:
    index = await http.get("/openapi")
    assert index.status_code == 200, index.text
    listed = {api["name"]: api for api in index.json()["apis"]}
    assert set(listed) == NAMES
    for description in descriptions():
        served = await http.get(listed[description.name]["url"])  # no credentials
        assert served.status_code == 200, served.text
        assert served.headers["content-type"] == "application/json"
        spec = served.json()
        validate(spec, cls=OpenAPIV31SpecValidator)
        assert spec == written(description)  # served as written
        assert spec["servers"][0]["url"].startswith("/")  # wherever the gateway is deployed
        assert listed[description.name]["title"] == spec["info"]["title"]
        # A cache asks again, and is answered 304 while the description is unchanged.
        etag = served.headers["etag"]
        assert "no-cache" in served.headers["cache-control"]
        again = await http.get(listed[description.name]["url"], headers={"If-None-Match": etag})
        assert again.status_code == 304 and again.content == b""
    assert (await http.get("/openapi/nothing.json")).status_code == 404


def test_every_route_a_domain_brings_is_described_and_every_description_is_routed() -> None:
    for domain in DOMAINS.values():
        described: set[tuple[str, str]] = set()
        for api in domain.apis:
            described |= described_routes(written(api))
        assert served_routes(domain.routes) == described, domain.name


def test_every_route_the_app_serves_under_a_described_prefix_is_described() -> None:
    described: set[tuple[str, str]] = set()
    for description in descriptions():
        described |= described_routes(written(description))
    prefixes = {first_segment(path) for _, path in described}
    assert prefixes == {"/v1", "/open311", "/frames"}
    app_routes = [r for r in create_app(Settings()).routes if isinstance(r, Route)]
    assert served_routes(app_routes, prefixes) == described


def test_each_operation_documents_the_refusals_every_protected_route_can_make() -> None:
    """Every described route is ``protected`` (api.http.transaction): a caller it does not take
    is refused (401, or Open311's 403), a source refused too often throttled (429), a database
    out of reach answered 503; and a request body is bounded in bytes (413) and time (408)."""
    for description in descriptions():
        spec = written(description)
        refused = "403" if description.name == "open311" else "401"
        for path, method, operation in operations(spec):
            expected = {refused, "429", "503"} | ({"408", "413"} if method == "post" else set())
            missing = expected - set(operation["responses"])
            assert not missing, f"{description.name}: {method.upper()} {path} lacks {missing}"
            for status, response in operation["responses"].items():
                assert resolve(spec, response).get("description"), (path, method, status)
