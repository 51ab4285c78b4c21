"""Analysing an image on the spot (``analyzeImage``): the same checks as a frame, the same model
and prompt as the workers, nothing stored and nothing queued. The answer comes back to the
caller; the call is audited like any other."""

from __future__ import annotations

import asyncio

from api.access.scope import AccessScope
from api.domain.errors import FrameRejected, ServiceUnavailable, TooBusy
from api.domain.findings import Category
from api.inference.client import ServingUnavailable
from api.policy import resources
from api.repositories.bureaus import BureauRepository
from api.services.vision.analysis import Analysis, Prompt, VisionModel
from api.settings import VisionSettings
from api.vision import images


class ImageAnalyses:
    def __init__(
        self,
        access: AccessScope,
        model: VisionModel,
        settings: VisionSettings,
        decoding: asyncio.Semaphore,
        analyses: asyncio.Semaphore,
    ) -> None:
        self._access = access
        self._model = model
        self._settings = settings
        self._decoding = decoding
        self._analyses = analyses

    async def analyse(self, data: bytes) -> tuple[Analysis, Prompt]:
        self._access.authorize("AnalyzeImage", resources.MODELS)
        if self._analyses.locked():
            # Refused, not queued: a waiting call would hold its request (and its connection).
            raise TooBusy("as many images are being analysed as this gateway takes; retry soon")
        async with self._analyses:
            async with self._decoding:
                try:
                    clean = await asyncio.to_thread(
                        images.clean,
                        data,
                        max_bytes=self._settings.max_frame_bytes,
                        max_pixels=self._settings.max_frame_pixels,
                    )
                except images.ImageRejected as rejected:
                    raise FrameRejected(rejected.code, rejected.reason) from None
            categories = await BureauRepository(self._access.uow).categories()
            prompt = Prompt.over([Category(c.code, c.name_en, c.name_zh) for c in categories])
            try:
                analysis = await self._model.analyse(prompt, clean.data, clean.media_type)
            except ServingUnavailable as unavailable:
                raise ServiceUnavailable(
                    f"the vision model cannot answer now ({unavailable}); retry later"
                ) from None
        self._access.audit.outcome = analysis.outcome.value
        return analysis, prompt
