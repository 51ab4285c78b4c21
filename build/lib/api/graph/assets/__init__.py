"""Assets owned by bureaus: cameras, street lights, road segments, drains…"""

from api.graph.assets.schema import bundle

__all__ = ["bundle"]
