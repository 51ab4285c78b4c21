"""Locations in the graph: WGS84 and TWD97 (EPSG:3826) for input and output."""

from __future__ import annotations

import strawberry

from api.domain import geo
from api.domain.errors import InvalidInput
from api.graph.core.context import Info


@strawberry.federation.type(
    shareable=True, description="A point in TWD97 / TM2 zone 121 (EPSG:3826), metres."
)
class Twd97Coordinates:
    x: float
    y: float


@strawberry.federation.type(shareable=True, description="A location, stored in WGS84 (EPSG:4326).")
class Location:
    latitude: float
    longitude: float

    @strawberry.field(description="The same point in TWD97 (EPSG:3826).")
    def twd97(self, info: Info) -> Twd97Coordinates:
        point = info.context.resources.converter.to_twd97(
            geo.Wgs84Point(self.latitude, self.longitude)
        )
        return Twd97Coordinates(x=point.x, y=point.y)


# A location's fields, from the row's own columns, for compiled documents (``twd97`` is computed
# in Python and stays on the resolver path).
LOCATION_COLUMNS = {"latitude": "latitude", "longitude": "longitude"}


@strawberry.input
class Wgs84Input:
    latitude: float
    longitude: float


@strawberry.input
class Twd97Input:
    x: float
    y: float


@strawberry.input(one_of=True, description="A point, in exactly one coordinate system.")
class PointInput:
    wgs84: Wgs84Input | None = strawberry.UNSET
    twd97: Twd97Input | None = strawberry.UNSET


@strawberry.input
class NearInput:
    point: PointInput
    radius_meters: float


@strawberry.input
class Wgs84BoxInput:
    min_latitude: float
    min_longitude: float
    max_latitude: float
    max_longitude: float


@strawberry.input
class Twd97BoxInput:
    min_x: float
    min_y: float
    max_x: float
    max_y: float


@strawberry.input(one_of=True, description="A rectangle, in exactly one coordinate system.")
class BoundingBoxInput:
    wgs84: Wgs84BoxInput | None = strawberry.UNSET
    twd97: Twd97BoxInput | None = strawberry.UNSET


def to_point(value: PointInput, info: Info, field: str) -> geo.Wgs84Point:
    if value.wgs84:
        return geo.validate_wgs84(value.wgs84.latitude, value.wgs84.longitude, field)
    if value.twd97:
        point = geo.validate_twd97(value.twd97.x, value.twd97.y, field)
        return info.context.resources.converter.to_wgs84(point, field)
    raise InvalidInput(field, "give wgs84 or twd97")


def to_circle(value: NearInput, info: Info, field: str = "near") -> geo.Circle:
    centre = to_point(value.point, info, f"{field}.point")
    return geo.Circle(centre, geo.validate_radius(value.radius_meters, f"{field}.radiusMeters"))


def to_box(value: BoundingBoxInput, info: Info, field: str = "within") -> geo.BoundingBox:
    if value.wgs84:
        box = value.wgs84
        return geo.wgs84_box(
            box.min_latitude, box.min_longitude, box.max_latitude, box.max_longitude, field
        )
    if value.twd97:
        rect = value.twd97
        return info.context.resources.converter.twd97_box(
            rect.min_x, rect.min_y, rect.max_x, rect.max_y, field
        )
    raise InvalidInput(field, "give wgs84 or twd97")
