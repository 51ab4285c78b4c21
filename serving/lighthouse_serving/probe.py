"""Asking a running serving tier whether it answers: ``GET /v1/models`` over HTTP.

The same question the gateway asks; nothing here needs Ray.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import httpx

from lighthouse_serving.credential import SecretFileError, read_secrets


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What ``/v1/models`` said: the served model ids, or why there was no answer."""

    base_url: str
    models: tuple[str, ...] = ()
    error: str | None = None

    @property
    def answers(self) -> bool:
        return self.error is None


def probe(base_url: str, *, secret_file: Path | None, timeout: float = 5.0) -> ProbeResult:
    """``GET {base_url}/v1/models`` as one of the tier's callers (the newest secret of
    ``secret_file``, its first line); never raises for a server that is down or not ready."""
    headers = {}
    if secret_file is not None:
        try:
            headers["authorization"] = f"Bearer {read_secrets(secret_file)[0]}"
        except SecretFileError as error:
            return ProbeResult(base_url, error=str(error))
    try:
        response = httpx.get(f"{base_url}/v1/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as error:
        return ProbeResult(base_url, error=f"{type(error).__name__}: {error}")
    if response.status_code == 401:
        return ProbeResult(base_url, error="HTTP 401: the tier refused the credential")
    if response.status_code != 200:
        return ProbeResult(base_url, error=f"HTTP {response.status_code}")
    try:
        body = response.json()
        models = tuple(str(item["id"]) for item in body["data"])
    except (ValueError, KeyError, TypeError):
        return ProbeResult(base_url, error="not an OpenAI model list")
    return ProbeResult(base_url, models=models)


def port_is_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port`` (a bind test, released at once)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


# Ports Ray's own processes take by default whatever else is free: the dashboard agent's
# (52365) lies in the kernel's ephemeral range, so a port chosen free could be taken by any Ray
# starting on the machine before it is bound.
RAY_DEFAULT_PORTS = frozenset({52365, 52366, 8265, 6379, 10001})


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now (the kernel's choice, never one Ray takes by default)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in RAY_DEFAULT_PORTS:
            return port
