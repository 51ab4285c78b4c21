"""The tier's own callers' credential: a bearer secret, read from a file, checked on every request.

Only the gateway and the vision workers may call the models; licensees reach them through the
gateway, which meters and audits each call. The application therefore refuses every request
that does not carry ``Authorization: Bearer <secret>`` with a secret from the tier's secret
file: one secret per line, every line accepted. The file is read again whenever it changes, so
a secret is rotated without a restart:

1. add the new secret as a line of its own (both are accepted now);
2. give the callers the new secret (they re-read their own file when it changes);
3. remove the old line: from then on the old secret is refused.

A file that is missing, unreadable or empty refuses every request (503): the tier fails closed.
Nothing here imports Ray; the middleware is plain ASGI, so a streamed answer passes through it
untouched.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

log = logging.getLogger("lighthouse_serving.credential")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# A secret is a line of printable ASCII without spaces (what `token_urlsafe` writes); at most
# this long, and at most this many lines are read (a file is not a place for a list of users).
MAX_SECRET_CHARS = 512
MAX_SECRETS = 8
MIN_SECRET_CHARS = 24


class SecretFileError(Exception):
    """The secret file cannot be used; the message names the file and says why."""


def read_secrets(path: Path) -> tuple[str, ...]:
    """The secrets in ``path``, one per non-blank line; ``SecretFileError`` when there are none
    or one is malformed."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as error:
        raise SecretFileError(f"{path}: cannot read it ({error})") from error
    found = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not found:
        raise SecretFileError(f"{path}: holds no secret")
    if len(found) > MAX_SECRETS:
        raise SecretFileError(f"{path}: {len(found)} secrets; at most {MAX_SECRETS}")
    for number, secret in enumerate(found, start=1):
        if not MIN_SECRET_CHARS <= len(secret) <= MAX_SECRET_CHARS or not secret.isprintable():
            raise SecretFileError(
                f"{path}: line {number} is not a secret ({MIN_SECRET_CHARS}-{MAX_SECRET_CHARS} "
                "printable characters; make one with `python -m lighthouse_serving secret`)"
            )
        if " " in secret:
            raise SecretFileError(f"{path}: line {number} holds a space")
    return found


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def _write_partial(path: Path, lines: tuple[str, ...]) -> Path:
    """The lines in a new file beside ``path``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write("".join(line + "\n" for line in lines))
        file.flush()
        os.fsync(file.fileno())
    return partial


def write_new_secret(path: Path) -> None:
    """Create ``path`` with one fresh secret; an existing file is left as it is."""
    partial = _write_partial(path, (new_secret(),))
    try:
        os.link(partial, path)  # fails if another process made it first: theirs stands
    except FileExistsError:
        pass
    finally:
        partial.unlink()


def add_secret(path: Path) -> int:
    """Put a fresh secret first in ``path``, keeping the others; how many it now holds. The
    file is replaced in one rename, so a reader sees the old or the new content, never half."""
    kept = read_secrets(path)
    if len(kept) >= MAX_SECRETS:
        raise SecretFileError(f"{path}: already {len(kept)} secrets; retire the old ones first")
    os.replace(_write_partial(path, (new_secret(), *kept)), path)
    return len(kept) + 1


def retire_secrets(path: Path) -> int:
    """Keep only the first (newest) secret of ``path``; how many were removed."""
    kept = read_secrets(path)
    os.replace(_write_partial(path, kept[:1]), path)
    return len(kept) - 1


class CallerSecrets:
    """The accepted secrets, read again from the file whenever it changes (checked by its
    modification time, size and inode on every call: one ``stat``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._secrets: tuple[bytes, ...] = ()
        self._problem: str | None = None

    def current(self) -> tuple[bytes, ...]:
        """The secrets now accepted; empty (everything refused) when the file is unusable."""
        try:
            info = self.path.stat()
        except OSError as error:
            self._remember(None, (), f"{self.path}: cannot read it ({error.strerror})")
            return ()
        seen = (info.st_mtime_ns, info.st_size, info.st_ino)
        if seen != self._seen:
            try:
                found = tuple(secret.encode() for secret in read_secrets(self.path))
            except SecretFileError as error:
                self._remember(seen, (), str(error))
            else:
                self._remember(seen, found, None)
        return self._secrets

    def _remember(
        self, seen: tuple[int, int, int] | None, found: tuple[bytes, ...], problem: str | None
    ) -> None:
        if problem != self._problem:
            if problem is None:
                log.info("caller secrets read from %s: %d accepted", self.path, len(found))
            else:
                log.error("every request is refused: %s", problem)
        self._seen, self._secrets, self._problem = seen, found, problem


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                return bytes(token.strip())
            return None
    return None


def _error(status: int, message: str, code: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """An answer in OpenAI's error shape, which the callers' clients read."""
    body = json.dumps(
        {"error": {"message": message, "type": "authentication_error", "code": code}}
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    if status == 401:
        headers.append((b"www-authenticate", b'Bearer realm="lighthouse-serving"'))
    return status, headers, body


class CallerCredentialMiddleware:
    """Refuses every HTTP request without an accepted bearer secret (401), and every request
    while the secret file is unusable (503). WebSocket and lifespan pass through: the app
    serves neither to callers."""

    def __init__(self, app: ASGIApp, secret_file: str) -> None:
        self.app = app
        self.secrets = CallerSecrets(Path(secret_file))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        presented = _bearer(scope)
        accepted = self.secrets.current()
        if not accepted:
            answer = _error(
                503, "the serving tier cannot read its callers' secret file", "tier_misconfigured"
            )
        elif presented is None:
            answer = _error(
                401, "this tier answers its own callers only: no credential", "missing_credential"
            )
        elif not any([hmac.compare_digest(presented, secret) for secret in accepted]):
            answer = _error(
                401,
                "this tier answers its own callers only: credential refused",
                "invalid_credential",
            )
        else:
            await self.app(scope, receive, send)
            return
        status, headers, body = answer
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
