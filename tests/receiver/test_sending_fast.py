"""Sending at speed (issue 5): the sender's transactions share commits (group commit), a
message is claimed for sending in the transaction that stores it, and what the fast paths
write is what the careful ones would have written.

The group commit is tested on its own (a batch, a failing work, writes left for the end of
the batch, a caller that went away), then through POST /v1/messages against the simulator.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event, func, insert, text
from sqlmodel import Session, select
from starlette.testclient import TestClient

from receiver.app import create_app
from receiver.settings import Settings
from sender.group_commit import Deferring, GroupCommit, later
from sender.simulator import VendorSimulator
from store.models import Event, OptOut, OutboundMessage
from tests.conftest import FakeClock
from tests.receiver.sending_support import (
    AUTH,
    BUSINESS,
    CUSTOMER,
    customer_writes,
    deliver,
    message,
    send,
    sender_of,
    sim_settings,
    simulator,
)
from tests.settling import SettlingClient

OPT_OUTS = OptOut.__table__  # type: ignore[attr-defined]
AT = datetime(2026, 11, 24, tzinfo=UTC)


def _row(customer: str) -> dict[str, Any]:
    return {"customer": customer, "opted_out": True, "changed_at": AT, "source": "test"}


def _opt_out(customer: str) -> Any:
    """A work: one row written (opt-outs are a handy table with a plain key)."""
    def work(session: Session) -> str:
        session.connection().execute(insert(OPT_OUTS), _row(customer))
        return customer
    return work


def _opted_out(engine: Engine) -> list[str]:
    with Session(engine) as session:
        return sorted(session.exec(select(OptOut.customer)).all())


# -- the group commit on its own ------------------------------------------------------------


def test_works_handed_in_together_share_one_transaction(engine: Engine) -> None:
    commits = GroupCommit(engine)

    async def together() -> list[str]:
        return list(await asyncio.gather(*(commits.run(_opt_out(f"c{i}")) for i in range(10))))

    assert asyncio.run(together()) == [f"c{i}" for i in range(10)]
    assert (commits.batches, commits.works) == (1, 10)
    assert _opted_out(engine) == sorted(f"c{i}" for i in range(10))


def test_a_failing_work_takes_nothing_else_down_and_leaves_nothing_behind(
        engine: Engine) -> None:
    commits = GroupCommit(engine)

    def fails(session: Session) -> None:
        _opt_out("half-done")(session)
        raise ValueError("this work breaks after writing")

    async def together() -> list[Any]:
        return list(await asyncio.gather(commits.run(_opt_out("a")), commits.run(fails),
                                         commits.run(_opt_out("b")), return_exceptions=True))

    first, failed, second = asyncio.run(together())

    assert (first, second) == ("a", "b")
    assert isinstance(failed, ValueError)
    assert _opted_out(engine) == ["a", "b"]  # the failing work's own write was rolled back


def test_a_failed_commit_is_never_run_again(engine: Engine) -> None:
    """A COMMIT that failed may have taken effect (the connection broke after sending it):
    running the works again could store a message twice. Every caller gets the error."""
    commits = GroupCommit(engine)
    ran: list[str] = []

    def counted(customer: str) -> Any:
        def work(session: Session) -> str:
            ran.append(customer)
            return str(_opt_out(customer)(session))
        return work

    def broken_commit(_conn: Any) -> None:
        raise RuntimeError("the connection broke during COMMIT")

    event.listen(engine, "commit", broken_commit)
    try:
        async def together() -> list[Any]:
            return list(await asyncio.gather(commits.run(counted("a")), commits.run(counted("b")),
                                             return_exceptions=True))

        results = asyncio.run(together())
    finally:
        event.remove(engine, "commit", broken_commit)

    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert ran == ["a", "b"]  # once each, not again one by one


def test_writes_left_for_later_are_seen_by_the_batch_s_other_works(engine: Engine) -> None:
    """A deferring work's writes wait for the end of the batch (one executemany), but any
    work that may read them runs after they are written."""
    commits = GroupCommit(engine)
    statements: list[str] = []

    add = insert(OPT_OUTS)

    def deferring(customer: str) -> Any:
        def work(session: Session) -> None:
            later(session, add, _row(customer))
        return work

    def reading(session: Session) -> int:
        return int(session.exec(select(func.count()).select_from(OptOut)).one())

    def counting(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("INSERT INTO opt_outs"):
            statements.append(statement)

    event.listen(engine, "before_cursor_execute", counting)
    try:
        async def together() -> list[Any]:
            return list(await asyncio.gather(
                commits.run(deferring("a"), defers=True), commits.run(deferring("b"), defers=True),
                commits.run(reading), commits.run(deferring("c"), defers=True)))

        results = asyncio.run(together())
    finally:
        event.remove(engine, "before_cursor_execute", counting)

    assert results[2] == 2  # a and b were written before the reading work ran
    assert _opted_out(engine) == ["a", "b", "c"]
    assert len(statements) == 2  # a and b in one executemany, c at the end


def test_a_deferring_writer_writes_at_once_outside_a_batch(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        Deferring(session).connection().execute(insert(OPT_OUTS), _row("now"))
        assert session.exec(select(OptOut.customer)).all() == ["now"]


def test_a_work_whose_caller_went_away_before_it_started_is_not_run(engine: Engine) -> None:
    commits = GroupCommit(engine)
    started = threading.Event()
    release = threading.Event()

    def slow(session: Session) -> str:
        started.set()
        release.wait(10)
        return "slow"

    async def scenario() -> tuple[str, bool, list[str]]:
        first = asyncio.ensure_future(commits.run(slow))
        while not started.is_set():  # the first batch is being written ...
            await asyncio.sleep(0.001)
        gone = asyncio.ensure_future(commits.run(_opt_out("gone")))
        followed: list[str] = []
        kept = asyncio.ensure_future(commits.run(_opt_out("kept"), then=followed.append))
        await asyncio.sleep(0)
        gone.cancel()  # ... and this caller gives up while its work still waits
        release.set()
        return await first, gone.cancelled(), [await kept, *followed]

    result, cancelled, kept = asyncio.run(scenario())

    assert (result, cancelled, kept) == ("slow", True, ["kept", "kept"])
    assert _opted_out(engine) == ["kept"]


# -- POST /v1/messages ----------------------------------------------------------------------


class Watching(httpx.AsyncBaseTransport):
    """The simulator, and what the store held when each vendor call arrived."""

    def __init__(self, sim: VendorSimulator, engine: Engine) -> None:
        self._inner = httpx.ASGITransport(app=sim.app)
        self._engine = engine
        self.watch = False  # for a test that sends one message
        self.seen: list[tuple[str, str, int, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.watch and request.url.path == "/wa/custom/sendMsg":
            self.seen.append(await asyncio.to_thread(self._look))
        return await self._inner.handle_async_request(request)

    def _look(self) -> tuple[str, str, int, int]:
        with Session(self._engine) as session:
            [row] = session.exec(select(OutboundMessage)).all()  # the test sends one
            routes = session.exec(select(Event).where(Event.kind == "message.route")).all()
            return row.id, row.status, row.attempts, len(routes)


@pytest.fixture
def sim(clock: FakeClock) -> VendorSimulator:
    return simulator(clock)


@pytest.fixture
def watching(sim: VendorSimulator, engine: Engine) -> Watching:
    return Watching(sim, engine)


@pytest.fixture
def client(db_url: str, clock: FakeClock, watching: Watching) -> Iterator[TestClient]:
    app = create_app(sim_settings(db_url), clock=clock, vendor_transport=watching)
    with SettlingClient(app) as client:
        yield client


def test_a_message_is_stored_and_claimed_before_the_vendor_is_called(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, watching: Watching) -> None:
    customer_writes(sim, client, clock)
    watching.watch = True

    answer = send(client).json()

    # Committed before the call: the message, claimed (`sending`, one attempt), and its
    # message.route event; nothing else could send it meanwhile.
    assert watching.seen == [(answer["id"], "sending", 1, 1)]
    assert (answer["status"], answer["route"]) == ("accepted", "custom")
    final = message(client, answer["id"])
    assert final["vendor_message_id"] == sim.sent("whatsapp")[0]["vendor_message_id"]
    assert set(final["times"]) == {"accepted"}


def test_the_answer_is_the_one_kept_for_the_idempotency_key(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    headers = AUTH | {"Idempotency-Key": "fast-1"}

    first = send(client, headers=headers)
    clock.advance(seconds=30)
    again = send(client, headers=headers)

    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert len(sim.sent("whatsapp")) == 1


def test_concurrent_sends_share_commits_and_each_goes_once(
        client: TestClient, sim: VendorSimulator, clock: FakeClock, engine: Engine) -> None:
    customer_writes(sim, client, clock)
    commits = sender_of(client).commits
    before = commits.batches, commits.works

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda i: send(client, message={
            "type": "text", "text": {"body": f"reply {i}"}}), range(48)))

    assert {a.status_code for a in answers} == {202}
    assert {a.json()["status"] for a in answers} == {"accepted"}
    assert sorted(s["text"] for s in sim.sent("whatsapp")) == sorted(
        f"reply {i}" for i in range(48))
    batches, works = commits.batches - before[0], commits.works - before[1]
    assert works >= 2 * 48  # stored, then the vendor's answer recorded
    assert batches < works  # some of them shared a commit
    with Session(engine) as session:
        kinds = session.exec(select(Event.kind, func.count()).group_by(Event.kind)).all()
        replied = session.exec(text(
            "SELECT last_outbound_at FROM conversations WHERE channel = 'whatsapp' "
            "AND account = :a AND customer = :c").bindparams(a=BUSINESS, c=CUSTOMER)).one()
    assert dict(kinds)["message.route"] == 48
    assert dict(kinds)["message.status"] == 48
    assert replied[0] is not None


def test_status_pushes_after_a_fast_acceptance_apply_as_before(
        client: TestClient, sim: VendorSimulator, clock: FakeClock) -> None:
    customer_writes(sim, client, clock)
    sim.set_outcome(CUSTOMER, "read")

    answer = send(client).json()
    deliver(sim, client)

    final = message(client, answer["id"])
    assert final["status"] == "read"
    assert [e["status"] for e in final["events"]] == ["sent", "delivered", "read"]
    assert set(final["times"]) == {"accepted", "sent", "delivered", "read"}


def test_without_a_sender_a_message_is_stored_queued(
        db_url: str, clock: FakeClock, sim: VendorSimulator, engine: Engine) -> None:
    settings: Settings = sim_settings(db_url)
    app = create_app(settings, clock=clock, vendor_transport=httpx.ASGITransport(app=sim.app))
    with SettlingClient(app) as client:
        customer_writes(sim, client, clock)
        client.app_state["runtime"].sender = None  # a process that only stores
        answer = send(client).json()
    assert (answer["status"], answer["route"]) == ("queued", "custom")
    assert sim.sent("whatsapp") == []
