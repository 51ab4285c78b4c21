"""Reading a registered document: its fields (fragments on the same type spread in place) and its
arguments (literal values, or the variables a request fills)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    BooleanValueNode,
    EnumValueNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    ObjectValueNode,
    SelectionSetNode,
    StringValueNode,
    ValueNode,
    VariableNode,
)

from api.graph.core.compiled.declarations import NotCompiled, Variable


def fields_of(
    selections: SelectionSetNode | None,
    type_name: str,
    fragments: Mapping[str, FragmentDefinitionNode],
) -> list[FieldNode]:
    """The fields of a selection set, fragments on the same type spread in place. A response
    key asked twice (which GraphQL merges) is left to the resolver path."""
    if selections is None:
        raise NotCompiled("a selection set is missing")
    found: list[FieldNode] = []
    for selection in selections.selections:
        if selection.directives:
            raise NotCompiled("directives (@skip, @include) are not compiled")
        if isinstance(selection, FieldNode):
            found.append(selection)
            continue
        if isinstance(selection, FragmentSpreadNode):
            fragment = fragments.get(selection.name.value)
            if fragment is None or fragment.directives:
                raise NotCompiled("a fragment is missing or has directives")
            condition, inner = fragment.type_condition.name.value, fragment.selection_set
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition.name.value if selection.type_condition else ""
            inner = selection.selection_set
        else:  # pragma: no cover - graphql-core has no other selection
            raise NotCompiled("an unknown selection")
        if condition and condition != type_name:
            raise NotCompiled(f"a fragment on {condition} inside {type_name or 'an object'}")
        found.extend(fields_of(inner, type_name, fragments))
    keys = [response_key(node) for node in found]
    if len(set(keys)) != len(keys):
        raise NotCompiled("a response key asked twice (GraphQL's field merging) is not compiled")
    return found


def response_key(node: FieldNode) -> str:
    return node.alias.value if node.alias else node.name.value


def no_arguments(node: FieldNode) -> None:
    if node.arguments:
        raise NotCompiled(f"arguments of {node.name.value} are not compiled")


def arguments_of(node: FieldNode, skip: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    return {
        argument.name.value: literal_value(argument.value)
        for argument in node.arguments or ()
        if argument.name.value not in skip
    }


def walk(value: ValueNode) -> list[ValueNode]:
    """A value and every value inside it."""
    found = [value]
    if isinstance(value, ListValueNode):
        for item in value.values:
            found += walk(item)
    elif isinstance(value, ObjectValueNode):
        for object_field in value.fields:
            found += walk(object_field.value)
    return found


def literal_value(value: ValueNode) -> Any:
    if isinstance(value, VariableNode):
        return Variable(value.name.value)
    if isinstance(value, IntValueNode):
        return int(value.value)
    if isinstance(value, EnumValueNode | StringValueNode):
        return value.value
    if isinstance(value, BooleanValueNode):
        return value.value
    if isinstance(value, NullValueNode):
        return None
    if isinstance(value, ListValueNode):
        items = [literal_value(item) for item in value.values]
        if any(isinstance(item, Variable) for item in items):
            raise NotCompiled("a variable inside a list is not compiled")
        return items
    raise NotCompiled(f"an argument of kind {value.kind} is not compiled")
