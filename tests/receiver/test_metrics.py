"""/metrics: webhook counts, vendor call latency and errors, and the gauges read from the
database (on SQLite and PostgreSQL), parsed back with Prometheus's own parser."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.testclient import TestClient

from receiver.errors import exception_handlers
from receiver.metrics import Metrics, VendorMetricsTransport, route, transport_error_kind
from receiver.settings import Settings
from store import db, keys
from store.models import Event, InboxBody, OutboundMessage, QuarantinedBody
from tests.conftest import API_KEY, DATA, TOKEN, FakeClock
from tests.settling import SettlingClient

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(metrics: Metrics) -> Samples:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain; version=0.0.4")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(body.decode())
            for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


# -- gauges read from the database ---------------------------------------------------------


def _outbound(id_: str, now: datetime, *, channel: str = "whatsapp", route: str | None = "custom",
              status: str, next_attempt_at: datetime | None = None) -> OutboundMessage:
    return OutboundMessage(id=id_, channel=channel, account="91856321412",
                           recipient="91856321432", route=route, status=status,
                           next_attempt_at=next_attempt_at, created_at=now, status_at=now)


def _event(now: datetime, push_state: str, *, age: float = 0) -> Event:
    return Event(kind="message.inbound", account="91856321412",
                 conversation_key="whatsapp:91856321412:91856321432",
                 created_at=now - timedelta(seconds=age), push_state=push_state)


def _inbox(now: datetime, state: str, age: float = 0) -> InboxBody:
    return InboxBody(vendor="itnio", route="whatsapp", received_at=now - timedelta(seconds=age),
                     body=b"{}", state=state)


def _quarantined(now: datetime, *, resolved: bool) -> QuarantinedBody:
    return QuarantinedBody(vendor="itnio", route="whatsapp", received_at=now, body=b"{",
                           error="invalid_json", detail="x",
                           resolved_at=now if resolved else None)


def test_database_gauges_report_what_the_tables_hold(engine: Engine, clock: FakeClock) -> None:
    now = clock()
    with Session(engine) as session, session.begin():
        session.add_all([
            _outbound("msg_1", now, status="delivered"),
            _outbound("msg_2", now, status="delivered"),
            _outbound("msg_3", now, route="template", status="failed"),
            _outbound("msg_4", now, channel="sms", route="sms", status="accepted"),
            _outbound("msg_5", now, route=None, status="queued",
                      next_attempt_at=now - timedelta(seconds=90)),
            _outbound("msg_6", now, channel="wecom", route=None, status="queued",
                      next_attempt_at=now - timedelta(seconds=30)),
            _outbound("msg_7", now, status="queued",  # scheduled for later: not yet due
                      next_attempt_at=now + timedelta(minutes=10)),
            _outbound("msg_8", now, status="sending", next_attempt_at=now - timedelta(hours=1)),
            _outbound("msg_9", now, status="unknown"),
            _event(now, "pending", age=300), _event(now, "pending", age=60),
            _event(now, "dead", age=900_000), _event(now, "delivered", age=5000),
            _event(now, "off", age=7000),
            _inbox(now, "failed"), _inbox(now, "failed"), _inbox(now, "applied"),
            _inbox(now, "duplicate"), _inbox(now, "pending", age=7), _inbox(now, "pending", age=2),
            _quarantined(now, resolved=False), _quarantined(now, resolved=False),
            _quarantined(now, resolved=True),
        ])

    samples = scrape(Metrics(engine, clock))

    assert series(samples, "replywindow_outbound_messages") == {
        frozenset({("channel", c), ("route", r), ("status", s)}): n for c, r, s, n in [
            ("whatsapp", "custom", "delivered", 2), ("whatsapp", "template", "failed", 1),
            ("sms", "sms", "accepted", 1), ("whatsapp", "none", "queued", 1),
            ("wecom", "none", "queued", 1), ("whatsapp", "custom", "queued", 1),
            ("whatsapp", "custom", "sending", 1), ("whatsapp", "custom", "unknown", 1),
        ]
    }
    assert series(samples, "replywindow_outbox_depth") == {
        frozenset({("status", "queued")}): 3, frozenset({("status", "sending")}): 1,
        frozenset({("status", "unknown")}): 1,
    }
    assert value(samples, "replywindow_outbox_oldest_due_age_seconds") == 90
    assert series(samples, "replywindow_bot_events") == {
        frozenset({("push_state", "pending")}): 2, frozenset({("push_state", "dead")}): 1,
    }
    assert value(samples, "replywindow_bot_events_oldest_pending_age_seconds") == 300
    assert value(samples, "replywindow_inbox_failed_bodies") == 2
    assert value(samples, "replywindow_inbox_pending_bodies") == 2
    assert value(samples, "replywindow_inbox_oldest_pending_age_seconds") == 7
    assert value(samples, "replywindow_quarantined_unresolved_bodies") == 2
    assert value(samples, "replywindow_metrics_database_up") == 1

    clock.advance(seconds=10)  # read at every scrape, nothing cached
    later = scrape(Metrics(engine, clock))
    assert value(later, "replywindow_outbox_oldest_due_age_seconds") == 100
    assert value(later, "replywindow_bot_events_oldest_pending_age_seconds") == 310


def test_an_empty_database_reports_zeros_not_missing_series(
        engine: Engine, clock: FakeClock) -> None:
    samples = scrape(Metrics(engine, clock))

    assert series(samples, "replywindow_outbound_messages") == {}
    assert set(series(samples, "replywindow_outbox_depth").values()) == {0}
    assert len(series(samples, "replywindow_outbox_depth")) == 3
    assert series(samples, "replywindow_bot_events") == {
        frozenset({("push_state", "pending")}): 0, frozenset({("push_state", "dead")}): 0,
    }
    for name in ("replywindow_outbox_oldest_due_age_seconds",
                 "replywindow_bot_events_oldest_pending_age_seconds",
                 "replywindow_inbox_failed_bodies", "replywindow_inbox_pending_bodies",
                 "replywindow_inbox_oldest_pending_age_seconds",
                 "replywindow_quarantined_unresolved_bodies"):
        assert value(samples, name) == 0, name
    assert value(samples, "replywindow_metrics_database_up") == 1


def test_a_database_that_cannot_be_read_gives_up_0_not_a_failed_scrape(
        tmp_path: Path, clock: FakeClock) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path / 'no-tables.db'}")  # never migrated
    try:
        metrics = Metrics(engine, clock)
        metrics.webhook("itnio", "whatsapp", "applied", 0.01)
        samples = scrape(metrics)
    finally:
        engine.dispose()

    assert value(samples, "replywindow_metrics_database_up") == 0
    assert series(samples, "replywindow_outbox_depth") == {}
    assert value(samples, "replywindow_webhooks_received_total",
                 vendor="itnio", route="whatsapp", outcome="applied") == 1


def test_two_metrics_in_one_process_do_not_collide(engine: Engine, clock: FakeClock) -> None:
    first, second = Metrics(engine, clock), Metrics(engine, clock)
    first.webhook("yzj", "wecom", "applied", 0.01)

    assert value(scrape(first), "replywindow_webhooks_received_total",
                 vendor="yzj", route="wecom", outcome="applied") == 1
    assert value(scrape(second), "replywindow_webhooks_received_total",
                 vendor="yzj", route="wecom", outcome="applied") is None


# -- webhooks ---------------------------------------------------------------------------------


def test_webhook_outcomes_are_counted_and_stored_ones_timed(
        engine: Engine, clock: FakeClock) -> None:
    metrics = Metrics(engine, clock)
    for outcome, seconds in [("pending", 0.003), ("pending", 0.2), ("failed", 0.02),
                             ("quarantined", 0.004), ("bad_token", 0.0001),
                             ("unavailable", 10.0)]:
        metrics.webhook("itnio", "whatsapp", outcome, seconds)
    metrics.webhook("yzj", "wecom", "pending", 0.7)

    samples = scrape(metrics)

    received = "replywindow_webhooks_received_total"
    assert series(samples, received) == {
        frozenset({("vendor", "itnio"), ("route", "whatsapp"), ("outcome", o)}): n
        for o, n in [("pending", 2), ("failed", 1), ("quarantined", 1), ("bad_token", 1),
                     ("unavailable", 1)]
    } | {frozenset({("vendor", "yzj"), ("route", "wecom"), ("outcome", "pending")}): 1}
    lag = "replywindow_webhook_processing_seconds"
    itnio = {"vendor": "itnio", "route": "whatsapp"}
    assert value(samples, f"{lag}_count", **itnio) == 4  # no body stored: not timed
    assert value(samples, f"{lag}_sum", **itnio) == pytest.approx(0.227)
    assert value(samples, f"{lag}_bucket", **itnio, le="0.005") == 2
    assert value(samples, f"{lag}_bucket", **itnio, le="0.25") == 4
    assert value(samples, f"{lag}_count", vendor="yzj", route="wecom") == 1


def test_the_webhook_path_counts_each_outcome(client: TestClient, engine: Engine,
                                              clock: FakeClock) -> None:
    runtime = client.app_state["runtime"]
    runtime.metrics = metrics = Metrics(engine, clock)  # what the lifespan will build
    wa = f"/webhooks/itnio/whatsapp/{TOKEN}"
    uplink = (DATA / "webhooks" / "itnio_wa_uplink_text.json").read_bytes()

    assert client.post(wa, content=uplink).status_code == 200
    assert client.post(wa, content=uplink).status_code == 200
    assert client.post(wa, content=b"this is not json").status_code == 400
    assert client.post(wa, content=b"x" * (2 * 1024 * 1024)).status_code == 413
    assert client.post("/webhooks/itnio/whatsapp/wrong", content=uplink).status_code == 404
    assert client.post(f"/webhooks/itnio/sms/{TOKEN}",
                       content=json.dumps({"hello": "there"})).status_code == 200

    samples = scrape(metrics)
    assert series(samples, "replywindow_webhooks_received_total") == {
        frozenset({("vendor", "itnio"), ("route", r), ("outcome", o)}): 1 for r, o in [
            ("whatsapp", "quarantined"), ("whatsapp", "too_large"), ("whatsapp", "bad_token"),
            ("sms", "pending"),
        ]
    } | {frozenset({("vendor", "itnio"), ("route", "whatsapp"), ("outcome", "pending")}): 2}
    assert value(samples, "replywindow_webhook_processing_seconds_count",
                 vendor="itnio", route="whatsapp") == 4
    assert value(samples, "replywindow_quarantined_unresolved_bodies") == 2


# -- vendor calls -----------------------------------------------------------------------------


def _vendor_of(url: httpx.URL) -> str:
    return "yzj" if url.host == "oapi-yzj.example" else "itnio"


def _vendor(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/wa/custom/sendMsg":
        return httpx.Response(200, json={"status": "0"})
    if request.url.path == "/sms/sendSms/batch":
        return httpx.Response(503, text="busy")
    if request.url.path == "/oauth/token":
        return httpx.Response(401, json={"errcode": 40001})
    raise httpx.ConnectError("connection refused", request=request)


async def _calls(metrics: Metrics) -> None:
    transport = VendorMetricsTransport(httpx.MockTransport(_vendor), metrics, _vendor_of)
    async with httpx.AsyncClient(transport=transport) as http:
        for _ in range(3):
            await http.post("https://api.itnio.example/wa/custom/sendMsg", json={})
        await http.post("https://api.itnio.example/sms/sendSms/batch", json={})
        await http.post("https://oapi-yzj.example/oauth/token", json={})
        with pytest.raises(httpx.ConnectError):  # counted by the transport as it fails
            await http.post("https://oapi-yzj.example/wechat/sendMessage", json={})


def test_vendor_calls_are_timed_and_their_errors_counted(engine: Engine, clock: FakeClock) -> None:
    metrics = Metrics(engine, clock)
    asyncio.run(_calls(metrics))

    samples = scrape(metrics)

    timed = series(samples, "replywindow_vendor_request_duration_seconds_count")
    assert timed == {
        frozenset({("vendor", v), ("endpoint", e), ("status_class", s)}): n for v, e, s, n in [
            ("itnio", "/wa/custom/sendMsg", "2xx", 3), ("itnio", "/sms/sendSms/batch", "5xx", 1),
            ("yzj", "/oauth/token", "4xx", 1),
        ]
    }
    assert value(samples, "replywindow_vendor_request_duration_seconds_bucket", vendor="itnio",
                 endpoint="/wa/custom/sendMsg", status_class="2xx", le="+Inf") == 3
    assert series(samples, "replywindow_vendor_errors_total") == {
        frozenset({("vendor", v), ("endpoint", e), ("kind", k)}): 1 for v, e, k in [
            ("itnio", "/sms/sendSms/batch", "5xx"), ("yzj", "/oauth/token", "4xx"),
            ("yzj", "/wechat/sendMessage", "connect"),
        ]
    }


def test_transport_error_kinds() -> None:
    request = httpx.Request("POST", "https://api.itnio.example/x")
    assert transport_error_kind(httpx.ConnectTimeout("t", request=request)) == "connect"
    assert transport_error_kind(httpx.ConnectError("c", request=request)) == "connect"
    assert transport_error_kind(httpx.ReadTimeout("r", request=request)) == "timeout"
    assert transport_error_kind(httpx.RemoteProtocolError("p", request=request)) == "transport"


def test_endpoint_labels_are_bounded(engine: Engine, clock: FakeClock) -> None:
    metrics = Metrics(engine, clock)
    for n in range(100):
        metrics.vendor_error("itnio", f"/messages/{n}", "timeout")

    errors = series(scrape(metrics), "replywindow_vendor_errors_total")
    assert len(errors) == 65
    assert errors[frozenset({("vendor", "itnio"), ("endpoint", "other"),
                             ("kind", "timeout")})] == 36


# -- who may read it ----------------------------------------------------------------------------


@pytest.fixture
def metrics_app(settings: Settings, engine: Engine, clock: FakeClock) -> Starlette:
    """The /metrics route alone, over a stand-in for the runtime the lifespan builds."""
    runtime = SimpleNamespace(settings=settings, engine=engine, metrics=Metrics(engine, clock))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"runtime": runtime}

    return Starlette(routes=[route], lifespan=lifespan,
                     exception_handlers=exception_handlers)  # type: ignore[arg-type]


@contextlib.contextmanager
def _from(app: Starlette, host: str) -> Iterator[TestClient]:
    with SettlingClient(app, client=(host, 50000)) as client:
        yield client


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "127.0.0.2"])
def test_loopback_needs_no_key(metrics_app: Starlette, host: str) -> None:
    with _from(metrics_app, host) as client:
        response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "replywindow_outbox_depth{status=\"queued\"} 0.0" in response.text


@pytest.mark.parametrize("host", ["10.0.0.7", "2001:db8::1", "testclient"])
def test_anyone_else_needs_a_key(metrics_app: Starlette, host: str) -> None:
    with _from(metrics_app, host) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        response = client.get("/metrics", headers={"Authorization": f"Bearer {API_KEY}"})

    assert response.status_code == 200
    assert "replywindow_metrics_database_up 1.0" in response.text


def test_a_proxied_request_is_not_taken_for_local(metrics_app: Starlette) -> None:
    with _from(metrics_app, "127.0.0.1") as client:
        response = client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_a_wrong_key_is_refused_even_from_loopback(metrics_app: Starlette) -> None:
    with _from(metrics_app, "127.0.0.1") as client:
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_a_key_scoped_to_some_accounts_is_403(metrics_app: Starlette, engine: Engine,
                                               clock: FakeClock) -> None:
    with Session(db.writer(engine)) as session, session.begin():
        _, scoped = keys.create(session, name="bot", accounts=["91856321412"], now=clock())
        _, every = keys.create(session, name="ops", accounts=None, now=clock())

    with _from(metrics_app, "10.0.0.7") as client:
        assert client.get("/metrics", headers={"Authorization": f"Bearer {scoped}"}
                          ).status_code == 403
        assert client.get("/metrics", headers={"Authorization": f"Bearer {every}"}
                          ).status_code == 200


def test_vendor_calls_that_fail_before_an_answer_are_counted(engine: Engine) -> None:
    from receiver.metrics import ErrorCountingTransport

    metrics = Metrics(engine, lambda: datetime(2026, 11, 24, tzinfo=UTC))

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async def call() -> None:
        transport = ErrorCountingTransport(httpx.MockTransport(refuse), metrics, lambda _: "itnio")
        async with httpx.AsyncClient(transport=transport) as http:
            with pytest.raises(httpx.ConnectError):
                await http.post("https://api.itniotech.com/wa/custom/sendMsg")

    asyncio.run(call())
    body, _ = metrics.render()
    assert ('replywindow_vendor_errors_total{endpoint="/wa/custom/sendMsg",kind="connect",'
            'vendor="itnio"} 1.0') in body.decode()
