"""What a caller's search for incidents means: a case number, or words to find; and which
incidents one may duplicate.

A search is at most ``MAX_SEARCH_LENGTH`` characters of at most ``MAX_SEARCH_WORDS`` words, with
no control characters; a case number (``KH-00000042``, in any case) finds that incident alone,
and words find incidents whose title or description holds every one of them, in any case.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from datetime import timedelta

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
    case = incident_id(words[0].upper()) if len(words) == 1 else None
    return IncidentSearch(case_id=case) if case is not None else IncidentSearch(words=words)


# Candidates an incident may duplicate: how far, how long apart and how many, by default and
# at most.
CANDIDATE_METERS, MAX_CANDIDATE_METERS = 200.0, 2000.0
CANDIDATE_DAYS, MAX_CANDIDATE_DAYS = 30, 365
CANDIDATES, MAX_CANDIDATES = 5, 20


@dataclass(frozen=True, slots=True)
class DuplicateCandidates:
    """Incidents of the same category, not themselves duplicates, within ``meters`` of one and
    reported within ``within`` of it: the ``first`` nearest."""

    meters: float
    within: timedelta
    first: int


def duplicate_candidates(meters: float, days: int, first: int) -> DuplicateCandidates:
    """The candidates asked for; InvalidInput naming the argument out of bounds."""
    if not (math.isfinite(meters) and 1 <= meters <= MAX_CANDIDATE_METERS):
        raise InvalidInput("radiusMeters", f"must be between 1 and {MAX_CANDIDATE_METERS:g}")
    if not 1 <= days <= MAX_CANDIDATE_DAYS:
        raise InvalidInput("withinDays", f"must be between 1 and {MAX_CANDIDATE_DAYS}")
    if not 1 <= first <= MAX_CANDIDATES:
        raise InvalidInput("first", f"must be between 1 and {MAX_CANDIDATES}")
    return DuplicateCandidates(meters, timedelta(days=days), first)
