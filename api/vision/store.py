"""Frames on disk, addressed by the SHA-256 of their bytes: the same frame is stored once.

A frame is written to a temporary file beside its place and renamed into it, so a reader never
sees half a frame and a crash leaves no partial one under its name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

EXTENSIONS = {"image/jpeg": ".jpg", "image/png": ".png"}


def parse_digest(key: str) -> bytes | None:
    """The SHA-256 a frame's key (64 hex digits) names, or None if it names none."""
    if len(key) != 64:
        return None
    try:
        return bytes.fromhex(key)
    except ValueError:
        return None


class FrameStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, digest: bytes, media_type: str) -> Path:
        name = digest.hex()
        return self.root / name[:2] / name[2:4] / (name + EXTENSIONS[media_type])

    def put(self, data: bytes, media_type: str) -> bytes:
        """Store ``data`` (once); return its SHA-256."""
        digest = hashlib.sha256(data).digest()
        target = self.path(digest, media_type)
        if target.exists():
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return digest

    def get(self, digest: bytes, media_type: str) -> bytes:
        return self.path(digest, media_type).read_bytes()
