"""POST /v1/messages is answered before Starlette's router and middleware (receiver/app.py,
receiver/unrouted.py): each answer, errors included, is what the routed endpoint answers (an
app under a root_path still goes through the router, which is how a test reaches it)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, text
from starlette.responses import JSONResponse

from receiver.app import create_app
from receiver.raw_response import JsonAnswer
from sender.simulator import VendorSimulator
from tests.conftest import FakeClock
from tests.receiver.sending_support import (
    AUTH,
    BUSINESS,
    CUSTOMER,
    TEXT,
    customer_writes,
    send,
    sim_settings,
    simulator,
)
from tests.settling import SettlingClient

KEY = {**AUTH, "Idempotency-Key": "unrouted-1"}
SEND = {"channel": "whatsapp", "from": BUSINESS, "to": CUSTOMER, "message": TEXT}


@pytest.fixture
def sim(clock: FakeClock) -> VendorSimulator:
    return simulator(clock)


def _client(db_url: str, clock: FakeClock, sim: VendorSimulator, **kw: Any) -> SettlingClient:
    app = create_app(sim_settings(db_url), clock=clock,
                     vendor_transport=httpx.ASGITransport(app=sim.app))
    return SettlingClient(app, **kw)


@pytest.fixture
def sent(db_url: str, clock: FakeClock, sim: VendorSimulator) -> None:
    """A send made with KEY, its window open, so that a repeat is answered from the store."""
    with _client(db_url, clock, sim) as client:
        customer_writes(sim, client, clock)
        assert send(client, headers=KEY).status_code == 202


# Each request, and the status both paths answer it with.
REQUESTS: dict[str, tuple[dict[str, Any], int]] = {
    "repeat": ({"json": SEND, "headers": KEY}, 202),
    "conflict": ({"json": {**SEND, "to": "91856321433"}, "headers": KEY}, 409),
    "no_key": ({"json": SEND, "headers": {}}, 401),
    "wrong_key": ({"json": SEND, "headers": {"Authorization": "Bearer nope"}}, 401),
    "not_json": ({"content": b"{not json", "headers": {**AUTH, "Content-Type": "text/plain"}},
                 400),
    "invalid": ({"json": {**SEND, "to": "12ab"}, "headers": AUTH}, 422),
    "too_large": ({"content": b"x" * (1024 * 1024 + 1), "headers": AUTH}, 413),
}


@pytest.mark.parametrize("case", sorted(REQUESTS))
def test_a_send_answered_before_routing_is_what_the_router_answers(
        sent: None, db_url: str, clock: FakeClock, sim: VendorSimulator, case: str) -> None:
    request, status = REQUESTS[case]
    answers = []
    for root_path in ("", "/api"):  # the second goes through the router
        with _client(db_url, clock, sim, root_path=root_path) as client:
            answers.append(client.post("/v1/messages", **request))
    unrouted, routed = answers

    assert unrouted.status_code == routed.status_code == status
    assert unrouted.content == routed.content
    assert unrouted.headers.raw == routed.headers.raw  # names, values and their order


def test_other_methods_and_paths_near_the_send_are_the_router_s(
        db_url: str, clock: FakeClock, sim: VendorSimulator) -> None:
    with _client(db_url, clock, sim) as client:
        listed = client.get("/v1/messages", headers=AUTH)
        put = client.put("/v1/messages", json=SEND, headers=AUTH)
        slash = client.post("/v1/messages/", json=SEND, headers=AUTH, follow_redirects=False)

    assert listed.status_code == 200 and "messages" in listed.json()
    assert put.status_code == 405
    assert put.json()["error"] == "method_not_allowed"
    assert "POST" in put.headers["allow"]
    assert slash.status_code == 307 and slash.headers["location"].endswith("/v1/messages")


def test_a_send_the_database_cannot_take_is_answered_as_json_and_logged(
        db_url: str, clock: FakeClock, sim: VendorSimulator, engine: Engine,
        caplog: pytest.LogCaptureFixture) -> None:
    with _client(db_url, clock, sim, raise_server_exceptions=False) as client:
        customer_writes(sim, client, clock)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE outbound_messages RENAME TO outbound_away"))
        try:
            response = send(client)
        finally:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE outbound_away RENAME TO outbound_messages"))

    # A missing table is SQLite's OperationalError (answered as the database unavailable,
    # receiver/errors.py) and PostgreSQL's ProgrammingError (unexpected): as routed, either way.
    assert response.status_code == (503 if db_url.startswith("sqlite") else 500)
    assert response.headers["content-type"] == "application/json"
    assert set(response.json()) == {"error", "detail"}
    assert any(record.exc_info for record in caplog.records if record.levelname == "ERROR")


@pytest.mark.parametrize("status", [200, 202, 409])
def test_a_json_answer_is_the_bytes_and_headers_of_starlette_s(status: int) -> None:
    content = {"id": "msg_1", "to": "张三", "window": None, "times": {"accepted": "…Z"}}

    def messages(answer: Any) -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def capture(message: dict[str, Any]) -> None:
            sent.append(message)

        asyncio.run(answer({"type": "http"}, None, capture))
        return sent

    assert messages(JsonAnswer(content, status)) == messages(
        JSONResponse(content, status_code=status))
