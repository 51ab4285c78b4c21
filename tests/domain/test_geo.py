from __future__ import annotations

import math

import pytest

from api.domain import geo
from api.domain.errors import InvalidInput


@pytest.fixture(scope="module")
def converter() -> geo.CoordinateConverter:
    return geo.CoordinateConverter()


def test_kaohsiung_city_hall_in_twd97(converter: geo.CoordinateConverter) -> None:
    # Kaohsiung City Hall (四維行政中心), about 22.6206 N, 120.3120 E.
    point = converter.to_twd97(geo.Wgs84Point(22.6206, 120.3120))
    assert 179_000 < point.x < 180_500
    assert 2_502_000 < point.y < 2_503_500
    back = converter.to_wgs84(point)
    assert math.isclose(back.latitude, 22.6206, abs_tol=1e-9)
    assert math.isclose(back.longitude, 120.3120, abs_tol=1e-9)


def test_central_meridian_maps_to_false_easting(converter: geo.CoordinateConverter) -> None:
    point = converter.to_twd97(geo.Wgs84Point(0.0 + 23.0, 121.0))
    assert math.isclose(point.x, 250_000.0, abs_tol=1e-6)


@pytest.mark.parametrize(
    ("latitude", "longitude"),
    [(91, 120), (-90.5, 120), (22, 180.01), (22, -181), (math.nan, 120), (22, math.inf)],
)
def test_out_of_range_wgs84_is_invalid(latitude: float, longitude: float) -> None:
    with pytest.raises(InvalidInput):
        geo.validate_wgs84(latitude, longitude)


@pytest.mark.parametrize(
    ("x", "y"), [(2_000_000, 2_500_000), (180_000, 100), (math.nan, 2_500_000)]
)
def test_out_of_range_twd97_is_invalid(x: float, y: float) -> None:
    with pytest.raises(InvalidInput):
        geo.validate_twd97(x, y)


@pytest.mark.parametrize("radius", [0, -5, 50_001, math.inf])
def test_radius_limits(radius: float) -> None:
    with pytest.raises(InvalidInput):
        geo.validate_radius(radius)


def test_twd97_box_outline_contains_its_corners(converter: geo.CoordinateConverter) -> None:
    box = converter.twd97_box(178_000, 2_500_000, 182_000, 2_504_000)
    assert box.polygon is not None and len(box.polygon) == 64
    corner = converter.to_wgs84(geo.Twd97Point(178_000, 2_500_000))
    assert math.isclose(box.polygon[0][0], corner.longitude)
    assert math.isclose(box.polygon[0][1], corner.latitude)
    with pytest.raises(InvalidInput):
        converter.twd97_box(182_000, 2_500_000, 178_000, 2_504_000)
