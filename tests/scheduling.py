"""How the suite shares the machine's cores (pytest-xdist, ``-n N --dist loadgroup``).

Each worker process has its own PostgreSQL database, gateway and OpenID provider (the session
fixtures of tests/conftest.py), and takes whole groups of tests:

- a module is a group, so its module-scoped fixtures (a second gateway, a harness) are set up
  once;
- the modules whose tests need the real serving tier are one group, so one worker starts the
  tier once per run (a tier per worker would cost a minute and several GB each);
- groups are handed out longest first, so that no long group starts last while the other
  workers sit idle.

pytest-xdist's own ``loadgroup`` reads ``xdist_group`` marks through a node-id suffix that
pytest 9.2's structured node ids no longer carry (pytest-dev/pytest-xdist#1386: the marks are
ignored and every test is scheduled alone). The groups here are decided from the node id
itself, and the modules' marks are checked against them at collection.
"""

from __future__ import annotations

import pytest
from xdist.scheduler import LoadScopeScheduling

SERVING = "serving"
# The modules whose tests use the `serving_tier` fixture; a test marked `serving` elsewhere
# fails the collection (it would start a second tier on another worker).
SERVING_MODULES = frozenset(
    {
        "tests/metering/test_v1_with_the_model.py",
        "tests/vision/test_model_loop.py",
        "tests/vision/test_pipeline.py",
    }
)
# Modules whose tests are groups of their own: long tests drawn in shards, each shard on a
# worker of its own.
SHARDED_MODULES = frozenset({"tests/policy/test_agreement.py"})
# The longest groups (measured with --durations), handed out first and in this order; the
# others follow in collection order.
LONGEST = (
    SERVING,
    "tests/policy/test_agreement.py::test_the_rule_book_cedar_rls_and_api_agree[shard0]",
    "tests/policy/test_agreement.py::test_the_rule_book_cedar_rls_and_api_agree[shard1]",
    "tests/metering/test_v1.py",
    "tests/metering/test_v1_failures.py",
    "tests/federation/test_routers.py",
)


def group_of(nodeid: str) -> str:
    module = nodeid.split("::", 1)[0]
    if module in SERVING_MODULES:
        return SERVING
    return nodeid if module in SHARDED_MODULES else module


def order_and_check(items: list[pytest.Item]) -> None:
    """Put the longest groups first (a stable sort: order within a group is kept) and refuse
    a test that needs the serving tier outside the serving group's modules."""
    strays = [
        item.nodeid
        for item in items
        if item.get_closest_marker("serving") and group_of(item.nodeid) != SERVING
    ]
    if strays:
        raise pytest.UsageError(
            "tests marked `serving` outside tests/scheduling.py's SERVING_MODULES (they would "
            f"start a second serving tier on another worker): {strays}"
        )
    rank = {group: place for place, group in enumerate(LONGEST)}
    items.sort(key=lambda item: rank.get(group_of(item.nodeid), len(rank)))


class GroupScheduling(LoadScopeScheduling):
    """xdist's scope scheduling, by ``group_of``, in collection order."""

    def __init__(self, config: pytest.Config, log: object | None = None) -> None:
        config.option.loadscopereorder = False  # the collection order is ours (order_and_check)
        super().__init__(config, log)

    def _split_scope(self, nodeid: str) -> str:
        return group_of(nodeid)
