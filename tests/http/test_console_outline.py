"""The outline the console's map draws (LIGHTHOUSE_CONSOLE_OUTLINE): one of the boundaries the
console's build holds, by name or code, or a GeoJSON file of the city's own; anything else
stops start-up with a message naming the setting."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from api.app import create_app
from api.http.console import OUTLINES, city_outline
from api.settings import Settings, SettingsError

SQUARE = [[[120.2, 22.5], [120.4, 22.5], [120.4, 22.7], [120.2, 22.7], [120.2, 22.5]]]


def _settings(outline: str) -> Settings:
    return Settings(environment="test", console={"outline": outline})  # type: ignore[arg-type]


def test_the_build_holds_every_county_and_a_name_an_english_name_or_a_code_finds_one() -> None:
    index = json.loads((OUTLINES / "index.json").read_text())
    assert (
        len(index) == 22
        and {"name": "高雄市", "nameEn": "Kaohsiung City", "code": "64000"} in index
    )
    for named in ("高雄市", "Kaohsiung City", "64000", "  高雄市 "):
        outline = city_outline(_settings(named))
        assert outline is not None
        (feature,) = orjson.loads(outline)["features"]
        assert feature["properties"] == {"name": "高雄市", "nameEn": "Kaohsiung City"}
        assert feature["geometry"]["type"] in ("Polygon", "MultiPolygon")
    taipei = orjson.loads(city_outline(_settings("臺北市")) or b"null")  # 臺 or 台, either way
    assert taipei["features"][0]["properties"]["nameEn"] == "Taipei City"
    assert city_outline(_settings("")) is None


@pytest.mark.parametrize(
    ("document", "kept"),
    [
        ({"type": "Polygon", "coordinates": SQUARE}, "a geometry"),
        (
            {
                "type": "Feature",
                "properties": {"name": "市界"},
                "geometry": {"type": "Polygon", "coordinates": SQUARE},
            },
            "a feature",
        ),
        (
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {},
                        "geometry": {"type": "MultiPolygon", "coordinates": [SQUARE]},
                    }
                ],
            },
            "a collection",
        ),
    ],
)
def test_a_geojson_file_of_the_citys_own_is_served_as_a_collection(
    tmp_path: Path, document: dict[str, Any], kept: str
) -> None:
    path = tmp_path / "city.geojson"
    path.write_text(json.dumps(document))
    outline = orjson.loads(city_outline(_settings(str(path))) or b"null")
    assert outline["type"] == "FeatureCollection", kept
    (feature,) = outline["features"]
    assert feature["geometry"]["coordinates"] in (SQUARE, [SQUARE])
    create_app(_settings(str(path)))  # starts with it


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read"),
        ("not json", "is not an outline"),
        (json.dumps([1, 2]), "expected a GeoJSON object"),
        (json.dumps({"type": "FeatureCollection", "features": []}), "at least one feature"),
        (json.dumps({"type": "Point", "coordinates": [120.3, 22.6]}), "Polygon or MultiPolygon"),
        (
            json.dumps({"type": "Polygon", "coordinates": [[[120.2, 22.5], [120.4, 22.5]]]}),
            "at least four",
        ),
        (
            json.dumps({"type": "Polygon", "coordinates": [[[179250, 2502800]] * 4]}),
            "[longitude, latitude]",
        ),
        (  # a latitude past 90
            json.dumps({"type": "Polygon", "coordinates": [[[22.6, 200.3]] * 4]}),
            "[longitude, latitude]",
        ),
        (json.dumps({"type": "Polygon", "coordinates": [1, 2]}), "[longitude, latitude]"),
        (json.dumps({"type": "MultiPolygon", "coordinates": [3]}), "a list of rings"),
        (json.dumps({"type": "Polygon", "coordinates": "x"}), "a list of rings"),
        (  # a longitude past 180
            json.dumps({"type": "Polygon", "coordinates": [[[200.3, 22.6]] * 4]}),
            "[longitude, latitude]",
        ),
        (json.dumps({"type": "Polygon", "coordinates": [[[True, 22.5]] * 4]}), "[longitude"),
        ("x" * (2 * 1024 * 1024 + 1), "larger than 2 MiB"),
    ],
)
def test_an_outline_that_cannot_be_had_stops_start_up_naming_the_setting(
    tmp_path: Path, content: str | None, reason: str
) -> None:
    path = tmp_path / "city.geojson"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SettingsError) as refused:
        create_app(_settings(str(path)))
    assert str(refused.value).startswith("LIGHTHOUSE_CONSOLE_OUTLINE: "), refused.value
    assert reason in str(refused.value), refused.value


def test_an_unknown_name_is_refused_with_the_names_there_are() -> None:
    with pytest.raises(SettingsError) as refused:
        city_outline(_settings("Gotham"))
    assert "no outline is named 'Gotham'" in str(refused.value)
    assert "高雄市" in str(refused.value) and "台北市" in str(refused.value)
