"""Model releases for licensees with their own compute: a model directory's manifest (every file
with its SHA-256 and size, the serving config and the licence terms), signed by the city's key as
a JWS, and checked again on the licensee's machine against the city's published keys.

The manifest is a JWT of type ``lighthouse-release+jwt`` signed with the service's current
signing key (the same keys as its access tokens, published at ``/oauth/jwks``), so anyone can
check it with standard tools: the signature with the JWKS, the files with ``sha256sum``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from api.domain.errors import InvalidInput

RELEASE_TYPE = "lighthouse-release+jwt"
MAX_FILES = 10_000
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ReleaseFile:
    path: str  # relative, POSIX
    sha256: str
    bytes: int


def scan(directory: Path) -> list[ReleaseFile]:
    """Every regular file under ``directory`` with its hash and size, by path; symbolic links
    and special files are refused (a release must be what it says)."""
    if not directory.is_dir():
        raise InvalidInput("dir", f"{directory} is not a directory")
    found: list[ReleaseFile] = []
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in [*dirs, *files]:
            if (Path(root) / name).is_symlink():
                raise InvalidInput("dir", f"{Path(root) / name} is a symbolic link")
        for name in sorted(files):
            path = Path(root) / name
            if not path.is_file():
                raise InvalidInput("dir", f"{path} is not a regular file")
            found.append(_hashed(directory, path))
            if len(found) > MAX_FILES:
                raise InvalidInput("dir", f"more than {MAX_FILES} files")
    if not found:
        raise InvalidInput("dir", f"{directory} holds no files")
    return sorted(found, key=lambda f: f.path)


def _hashed(directory: Path, path: Path) -> ReleaseFile:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return ReleaseFile(path.relative_to(directory).as_posix(), digest.hexdigest(), size)


def manifest(
    model: str, version: str, files: list[ReleaseFile], config: str, terms: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "model": model,
        "version": version,
        "files": [{"path": f.path, "sha256": f.sha256, "bytes": f.bytes} for f in files],
        "serving_config": config,
        "terms": dict(terms),
    }


def sign(content: Mapping[str, Any], key: Any, kid: str, algorithm: str, issuer: str) -> str:
    claims = {"iss": issuer, "iat": int(datetime.now(UTC).timestamp()), **content}
    header = {"alg": algorithm, "typ": RELEASE_TYPE, "kid": kid}
    return str(jwt.encode(header, claims, key, algorithms=[algorithm]))


def safe_path(manifest_files: list[dict[str, Any]], wanted: str) -> dict[str, Any] | None:
    """The manifest's entry for ``wanted`` (only paths the manifest lists can be fetched)."""
    if PurePosixPath(wanted).is_absolute() or ".." in PurePosixPath(wanted).parts:
        return None
    return next((f for f in manifest_files if f["path"] == wanted), None)


@dataclass(frozen=True, slots=True)
class Verification:
    holds: bool
    problems: list[str]
    claims: dict[str, Any]


def verify(directory: Path, token: str, jwks: Mapping[str, Any]) -> Verification:
    """Whether ``token`` is a release signed by a key of ``jwks`` and ``directory`` holds exactly
    the files it lists, byte for byte."""
    try:
        header = jws.extract_compact(token.strip().encode()).headers()
    except (JoseError, ValueError) as error:
        return Verification(False, [f"not a signed release: {error}"], {})
    if header.get("typ") != RELEASE_TYPE:
        return Verification(False, ["not a Lighthouse release (wrong typ)"], {})
    published = next((k for k in jwks.get("keys", []) if k.get("kid") == header.get("kid")), None)
    if published is None:
        return Verification(False, [f"signed with key {header.get('kid')!r}, not in the JWKS"], {})
    key: Any = (ECKey if published.get("kty") == "EC" else RSAKey).import_key(dict(published))
    try:
        claims = dict(jwt.decode(token.strip(), key, algorithms=[str(header.get("alg"))]).claims)
    except (JoseError, ValueError) as error:
        return Verification(False, [f"the signature is not valid: {error}"], {})
    problems: list[str] = []
    listed = {f["path"]: f for f in claims.get("files", [])}
    for path, entry in sorted(listed.items()):
        file = directory / path
        if (
            safe_path(list(listed.values()), path) is None
            or not file.is_file()
            or file.is_symlink()
        ):
            problems.append(f"{path}: missing")
            continue
        found = _hashed(directory, file)
        if (found.sha256, found.bytes) != (entry["sha256"], entry["bytes"]):
            problems.append(f"{path}: differs from the release (sha256 {found.sha256})")
    if directory.is_dir():
        present = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
        problems += [f"{path}: not in the release" for path in sorted(present - set(listed))]
    return Verification(not problems, problems, claims)
