"""What the model-quality tests share: a camera of Public Works whose frames versions analysed."""

from __future__ import annotations

import asyncpg
import pytest

from tests.graph.models.test_quality import Lab


@pytest.fixture
async def lab(owner: asyncpg.Connection, clean: None) -> Lab:
    camera = await owner.fetchrow(
        "INSERT INTO asset (code, kind, name, bureau_id, latitude, longitude, created_by)"
        " SELECT 'CAM-Q-1', 'CAMERA', '品質相機', id, 22.62, 120.30, 'tests' FROM bureau"
        " WHERE code = 'PUBLIC_WORKS' RETURNING id, bureau_id"
    )
    await owner.execute(
        "INSERT INTO vision_prompt (version, text, schema) VALUES ('q-1', 'What is here?', '{}')"
        " ON CONFLICT DO NOTHING"
    )
    return Lab(owner, camera, {})
