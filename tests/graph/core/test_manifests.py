"""The persisted-document manifests frontend toolchains write, read as one list of documents by
id (no server: the registration itself is tested in test_trusted_documents.py)."""

from __future__ import annotations

import hashlib

import pytest

from api.graph.core.trusted import manifest_documents

BOARD = "query Board { incidents(first: 5) { edges { node { id } } } }"
BUREAUS = "query Bureaus { bureaus { code } }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_relays_and_code_generators_manifests_are_ids_to_texts() -> None:
    relay = {"3f1c2d9ab0": BOARD, "8e77a01b2c": BUREAUS}  # Relay's persistOutput: md5-like ids
    assert manifest_documents(relay) == relay
    codegen = {sha(BOARD): BOARD}  # the client preset's persisted-documents.json: the hash
    assert manifest_documents(codegen) == codegen


def test_apollos_manifest_is_read_by_its_operations() -> None:
    apollo = {
        "format": "apollo-persisted-query-manifest",
        "version": 1,
        "operations": [
            {"id": sha(BOARD), "name": "Board", "type": "query", "body": BOARD},
            {"id": sha(BUREAUS), "name": "Bureaus", "type": "query", "body": BUREAUS},
        ],
    }
    assert manifest_documents(apollo) == {sha(BOARD): BOARD, sha(BUREAUS): BUREAUS}


@pytest.mark.parametrize(
    ("manifest", "said"),
    [
        ([BOARD], "a JSON object of ids"),
        ({"a": 1}, "a JSON object of ids"),
        ({"format": "apollo-persisted-query-manifest", "version": 2, "operations": []},
         "version 1"),
        ({"format": "other", "operations": [{"id": "x", "body": BOARD}]}, "version 1"),
        ({"format": "apollo-persisted-query-manifest", "version": 1, "operations": "x"},
         "an id and a body"),
        ({"format": "apollo-persisted-query-manifest", "version": 1,
          "operations": [{"id": "x", "name": "Board"}]}, "an id and a body"),
        ({"format": "apollo-persisted-query-manifest", "version": 1,
          "operations": [{"id": "x", "body": BOARD}, {"id": "x", "body": BUREAUS}]},
         "given twice"),
    ],
    ids=["a-list", "not-texts", "apollo-v2", "other-format", "operations-not-a-list",
         "operation-without-body", "id-twice"],
)  # fmt: skip
def test_a_manifest_in_no_known_format_says_what_is_wrong(manifest: object, said: str) -> None:
    with pytest.raises(ValueError, match=said):
        manifest_documents(manifest)
