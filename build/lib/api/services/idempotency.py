"""Running a creating operation at most once per idempotency key."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson

from api.domain.errors import IdempotencyKeyReused, InvalidInput
from api.repositories.idempotency import IdempotencyRepository

T = TypeVar("T")


def request_hash(payload: Any) -> str:
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


async def once(
    repository: IdempotencyRepository,
    *,
    subject: str,
    key: str | None,
    operation: str,
    payload: Any,
    create: Callable[[], Awaitable[tuple[T, int]]],
    replay: Callable[[int], Awaitable[T]],
) -> tuple[T, bool]:
    """Run ``create`` unless ``key`` already created something; return (result, replayed).

    ``create`` returns its result and the id of what it created. Must run inside the same
    savepoint as ``create`` so a failed creation releases the key.
    """
    if key is None:
        result, _ = await create()
        return result, False
    if not 1 <= len(key) <= 200:
        raise InvalidInput("idempotencyKey", "must be 1 to 200 characters")
    digest = request_hash(payload)
    prior = await repository.claim(subject, key, operation, digest)
    if prior is None:
        result, resource_id = await create()
        await repository.remember(subject, key, resource_id)
        return result, False
    if prior.operation != operation or prior.request_hash != digest or prior.resource_id is None:
        raise IdempotencyKeyReused(key)
    return await replay(prior.resource_id), True
