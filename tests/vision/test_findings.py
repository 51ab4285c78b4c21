"""Reading the model's answer: bounded findings over known categories, each with the probability
the model gave the whole category string."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.domain.findings import (
    MAX_FINDINGS,
    MAX_NOTE,
    Category,
    TokenLogprob,
    UnusableAnswer,
    answer_schema,
    logprob_tokens,
    read_answer,
)
from api.services.vision.analysis import Prompt
from tests.vision.fake_serving import Said, answer_tokens

CODES = ["FALLEN_TREE", "FLOODING", "POTHOLE", "ILLEGAL_DUMPING"]


def tokens_for(text: str, said: list[Said]) -> list[TokenLogprob]:
    tokens = logprob_tokens(answer_tokens(text, said))
    assert tokens is not None
    return tokens


def answer(*said: Said) -> str:
    return json.dumps({"findings": [{"category": s.category, "note": s.note} for s in said]})


def test_each_finding_gets_the_probability_of_its_whole_category_string() -> None:
    said = [Said("FLOODING", "water", 0.64), Said("FALLEN_TREE", "tree", 0.25)]
    text = answer(*said)
    found = read_answer(text, CODES, tokens_for(text, said))
    assert [(f.category, f.note) for f in found] == [("FLOODING", "water"), ("FALLEN_TREE", "tree")]
    assert [round(f.confidence, 6) for f in found] == [0.64, 0.25]


def test_categories_sharing_a_first_token_are_told_apart_by_the_rest() -> None:
    # "F" is certain (both FLOODING and FALLEN_TREE start with it); the rest decides.
    text = answer(Said("FALLEN_TREE"))
    tokens = [
        TokenLogprob('{"findings": [{"category": "', 0.0),
        TokenLogprob("F", 0.0),
        TokenLogprob("ALLEN", math.log(0.3)),
        TokenLogprob("_TREE", 0.0),
        TokenLogprob('", "note": "seen"}]}', 0.0),
        TokenLogprob("</s>", 0.0),
    ]
    assert "".join(t.text for t in tokens[:-1]) == text
    (found,) = read_answer(text, CODES, tokens)
    assert found.confidence == pytest.approx(0.3)


def test_the_same_category_twice_is_one_finding_at_its_higher_confidence() -> None:
    said = [Said("POTHOLE", "a", 0.2), Said("POTHOLE", "b", 0.7)]
    text = answer(*said)
    (found,) = read_answer(text, CODES, tokens_for(text, said))
    assert (found.note, round(found.confidence, 6)) == ("b", 0.7)


def test_nothing_found_is_an_empty_list() -> None:
    text = answer()
    assert read_answer(text, CODES, tokens_for(text, [])) == []


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ('{"findings": [{"category": "POTHOLE", "no', "not JSON"),
        ("[]", 'exactly "findings"'),
        ('{"findings": [], "extra": 1}', 'exactly "findings"'),
        ('{"findings": {}}', "a list of at most"),
        (answer(*[Said("POTHOLE")] * (MAX_FINDINGS + 1)), "a list of at most"),
        ('{"findings": [{"category": "VOLCANO", "note": ""}]}', "unknown category"),
        ('{"findings": [{"category": 7, "note": ""}]}', "unknown category"),
        ('{"findings": [{"category": "POTHOLE"}]}', 'exactly "category" and "note"'),
        (answer(Said("POTHOLE", "x" * (MAX_NOTE + 1))), "at most"),
    ],
    ids=["cut-off", "array", "extra-key", "not-a-list", "too-many", "unknown", "not-text",
         "no-note", "long-note"],
)  # fmt: skip
def test_an_answer_that_breaks_the_schema_is_unusable_with_its_reason(text: str, why: str) -> None:
    with pytest.raises(UnusableAnswer) as unusable:
        read_answer(text, CODES, [TokenLogprob(text, 0.0)])
    assert why in unusable.value.reason


def test_an_answer_without_log_probabilities_is_unusable() -> None:
    with pytest.raises(UnusableAnswer, match="log-probabilities"):
        read_answer(answer(Said("POTHOLE")), CODES, None)


def test_the_schema_is_tight_and_names_only_the_categories() -> None:
    schema = answer_schema(CODES)
    item = schema["properties"]["findings"]
    assert item["maxItems"] == MAX_FINDINGS
    assert item["items"]["properties"]["category"]["enum"] == sorted(CODES)
    assert item["items"]["properties"]["note"]["maxLength"] == MAX_NOTE
    assert schema["additionalProperties"] is False


def test_the_prompt_version_changes_with_the_categories() -> None:
    one = Prompt.over([Category("POTHOLE", "Pothole", "坑洞")])
    same = Prompt.over([Category("POTHOLE", "Pothole", "坑洞")])
    two = Prompt.over(
        [Category("POTHOLE", "Pothole", "坑洞"), Category("FLOODING", "Flood", "淹水")]
    )
    assert one.version == same.version and one.version.startswith("findings-v1-")
    assert two.version != one.version
    assert "FLOODING: Flood (淹水)" in two.text


@given(
    st.lists(
        st.tuples(st.sampled_from(CODES), st.floats(0.001, 1.0), st.text(max_size=MAX_NOTE)),
        max_size=MAX_FINDINGS,
    )
)
def test_any_answer_in_the_schema_reads_back_with_its_probabilities(
    items: list[tuple[str, float, str]],
) -> None:
    said = [Said(category, note, probability) for category, probability, note in items]
    text = answer(*said)
    found = {f.category: f for f in read_answer(text, CODES, tokens_for(text, said))}
    best: dict[str, float] = {}
    for s in said:
        best[s.category] = max(best.get(s.category, 0.0), s.probability)
    assert {c: round(f.confidence, 9) for c, f in found.items()} == {
        c: round(p, 9) for c, p in best.items()
    }
