"""Relay global IDs (base64 of ``Type:key``) in arguments, decoded with typed errors."""

from __future__ import annotations

from collections.abc import Sequence

from strawberry import relay

from api.domain.errors import InvalidInput


def decode_id(value: str, expected_type: str, field: str) -> int:
    try:
        global_id = relay.GlobalID.from_id(value)
    except (ValueError, TypeError):
        raise InvalidInput(field, f"{value!r} is not an ID this API issued") from None
    if global_id.type_name != expected_type:
        raise InvalidInput(
            field, f"expected an ID of a {expected_type}, got a {global_id.type_name}"
        )
    try:
        number = int(global_id.node_id)
    except ValueError:
        raise InvalidInput(field, f"{value!r} is not an ID this API issued") from None
    if not 0 < number < 2**63:
        raise InvalidInput(field, f"{value!r} is not an ID this API issued")
    return number


def decode_key(value: str, expected_type: str, field: str) -> str:
    """The key of a global ID whose key is not a number (a frame's SHA-256, in hex)."""
    try:
        global_id = relay.GlobalID.from_id(value)
    except (ValueError, TypeError):
        raise InvalidInput(field, f"{value!r} is not an ID this API issued") from None
    if global_id.type_name != expected_type:
        raise InvalidInput(
            field, f"expected an ID of a {expected_type}, got a {global_id.type_name}"
        )
    return global_id.node_id


def decode_ids(values: Sequence[str] | None, expected_type: str, field: str) -> list[int] | None:
    if values is None:
        return None
    return [decode_id(value, expected_type, field) for value in values]


def encode_id(type_name: str, key: int) -> str:
    return str(relay.GlobalID(type_name, str(key)))
