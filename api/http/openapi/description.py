"""An OpenAPI description a domain brings, and the document read from it.

The descriptions are written by hand as YAML files in this package (``v1.yaml``,
``open311.yaml``, ``frames.yaml``) and read once, when the app is built: a file that does not
parse, or is not OpenAPI 3.1, stops the build with its name. Whether it describes its routes
truly is the tests' concern (tests/http/openapi/).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

# PyYAML comes with uvicorn[standard] (the gateway's lock holds it); its stubs are not installed.
import yaml

HERE = Path(__file__).resolve().parent
VERSION = "3.1.0"


@dataclass(frozen=True, slots=True)
class ApiDescription:
    """An API a domain serves, described in ``source`` and served at ``/openapi/{name}.json``."""

    name: str
    source: Path


def described(name: str) -> ApiDescription:
    """The description ``name`` of this package (``name.yaml``)."""
    return ApiDescription(name, HERE / f"{name}.yaml")


class DescriptionInvalid(ValueError):
    """A description file that cannot be served; the message names it."""


@dataclass(frozen=True, slots=True)
class ApiDocument:
    """A description as it is served: its JSON, read once, and an ETag of its bytes."""

    name: str
    title: str
    version: str
    body: bytes
    etag: str


def read(description: ApiDescription) -> ApiDocument:
    """The document of ``description``, parsed; DescriptionInvalid if it cannot be."""
    source = description.source
    try:
        # libyaml's loader where the build has it: a description is a few thousand lines.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        document: Any = yaml.load(source.read_bytes(), Loader=loader)
        body = orjson.dumps(document)
    except (OSError, yaml.YAMLError, TypeError) as error:
        raise DescriptionInvalid(f"{source}: {error}") from error
    if not isinstance(document, dict) or document.get("openapi") != VERSION:
        raise DescriptionInvalid(f"{source}: not an OpenAPI {VERSION} document")
    info = document.get("info") or {}
    return ApiDocument(
        name=description.name,
        title=str(info.get("title", description.name)),
        version=str(info.get("version", "")),
        body=body,
        etag=etag_of(body),
    )


def etag_of(body: bytes) -> str:
    """A strong ETag of ``body``: its digest, so every gateway replica gives the same one."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
