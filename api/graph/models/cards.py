"""Model cards in the graph: ``publishModelCard`` for the city's model officers, ``modelCards``
for the city's officers, and the card type licensees read through their licences
(``Licence.modelVersions``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import strawberry
from graphql import GraphQLError

from api.domain.errors import DomainError, InvalidInput
from api.domain.quality import Interval
from api.graph.core import errors
from api.graph.core.context import Info
from api.graph.models.loaders import CardById
from api.graph.models.quality import ShareInterval
from api.repositories.model_cards import CardRecord
from api.services.vision.model_cards import ModelCards

MAX_CARDS = 200


@strawberry.type(description="What a model version measured on one category of the set.")
class CardCategory:
    category: str
    threshold: float = strawberry.field(description="The category's threshold when published.")
    labelled: int = strawberry.field(description="The set's frames that show the category.")
    true_positives: int
    false_positives: int
    false_negatives: int
    precision: float | None
    precision_interval: ShareInterval | None = strawberry.field(description="Wilson's 95%.")
    recall: float | None
    recall_interval: ShareInterval | None = strawberry.field(description="Wilson's 95%.")
    f1: float | None
    f1_interval: ShareInterval | None = strawberry.field(description="The delta method's 95%.")

    @classmethod
    def of(cls, figures: dict[str, Any]) -> CardCategory:
        def interval(value: dict[str, float] | None) -> ShareInterval | None:
            return ShareInterval.of(
                None if value is None else Interval(value["low"], value["high"])
            )

        return cls(
            category=figures["category"],
            threshold=figures["threshold"],
            labelled=figures["labelled"],
            true_positives=figures["true_positives"],
            false_positives=figures["false_positives"],
            false_negatives=figures["false_negatives"],
            precision=figures["precision"],
            precision_interval=interval(figures["precision_interval"]),
            recall=figures["recall"],
            recall_interval=interval(figures["recall_interval"]),
            f1=figures["f1"],
            f1_interval=interval(figures["f1_interval"]),
        )


@strawberry.type(description="The evaluation set a card was measured on: named, never shown.")
class CardEvaluationSet:
    name: str
    version: int
    frames: int
    categories: list[str]


@strawberry.federation.type(
    keys=["id"],
    description="What the city publishes about a model version: what it was measured on and "
    "what it measured, frozen when a model officer published it.",
)
class ModelCard:
    id: strawberry.ID
    model: str
    version: str
    prompt_version: str
    evaluated_on: CardEvaluationSet
    categories: list[CardCategory]
    summary: str
    published_by: str
    published_at: datetime

    @classmethod
    def of(cls, card: CardRecord) -> ModelCard:
        return cls(
            id=strawberry.ID(str(card.id)),
            model=card.model,
            version=card.version,
            prompt_version=card.prompt_version,
            evaluated_on=CardEvaluationSet(
                name=card.set_name,
                version=card.set_version,
                frames=card.set_frames,
                categories=card.categories,
            ),
            categories=[CardCategory.of(item) for item in card.figures],
            summary=card.summary,
            published_by=card.published_by,
            published_at=card.published_at,
        )

    @classmethod
    async def resolve_reference(cls, info: Info, **representation: Any) -> ModelCard | None:
        key = str(representation["id"])
        found = await CardById.of(info).load(int(key)) if key.isdigit() else None
        return cls.of(found) if found is not None else None


@strawberry.input
class PublishModelCardInput:
    run: strawberry.ID = strawberry.field(description="A finished evaluation run's id.")
    summary: str = strawberry.field(default="", description="What licensees should know.")


@strawberry.type
class ModelCardPublished:
    card: ModelCard


PublishModelCardResult = Annotated[
    ModelCardPublished | errors.InvalidInput | errors.NotFound | errors.Forbidden,
    strawberry.union("PublishModelCardResult"),
]


@strawberry.type
class CardQueries:
    @strawberry.federation.field(
        description="The model cards you may see, newest first per version: all of them for the "
        "city's model officers (models:admin), licensing officers and auditors; for a "
        "licensee, those of the versions its licences pin (also in `Licence.modelVersions`).",
        authenticated=True,
    )
    async def model_cards(
        self, info: Info, model: str | None = None, version: str | None = None, last: int = 50
    ) -> list[ModelCard]:
        if not 1 <= last <= MAX_CARDS:
            raise GraphQLError(f"last: must be 1 to {MAX_CARDS}")
        cards = ModelCards(info.context.access, info.context.resources.settings.vision)
        return [ModelCard.of(card) for card in await cards.cards(model, version, last)]


@strawberry.type
class CardMutations:
    @strawberry.federation.mutation(
        authenticated=True,
        requires_scopes=[["models:admin"]],
        description="Publish the model card of a finished evaluation run: the version, the set "
        "it was measured on (name, size, categories) and its figures, frozen, for the licensees "
        "whose licences pin that version. Publishing a run's card again gives the same card.",
    )
    async def publish_model_card(
        self, info: Info, input: PublishModelCardInput
    ) -> PublishModelCardResult:
        context = info.context
        try:
            if not input.run.isdigit():
                raise InvalidInput("run", f"{input.run!r} is not a run's id")
            card = await ModelCards(context.access, context.resources.settings.vision).publish(
                int(input.run), input.summary
            )
        except DomainError as error:
            context.audit.outcome = error.code
            return errors.to_graphql(error)  # type: ignore[return-value]
        return ModelCardPublished(card=ModelCard.of(card))
