"""Analysing an image on the spot (``analyzeImage``): the same checks as a frame, the same model
(the registry's version in production), prompt and thresholds as the workers, nothing stored and
nothing queued. The answer comes back to the
caller; the call is audited like any other.

The model may take a minute to answer, so the call runs as a long request does: checked in the
request's transaction (may the caller; the prompt over the categories), then the image decoded
and the model asked with no transaction open (no pooled connection held), then recorded in the
request's next one."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Protocol

from api.access.scope import AccessScope
from api.domain.errors import FrameRejected, ServiceUnavailable, TooBusy
from api.domain.findings import Category
from api.inference.client import ServingUnavailable
from api.policy import resources
from api.repositories.bureaus import BureauRepository
from api.repositories.registry import ModelDecisions
from api.services.vision.analysis import Analysis, Prompt, VisionModel
from api.services.vision.thresholds import thresholds_in_force
from api.settings import VisionSettings
from api.vision import images
from api.vision.decoding import ImageDecoder


class RequestSteps(Protocol):
    """The caller's request, as the analysis runs in it (the graph's ``Context``)."""

    @property
    def access(self) -> AccessScope:
        """The access scope over the request's transaction now."""

    def released(self) -> AbstractAsyncContextManager[None]:
        """A block run with no transaction open; ``access`` is a new scope after it."""


@dataclass(frozen=True, slots=True)
class ImageAnswer:
    analysis: Analysis
    prompt: Prompt
    model: VisionModel  # the version that answered
    thresholds: dict[str, float]  # per category, in force (others: the settings' threshold)


class ImageAnalyses:
    def __init__(
        self,
        request: RequestSteps,
        model: VisionModel,
        settings: VisionSettings,
        decoding: ImageDecoder,
        analyses: asyncio.Semaphore,
    ) -> None:
        self._request = request
        self._model = model
        self._settings = settings
        self._decoding = decoding
        self._analyses = analyses

    async def analyse(self, data: bytes) -> ImageAnswer:
        access = self._request.access
        access.authorize("AnalyzeImage", resources.MODELS)
        if self._analyses.locked():
            # Refused, not queued: each call waiting holds its request.
            raise TooBusy("as many images are being analysed as this gateway takes; retry soon")
        async with self._analyses:
            categories = await BureauRepository(access.uow).categories()
            prompt = Prompt.over([Category(c.code, c.name_en, c.name_zh) for c in categories])
            production = await ModelDecisions(access.uow).production()
            model = (
                self._model
                if production is None
                else self._model.named(production.model, production.version)
            )
            thresholds = await thresholds_in_force(access, self._settings)
            async with self._request.released():
                analysis = await self._model_answer(model, prompt, await self._clean(data))
        self._request.access.audit.outcome = analysis.outcome.value
        return ImageAnswer(analysis, prompt, model, thresholds)

    async def _clean(self, data: bytes) -> images.CleanImage:
        try:
            return await self._decoding.clean(
                data,
                max_bytes=self._settings.max_frame_bytes,
                max_pixels=self._settings.max_frame_pixels,
            )
        except images.ImageRejected as rejected:
            raise FrameRejected(rejected.code, rejected.reason) from None

    async def _model_answer(
        self, model: VisionModel, prompt: Prompt, clean: images.CleanImage
    ) -> Analysis:
        try:
            return await model.analyse(prompt, clean.data, clean.media_type)
        except ServingUnavailable as unavailable:
            raise ServiceUnavailable(
                f"the vision model cannot answer now ({unavailable}); retry later"
            ) from None
