"""Prometheus metrics: the daemon's counters, and the exposition ``GET /metrics`` serves.

``Metrics`` holds what only the running daemon knows (polls, poll errors, rate-limit pauses,
classification time) in its own ``CollectorRegistry``, never prometheus-client's global one,
so two daemons in one test process never share a count. The daemon makes one and hands it to
its pollers, its pipeline and the web app it serves. ``Exporter`` is one web app's view: the
store gauges, read at scrape time, plus the daemon's counters when the app runs inside
``vigil run`` (``vigil web`` alone has only the gauges).

Label values are source names from the config and fixed words, never post content.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from connectors.base import (
    AuthFailed,
    ConnectorError,
    ConnectorUnavailable,
    PayloadInvalid,
    RateLimited,
)
from monitor.store.gauges import GaugeCounts

__all__ = ["CLASSIFY_BUCKETS", "LOCKED", "ErrorKind", "Exporter", "Metrics", "error_kind"]

LOCKED = "locked"  # a poll result: another process held the source's lock
# One classifier call is a batch of up to ``classifier.batch_size`` items (64 by default).
CLASSIFY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class ErrorKind(StrEnum):
    """The ``kind`` label of ``vigil_poll_errors_total``: a fixed word per error category."""

    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    UNAVAILABLE = "unavailable"
    PAYLOAD = "payload"
    CONNECTOR = "connector"
    TIMEOUT = "timeout"
    INTERNAL = "internal"


def error_kind(err: BaseException) -> ErrorKind:
    """The error category of a failed poll, as a label value."""
    for kind, types in _KINDS:
        if isinstance(err, types):
            return kind
    return ErrorKind.INTERNAL


_KINDS: tuple[tuple[ErrorKind, type[BaseException] | tuple[type[BaseException], ...]], ...] = (
    (ErrorKind.AUTH, AuthFailed),
    (ErrorKind.RATE_LIMITED, RateLimited),
    (ErrorKind.UNAVAILABLE, ConnectorUnavailable),
    (ErrorKind.PAYLOAD, PayloadInvalid),
    (ErrorKind.CONNECTOR, ConnectorError),
    (ErrorKind.TIMEOUT, TimeoutError),
)


class Metrics:
    """The daemon's counters and the classification histogram, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.polls = Counter(
            "vigil_polls",
            "Polls of a source, by result: ok, failed, paused, locked.",
            ["source", "result"],
            registry=self.registry,
        )
        self.poll_errors = Counter(
            "vigil_poll_errors",
            "Failed polls of a source, by error kind.",
            ["source", "kind"],
            registry=self.registry,
        )
        self.rate_limit_pauses = Counter(
            "vigil_rate_limit_pauses",
            "Times a platform's rate limit paused a source.",
            ["source"],
            registry=self.registry,
        )
        self.classification = Histogram(
            "vigil_classification_seconds",
            "Seconds per classifier call (one batch of items).",
            buckets=CLASSIFY_BUCKETS,
            registry=self.registry,
        )
        self.classified = Counter(
            "vigil_classified_items",
            "Items handed to the classifier (allow-listed texts are not).",
            registry=self.registry,
        )

    def polled(self, source: str, result: str) -> None:
        """Count one poll of ``source`` that ended with ``result``."""
        self.polls.labels(source=source, result=result).inc()

    def poll_failed(self, source: str, err: BaseException) -> None:
        """Count one poll error of ``source`` by its category."""
        self.poll_errors.labels(source=source, kind=error_kind(err).value).inc()

    def rate_limit_paused(self, source: str) -> None:
        """Count one pause of ``source`` until the platform's ``retry_after``."""
        self.rate_limit_pauses.labels(source=source).inc()

    def classify_timed(self, seconds: float, items: int) -> None:
        """Record one classifier call over ``items`` items."""
        self.classification.observe(seconds)
        self.classified.inc(items)


class Exporter:
    """One web app's ``/metrics``: its own registry of the store gauges and any counters."""

    def __init__(self, metrics: Metrics | None = None) -> None:
        self.registry = CollectorRegistry()
        self._gauges = _StoreGauges()
        self.registry.register(self._gauges)
        if metrics is not None:  # a registry is itself a collector
            self.registry.register(metrics.registry)

    def render(self, counts: GaugeCounts | None) -> bytes:
        """The text exposition; ``counts`` is None when the database did not answer."""
        # Synchronous from here to the end, so two scrapes on one loop never mix snapshots.
        self._gauges.counts = counts
        try:
            return generate_latest(self.registry)
        finally:
            self._gauges.counts = None


class _StoreGauges:
    """Yields the gauges of the snapshot taken for this scrape."""

    def __init__(self) -> None:
        self.counts: GaugeCounts | None = None

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily(
            "vigil_database_up", "1 if the database answered this scrape, else 0."
        )
        up.add_metric([], 0.0 if self.counts is None else 1.0)
        yield up
        if self.counts is not None:
            yield from gauge_families(self.counts)


def gauge_families(counts: GaugeCounts) -> list[Metric]:
    """The store gauges as metric families."""
    items = GaugeMetricFamily(
        "vigil_items", "Items waiting at each pipeline stage (held included).", labels=["stage"]
    )
    for stage, n in counts.items.items():
        items.add_metric([stage], n)
    actions = GaugeMetricFamily("vigil_actions", "Actions in each state.", labels=["state"])
    for state, n in counts.actions.items():
        actions.add_metric([state], n)
    pending = GaugeMetricFamily(
        "vigil_escalations_pending", "Escalations queued whose email has not been sent yet."
    )
    pending.add_metric([], counts.escalations_pending)
    unacknowledged = GaugeMetricFamily(
        "vigil_escalations_unacknowledged", "Escalations sent that nobody has acknowledged yet."
    )
    unacknowledged.add_metric([], counts.escalations_unacknowledged)
    return [items, actions, pending, unacknowledged]
