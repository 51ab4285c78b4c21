"""The vision models: what the serving tier serves, the registry of versions and prompts the
workers used, and analysing an image on the spot."""

from api.graph.models.schema import bundle

__all__ = ["bundle"]
