"""The policy files: valid against the schema, documented for auditors, refused when broken."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from api import bundled
from api.policy.engine import PolicyEngine, PolicySetInvalid

POLICIES = bundled.directory("policies")
BUREAUS = [("PUBLIC_WORKS", False), ("RDEC", True)]


def test_the_policy_set_is_valid_and_documented() -> None:
    engine = PolicyEngine(POLICIES, BUREAUS)
    ids = [d.policy_id for d in engine.documents]
    assert len(ids) == len(set(ids)) >= 15
    assert all(d.description and d.text.startswith("@id(") for d in engine.documents)
    readme = (POLICIES / "README.md").read_text()
    missing = [policy_id for policy_id in ids if f"`{policy_id}`" not in readme]
    assert missing == [], f"policies/README.md does not explain {missing}"


def test_the_version_changes_with_the_text(tmp_path: Path) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    before = PolicyEngine(copy, BUREAUS).version
    with (copy / "assets.cedar").open("a") as file:
        file.write("\n// a comment is a change too\n")
    assert PolicyEngine(copy, BUREAUS).version != before


@pytest.mark.parametrize(
    ("file", "text", "problem"),
    [
        (
            "broken.cedar",
            '@id("x")\n@description("y")\npermit (principal, action, resource) when { ',
            "do not parse",
        ),
        (
            "typo.cedar",
            '@id("typo")\n@description("d")\npermit (principal, action == Lighthouse::Action::"ViewIncidnet", resource);',
            "fail validation",
        ),
        (
            "wrong-attr.cedar",
            '@id("attr")\n@description("d")\npermit (principal, action == Lighthouse::Action::"ViewIncident", resource)'
            " when { resource.owner == principal };",
            "fail validation",
        ),
        (
            "undocumented.cedar",
            '@id("nodoc")\npermit (principal, action, resource);',
            "@description",
        ),
    ],
)
def test_an_invalid_set_is_refused(tmp_path: Path, file: str, text: str, problem: str) -> None:
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    (copy / file).write_text(text)
    with pytest.raises(PolicySetInvalid, match=re.escape(problem)):
        PolicyEngine(copy, BUREAUS)
