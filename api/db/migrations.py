"""Running the Alembic revisions in ``migrations/`` and checking that a database is current."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from api.db.endpoints import redact, sqlalchemy_url

log = structlog.get_logger(__name__)


def _config(migrations_dir: Path, url: str | None, app_role: str) -> Config:
    if not (migrations_dir / "env.py").exists():
        raise FileNotFoundError(
            f"no Alembic environment at {migrations_dir}; set LIGHTHOUSE_MIGRATIONS_DIR"
        )
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    # Revisions import their helpers as ``migrations.support``.
    config.set_main_option("path_separator", "os")
    config.set_main_option("prepend_sys_path", str(migrations_dir.resolve().parent))
    if url is not None:
        # ConfigParser interpolation treats % specially (URL-encoded socket paths contain it).
        config.set_main_option("sqlalchemy.url", sqlalchemy_url(url).replace("%", "%%"))
    config.attributes["app_role"] = app_role
    return config


def revisions(migrations_dir: Path) -> list[str]:
    """Every revision, oldest first."""
    script = ScriptDirectory.from_config(_config(migrations_dir, None, "lighthouse_app"))
    return [revision.revision for revision in reversed(list(script.walk_revisions()))]


def head_revision(migrations_dir: Path) -> str:
    script = ScriptDirectory.from_config(_config(migrations_dir, None, "lighthouse_app"))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError(f"no revisions under {migrations_dir}")
    return head


def upgrade(
    owner_url: str,
    migrations_dir: Path,
    app_role: str,
    *,
    on_step: Callable[[str, str], None] | None = None,
    target: str = "head",
) -> str:
    """Bring the database to the newest revision (or ``target``); report each applied step;
    return the head."""
    config = _config(migrations_dir, owner_url, app_role)
    script = ScriptDirectory.from_config(config)
    total = len(list(script.walk_revisions()))

    def applied(*, step: Any, **_: Any) -> None:
        revision = step.up_revision_id
        doc = step.up_revision.doc if step.up_revision is not None else ""
        log.info("migration.applied", revision=revision, of=total, description=doc)
        if on_step is not None:
            on_step(revision, doc)

    config.attributes["on_version_apply"] = applied
    log.info("migration.start", database=redact(owner_url), head=script.get_current_head())
    command.upgrade(config, target)
    head = script.get_current_head()
    assert head is not None
    return head


def downgrade(owner_url: str, migrations_dir: Path, app_role: str, target: str) -> None:
    """Take the database back to ``target`` (a revision, or ``base``), undoing each revision
    after it with its own ``downgrade``."""
    config = _config(migrations_dir, owner_url, app_role)
    log.info("migration.downgrade", database=redact(owner_url), target=target)
    command.downgrade(config, target)


async def current_revision(connection: asyncpg.Connection | asyncpg.Pool) -> str | None:
    try:
        value = await connection.fetchval("SELECT version_num FROM lighthouse.alembic_version")
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return None
    return str(value) if value is not None else None
