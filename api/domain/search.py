"""What a caller's search for incidents means: a case number, or words to find.

A search is at most ``MAX_SEARCH_LENGTH`` characters of at most ``MAX_SEARCH_WORDS`` words, with
no control characters; a case number (``KH-00000042``) finds that incident alone, and words find
incidents whose title or description holds every one of them, in any case.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from api.domain.errors import InvalidInput
from api.domain.open311 import incident_id

MAX_SEARCH_LENGTH = 100
MAX_SEARCH_WORDS = 8


@dataclass(frozen=True, slots=True)
class IncidentSearch:
    words: tuple[str, ...] = ()
    case_id: int | None = None


def incident_search(text: str, field: str) -> IncidentSearch:
    """The search ``text`` asks for; InvalidInput naming ``field`` when it is not one."""
    if len(text) > MAX_SEARCH_LENGTH:
        raise InvalidInput(field, f"at most {MAX_SEARCH_LENGTH} characters")
    if any(unicodedata.category(c) in ("Cc", "Cf") for c in text if c not in " \t"):
        raise InvalidInput(field, "must not hold control characters")
    words = tuple(dict.fromkeys(text.split()))
    if not words:
        raise InvalidInput(field, "give at least one word, or leave the search out")
    if len(words) > MAX_SEARCH_WORDS:
        raise InvalidInput(field, f"at most {MAX_SEARCH_WORDS} words")
    case = incident_id(words[0]) if len(words) == 1 else None
    return IncidentSearch(case_id=case) if case is not None else IncidentSearch(words=words)
