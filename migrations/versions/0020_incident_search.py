"""Incidents found by words: trigram indexes over titles and descriptions.

The graph's ``filter: {search: "…"}`` matches each word, in any case, anywhere in an incident's
title or description (``ILIKE '%word%'``); pg_trgm's GIN indexes answer that without reading
every incident. Row-level security applies as to every read.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06
"""

from __future__ import annotations

from migrations.support import execute_script

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

UPGRADE = """
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE INDEX incident_title_words ON lighthouse.incident USING gin (title public.gin_trgm_ops);
CREATE INDEX incident_description_words ON lighthouse.incident
    USING gin (description public.gin_trgm_ops);
"""

DOWNGRADE = """
DROP INDEX lighthouse.incident_description_words;
DROP INDEX lighthouse.incident_title_words;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
