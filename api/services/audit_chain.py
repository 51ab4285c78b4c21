"""The audit chain checked end to end, and anchored outside the database.

Verification recomputes every link from the first record (or any range) to the chain's *head*
— the sequence number and hash the next record will link to, kept in their own row — so a
deleted newest record, a record past the head or a head that does not match its record all
show. What verification alone cannot show is a truncation whose head was rewound to match (it
needs the owner's rights and the append-only triggers disabled): for that the head is signed
with the service's key and published on a schedule (an *anchor*), and a copy kept elsewhere is
checked against the chain later (``lighthouse audit check-anchor``).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, RSAKey

from api.audit.entries import GENESIS_HASH, ChainBreak, StoredRecord, check_links
from api.auth.keys import KeyRing
from api.domain.errors import InvalidInput
from api.repositories.audit import AuditRepository
from api.repositories.oauth import OAuthRepository

log = structlog.get_logger(__name__)

VERIFY_BATCH = 1000
ANCHOR_TYPE = "lighthouse-audit-anchor+jwt"


@dataclass(frozen=True, slots=True)
class ChainVerification:
    intact: bool
    checked: int
    first_seq: int
    last_seq: int
    first_broken_seq: int | None = None
    reason: str | None = None


async def verify_chain(
    repository: AuditRepository, from_seq: int, to_seq: int | None
) -> ChainVerification:
    """Recompute the chain from ``from_seq`` to ``to_seq`` (the head by default) and report
    the first broken link."""
    if to_seq is not None and to_seq < max(from_seq, 1):
        raise InvalidInput("toSeq", f"must be at least fromSeq ({from_seq}) and 1")
    head_seq, head_hash = await repository.head()
    to_seq = head_seq if to_seq is None else min(to_seq, head_seq)
    if from_seq < 1 or from_seq > max(to_seq, 1):
        raise InvalidInput("fromSeq", f"must be between 1 and {max(to_seq, 1)}")
    previous = GENESIS_HASH if from_seq == 1 else await repository.previous_hash(from_seq - 1)
    if previous is None:
        return ChainVerification(
            False, 0, from_seq, to_seq, from_seq - 1, "the record before the range is missing"
        )
    checked = 0
    expected = from_seq
    batch: list[StoredRecord] = []
    async for record in repository.stream(from_seq, to_seq):
        batch.append(record)
        if len(batch) >= VERIFY_BATCH:
            outcome = check_links(batch, previous, expected)
            if isinstance(outcome, ChainBreak):
                return _broken(outcome, from_seq, to_seq)
            checked += outcome
            previous, expected, batch = batch[-1].hash, batch[-1].seq + 1, []
    outcome = check_links(batch, previous, expected)
    if isinstance(outcome, ChainBreak):
        return _broken(outcome, from_seq, to_seq)
    checked += outcome
    if batch:
        previous = batch[-1].hash
    if to_seq >= from_seq and checked != to_seq - from_seq + 1:
        return ChainVerification(
            False, checked, from_seq, to_seq, from_seq + checked, "records are missing"
        )
    if to_seq == head_seq:
        if head_seq > 0 and previous != head_hash:
            return ChainVerification(
                False,
                checked,
                from_seq,
                to_seq,
                head_seq,
                "the chain's head does not match its last record",
            )
        beyond = await repository.last_seq()
        if beyond > head_seq:
            return ChainVerification(
                False, checked, from_seq, to_seq, head_seq + 1, "records lie past the chain's head"
            )
    return ChainVerification(True, checked, from_seq, to_seq)


def _broken(outcome: ChainBreak, first: int, last: int) -> ChainVerification:
    # Records are checked in order, so every record before the broken one was sound.
    return ChainVerification(False, outcome.seq - first, first, last, outcome.seq, outcome.reason)


@dataclass(frozen=True, slots=True)
class Anchor:
    seq: int
    hash: bytes
    anchored_at: datetime
    token: str  # a compact JWS over {iss, iat, seq, hash}


@dataclass(frozen=True, slots=True)
class AnchorCheck:
    holds: bool
    seq: int | None
    reason: str


class AuditAnchors:
    def __init__(
        self, audit: AuditRepository, oauth: OAuthRepository, keys: KeyRing, issuer: str
    ) -> None:
        self._audit = audit
        self._oauth = oauth
        self._keys = keys
        self._issuer = issuer

    async def publish(self) -> Anchor:
        """Sign the chain's head, keep the anchor, and log it (logs leave the machine for the
        city's log store: a copy outside this database). Records still pending (their linking
        was lost and no audited commit came since) are linked first, so each anchor covers
        everything committed before it."""
        await self._audit.link_pending()
        seq, head_hash = await self._audit.head()
        key = self._keys.current()
        if key is None:
            raise RuntimeError("no active signing key; run `lighthouse keys rotate`")
        now = datetime.now(UTC)
        claims = {
            "iss": self._issuer,
            "iat": int(now.timestamp()),
            "seq": seq,
            "hash": head_hash.hex(),
        }
        header = {"alg": key.algorithm, "typ": ANCHOR_TYPE, "kid": key.kid}
        token = jwt.encode(header, claims, key.key, algorithms=[key.algorithm])
        await self._audit.add_anchor(seq, head_hash, now, token)
        log.info("audit.anchor", seq=seq, hash=head_hash.hex(), anchor=token)
        return Anchor(seq, head_hash, now, token)

    async def check(self, token: str) -> AnchorCheck:
        """Whether the chain still holds the record ``token`` anchored, unchanged, and is
        intact from its first record to its head."""
        try:
            header = jws.extract_compact(token.strip().encode()).headers()
            kid = str(header.get("kid", ""))
        except (JoseError, ValueError) as error:
            return AnchorCheck(False, None, f"not an anchor: {error}")
        if header.get("typ") != ANCHOR_TYPE:
            return AnchorCheck(False, None, "not an audit anchor (wrong typ)")
        published = await self._oauth.public_key(kid)
        if published is None:
            return AnchorCheck(
                False, None, f"signed with key {kid!r}, which this service never had"
            )
        algorithm, jwk = published
        key: Any = (ECKey if jwk.get("kty") == "EC" else RSAKey).import_key(jwk)
        try:
            claims = dict(jwt.decode(token.strip(), key, algorithms=[algorithm]).claims)
        except (JoseError, ValueError) as error:
            return AnchorCheck(False, None, f"the anchor's signature is not valid: {error}")
        seq = int(claims["seq"])
        anchored = bytes.fromhex(str(claims["hash"]))
        head_seq, _ = await self._audit.head()
        if seq > head_seq:
            return AnchorCheck(
                False,
                seq,
                f"the chain's head is at {head_seq}, before the anchored record {seq}: records were removed",
            )
        if seq > 0:
            stored = await self._audit.record_hash(seq)
            if stored is None:
                return AnchorCheck(False, seq, f"the anchored record {seq} is missing")
            if stored != anchored:
                return AnchorCheck(False, seq, f"record {seq} differs from the anchored one")
        verification = await verify_chain(self._audit, 1, None) if head_seq else None
        if verification is not None and not verification.intact:
            return AnchorCheck(
                False,
                seq,
                f"the chain is broken at {verification.first_broken_seq}: {verification.reason}",
            )
        return AnchorCheck(
            True,
            seq,
            f"record {seq} is in the chain as anchored, and the chain is intact to {head_seq}",
        )

    async def publish_every(self, seconds: int) -> None:
        """Publish an anchor now and then every ``seconds`` (in the gateway's lifespan)."""
        while True:
            try:
                await self.publish()
            except Exception as error:  # the database is away; the next round tries again
                log.warning("audit.anchor_failed", error=repr(error))
            await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def anchored(anchors: AuditAnchors, seconds: int) -> Any:
    """Publish anchors on a schedule while the block runs (0: never)."""
    task = asyncio.create_task(anchors.publish_every(seconds)) if seconds else None
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
