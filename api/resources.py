"""The long-lived resources of one gateway process, created in the Starlette lifespan."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from api.access.refusals import RefusalLedger
from api.access.scope import AccessGate
from api.auth.api_keys import ApiKeys
from api.auth.authenticate import Authenticator
from api.auth.issuers import IssuerRegistry
from api.auth.keys import KeyRing
from api.auth.server import AuthorizationServer
from api.db.database import Database
from api.db.endpoints import DatabaseEndpoints
from api.domain.geo import CoordinateConverter
from api.domain.sla import SlaCalendar
from api.events.incident_changes import IncidentChangeHub
from api.graph.core.trusted import DocumentRegistry
from api.http.sockets import SocketBudget
from api.inference.client import ServingClient
from api.metrics import Metrics
from api.policy.engine import PolicyEngine
from api.services.metering.admissions import AdmissionDesk
from api.services.metering.meter import Meter
from api.services.metering.settlements import SettlementDesk
from api.services.vision.analysis import VisionModel
from api.settings import Settings
from api.vision.decoding import ImageDecoder
from api.vision.store import FrameStore


@dataclass(frozen=True, slots=True)
class VisionResources:
    """Frames in, and the serving tier for analyses on the spot."""

    store: FrameStore
    # Uploaded images are decoded and checked within a budget of pixels (memory) at once.
    decoding: ImageDecoder
    serving: ServingClient
    model: VisionModel
    # analyzeImage calls waiting on the serving tier at once; more are refused, not queued.
    analyses: asyncio.Semaphore


@dataclass(frozen=True, slots=True)
class MeteringResources:
    """Metered inference for licensees (``/v1``)."""

    meter: Meter
    admissions: AdmissionDesk
    settlements: SettlementDesk


@dataclass(frozen=True, slots=True)
class Resources:
    settings: Settings
    endpoints: DatabaseEndpoints
    database: Database
    head_revision: str
    calendar: SlaCalendar
    converter: CoordinateConverter
    changes: IncidentChangeHub
    metrics: Metrics
    policy: PolicyEngine
    keys: KeyRing
    issuers: IssuerRegistry
    authenticator: Authenticator
    api_keys: ApiKeys
    gate: AccessGate
    refusals: RefusalLedger
    sockets: SocketBudget
    authorization_server: AuthorizationServer
    vision: VisionResources
    metering: MeteringResources
    documents: DocumentRegistry


def resources_of(connection: HTTPConnection) -> Resources:
    resources: Resources = connection.state.resources
    return resources
