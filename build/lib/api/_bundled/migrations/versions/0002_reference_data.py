"""Reference data: Kaohsiung's bureaus and state enterprises, and the category routing table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from migrations.support import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

REFERENCE_DATA = """
INSERT INTO lighthouse.bureau (code, name_zh, name_en, kind, joint_service_centre) VALUES
    ('PUBLIC_WORKS', '高雄市政府工務局', 'Public Works Bureau', 'CITY_BUREAU', false),
    ('POLICE', '高雄市政府警察局', 'Police Department', 'CITY_BUREAU', false),
    ('ENVIRONMENTAL_PROTECTION', '高雄市政府環境保護局', 'Environmental Protection Bureau',
        'CITY_BUREAU', false),
    ('TRANSPORTATION', '高雄市政府交通局', 'Transportation Bureau', 'CITY_BUREAU', false),
    ('FIRE', '高雄市政府消防局', 'Fire Bureau', 'CITY_BUREAU', false),
    ('WATER_RESOURCES', '高雄市政府水利局', 'Water Resources Bureau', 'CITY_BUREAU', false),
    ('ECONOMIC_DEVELOPMENT', '高雄市政府經濟發展局', 'Economic Development Bureau',
        'CITY_BUREAU', false),
    ('RDEC', '高雄市政府研究發展考核委員會', 'Research, Development and Evaluation Commission',
        'COMMISSION', true),
    ('TAIPOWER', '台灣電力公司', 'Taiwan Power Company', 'STATE_ENTERPRISE', false),
    ('TAIWAN_WATER', '台灣自來水公司', 'Taiwan Water Corporation', 'STATE_ENTERPRISE', false);

INSERT INTO lighthouse.incident_category
    (code, name_zh, name_en, responsible_bureau_id, sla_working_days, sla_hours)
SELECT c.code, c.name_zh, c.name_en, b.id, c.sla_working_days, c.sla_hours
FROM (VALUES
    ('POTHOLE', '道路坑洞', 'Pothole', 'PUBLIC_WORKS', 2, NULL),
    ('ROAD_OBSTACLE', '道路障礙物', 'Road obstacle', 'PUBLIC_WORKS', NULL, 4),
    ('BROKEN_STREETLIGHT', '路燈故障', 'Broken street light', 'PUBLIC_WORKS', 3, NULL),
    ('FALLEN_TREE', '路樹傾倒', 'Fallen tree', 'PUBLIC_WORKS', NULL, 8),
    ('FLOODING', '道路積淹水', 'Flooding', 'WATER_RESOURCES', NULL, 4),
    ('BLOCKED_DRAIN', '側溝阻塞', 'Blocked drain', 'WATER_RESOURCES', 3, NULL),
    ('ILLEGAL_DUMPING', '違規棄置廢棄物', 'Illegal dumping', 'ENVIRONMENTAL_PROTECTION', 3, NULL),
    ('ILLEGAL_PARKING', '違規停車', 'Illegal parking', 'POLICE', NULL, 2),
    ('TRAFFIC_SIGNAL_FAULT', '交通號誌故障', 'Traffic signal fault', 'TRANSPORTATION', NULL, 4),
    ('FIRE_SMOKE', '火災或濃煙', 'Fire or smoke', 'FIRE', NULL, 1),
    ('ILLEGAL_STREET_VENDOR', '違規攤販', 'Illegal street vendor', 'ECONOMIC_DEVELOPMENT', 5, NULL),
    ('POWER_LINE_HAZARD', '電線危害', 'Power line hazard', 'TAIPOWER', NULL, 4),
    ('WATER_MAIN_LEAK', '自來水管漏水', 'Water main leak', 'TAIWAN_WATER', 1, NULL)
) AS c (code, name_zh, name_en, bureau, sla_working_days, sla_hours)
JOIN lighthouse.bureau b ON b.code = c.bureau;
"""


def upgrade() -> None:
    execute_script(REFERENCE_DATA)


def downgrade() -> None:
    execute_script("DELETE FROM lighthouse.incident_category; DELETE FROM lighthouse.bureau;")
