"""The licensing domain's part of the gateway: the metered OpenAI-compatible routes for now;
its graph types come with the licence management."""

from __future__ import annotations

from api.graph.core.bundle import DomainBundle
from api.http.openai import metering_routes

bundle = DomainBundle(name="licensing", routes=tuple(metering_routes()))
