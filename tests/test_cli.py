"""The ``lighthouse`` command, run as an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import asyncpg
import pytest

from tests.conftest import _drop_database, gateway_env, make_database
from tests.support import REPOSITORY, DatabaseUnderTest, GatewayProcess


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "api.cli", *args],
        cwd=REPOSITORY,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def fresh(server_url: str) -> Iterator[DatabaseUnderTest]:
    import asyncio

    created = make_database(server_url)
    yield created
    asyncio.run(_drop_database(server_url, created.name))


def test_migrate_is_idempotent_and_reports_progress(fresh: DatabaseUnderTest) -> None:
    result = run(
        "migrate",
        LIGHTHOUSE_DATABASE_URL=fresh.app_url,
        LIGHTHOUSE_DATABASE_OWNER_URL=fresh.owner_url,
    )
    assert result.returncode == 0, result.stderr
    assert "Database is at revision" in result.stderr


def test_migrate_without_owner_url_names_the_setting(fresh: DatabaseUnderTest) -> None:
    env = {"LIGHTHOUSE_DATABASE_URL": fresh.app_url}
    result = subprocess.run(
        [sys.executable, "-m", "api.cli", "migrate"],
        cwd=REPOSITORY,
        env={
            k: v for k, v in {**os.environ, **env}.items() if k != "LIGHTHOUSE_DATABASE_OWNER_URL"
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "LIGHTHOUSE_DATABASE_OWNER_URL" in result.stderr


def test_bad_setting_stops_the_command(fresh: DatabaseUnderTest) -> None:
    result = run("serve", LIGHTHOUSE_DATABASE_URL="mysql://nope/x")
    assert result.returncode == 2
    assert "LIGHTHOUSE_DATABASE_URL" in result.stderr


@pytest.mark.db
async def test_seed_loads_a_consistent_city(fresh: DatabaseUnderTest) -> None:
    env = {
        "LIGHTHOUSE_DATABASE_URL": fresh.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": fresh.owner_url,
    }
    result = run("seed", "--assets", "50", "--incidents", "80", **env)
    assert result.returncode == 0, result.stderr
    assert "Seeded 50 assets, 80 incidents" in result.stderr
    again = run("seed", "--if-empty", **env)
    assert "already present" in again.stderr
    connection = await asyncpg.connect(fresh.owner_url)
    try:
        # Every incident's status is the last event's; closed ones have a reason and a time.
        mismatched = await connection.fetchval(
            """
            SELECT count(*) FROM lighthouse.incident i
            WHERE i.status <> (SELECT e.to_status FROM lighthouse.incident_event e
                               WHERE e.incident_id = i.id ORDER BY e.id DESC LIMIT 1)
               OR i.version <> (SELECT count(*) FROM lighthouse.incident_event e
                                WHERE e.incident_id = i.id)
            """
        )
        assert mismatched == 0
        statuses = await connection.fetchval(
            "SELECT count(DISTINCT status) FROM lighthouse.incident"
        )
        assert statuses >= 5
        # New rows after seeding get fresh ids (the identity sequences were moved on).
        await connection.execute(
            "INSERT INTO lighthouse.asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
            " VALUES ('NEW-1', 'DRAIN', 'new', 1, 22.6, 120.3, 'test')"
        )
    finally:
        await connection.close()


def test_gateway_refuses_a_privileged_role(fresh: DatabaseUnderTest, tmp_path: object) -> None:
    env = gateway_env(fresh) | {"LIGHTHOUSE_DATABASE_URL": fresh.owner_url}
    gateway = GatewayProcess(env, REPOSITORY / ".pytest_cache" / "refused-gateway.log")
    gateway.log_path.parent.mkdir(exist_ok=True)
    gateway.log_path.write_text("")
    with pytest.raises(RuntimeError, match="superuser, has BYPASSRLS or owns Lighthouse tables"):
        gateway.start(timeout=30)


def test_token_command_is_refused_in_production(fresh: DatabaseUnderTest) -> None:
    result = run(
        "token",
        "--as",
        "pwb-supervisor",
        LIGHTHOUSE_ENVIRONMENT="production",
        LIGHTHOUSE_DATABASE_URL=fresh.app_url,
        LIGHTHOUSE_DATABASE_OWNER_URL=fresh.owner_url,
        LIGHTHOUSE_KEY_ENCRYPTION_KEY="c2l4dGVlbi1ieXRlcy1rZXktc2l4dGVlbi1ieXRlcyE=",
    )
    assert result.returncode == 2
    assert "for development" in result.stderr
    assert result.stdout == ""


def test_token_command_names_its_principals(fresh: DatabaseUnderTest) -> None:
    env = {
        "LIGHTHOUSE_DATABASE_URL": fresh.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": fresh.owner_url,
    }
    listed = run("token", "--list", **env)
    assert "pwb-supervisor" in listed.stderr and "auditor" in listed.stderr
    unknown = run("token", "--as", "mayor", **env)
    assert unknown.returncode == 2
    token = run("token", "--as", "jsc-operator", **env)
    assert token.returncode == 0 and token.stdout.count(".") == 2


def test_the_vision_worker_logs_json_lines_as_a_service(fresh: DatabaseUnderTest) -> None:
    env = {
        "LIGHTHOUSE_DATABASE_URL": fresh.app_url,
        "LIGHTHOUSE_DATABASE_OWNER_URL": fresh.owner_url,
    }
    assert run("migrate", **env).returncode == 0
    drained = run("worker", "vision", "--drain", **env)
    assert drained.returncode == 0, drained.stderr
    events = [json.loads(line) for line in drained.stderr.splitlines() if line.startswith("{")]
    names = [event["event"] for event in events]
    assert "vision.worker_started" in names and "vision.worker_stopped" in names
    assert all({"timestamp", "level", "logger"} <= event.keys() for event in events)


def test_the_command_starts_without_loading_the_graph_or_the_migrations() -> None:
    """Each command imports what it needs when it runs: `lighthouse --help`, `token` or
    `licensing list` do not wait for the graph, Alembic or the policy engine to load."""
    heavy = ["strawberry", "alembic", "cedarpy", "api.graph.domains", "api.access.scope"]
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, api.cli; print([m for m in {heavy!r} if m in sys.modules])"],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip
    assert loaded == "[]"


def test_subgraph_help_names_every_domain() -> None:
    from api.graph.domains import DOMAINS

    shown = run("subgraph", "--help")
    assert shown.returncode == 0, shown.stderr
    text = " ".join(shown.stdout.split())
    assert all(name in text for name in DOMAINS), (list(DOMAINS), text)


def test_the_version_names_the_release_and_the_schema_revision() -> None:
    from importlib.metadata import version

    from api.db.migrations import head_revision

    done = run("--version")
    assert done.returncode == 0, done.stderr
    head = head_revision(REPOSITORY / "migrations")
    assert done.stdout.startswith(f"lighthouse {version('lighthouse')} (schema revision {head},")
