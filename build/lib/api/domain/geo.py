"""Coordinates: WGS84 (EPSG:4326) in storage, TWD97 / TM2 zone 121 (EPSG:3826) at the boundary.

The transformers are built once per process (``CoordinateConverter``) from the PROJ database that
ships inside pyproj; nothing is fetched over the network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from pyproj import Transformer
from pyproj.network import set_network_enabled  # type: ignore[attr-defined]

from api.domain.errors import InvalidInput

WGS84 = "EPSG:4326"
TWD97 = "EPSG:3826"
# TWD97 TM2 (121°E) coordinates that can be meaningful for Taiwan and its islands; outside this
# window the projection is being asked about somewhere the city cannot be.
TWD97_X_RANGE = (-500_000.0, 1_000_000.0)
TWD97_Y_RANGE = (2_000_000.0, 3_000_000.0)
MAX_RADIUS_METRES = 50_000.0


@dataclass(frozen=True, slots=True)
class Wgs84Point:
    latitude: float
    longitude: float


@dataclass(frozen=True, slots=True)
class Twd97Point:
    x: float
    y: float


@dataclass(frozen=True, slots=True)
class BoundingBox:
    """A WGS84 box, or (when ``polygon`` is given) the exact outline of a TWD97 rectangle."""

    min_latitude: float
    min_longitude: float
    max_latitude: float
    max_longitude: float
    polygon: tuple[tuple[float, float], ...] | None = None  # (longitude, latitude) vertices


@dataclass(frozen=True, slots=True)
class Circle:
    centre: Wgs84Point
    radius_metres: float


def validate_wgs84(latitude: float, longitude: float, field: str = "location") -> Wgs84Point:
    if not (math.isfinite(latitude) and -90.0 <= latitude <= 90.0):
        raise InvalidInput(f"{field}.latitude", f"{latitude} is outside [-90, 90]")
    if not (math.isfinite(longitude) and -180.0 <= longitude <= 180.0):
        raise InvalidInput(f"{field}.longitude", f"{longitude} is outside [-180, 180]")
    return Wgs84Point(latitude, longitude)


def validate_twd97(x: float, y: float, field: str = "location") -> Twd97Point:
    low_x, high_x = TWD97_X_RANGE
    low_y, high_y = TWD97_Y_RANGE
    if not (math.isfinite(x) and low_x <= x <= high_x):
        raise InvalidInput(
            f"{field}.x", f"{x} is outside the TWD97 range [{low_x:.0f}, {high_x:.0f}]"
        )
    if not (math.isfinite(y) and low_y <= y <= high_y):
        raise InvalidInput(
            f"{field}.y", f"{y} is outside the TWD97 range [{low_y:.0f}, {high_y:.0f}]"
        )
    return Twd97Point(x, y)


def validate_radius(radius: float, field: str = "near.radiusMeters") -> float:
    if not (math.isfinite(radius) and 0.0 < radius <= MAX_RADIUS_METRES):
        raise InvalidInput(
            field, f"{radius} must be more than 0 and at most {MAX_RADIUS_METRES:.0f}"
        )
    return radius


class CoordinateConverter:
    """WGS84 ⇄ TWD97 with pyproj (always_xy: longitude/easting first)."""

    def __init__(self) -> None:
        # PROJ may fetch transformation grids from a CDN when its network access is on
        # (PROJ_NETWORK=ON); this conversion needs none, and nothing leaves the city's machines.
        set_network_enabled(False)
        self._to_twd97 = Transformer.from_crs(WGS84, TWD97, always_xy=True)
        self._to_wgs84 = Transformer.from_crs(TWD97, WGS84, always_xy=True)

    def to_twd97(self, point: Wgs84Point) -> Twd97Point:
        x, y = self._to_twd97.transform(point.longitude, point.latitude)
        return Twd97Point(x, y)

    def to_wgs84(self, point: Twd97Point, field: str = "location") -> Wgs84Point:
        longitude, latitude = self._to_wgs84.transform(point.x, point.y)
        return validate_wgs84(latitude, longitude, field)

    def twd97_box(
        self, min_x: float, min_y: float, max_x: float, max_y: float, field: str = "within"
    ) -> BoundingBox:
        """The exact WGS84 outline of a TWD97 rectangle (its edges are curves in WGS84)."""
        validate_twd97(min_x, min_y, field)
        validate_twd97(max_x, max_y, field)
        if min_x >= max_x or min_y >= max_y:
            raise InvalidInput(field, "min must be less than max on both axes")
        steps = 16
        outline: list[tuple[float, float]] = []
        corners = [(min_x, min_y), (max_x, min_y), (max_x, max_y), (min_x, max_y)]
        for index, (x0, y0) in enumerate(corners):
            x1, y1 = corners[(index + 1) % 4]
            for step in range(steps):
                t = step / steps
                longitude, latitude = self._to_wgs84.transform(
                    x0 + (x1 - x0) * t, y0 + (y1 - y0) * t
                )
                outline.append((longitude, latitude))
        latitudes = [lat for _, lat in outline]
        longitudes = [lon for lon, _ in outline]
        return BoundingBox(
            min(latitudes), min(longitudes), max(latitudes), max(longitudes), tuple(outline)
        )


def wgs84_box(
    min_latitude: float,
    min_longitude: float,
    max_latitude: float,
    max_longitude: float,
    field: str = "within",
) -> BoundingBox:
    validate_wgs84(min_latitude, min_longitude, field)
    validate_wgs84(max_latitude, max_longitude, field)
    if min_latitude >= max_latitude or min_longitude >= max_longitude:
        raise InvalidInput(field, "min must be less than max on both axes")
    return BoundingBox(min_latitude, min_longitude, max_latitude, max_longitude)
