"""The model registry: the models the serving tier serves now, and every model version and
prompt version the vision workers have analysed frames with."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry
from strawberry.scalars import JSON

from api.graph.core.context import Info
from api.inference.client import ServingRefused, ServingUnavailable
from api.services.vision.reads import VisionReads


@strawberry.type(description="A model version the vision workers analysed frames with.")
class VisionModelVersion:
    name: str
    version: str
    first_used_at: datetime
    last_used_at: datetime


@strawberry.type(description="A version of the question every frame is asked.")
class VisionPrompt:
    version: str
    text: str
    schema: JSON = strawberry.field(description="The JSON schema the answer must follow.")
    created_at: datetime


@strawberry.type(description="A model the serving tier serves now.")
class ServedModel:
    id: str
    owned_by: str | None


@strawberry.type(description="What the serving tier says it serves, as of this request.")
class ServingStatus:
    reachable: bool
    models: list[ServedModel]
    configured_model: str = strawberry.field(description="The model the vision workers use.")
    configured_version: str


def _served(item: dict[str, Any]) -> ServedModel:
    owner = item.get("owned_by")
    return ServedModel(id=str(item.get("id", "")), owned_by=str(owner) if owner else None)


@strawberry.type
class ModelQueries:
    @strawberry.federation.field(
        description="Model versions the vision workers used, by name and version.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def vision_models(self, info: Info) -> list[VisionModelVersion]:
        rows = await VisionReads(info.context.access).models()
        return [VisionModelVersion(**row) for row in rows]

    @strawberry.federation.field(
        description="Every prompt version the vision workers asked with, oldest first.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def vision_prompts(self, info: Info) -> list[VisionPrompt]:
        rows = await VisionReads(info.context.access).prompts()
        return [VisionPrompt(**row) for row in rows]

    @strawberry.federation.field(
        description="The models the serving tier serves now (asked live; unreachable is said, "
        "not an error).",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def serving(self, info: Info) -> ServingStatus:
        VisionReads(info.context.access).may_see_registry()
        resources = info.context.resources
        try:
            served = await resources.vision.serving.models()
            reachable = True
        except (ServingUnavailable, ServingRefused):
            served, reachable = [], False
        return ServingStatus(
            reachable=reachable,
            models=[_served(item) for item in served],
            configured_model=resources.settings.serving.model,
            configured_version=resources.settings.serving.model_version,
        )
