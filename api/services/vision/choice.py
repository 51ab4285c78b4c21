"""Which model versions analyse a frame: the one the registry's newest production decision names
(or the settings' model until one is made), and the candidate of a trial beside it (migration
0015): in SHADOW, the candidate analyses a share of the frames as well, acting on nothing; as a
CANARY, it analyses a share instead of production, for real.

Read in the transaction that reads the frame, so a worker follows a decision from its next
frame on, without a restart, announcement or cache to miss (one indexed statement per frame,
beside a model call of a second). Which frames a trial takes is decided by the frame's digest
and the trial's decision, so a retried frame goes to the same versions; and a frame is analysed
once per version (the analyses' unique key), so no switch has a version analyse a frame twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from api.db.unit_of_work import UnitOfWork
from api.repositories.registry import CANARY, PRODUCTION, SHADOW, DecisionRecord, ModelDecisions
from api.repositories.vision import VisionRepository
from api.services.vision.analysis import VisionModel

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Assignment:
    """The versions that analyse one frame: ``live`` acts on what it finds (in the role
    PRODUCTION or CANARY), ``shadow`` (if any) is recorded beside it."""

    live: VisionModel
    live_role: str
    shadow: VisionModel | None = None
    trial: DecisionRecord | None = None


def takes(trial: DecisionRecord, digest: bytes) -> bool:
    """Whether ``trial``'s candidate takes the frame: a uniform draw from the frame's digest
    and the decision, below the trial's share."""
    assert trial.share is not None
    draw = hashlib.sha256(trial.id.to_bytes(8, "big") + digest).digest()
    return int.from_bytes(draw[:8], "big") < trial.share * 2**64


class ProductionModel:
    def __init__(self, build: Callable[[str, str], VisionModel], default: VisionModel) -> None:
        self._build = build
        self._default = default
        self._models = {(default.name, default.version): default}
        self._registered: set[tuple[str, str]] = set()
        self._last: tuple[tuple[str, str], int | None] | None = None

    def version(self, name: str, version: str) -> VisionModel:
        """The served model ``name`` as ``version`` (one client per version, kept)."""
        key = (name, version)
        model = self._models.get(key)
        if model is None:
            model = self._models[key] = self._build(name, version)
        return model

    async def in_force(self, uow: UnitOfWork) -> VisionModel:
        """The version in production, read in ``uow``."""
        production = await ModelDecisions(uow).production()
        return await self._model(uow, production)

    async def assign(self, uow: UnitOfWork, digest: bytes) -> Assignment:
        """The versions that analyse the frame ``digest``, as the registry decides now (entered
        in the registry of versions as the worker first takes each up)."""
        in_force = await ModelDecisions(uow).in_force()
        production = await self._model(uow, in_force.production)
        trial = in_force.trial
        self._say(production, trial)
        if trial is None or not takes(trial, digest):
            return Assignment(production, PRODUCTION, trial=trial)
        candidate = await self._model(uow, trial)
        if trial.role == CANARY:
            return Assignment(candidate, CANARY, trial=trial)
        assert trial.role == SHADOW
        return Assignment(production, PRODUCTION, shadow=candidate, trial=trial)

    async def _model(self, uow: UnitOfWork, decision: DecisionRecord | None) -> VisionModel:
        key = (
            (decision.model, decision.version)
            if decision is not None
            else (self._default.name, self._default.version)
        )
        model = self.version(*key)
        if key not in self._registered:
            await VisionRepository(uow).register_use(*key)
            self._registered.add(key)
        return model

    def _say(self, production: VisionModel, trial: DecisionRecord | None) -> None:
        now = ((production.name, production.version), None if trial is None else trial.id)
        if now == self._last:
            return
        log.info(
            "vision.models_in_force",
            model=production.name,
            version=production.version,
            trial=None if trial is None else trial.role,
            candidate=None if trial is None else f"{trial.model}@{trial.version}",
            share=None if trial is None else trial.share,
        )
        self._last = now
