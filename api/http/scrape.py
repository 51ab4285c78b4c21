"""Who may read ``/metrics``: it tells an outsider how busy the city's services are, which
operations its frontends run and how often they fail, so it is not served to the internet.

- With ``LIGHTHOUSE_METRICS_SECRET_FILE`` (one or more scrape secrets, one per line; Prometheus
  sends one with ``authorization: {credentials_file: …}``), a request must carry
  ``Authorization: Bearer <a secret of the file>``, from anywhere. The file is read at every
  scrape, so a secret is rotated by adding the new line, moving the scrapers, and removing the
  old one; a file that cannot be read refuses every scrape (503) rather than opening up.
- Without it, in production nothing is served (403, saying to set the file); elsewhere only this
  machine's own callers (a loopback source address) are.
"""

from __future__ import annotations

import hmac
import ipaddress
from enum import Enum
from pathlib import Path

import structlog
from starlette.types import Scope

from api.http.transaction import authorization, client_address

log = structlog.get_logger(__name__)

MAX_SECRETS = 8
MAX_FILE_BYTES = 8192


class Scrape(Enum):
    ALLOWED = "allowed"
    NO_CREDENTIAL = "no_credential"  # 401
    ELSEWHERE = "elsewhere"  # 403: not this machine, and no secret is set
    UNREADABLE = "unreadable"  # 503: the secret file cannot be read


def scrape_verdict(scope: Scope, secret_file: Path | None, production: bool) -> Scrape:
    if secret_file is not None:
        secrets = _secrets(secret_file)
        if secrets is None:
            return Scrape.UNREADABLE
        presented = authorization(scope) or ""
        scheme, _, credential = presented.partition(" ")
        given = credential.strip().encode()
        matched = False
        for secret in secrets:  # every one compared: the time says nothing of which matched
            matched |= hmac.compare_digest(given, secret)
        return Scrape.ALLOWED if scheme.lower() == "bearer" and matched else Scrape.NO_CREDENTIAL
    if not production and _loopback(client_address(scope)):
        return Scrape.ALLOWED
    return Scrape.ELSEWHERE


def _secrets(path: Path) -> list[bytes] | None:
    try:
        with path.open("rb") as file:
            text = file.read(MAX_FILE_BYTES + 1)
    except OSError as error:
        log.error("metrics.secret_unreadable", path=str(path), error=str(error))
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(text) > MAX_FILE_BYTES or not lines or len(lines) > MAX_SECRETS:
        log.error("metrics.secret_file_invalid", path=str(path),
                  expected=f"1 to {MAX_SECRETS} secrets, one per line")  # fmt: skip
        return None
    return lines


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False
