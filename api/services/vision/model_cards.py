"""Model cards: what the city tells its licensees about a model version, published by a model
officer from a finished evaluation run and frozen there (migration 0018).

A card says which version, with which prompt, was measured on which set (its name, version, size
and categories: never its frames, labels or answers) and what was measured, per category: the
threshold in force when it was published, the labelled frames, precision and recall with Wilson
intervals and F1 with its delta-method interval. Licensees read the cards of the versions their
licences pin (``Licence.modelVersions``); the city's officers read them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.access.scope import AccessScope
from api.domain.errors import InvalidInput
from api.domain.evaluation import CategoryFigures
from api.domain.quality import Interval
from api.policy import resources
from api.repositories.model_cards import CardRecord, ModelCardRepository, NewCard
from api.services.vision.evaluation import EvaluationReads
from api.settings import VisionSettings

MAX_SUMMARY = 2000


class ModelCards:
    def __init__(self, access: AccessScope, vision: VisionSettings) -> None:
        self._access = access
        self._vision = vision
        self._repository = ModelCardRepository(access.uow)

    async def publish(self, run_id: int, summary: str = "") -> CardRecord:
        """The card of the run ``run_id`` (one the caller may see, every frame answered),
        published now; the run's card as it was if it has one already."""
        self._access.authorize("EvaluateModel", resources.MODELS)
        summary = summary.strip()
        if len(summary) > MAX_SUMMARY:
            raise InvalidInput("summary", f"at most {MAX_SUMMARY:,} characters")
        report = await EvaluationReads(self._access, self._vision).report(run_id)
        figures = report.figures
        if figures.answered < figures.frames:
            raise InvalidInput(
                "run",
                f"the run has answered {figures.answered} of its {figures.frames} frames: "
                "finish it first (evaluateModelVersion takes it up where it stopped)",
            )
        run = report.run
        published = await self._repository.publish(
            NewCard(
                run.model, run.model_version, run.prompt_version, run.id, report.set.name,
                report.set.version, figures.frames, report.set.categories,
                [_figures(item) for item in figures.categories], summary,
            ),
            self._access.principal.subject,
        )  # fmt: skip
        if published is None:
            existing = await self._repository.card_of_run(run.id)
            assert existing is not None  # the run's card, made before
            published = existing
            self._access.audit.outcome = "ALREADY_PUBLISHED"
        else:
            self._access.audit.outcome = "PUBLISHED"
        self._access.audit.saw("ModelCard", published.id)
        return published

    async def cards(
        self, model: str | None = None, version: str | None = None, limit: int = 50
    ) -> list[CardRecord]:
        """The cards the caller may see (row-level security: all of them for the city's
        officers, a licensee the versions its licences pin), newest first per version."""
        self._access.authorize("ViewModelCard", resources.MODELS)
        found = await self._repository.cards(model, version, limit)
        self._access.audit.saw("ModelCard", [card.id for card in found])
        return found


def _figures(item: CategoryFigures) -> dict[str, Any]:
    def interval(value: Interval | None) -> dict[str, float] | None:
        return None if value is None else {"low": value.low, "high": value.high}

    return {
        "category": item.category,
        "threshold": item.threshold,
        "labelled": item.labelled,
        "true_positives": item.true_positives,
        "false_positives": item.false_positives,
        "false_negatives": item.false_negatives,
        "precision": item.precision,
        "precision_interval": interval(item.precision_interval),
        "recall": item.recall,
        "recall_interval": interval(item.recall_interval),
        "f1": item.f1,
        "f1_interval": interval(item.f1_interval),
    }


async def cards_by_id(access: AccessScope, ids: Sequence[int]) -> dict[int, CardRecord]:
    """The cards of ``ids`` the caller may see."""
    access.authorize("ViewModelCard", resources.MODELS)
    found = await ModelCardRepository(access.uow).by_id(ids)
    access.audit.saw("ModelCard", list(found))
    return found
