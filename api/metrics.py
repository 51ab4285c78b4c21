"""Prometheus metrics, on a registry owned by the application (no process-global state)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
STATEMENT_BUCKETS = (1, 2, 3, 4, 5, 6, 8, 10, 15, 20, 30, 50, 100)
MAX_OPERATION_NAMES = 200


class PoolCollector(Collector):
    """Reads the pool's size and idle connections at scrape time."""

    def __init__(self, read: Callable[[], tuple[int, int, int]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        size, idle, maximum = self._read()
        yield GaugeMetricFamily("lighthouse_db_pool_connections", "Connections open", value=size)
        yield GaugeMetricFamily(
            "lighthouse_db_pool_idle", "Connections idle in the pool", value=idle
        )
        yield GaugeMetricFamily("lighthouse_db_pool_max", "Pool size limit", value=maximum)


# The operations gauges (migration 0012): metric, help, and the label their rows carry.
OPERATIONS = {
    "queue_jobs": ("lighthouse_frames_queue_jobs", "Jobs in the frames queue, by status", "status"),
    "frames": ("lighthouse_frames_unfinished", "Frames queued or failed (held for an operator)",
               "status"),
    "analyses_last_hour": ("lighthouse_analyses_last_hour", "Frames analysed in the last hour, "
                           "by outcome", "outcome"),
    "audit_anchor_age_seconds": ("lighthouse_audit_anchor_age_seconds",
                                 "Seconds since the audit chain's newest anchor", ""),
}  # fmt: skip


class OperationsCollector(Collector):
    """The database's operations gauges, as read for the scrape under way (none if it could not
    be read: a gap on a dashboard, never a stale figure)."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, float]] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for gauge, (name, documentation, label) in OPERATIONS.items():
            rows = [(lbl, value) for g, lbl, value in self.rows if g == gauge]
            if not label:
                if rows:
                    yield GaugeMetricFamily(name, documentation, value=rows[0][1])
                continue
            family = GaugeMetricFamily(name, documentation, labels=[label])
            for value_label, value in rows:
                family.add_metric([value_label], value)
            yield family


class QualityCollector(Collector):
    """Detections by model version, prompt version, category and review outcome, as read for
    the scrape under way (none if it could not be read)."""

    LABELS = ("model", "version", "prompt_version", "category", "outcome")

    def __init__(self) -> None:
        self.rows: list[tuple[tuple[str, ...], float]] = []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "lighthouse_model_detections",
            "Detections by model version, prompt version, category and what people did with "
            "them (the review outcome)",
            labels=list(self.LABELS),
        )
        for labels, value in self.rows:
            family.add_metric(list(labels), value)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "lighthouse_http_requests",
            "HTTP requests by route, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.http_seconds = Histogram(
            "lighthouse_http_request_seconds",
            "HTTP request latency",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.graphql_operations = Counter(
            "lighthouse_graphql_operations",
            "GraphQL operations by name, type and outcome (ok or error)",
            ["operation", "type", "outcome"],
            registry=self.registry,
        )
        self.graphql_seconds = Histogram(
            "lighthouse_graphql_operation_seconds",
            "GraphQL operation latency",
            ["operation", "type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.db_statements = Histogram(
            "lighthouse_db_statements_per_operation",
            "SQL statements one operation (or subscription event) sent, besides BEGIN/COMMIT",
            ["operation"],
            buckets=STATEMENT_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "lighthouse_oauth_tokens",
            "Token requests at /oauth/token by outcome (issued, or the OAuth error refusing them)",
            ["outcome"],
            registry=self.registry,
        )
        self.quota_refusals = Counter(
            "lighthouse_metering_refusals",
            "Metered calls refused before reaching a model, by reason (quota, rate limit, "
            "licence state)",
            ["reason"],
            registry=self.registry,
        )
        self.operations = OperationsCollector()
        self.registry.register(self.operations)
        self.quality = QualityCollector()
        self.registry.register(self.quality)
        ProcessCollector(registry=self.registry)  # CPU, memory, open files, start time
        PlatformCollector(registry=self.registry)  # the Python that runs it
        self._names: set[str] = set()

    def describe_build(self, version: str, schema_revision: str, policy_version: str) -> None:
        """``lighthouse_build_info``: which release runs, at which schema and policy versions."""
        info = Info("lighthouse_build", "The release this process runs", registry=self.registry)
        info.info(
            {
                "version": version,
                "schema_revision": schema_revision,
                "policy_version": policy_version,
            }
        )

    def watch_sockets(self, read: Callable[[], int]) -> None:
        """``lighthouse_websockets_open``, read at scrape time."""
        gauge = Gauge(
            "lighthouse_websockets_open", "WebSockets open in this process", registry=self.registry
        )
        gauge.set_function(read)

    def operation_name(self, name: str) -> str:
        """Bound label cardinality: names past the first few hundred are counted as 'other'."""
        if name in self._names:
            return name
        if len(self._names) >= MAX_OPERATION_NAMES:
            return "other"
        self._names.add(name)
        return name

    def record_statements(self, operation: str, statements: int) -> None:
        """How many statements one operation (or subscription event) sent."""
        self.db_statements.labels(self.operation_name(operation)).observe(statements)

    def watch_pool(self, read: Callable[[], tuple[int, int, int]]) -> None:
        self.registry.register(PoolCollector(read))
