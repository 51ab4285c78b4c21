"""The graph is composed from domain bundles: each builds alone (a subgraph) and all together
(the unified graph), and the core knows none of them."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Sequence
from typing import Any

import pytest
import strawberry
from graphql import GraphQLObjectType
from strawberry.types.base import StrawberryObjectDefinition

import api.graph
from api.graph.core.bundle import DomainBundle
from api.graph.core.loaders import LoaderRegistry, ScopedLoader
from api.graph.core.prefetch import METADATA_KEY, Prefetch, PrefetchPlan, Reference
from api.graph.core.schema import build_schema
from api.graph.domains import DOMAINS
from api.settings import load_settings

SETTINGS = load_settings()


def root_fields(schema: strawberry.Schema, root: str) -> set[str]:
    graphql_type = schema._schema.type_map.get(root)
    return set(graphql_type.fields) if isinstance(graphql_type, GraphQLObjectType) else set()


def domain_packages() -> list[str]:
    return [
        name
        for _, name, is_package in pkgutil.iter_modules(api.graph.__path__)
        if is_package and name != "core"
    ]


def test_every_domain_package_exports_a_bundle_the_graph_serves() -> None:
    for name in domain_packages():
        module = importlib.import_module(f"api.graph.{name}")
        bundle = getattr(module, "bundle", None)
        assert isinstance(bundle, DomainBundle), f"api.graph.{name} exports no bundle"
        assert DOMAINS.get(bundle.name) is bundle, f"{bundle.name} is not in api.graph.domains"


@pytest.mark.parametrize("name", sorted(DOMAINS))
def test_each_domain_builds_alone(name: str) -> None:
    bundle = DOMAINS[name]
    schema = build_schema(SETTINGS, [bundle])
    others: set[str] = set()
    for other in set(DOMAINS) - {name}:
        if DOMAINS[other].query is not None:
            others |= _graphql_names(DOMAINS[other].query)
    for root, part in (
        ("Query", bundle.query),
        ("Mutation", bundle.mutation),
        ("Subscription", bundle.subscription),
    ):
        expected = _graphql_names(part) if part is not None else set()
        assert root_fields(schema, root) >= expected, f"{name} alone lacks {root} fields"
    # Only this domain's queries, the core's own, and federation's entry points.
    assert root_fields(schema, "Query") - _graphql_names(bundle.query or type) <= {
        "_service",
        "_entities",
        "me",
        "node",
    }
    assert not (root_fields(schema, "Query") & others - _graphql_names(bundle.query or type))


def test_all_domains_build_together_into_the_union_of_their_fields() -> None:
    schema = build_schema(SETTINGS, list(DOMAINS.values()))
    for root, attribute in (
        ("Query", "query"),
        ("Mutation", "mutation"),
        ("Subscription", "subscription"),
    ):
        expected: set[str] = set()
        for bundle in DOMAINS.values():
            part = getattr(bundle, attribute)
            if part is not None:
                expected |= _graphql_names(part)
        assert expected <= root_fields(schema, root)
    with pytest.raises(ValueError, match="given twice"):
        build_schema(SETTINGS, [DOMAINS["incidents"], DOMAINS["incidents"]])


def _graphql_names(part: type) -> set[str]:
    definition = getattr(part, "__strawberry_definition__", None)
    if definition is None:
        return set()
    names = strawberry.schema.config.StrawberryConfig(auto_camel_case=True).name_converter
    return {names.get_graphql_name(field) for field in definition.fields}


# --- prefetch registrations ------------------------------------------------------------------


def declared_prefetches() -> dict[tuple[str, str], Prefetch]:
    """Every field, of every Strawberry type in a domain package, that declares a prefetch."""
    found: dict[tuple[str, str], Prefetch] = {}
    names = strawberry.schema.config.StrawberryConfig(auto_camel_case=True).name_converter
    for package in domain_packages():
        for info in pkgutil.iter_modules(importlib.import_module(f"api.graph.{package}").__path__):
            module = importlib.import_module(f"api.graph.{package}.{info.name}")
            for _, value in inspect.getmembers(module, inspect.isclass):
                definition = getattr(value, "__strawberry_definition__", None)
                if not isinstance(definition, StrawberryObjectDefinition):
                    continue
                if value.__module__ != module.__name__:
                    continue
                for field in definition.fields:
                    how = (field.metadata or {}).get(METADATA_KEY)
                    if isinstance(how, Prefetch):
                        found[(definition.name, names.get_graphql_name(field))] = how
    return found


def test_every_prefetch_declared_on_a_field_is_planned_and_sound() -> None:
    schema = build_schema(SETTINGS, list(DOMAINS.values()))
    plan = schema.prefetch_plan.fields
    declared = declared_prefetches()
    assert len(declared) >= 15, "the board's nested fields are prefetched"
    planned = {(type_name, field) for type_name, fields in plan.items() for field in fields}
    assert planned == set(declared)
    for (type_name, field), how in declared.items():
        entry = plan[type_name][field]
        assert entry.how is how
        assert entry.child_type in schema._schema.type_map, f"{type_name}.{field}"
        assert entry.how.problems(entry.record_type) == [], f"{type_name}.{field}"


def test_a_prefetch_reading_a_missing_attribute_is_reported() -> None:
    @dataclasses.dataclass
    class Record:
        id: int
        owner_id: int

    class Loader(ScopedLoader[int, Any]):
        async def load_batch(self, keys: Sequence[int]) -> list[Any]:
            return [None for _ in keys]

    assert Reference(Loader, "owner_id").problems(Record) == []
    assert Reference(Loader, "renamed_id").problems(Record) == ["Record has no 'renamed_id'"]
    assert Reference(Loader, "owner_id").problems(None)


def test_the_board_is_planned_through_its_nested_types() -> None:
    plan = PrefetchPlan.of(build_schema(SETTINGS, list(DOMAINS.values()))).fields
    assert {"responsibleBureau", "asset", "events", "workOrders"} <= set(plan["Incident"])
    assert plan["Incident"]["workOrders"].child_type == "WorkOrder"
    assert "bureau" in plan["WorkOrder"]


# --- loaders -----------------------------------------------------------------------------------


def test_every_loader_of_a_domain_is_listed_in_its_bundle() -> None:
    for package in domain_packages():
        bundle = DOMAINS[importlib.import_module(f"api.graph.{package}").bundle.name]
        try:
            module = importlib.import_module(f"api.graph.{package}.loaders")
        except ModuleNotFoundError:
            continue
        defined = {
            value
            for _, value in inspect.getmembers(module, inspect.isclass)
            if issubclass(value, ScopedLoader) and value.__module__ == module.__name__
        }
        assert defined == set(bundle.loaders), package


def test_loaders_live_in_one_scope_and_are_kept_apart_by_arguments() -> None:
    class Loader(ScopedLoader[int, Any]):
        def __init__(self, access: Any, *arguments: Any) -> None:
            super().__init__(access)
            self.arguments = arguments

        async def load_batch(self, keys: Sequence[int]) -> list[Any]:
            return list(keys)

    one, other = LoaderRegistry(object()), LoaderRegistry(object())  # type: ignore[arg-type]
    assert one.get(Loader) is one.get(Loader)
    assert one.get(Loader) is not other.get(Loader)
    assert one.get(Loader, (3,)) is not one.get(Loader, (5,))
    assert one.get(Loader, (3,)).arguments == (3,)
    assert one.get(Loader).access is one.access
