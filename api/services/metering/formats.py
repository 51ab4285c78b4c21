"""``response_format``, checked and bounded before it is forwarded.

It is ``{type: text}``, ``{type: json_object}`` or ``{type: json_schema, json_schema: {name,
description?, schema, strict?}}``. A schema is bounded as OpenAI bounds structured outputs: at
most 10 levels of nesting (the schema is level 1; each schema inside another, under properties,
items, anyOf, $defs or any keyword that holds schemas, one level deeper), 5,000 properties, 1,000
enum values, and 120,000 characters of property names, definition names, enum and const values
(15,000 for the values of one string enum of more than 250). Any other value inside it (a
default, an example) is at most 32 levels deep. A schema past these is refused (400, naming
``response_format.json_schema.schema``) before anything is reserved: an unbounded one made the
gateway fail to encode the request for the tier, and the tier compiles every schema it is given
into a grammar.

The walks are iterative, so no schema, however deep, makes them recurse.
"""

from __future__ import annotations

import re

from api.domain.errors import InvalidInput

WHERE = "response_format"
SCHEMA = f"{WHERE}.json_schema.schema"
MAX_NESTING = 10
MAX_PROPERTIES = 5_000
MAX_ENUM_VALUES = 1_000
MAX_NAME_CHARACTERS = 120_000
LARGE_ENUM = 250  # values, past which one string enum's characters are bounded on their own
MAX_LARGE_ENUM_CHARACTERS = 15_000
MAX_VALUE_DEPTH = 32
MAX_DESCRIPTION = 4_096
NAME = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
# Keywords whose value is a schema, a list of schemas, or an object of named schemas.
ONE_SCHEMA = frozenset(
    {"items", "additionalProperties", "unevaluatedProperties", "additionalItems",
     "unevaluatedItems", "contains", "not", "if", "then", "else", "propertyNames"}
)  # fmt: skip
SCHEMA_LISTS = frozenset({"anyOf", "allOf", "oneOf", "prefixItems", "items"})
NAMED_SCHEMAS = frozenset(
    {"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"}
)


def check_response_format(value: object) -> None:
    """InvalidInput naming the field, unless ``value`` is a response format the tier takes
    within the bounds above."""
    if not isinstance(value, dict) or value.get("type") not in ("text", "json_object",
                                                                  "json_schema"):  # fmt: skip
        raise InvalidInput(f"{WHERE}.type", "must be text, json_object or json_schema")
    kind = value["type"]
    for field in value:
        if field != "type" and not (kind == "json_schema" and field == "json_schema"):
            raise InvalidInput(f"{WHERE}.{field}", f"is not a field of a {kind} format")
    if kind != "json_schema":
        return
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise InvalidInput(f"{WHERE}.json_schema", "must be {name, description?, schema, strict?}")
    for field in spec:
        if field not in ("name", "description", "schema", "strict"):
            raise InvalidInput(f"{WHERE}.json_schema.{field}", "is not a field of json_schema")
    name = spec.get("name")
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise InvalidInput(f"{WHERE}.json_schema.name", "must be 1 to 64 letters, digits, _ or -")
    description = spec.get("description")
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION
    ):
        raise InvalidInput(
            f"{WHERE}.json_schema.description", f"must be text of at most {MAX_DESCRIPTION}"
        )
    if spec.get("strict") not in (None, True, False):
        raise InvalidInput(f"{WHERE}.json_schema.strict", "must be true or false")
    schema = spec.get("schema")
    if not isinstance(schema, dict):
        raise InvalidInput(SCHEMA, "must be a JSON schema (an object)")
    _bound(schema)


def _bound(root: dict[str, object]) -> None:
    """The schema's nesting, properties, enum values and names within OpenAI's bounds."""
    properties = enum_values = characters = 0
    schemas: list[tuple[object, int]] = [(root, 1)]  # (a schema, its level)
    values: list[tuple[object, int]] = []  # (a value inside the schema, its depth)
    while schemas:
        schema, level = schemas.pop()
        if isinstance(schema, bool):
            continue  # true and false are schemas too
        if not isinstance(schema, dict):
            raise InvalidInput(SCHEMA, f"holds a schema that is not an object (level {level})")
        if level > MAX_NESTING:
            raise InvalidInput(SCHEMA, f"is nested more than {MAX_NESTING} levels")
        for keyword, value in schema.items():
            if keyword in NAMED_SCHEMAS and isinstance(value, dict):
                if keyword in ("properties", "patternProperties"):
                    properties += len(value)
                characters += sum(len(name) for name in value)
                schemas.extend((inner, level + 1) for inner in value.values())
            elif keyword in SCHEMA_LISTS and isinstance(value, list):
                schemas.extend((inner, level + 1) for inner in value)
            elif keyword in ONE_SCHEMA:
                schemas.append((value, level + 1))
            elif keyword == "enum" and isinstance(value, list):
                enum_values += len(value)
                texts = sum(len(v) for v in value if isinstance(v, str))
                characters += texts
                if len(value) > LARGE_ENUM and texts > MAX_LARGE_ENUM_CHARACTERS:
                    raise InvalidInput(
                        SCHEMA,
                        f"an enum of more than {LARGE_ENUM} values has at most "
                        f"{MAX_LARGE_ENUM_CHARACTERS} characters",
                    )
                values.append((value, 1))
            elif keyword == "const" and isinstance(value, str):
                characters += len(value)
            else:
                values.append((value, 1))
        if properties > MAX_PROPERTIES:
            raise InvalidInput(SCHEMA, f"has more than {MAX_PROPERTIES} properties")
        if enum_values > MAX_ENUM_VALUES:
            raise InvalidInput(SCHEMA, f"has more than {MAX_ENUM_VALUES} enum values")
        if characters > MAX_NAME_CHARACTERS:
            raise InvalidInput(
                SCHEMA,
                f"has more than {MAX_NAME_CHARACTERS} characters of names, enum and const values",
            )
    while values:
        value, depth = values.pop()
        if depth > MAX_VALUE_DEPTH:
            raise InvalidInput(SCHEMA, f"holds a value nested more than {MAX_VALUE_DEPTH} deep")
        if isinstance(value, dict):
            values.extend((inner, depth + 1) for inner in value.values())
        elif isinstance(value, list):
            values.extend((inner, depth + 1) for inner in value)
