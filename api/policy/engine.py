"""The Cedar policy engine: the files in ``policies/``, parsed and validated once per process.

Decisions are deterministic in their inputs (principal, action, resource, context and the
policy set), so they are remembered per process, keyed by all of them; a repeated question
costs a dictionary lookup instead of a Cedar evaluation.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cedarpy
import orjson

CACHE_SIZE = 50_000


class PolicySetInvalid(Exception):
    """The policy files do not parse or do not validate against the schema."""


@dataclass(frozen=True, slots=True)
class PolicyDocument:
    policy_id: str
    description: str
    file: str
    text: str


@dataclass(frozen=True, slots=True)
class Entity:
    """A Cedar entity: its type (within the Lighthouse namespace), id and attributes."""

    type: str
    id: str
    attrs: tuple[tuple[str, Any], ...] = ()

    @property
    def uid(self) -> str:
        return f"Lighthouse::{self.type}::{orjson.dumps(self.id).decode()}"

    def as_json(self) -> dict[str, Any]:
        return {
            "uid": {"type": f"Lighthouse::{self.type}", "id": self.id},
            "attrs": {name: _json_value(value) for name, value in self.attrs},
            "parents": [],
        }


def ref(type_name: str, entity_id: str) -> dict[str, Any]:
    return {"__entity": {"type": f"Lighthouse::{type_name}", "id": entity_id}}


def _json_value(value: Any) -> Any:
    if isinstance(value, Entity):
        return ref(value.type, value.id)
    if isinstance(value, frozenset | set | tuple | list):
        return [_json_value(item) for item in sorted(value, key=str)]
    return value


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy_ids: tuple[str, ...]
    errors: tuple[str, ...] = ()


def schema_actions(schema_text: str) -> frozenset[str]:
    """The actions a Cedar schema (human-readable form) declares."""
    code = re.sub(r"//[^\n]*", "", schema_text)
    listed = re.findall(r"\baction\s+(.+?)\s+appliesTo\b", code, flags=re.S)
    return frozenset(name.strip().strip('"') for names in listed for name in names.split(","))


class PolicyEngine:
    def __init__(self, directory: Path, bureaus: Sequence[tuple[str, bool]]) -> None:
        """Load ``directory`` (a ``*.cedarschema`` and ``*.cedar`` files); refuse an invalid set.

        ``bureaus`` are (code, runs the joint service centre) pairs: reference entities every
        decision may look at.
        """
        schemas = sorted(directory.glob("*.cedarschema"))
        files = sorted(directory.glob("*.cedar"))
        if len(schemas) != 1 or not files:
            raise PolicySetInvalid(f"{directory} needs one *.cedarschema and some *.cedar files")
        self.schema_text = schemas[0].read_text()
        self.files = {path.name: path.read_text() for path in files}
        self.text = "\n".join(f"// ---- {name}\n{text}" for name, text in self.files.items())
        digest = hashlib.sha256(self.schema_text.encode())
        for name, text in self.files.items():
            digest.update(b"\0" + name.encode() + b"\0" + text.encode())
        self.version = digest.hexdigest()[:16]
        try:
            self._schema = cedarpy.Schema.from_str(self.schema_text)
            policies = "\n".join(self.files.values())
            result = cedarpy.validate_policies(policies, self._schema)
            self._policies = cedarpy.PolicySet.from_str(policies)
        except ValueError as error:
            raise PolicySetInvalid(f"policies in {directory} do not parse: {error}") from None
        if not result.validation_passed:
            problems = "; ".join(str(e) for e in result.errors)
            raise PolicySetInvalid(f"policies in {directory} fail validation: {problems}")
        self.actions = schema_actions(self.schema_text)
        if not self.actions:
            raise PolicySetInvalid(f"{schemas[0].name} declares no action")
        self.documents = self._documents()
        undocumented = [d.policy_id for d in self.documents if not d.description]
        missing_ids = [d for d in self.documents if not d.policy_id]
        if undocumented or missing_ids:
            raise PolicySetInvalid("every policy needs an @id and a @description for auditors")
        self.bureaus = [
            Entity("Bureau", code, (("code", code), ("jointServiceCentre", jsc)))
            for code, jsc in bureaus
        ]
        self._base = cedarpy.Entities.from_json_str(
            orjson.dumps([b.as_json() for b in self.bureaus]).decode(), self._schema
        )
        self._cache: OrderedDict[tuple[Any, ...], Decision] = OrderedDict()

    def _documents(self) -> list[PolicyDocument]:
        """Each policy's id, description and text, in file order."""
        documents = []
        for name, text in self.files.items():
            policies = list(cedarpy.PolicySet.from_str(text).to_pst().static_policies.values())
            starts = [match.start() for match in re.finditer(r"(?m)^@id\(", text)]
            if len(starts) != len(policies):
                raise PolicySetInvalid(f"{name}: every policy must begin with its @id annotation")
            ends = [*starts[1:], len(text)]
            for policy, start, end in zip(policies, starts, ends, strict=True):
                annotations = dict(policy.annotations or {})
                documents.append(
                    PolicyDocument(
                        policy_id=str(annotations.get("id", "")),
                        description=str(annotations.get("description", "")),
                        file=name,
                        text=text[start:end].strip(),
                    )
                )
        return documents

    def decide(
        self,
        principal: Entity,
        action: str,
        resource: Entity,
        scopes: frozenset[str],
        context: Mapping[str, str] | None = None,
    ) -> Decision:
        return self.decide_many(principal, [(action, resource)], scopes, context)[0]

    def decide_many(
        self,
        principal: Entity,
        questions: Sequence[tuple[str, Entity]],
        scopes: frozenset[str],
        context: Mapping[str, str] | None = None,
    ) -> list[Decision]:
        """Decide several (action, resource) questions for one principal in one Cedar call;
        ``context`` adds what the action would do (``closingReason``) to the token's scopes."""
        scope_key = tuple(sorted(scopes))
        extra = tuple(sorted((context or {}).items()))
        keys = [(principal, action, resource, scope_key, extra) for action, resource in questions]
        answers: list[Decision | None] = [self._cache.get(key) for key in keys]
        missing = [i for i, answer in enumerate(answers) if answer is None]
        if missing:
            entities = {principal.uid: principal}
            for i in missing:
                resource = questions[i][1]
                if resource.type != "Bureau":
                    entities[resource.uid] = resource
            store = self._base.with_added_json_str(
                orjson.dumps([e.as_json() for e in entities.values()]).decode()
            )
            request_context: dict[str, Any] = {"scopes": list(scope_key), **dict(extra)}
            requests = [
                {
                    "principal": principal.uid,
                    "action": f'Lighthouse::Action::"{questions[i][0]}"',
                    "resource": questions[i][1].uid,
                    "context": request_context,
                }
                for i in missing
            ]
            for i, result in zip(
                missing, cedarpy.is_authorized_batch(requests, self._policies, store), strict=True
            ):
                names = result.diagnostics.id_annotations_by_reason
                decision = Decision(
                    allowed=result.allowed,
                    policy_ids=tuple(sorted(names.get(r, r) for r in result.diagnostics.reasons)),
                    errors=tuple(str(e) for e in result.diagnostics.errors),
                )
                answers[i] = decision
                self._cache[keys[i]] = decision
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
        return [answer for answer in answers if answer is not None]
