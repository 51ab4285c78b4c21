"""Which model version analyses a frame: the one the registry's newest production decision
names (migration 0014), or the settings' model until one is made.

Read in the transaction that reads the frame, so a worker follows a decision from its next
frame on, without a restart, announcement or cache to miss (one indexed row per frame, beside a
model call of a second). A frame is analysed once per version (the analyses' unique key), so a
switch never has a frame analysed twice by the same version.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from api.db.unit_of_work import UnitOfWork
from api.repositories.registry import ModelDecisions
from api.repositories.vision import VisionRepository
from api.services.vision.analysis import VisionModel

log = structlog.get_logger(__name__)


class ProductionModel:
    def __init__(self, build: Callable[[str, str], VisionModel], default: VisionModel) -> None:
        self._build = build
        self._default = default
        self._models = {(default.name, default.version): default}
        self._registered: set[tuple[str, str]] = set()
        self._last: tuple[str, str] | None = None

    async def in_force(self, uow: UnitOfWork) -> VisionModel:
        """The version in production, read in ``uow`` (entered in the registry as the worker
        first takes it up)."""
        decision = await ModelDecisions(uow).in_force()
        key = (
            (decision.model, decision.version)
            if decision is not None
            else (self._default.name, self._default.version)
        )
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = self._build(*key)
        if key not in self._registered:
            await VisionRepository(uow).register_use(*key)
            self._registered.add(key)
        if key != self._last:
            log.info(
                "vision.model_in_force",
                model=key[0],
                version=key[1],
                decision=decision.id if decision is not None else None,
                was=None if self._last is None else "@".join(self._last),
            )
            self._last = key
        return model
