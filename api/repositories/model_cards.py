"""Model cards and the model versions licences pin (migration 0018): published cards are never
changed, and each reader sees the rows row-level security gives them (a licensee's client the
cards of the versions its company's licences pin)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from api.db.unit_of_work import UnitOfWork

CARD_COLUMNS = (
    "id, model, version, prompt_version, run_id, set_name, set_version, set_frames, categories,"
    " figures, summary, published_by, published_at"
)
INSERT_CARD = f"""
INSERT INTO model_card (model, version, prompt_version, run_id, set_name, set_version,
                        set_frames, categories, figures, summary, published_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
ON CONFLICT (run_id) DO NOTHING
RETURNING {CARD_COLUMNS}
"""
CARD_OF_RUN = f"SELECT {CARD_COLUMNS} FROM model_card WHERE run_id = $1"
CARDS_BY_ID = f"SELECT {CARD_COLUMNS} FROM model_card WHERE id = ANY($1::bigint[])"
CARDS = f"""
SELECT {CARD_COLUMNS} FROM model_card
WHERE ($1::text IS NULL OR model = $1) AND ($2::text IS NULL OR version = $2)
ORDER BY model, version, id DESC
LIMIT $3
"""
# Each licence's models with the version it pins (if any) and that version's newest card the
# reader may see.
LICENSED_VERSIONS = """
SELECT l.id AS licence_id, m.model, v.version, c.id AS card_id, c.prompt_version, c.run_id,
       c.set_name, c.set_version, c.set_frames, c.categories, c.figures, c.summary,
       c.published_by, c.published_at
FROM licence l
CROSS JOIN LATERAL unnest(l.models) WITH ORDINALITY AS m(model, position)
LEFT JOIN licence_model_version v ON v.licence_id = l.id AND v.model = m.model
LEFT JOIN LATERAL (
    SELECT * FROM model_card
    WHERE model = m.model AND version = v.version ORDER BY id DESC LIMIT 1
) AS c ON true
WHERE l.id = ANY($1::int[])
ORDER BY l.id, m.position
"""


@dataclass(frozen=True, slots=True)
class CardRecord:
    id: int
    model: str
    version: str
    prompt_version: str
    run_id: int
    set_name: str
    set_version: int
    set_frames: int
    categories: list[str]
    figures: list[dict[str, Any]]
    summary: str
    published_by: str
    published_at: datetime


@dataclass(frozen=True, slots=True)
class NewCard:
    model: str
    version: str
    prompt_version: str
    run_id: int
    set_name: str
    set_version: int
    set_frames: int
    categories: Sequence[str]
    figures: Sequence[Mapping[str, Any]]
    summary: str


@dataclass(frozen=True, slots=True)
class LicensedVersion:
    model: str
    version: str | None  # None: licensed as served, no version pinned
    card: CardRecord | None


def _card(row: Mapping[str, Any], id_column: str = "id") -> CardRecord:
    figures = row["figures"]
    return CardRecord(
        **{
            name: row[id_column if name == "id" else name]
            for name in CardRecord.__dataclass_fields__
            if name != "figures"
        },
        figures=orjson.loads(figures) if isinstance(figures, str) else list(figures),
    )


class ModelCardRepository:
    def __init__(self, uow: UnitOfWork) -> None:
        self._uow = uow

    async def publish(self, card: NewCard, published_by: str) -> CardRecord | None:
        """The card, published now; None if the run already has one."""
        row = await self._uow.fetchrow(
            INSERT_CARD, card.model, card.version, card.prompt_version, card.run_id,
            card.set_name, card.set_version, card.set_frames, list(card.categories),
            [dict(item) for item in card.figures], card.summary, published_by,
        )  # fmt: skip
        return _card(row) if row is not None else None

    async def card_of_run(self, run_id: int) -> CardRecord | None:
        row = await self._uow.fetchrow(CARD_OF_RUN, run_id)
        return _card(row) if row is not None else None

    async def by_id(self, ids: Sequence[int]) -> dict[int, CardRecord]:
        return {row["id"]: _card(row) for row in await self._uow.fetch(CARDS_BY_ID, list(ids))}

    async def cards(self, model: str | None, version: str | None, limit: int) -> list[CardRecord]:
        return [_card(row) for row in await self._uow.fetch(CARDS, model, version, limit)]

    async def licensed_versions(
        self, licence_ids: Sequence[int]
    ) -> dict[int, list[LicensedVersion]]:
        found: dict[int, list[LicensedVersion]] = {key: [] for key in licence_ids}
        for row in await self._uow.fetch(LICENSED_VERSIONS, list(licence_ids)):
            card = _card(row, "card_id") if row["card_id"] is not None else None
            found[row["licence_id"]].append(LicensedVersion(row["model"], row["version"], card))
        return found
