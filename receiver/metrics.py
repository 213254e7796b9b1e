"""Prometheus metrics at `GET /metrics`.

Two kinds, in one registry per app (never the global one: several apps in one process, as in
the tests, must not collide):

- Counted in this process, lost on restart, summed across replicas by Prometheus:
    replywindow_webhooks_received_total{vendor,route,outcome}
    replywindow_webhook_processing_seconds{vendor,route}     receipt -> durable (acknowledged)
    replywindow_vendor_request_duration_seconds{vendor,endpoint,status_class}
                                                             request sent -> answer's headers
    replywindow_vendor_errors_total{vendor,endpoint,kind}    kind: 4xx, 5xx, connect, timeout,
                                                             transport
- Read from the database at scrape time, so every replica reports the same truth and nothing is
  lost on restart (do not sum these across replicas; take max or one of them):
    replywindow_outbound_messages{channel,route,status}      sends by route and status
    replywindow_outbox_depth{status}                         queued, sending, unknown
    replywindow_outbox_oldest_due_age_seconds                the longest a due message waited
    replywindow_bot_events{push_state}                       pending, dead
    replywindow_bot_events_oldest_pending_age_seconds
    replywindow_inbox_pending_bodies                         stored, not yet applied (backlog)
    replywindow_inbox_oldest_pending_age_seconds             the applier's lag
    replywindow_inbox_failed_bodies                          bodies our parser/apply broke on
    replywindow_quarantined_unresolved_bodies
    replywindow_metrics_database_up                          0 when those queries failed

Every database query filters or groups on indexed columns, except the one GROUP BY over
outbound_messages; on PostgreSQL all of them run under a statement timeout, so a scrape never
holds the database up for long.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import Engine, func, text
from sqlmodel import Session, col, select
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sender.http import requested_vendor
from store.models import Event, InboxBody, OutboundMessage, QuarantinedBody
from store.spool import Spool

if TYPE_CHECKING:
    from receiver.runtime import Runtime

logger = logging.getLogger(__name__)

# At acknowledgement: `pending` is stored for the applier (its outcome is the body's state).
WEBHOOK_OUTCOMES = ("pending", "failed", "quarantined", "unstorable", "too_large", "bad_token",
                    "unavailable", "error")
# Outcomes of a body that reached the store: their time from receipt is the processing lag.
STORED_OUTCOMES = frozenset(WEBHOOK_OUTCOMES) - {"bad_token", "unavailable", "error"}
OUTBOX_STATUSES = ("queued", "sending", "unknown")
PUSH_STATES = ("pending", "dead")

WEBHOOK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
VENDOR_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
# A vendor URL path is a fixed endpoint name; should one ever carry an id, the label set stays
# bounded all the same.
MAX_ENDPOINTS = 64
STATEMENT_TIMEOUT_MS = 2000
# The text format every Prometheus reads (what generate_latest writes for our legacy names).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _age(now: datetime, then: datetime | None) -> float:
    return max(0.0, (now - then).total_seconds()) if then is not None else 0.0


class DatabaseCollector(Collector):
    """Gauges read from the database on every scrape: a few COUNT / GROUP BY / MIN queries."""

    def __init__(self, engine: Engine, clock: Callable[[], datetime],
                 spool: Spool | None = None) -> None:
        self._engine = engine
        self._clock = clock
        self._spool = spool

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        up = GaugeMetricFamily("replywindow_metrics_database_up",
                               "1 if the database gauges could be read on this scrape, else 0.")
        try:
            self._fill(*families)
        except Exception as exc:
            logger.warning("metrics: database gauges could not be read", exc_info=exc,
                           extra={"action": "metrics_database_failed"})
            up.add_metric([], 0)
            return iter([up])
        up.add_metric([], 1)
        return iter([*families, up])

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("replywindow_outbound_messages",
                              "Outbound messages by channel, route and current status.",
                              labels=["channel", "route", "status"]),
            GaugeMetricFamily("replywindow_outbox_depth",
                              "Outbound messages not yet handed over or settled: queued, "
                              "sending, unknown (a timed-out call awaiting its status).",
                              labels=["status"]),
            GaugeMetricFamily("replywindow_outbox_oldest_due_age_seconds",
                              "How long the oldest queued message that is due has waited "
                              "(0 when none)."),
            GaugeMetricFamily("replywindow_bot_events",
                              "Events for the bot by push state: pending (not yet delivered) "
                              "and dead (given up; replay with the CLI).",
                              labels=["push_state"]),
            GaugeMetricFamily("replywindow_bot_events_oldest_pending_age_seconds",
                              "Age of the oldest event still pending for the bot (0 when none)."),
            GaugeMetricFamily("replywindow_inbox_pending_bodies",
                              "Webhook bodies acknowledged and stored, not yet applied."),
            GaugeMetricFamily("replywindow_inbox_oldest_pending_age_seconds",
                              "How long the oldest body not yet applied has waited since its "
                              "receipt (0 when none): the applier's lag."),
            GaugeMetricFamily("replywindow_inbox_failed_bodies",
                              "Webhook bodies stored but not applied because processing broke "
                              "(recover with `replywindow inbox replay`)."),
            GaugeMetricFamily("replywindow_quarantined_unresolved_bodies",
                              "Unreadable webhook bodies in quarantine, not yet resolved."),
        ]

    def _fill(self, sends: GaugeMetricFamily, depth: GaugeMetricFamily,
              oldest_due: GaugeMetricFamily, events: GaugeMetricFamily,
              oldest_event: GaugeMetricFamily, pending: GaugeMetricFamily,
              oldest_pending: GaugeMetricFamily, failed: GaugeMetricFamily,
              quarantined: GaugeMetricFamily) -> None:
        now = self._clock()
        with Session(self._engine) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}"))
            out = OutboundMessage
            rows = session.exec(
                select(out.channel, out.route, out.status, func.count())
                .group_by(out.channel, out.route, out.status)
            ).all()
            by_status = dict.fromkeys(OUTBOX_STATUSES, 0)
            for channel, route, status, count in sorted(rows, key=lambda r: tuple(map(str, r))):
                sends.add_metric([channel, route or "none", status], count)
                if status in by_status:
                    by_status[status] += count
            for status, count in by_status.items():
                depth.add_metric([status], count)

            oldest = session.exec(
                select(func.min(out.next_attempt_at))
                .where(out.status == "queued", col(out.next_attempt_at) <= now)
            ).one()
            oldest_due.add_metric([], _age(now, oldest))

            pushes = dict.fromkeys(PUSH_STATES, 0)
            pushes.update(session.exec(
                select(Event.push_state, func.count())
                .where(col(Event.push_state).in_(PUSH_STATES)).group_by(Event.push_state)
            ).all())
            for state, count in pushes.items():
                events.add_metric([state], count)
            oldest = session.exec(
                select(func.min(Event.created_at)).where(Event.push_state == "pending")
            ).one()
            oldest_event.add_metric([], _age(now, oldest))

            waiting = select(func.count(), func.min(InboxBody.received_at)).where(
                InboxBody.state == "pending")
            count, oldest = session.exec(waiting).one()
            if self._spool is not None:  # SQLite: bodies wait in the spool
                moved = session.exec(select(func.coalesce(func.max(InboxBody.id), 0))).one()
                spooled, oldest_spooled = self._spool.backlog(above=int(moved))
                count += spooled
                oldest = min(filter(None, (oldest, oldest_spooled)), default=None)
            pending.add_metric([], count)
            oldest_pending.add_metric([], _age(now, oldest))
            failed.add_metric([], session.exec(
                select(func.count()).select_from(InboxBody).where(InboxBody.state == "failed")
            ).one())
            quarantined.add_metric([], session.exec(
                select(func.count()).select_from(QuarantinedBody)
                .where(col(QuarantinedBody.resolved_at).is_(None))
            ).one())
            session.rollback()  # read only: end the transaction (and its SET LOCAL)


def _status_class(status: int) -> str:
    return f"{status // 100}xx"


def transport_error_kind(exc: BaseException) -> str:
    """connect | timeout | transport: how a vendor call failed before any answer."""
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "transport"


class Metrics:
    def __init__(self, engine: Engine, clock: Callable[[], datetime],
                 spool: Spool | None = None) -> None:
        self.registry = CollectorRegistry()
        self._webhooks = Counter(
            "replywindow_webhooks_received", "Vendor webhook requests by vendor, route and "
            "outcome (the stored body's state, or why none was stored).",
            ["vendor", "route", "outcome"], registry=self.registry)
        self._webhook_seconds = Histogram(
            "replywindow_webhook_processing_seconds", "From a webhook's receipt until its body "
            "is durable and it is acknowledged (in this process).", ["vendor", "route"],
            buckets=WEBHOOK_BUCKETS, registry=self.registry)
        self._vendor_seconds = Histogram(
            "replywindow_vendor_request_duration_seconds", "Vendor API calls: from sending the "
            "request until the answer's headers arrived.", ["vendor", "endpoint", "status_class"],
            buckets=VENDOR_BUCKETS, registry=self.registry)
        self._vendor_errors = Counter(
            "replywindow_vendor_errors", "Vendor API calls that failed: HTTP 4xx / 5xx answers, "
            "and connect / timeout / transport errors with no answer.",
            ["vendor", "endpoint", "kind"], registry=self.registry)
        self.registry.register(DatabaseCollector(engine, clock, spool))
        self._counted: dict[tuple[str, str, str], Any] = {}
        self._timed: dict[tuple[str, str], Any] = {}
        self._vendor_timed: dict[tuple[str, str, str], Any] = {}
        self._endpoints: set[str] = set()

    def webhook(self, vendor: str, route: str, outcome: str,
                seconds: float | None = None) -> None:
        """Count one webhook request; `seconds` from receipt is observed as processing lag
        when the body reached the store."""
        counted = self._counted.get((vendor, route, outcome))
        if counted is None:  # labels() takes a lock and builds a key: once per label set
            counted = self._counted[(vendor, route, outcome)] = \
                self._webhooks.labels(vendor, route, outcome)
        counted.inc()
        if seconds is not None and outcome in STORED_OUTCOMES:
            timed = self._timed.get((vendor, route))
            if timed is None:
                timed = self._timed[(vendor, route)] = self._webhook_seconds.labels(vendor, route)
            timed.observe(seconds)

    def _endpoint(self, path: str) -> str:
        if path in self._endpoints:
            return path
        if len(self._endpoints) >= MAX_ENDPOINTS:
            return "other"
        self._endpoints.add(path)
        return path

    def vendor_error(self, vendor: str, endpoint: str, kind: str) -> None:
        """A vendor call that got no answer (connect, timeout, transport). `endpoint` is the
        URL path, as `vendor_answer` labels it."""
        self._vendor_errors.labels(vendor, self._endpoint(endpoint), kind).inc()

    def vendor_answer(self, vendor: str, path: str, status: int, seconds: float | None) -> None:
        """A vendor call answered with HTTP `status` after `seconds` (request sent -> the
        answer's headers); answers >= 400 are counted as errors too."""
        endpoint = self._endpoint(path)
        status_class = _status_class(status)
        if seconds is not None:
            timed = self._vendor_timed.get((vendor, endpoint, status_class))
            if timed is None:  # labels() takes a lock and builds a key: once per label set
                timed = self._vendor_timed[(vendor, endpoint, status_class)] = \
                    self._vendor_seconds.labels(vendor, endpoint, status_class)
            timed.observe(seconds)
        if status >= 400:
            self._vendor_errors.labels(vendor, endpoint, status_class).inc()

    def render(self) -> tuple[bytes, str]:
        """The exposition (runs the database queries: call it off the event loop)."""
        return generate_latest(self.registry), CONTENT_TYPE


FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def is_local(request: Request) -> bool:
    """Whether the request came straight from this machine: a loopback client address and no
    proxy forwarding headers (a reverse proxy on this host would otherwise make every outside
    request look local)."""
    if request.client is None or any(name in request.headers for name in FORWARDING_HEADERS):
        return False
    try:
        address = ipaddress.ip_address(request.client.host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def metrics_endpoint(request: Request) -> Response:
    """`GET /metrics`, for Prometheus.

    Who may read it: a request with a valid API key that sees every account (one from
    `REPLYWINDOW_API_KEYS`, or a stored key with no account scope): a key scoped to some
    accounts gets 403, a wrong key 401. A request with no key is let in only when it comes
    from the loopback address (127.0.0.1 / ::1) and carries no proxy forwarding header, so a
    Prometheus on the same host scrapes with no key; anything else gets 401. Sync: Starlette
    runs it in a thread, where the key lookup and the database gauges belong.
    """
    from receiver.auth import authenticate  # receiver.auth imports receiver.runtime
    from receiver.errors import Forbidden

    runtime: Runtime = request.state.runtime
    metrics: Metrics = runtime.metrics
    if "authorization" in request.headers or not is_local(request):
        caller = authenticate(request, runtime)  # 401 for no key or a wrong one
        if caller.accounts is not None:
            raise Forbidden("Metrics cover every account; this key is scoped to some.")
    body, content_type = metrics.render()
    return Response(body, media_type=content_type)


route = Route("/metrics", metrics_endpoint, methods=["GET"])


class ErrorCountingTransport(httpx.AsyncBaseTransport):
    """Counts vendor calls that failed before any answer (refused, timed out), which
    httpx's response hooks never see."""

    def __init__(self, inner: httpx.AsyncBaseTransport, metrics: Metrics,
                 vendor_of: Callable[[httpx.URL], str]) -> None:
        self._inner = inner
        self._metrics = metrics
        self._vendor_of = vendor_of

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._inner.handle_async_request(request)
        except httpx.HTTPError as exc:
            self._metrics.vendor_error(self._vendor(request), request.url.path,
                                       transport_error_kind(exc))
            raise

    def _vendor(self, request: httpx.Request) -> str:
        """The vendor the client named on the request, else the one its URL says."""
        return requested_vendor(request) or self._vendor_of(request.url)

    async def aclose(self) -> None:
        await self._inner.aclose()


class VendorMetricsTransport(ErrorCountingTransport):
    """ErrorCountingTransport that also times every answer (latency by vendor, endpoint and
    status class; an error count for every answer >= 400): in the transport, not in httpx's
    event hooks, which cost every call a few awaits more."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        response = await super().handle_async_request(request)  # counts calls with no answer
        self._metrics.vendor_answer(self._vendor(request), request.url.path,
                                    response.status_code, time.perf_counter() - started)
        return response
