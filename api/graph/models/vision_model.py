"""A vision model by the name licences and analyses give it: the entity a licence refers to
(the licensing subgraph holds only its name), with its versions and the detections its analyses
found (licence → model → detections crosses the licensing and models subgraphs)."""

from __future__ import annotations

from typing import Any

import strawberry

from api.graph.core.context import Info
from api.graph.models.detections import DetectionConnection
from api.graph.models.frames import DetectionFilterInput, detection_filter, detections_connection
from api.graph.models.loaders import ModelVersionsByName
from api.graph.models.registry import VisionModelVersion


@strawberry.federation.type(
    keys=["name"], description="A vision model, by the name licences and analyses give it."
)
class VisionModel:
    name: str

    @strawberry.federation.field(
        description="Its versions the vision workers analysed frames with.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def versions(self, info: Info) -> list[VisionModelVersion]:
        rows = await ModelVersionsByName.of(info).load(self.name)
        return [VisionModelVersion(**row) for row in rows]

    @strawberry.federation.field(
        description="The detections its analyses found that you may see, newest first.",
        authenticated=True,
        requires_scopes=[["incidents:read"]],
    )
    async def detections(
        self,
        info: Info,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: DetectionFilterInput | None = None,
    ) -> DetectionConnection:
        where = detection_filter(filter, models=[self.name])
        return await detections_connection(info, where, first, after, last, before)

    @classmethod
    def resolve_reference(cls, info: Info, **representation: Any) -> VisionModel:
        return cls(name=str(representation["name"]))
