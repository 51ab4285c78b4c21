"""Trusted external issuers (the city's single sign-on): their keys, fetched off the request path.

Each issuer's JWKS is fetched at start-up and refreshed in the background every
``jwks_refresh_seconds``, or sooner when a token arrives signed with a key id not yet known (at
most once a minute per issuer). A request never waits for a fetch: a token with an unknown key
is refused, and accepted once the refreshed keys have arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import structlog
from joserfc.jwk import KeySet

from api.settings import TrustedIssuer

log = structlog.get_logger(__name__)

EARLY_REFRESH_INTERVAL = 60.0


class ExternalIssuer:
    def __init__(self, config: TrustedIssuer) -> None:
        self.config = config
        self.keys = KeySet([])
        self.fetched_at: float | None = None
        self._wanted = asyncio.Event()
        self._last_early = float("-inf")

    def request_refresh(self) -> None:
        """Ask for an early refresh (a token used an unknown key); throttled."""
        now = time.monotonic()
        if now - self._last_early >= EARLY_REFRESH_INTERVAL:
            self._last_early = now
            self._wanted.set()

    async def refresh(self, http: httpx.AsyncClient) -> None:
        jwks_uri = self.config.jwks_uri
        if jwks_uri is None:
            discovery = self.config.issuer.rstrip("/") + "/.well-known/openid-configuration"
            response = await http.get(discovery)
            response.raise_for_status()
            jwks_uri = str(response.json()["jwks_uri"])
        response = await http.get(jwks_uri)
        response.raise_for_status()
        keys = [key for key in response.json().get("keys", []) if key.get("use", "sig") == "sig"]
        self.keys = KeySet.import_key_set({"keys": keys})
        self.fetched_at = time.monotonic()
        log.info("issuers.keys_refreshed", issuer=self.config.issuer, keys=len(keys))


class IssuerRegistry:
    def __init__(self, configs: list[TrustedIssuer], refresh_seconds: int) -> None:
        self._issuers = {config.issuer: ExternalIssuer(config) for config in configs}
        self._refresh_seconds = refresh_seconds
        self._tasks: list[asyncio.Task[None]] = []
        self._http: httpx.AsyncClient | None = None
        self._stopping = False

    def get(self, issuer: str) -> ExternalIssuer | None:
        return self._issuers.get(issuer)

    @property
    def issuers(self) -> list[ExternalIssuer]:
        return list(self._issuers.values())

    async def start(self) -> None:
        self._http = httpx.AsyncClient(timeout=10, follow_redirects=False)
        for issuer in self._issuers.values():
            try:
                await issuer.refresh(self._http)
            except (httpx.HTTPError, KeyError, ValueError) as error:
                # Start anyway: the issuer's tokens are refused until its keys arrive.
                log.error("issuers.keys_unavailable", issuer=issuer.config.issuer, error=str(error))
            self._tasks.append(asyncio.create_task(self._keep_fresh(issuer)))

    async def _keep_fresh(self, issuer: ExternalIssuer) -> None:
        assert self._http is not None
        while not self._stopping:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
            # that arrives as the event is set, and stop() would wait for ever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._refresh_seconds):
                    await issuer._wanted.wait()
            issuer._wanted.clear()
            if self._stopping:
                return
            try:
                await issuer.refresh(self._http)
            except (httpx.HTTPError, KeyError, ValueError) as error:
                log.warning("issuers.refresh_failed", issuer=issuer.config.issuer, error=str(error))

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        # gather, not awaiting each task under suppress(CancelledError): a cancellation aimed at
        # the caller of stop() must not be swallowed with the tasks'.
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()
