"""Per-scope DataLoaders for frames, their analyses and detections."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api.graph.core.loaders import ScopedLoader
from api.repositories.model_cards import CardRecord
from api.repositories.vision import AnalysisRecord, DetectionRecord, FrameRecord
from api.services.vision.model_cards import cards_by_id
from api.services.vision.reads import VisionReads


class FrameBySha(ScopedLoader[bytes, FrameRecord | None]):
    async def load_batch(self, keys: Sequence[bytes]) -> list[FrameRecord | None]:
        found = await VisionReads(self.access).frames(keys)
        return [found.get(key) for key in keys]


class AnalysesOf(ScopedLoader[bytes, list[AnalysisRecord]]):
    async def load_batch(self, keys: Sequence[bytes]) -> list[list[AnalysisRecord]]:
        found = await VisionReads(self.access).analyses_of(keys)
        return [found.get(key, []) for key in keys]


class DetectionById(ScopedLoader[int, DetectionRecord | None]):
    async def load_batch(self, keys: Sequence[int]) -> list[DetectionRecord | None]:
        found = await VisionReads(self.access).detections(keys)
        return [found.get(key) for key in keys]


class DetectionsInFrame(ScopedLoader[bytes, list[DetectionRecord]]):
    async def load_batch(self, keys: Sequence[bytes]) -> list[list[DetectionRecord]]:
        found = await VisionReads(self.access).detections_of_frames(keys)
        return [found.get(key, []) for key in keys]


class ModelVersionsByName(ScopedLoader[str, list[dict[str, Any]]]):
    """Each model's versions the vision workers used (the registry is small: read once)."""

    async def load_batch(self, keys: Sequence[str]) -> list[list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {}
        for row in await VisionReads(self.access).models():
            found.setdefault(row["name"], []).append(row)
        return [found.get(key, []) for key in keys]


class CardById(ScopedLoader[int, CardRecord | None]):
    """Model cards by id (a federation router's references to them)."""

    async def load_batch(self, keys: Sequence[int]) -> list[CardRecord | None]:
        found = await cards_by_id(self.access, keys)
        return [found.get(key) for key in keys]
