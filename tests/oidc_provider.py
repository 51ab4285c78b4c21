"""A real third-party OAuth 2.0 / OpenID Connect provider for the tests.

``tests/oidc/provider.mjs`` runs the ``oidc-provider`` npm package (installed with
``npm ci --prefix tests/oidc``) as a separate process. Its ``client_credentials`` access tokens
are RFC 9068 JWTs (``typ: at+jwt``, RS256, ``aud`` = the resource indicator) carrying each
client's extra claims, signed with a key generated at start and published at ``jwks_uri``.
Tokens are fetched with authlib's OAuth 2.0 client, as a real caller of Lighthouse would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path
from typing import IO, Any

import httpx
from authlib.deprecate import AuthlibDeprecationWarning

from tests.support import REPOSITORY, free_port, stalled_start_report, wait_for_tool

with warnings.catch_warnings():
    # authlib warns at import that its httpx integration prefers the httpx2 package when that
    # is installed; with plain httpx it works as before, and this project depends on httpx.
    # (Importing authlib.deprecate first matters: it installs an "always" filter for its
    # warnings, which would otherwise take precedence over this one.)
    warnings.filterwarnings(
        "ignore", message="The httpx module is deprecated", category=AuthlibDeprecationWarning
    )
    from authlib.integrations.httpx_client import AsyncOAuth2Client

PROVIDER_DIR = REPOSITORY / "tests" / "oidc"
PROVIDER_SCRIPT = PROVIDER_DIR / "provider.mjs"
DISCOVERY_PATH = "/.well-known/openid-configuration"


class OidcProvider:
    """``node tests/oidc/provider.mjs`` in a subprocess, listening on 127.0.0.1.

    ``clients`` are dicts with ``client_id``, ``client_secret``, ``scope`` (space separated,
    the scopes the client may request) and ``claims`` (added to every access token it gets).
    """

    def __init__(
        self,
        audience: str,
        clients: list[dict[str, Any]],
        log_path: Path,
        *,
        public_clients: list[dict[str, Any]] | None = None,
        accounts: dict[str, dict[str, Any]] | None = None,
        access_token_ttl: int = 600,
    ) -> None:
        """``public_clients`` (``client_id``, ``redirect_uris``, and ``refresh``: also issued
        refresh tokens) sign in ``accounts`` (by login name, with their tokens' claims) by the
        authorization code with PKCE; access tokens live ``access_token_ttl`` seconds."""
        self.audience = audience
        self.clients = clients
        self.public_clients = public_clients or []
        self.accounts = accounts or {}
        self.access_token_ttl = access_token_ttl
        self.log_path = log_path
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._log_start = 0
        self._discovery: dict[str, Any] | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return self.issuer + DISCOVERY_PATH

    def start(self, timeout: float = 90) -> None:
        """Starts the provider; it is ready in well under a second on an idle machine, but the
        wait is generous because the suite runs it beside the serving tier's start-up."""
        wait_for_tool("oidc")
        if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError(
                f"{PROVIDER_DIR / 'node_modules'} is missing: run `npm ci --prefix tests/oidc`"
            )
        node = shutil.which("node")
        if node is None:
            raise RuntimeError("node is not on PATH; the test OIDC provider needs Node.js")

        env = {
            **os.environ,
            "OIDC_PORT": str(self.port),
            "OIDC_AUDIENCE": self.audience,
            "OIDC_CLIENTS": json.dumps(self.clients),
            "OIDC_PUBLIC_CLIENTS": json.dumps(self.public_clients),
            "OIDC_ACCOUNTS": json.dumps(self.accounts),
            "OIDC_ACCESS_TOKEN_TTL": str(self.access_token_ttl),
        }
        # Now and then, on a loaded machine, node stalls before it has loaded its modules
        # (asleep, a third of a second of processor time used, nothing written; seen twice in
        # runs of the whole suite, never alone): a stalled start is stopped and made again,
        # within the same overall wait, and each stall is reported with what its threads wait
        # on.
        deadline = time.monotonic() + timeout
        stalls: list[str] = []
        while True:
            attempt_deadline = min(deadline, time.monotonic() + max(timeout / 3, 20))
            if self._attempt(node, env, attempt_deadline):
                if stalls:
                    print(f"OIDC provider: ready after {len(stalls)} stalled start(s):")
                    print("\n".join(stalls))
                return
            stalls.append(stalled_start_report(self._process.pid, threads=True))
            self.stop()
            if time.monotonic() >= deadline:
                break
        raise RuntimeError(
            f"OIDC provider not ready in {timeout}s ({len(stalls)} starts):\n"
            + "\n---\n".join(stalls)
            + f"\n{self._log_tail()}"
        )

    def _attempt(self, node: str, env: dict[str, str], deadline: float) -> bool:
        """One start of the provider; whether it was ready before ``deadline``."""
        self._log = self.log_path.open("ab")
        self._log_start = self._log.tell()  # the log may hold earlier runs: read past them
        self._process = subprocess.Popen(
            [node, str(PROVIDER_SCRIPT.relative_to(REPOSITORY))],
            env=env,
            cwd=REPOSITORY,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        ready_line = f"READY {self.issuer}"
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._close_log()
                raise RuntimeError(
                    f"OIDC provider exited at start-up (code {self._process.returncode}):\n"
                    f"{self._log_tail()}"
                )
            if ready_line in self._log_text() or self._discovery_answers():
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self._close_log()

    async def discovery(self) -> dict[str, Any]:
        """The provider's ``/.well-known/openid-configuration`` document (fetched once)."""
        if self._discovery is None:
            async with httpx.AsyncClient(timeout=10) as http:
                response = await http.get(self.discovery_url)
                response.raise_for_status()
                self._discovery = response.json()
        return self._discovery

    async def client_credentials_token(
        self, client_id: str, client_secret: str, scope: str | None = None
    ) -> str:
        """An access token from the ``client_credentials`` grant, for ``self.audience``.

        Without ``scope`` the token request names none, and the provider then issues a
        token with no ``scope`` claim.
        """
        token_endpoint = (await self.discovery())["token_endpoint"]
        async with AsyncOAuth2Client(
            client_id,
            client_secret,
            scope=scope,
            token_endpoint_auth_method="client_secret_basic",
            timeout=10,
        ) as client:
            token = await client.fetch_token(
                token_endpoint, grant_type="client_credentials", resource=self.audience
            )
        access_token: str = token["access_token"]
        return access_token

    def _discovery_answers(self) -> bool:
        try:
            return httpx.get(self.discovery_url, timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def _log_text(self) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_start)
                return log.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def _log_tail(self, chars: int = 4000) -> str:
        return self._log_text()[-chars:]

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
