"""Vendor outage, and a slow database.

The vendors go down, answer 5xx, 429, time out, answer slowly or with something that is not
JSON. The service runs as a real process (its scheduler off); the outbox worker is driven
in-process against the same database with a clock moved forward, so backoffs take no real
time. What must hold (SPEC "Delivery status", README "Durable, then fast"):
- a send the vendor never got is kept and retried with exponential backoff, never early, and
  goes out exactly once when the vendor is back;
- a send whose outcome is unknown (timeout after the request went out, 500, an unreadable
  answer) is never sent again: it is settled by the vendor's pushes, or expires;
- every message ends in a final state.

And 云真机 gives up on a callback after 1 s: while the database is locked, the webhook still
answers within 1 s (503: not acknowledged, the vendor retries), and the body is stored once
the lock is gone, applied once however often it is repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlmodel import select

from receiver.app import itnio_client, yzj_client
from sender.service import Sender
from sender.simulator import VendorSimulator
from store.models import ChatMessage
from store.spool import path_for
from tests.fire import harness as h

CHANNELS = ("whatsapp", "sms", "wecom")
VENDOR_TIMEOUT = 1.0
DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


def _trouble(sim: VendorSimulator, name: str, channel: str) -> None:
    path = h.PATHS[channel]
    if name == "token_unreadable":  # 云真机's /oauth/token answers a gateway page
        sim.malformed_next("/oauth/token")
    elif name in ("503", "429", "500"):
        sim.fail_next(path, http_status=int(name))
    elif name == "timeout":  # the vendor takes it, the answer comes after our timeout
        sim.delay_next(path, VENDOR_TIMEOUT + 1.5)
    elif name == "slow":
        sim.delay_next(path, VENDOR_TIMEOUT / 2)
    elif name == "malformed":
        sim.malformed_next(path)
    elif name == "refused":
        sim.fail_next(path, status="40035" if channel == "wecom" else "-22",
                      reason="simulated refusal")
    else:
        raise AssertionError(name)


# trouble -> (the POST's answer, the final status, how often the vendor took it)
EXPECTED: dict[str, tuple[tuple[str, ...], tuple[str, ...], int]] = {
    "down": (("queued",), ("delivered",), 1),
    "token_unreadable": (("queued",), ("delivered",), 1),
    "503": (("queued",), ("delivered",), 1),
    "429": (("queued",), ("delivered",), 1),
    "slow": (("accepted", "sent", "delivered"), ("delivered",), 1),
    "timeout": (("unknown",), ("delivered",), 1),
    "500": (("unknown",), ("expired",), 0),
    "malformed": (("unknown",), ("expired",), 0),
    "refused": (("rejected",), ("rejected",), 0),
}
TROUBLES = [t for t in EXPECTED if t != "down"]


def _in_process_sender(url: str, env: dict[str, str], http: httpx.AsyncClient,
                       clock: h.ShiftedClock) -> tuple[Sender, Any]:
    """Another replica's outbox worker, in this process, with a clock of our own."""
    settings = h.settings_of(env)
    engine = h.db.make_engine(url)
    sender = Sender(engine, itnio=itnio_client(settings, http, clock),
                    yzj=yzj_client(settings, http, clock), config=settings.send_config(),
                    clock=clock)
    return sender, engine


async def _outage_run(url: str, store: h.Store, workdir: Path) -> dict[str, Any]:
    sim = h.simulator()
    timeout = httpx.Timeout(VENDOR_TIMEOUT, connect=VENDOR_TIMEOUT)
    async with h.serving(sim) as sim_url, httpx.AsyncClient(timeout=15) as client, \
            httpx.AsyncClient(timeout=timeout) as vendor_http:
        env = h.service_env(url, sim_url, run_scheduler="false",
                            vendor_timeout_seconds=str(VENDOR_TIMEOUT))
        service = h.Service("outage", env, workdir)
        clock = h.ShiftedClock()
        sender, engine = _in_process_sender(url, env, vendor_http, clock)
        cases: list[tuple[str, h.Send]] = []
        backoffs: list[float] = []
        try:
            async with h.running(service):
                vendors = h.Vendors(sim, [service.url], client)
                load = h.Load(sim, vendors, client, [service.url], tag="outage")
                for _ in range(len(EXPECTED)):  # open a window for each WhatsApp send
                    assert (await load.write_in("whatsapp")).acked

                # 1. The vendors are down: every send is kept, queued with a backoff.
                sim.down = True
                down = [s for s in (load.new_send(c) for c in CHANNELS) if s is not None]
                for send in down:
                    await load.send(send)
                    cases.append(("down", send))
                ids = [s.message_id for s in down]
                for _ in range(4):
                    rows = [store.outbound()[i] for i in ids]
                    due = [r.next_attempt_at for r in rows if r.next_attempt_at]
                    clock.offset = min(due) - h.utcnow() - timedelta(seconds=0.5)
                    assert await sender.deliver_due() == 0, "retried before its backoff ran out"
                    clock.offset = max(due) - h.utcnow() + timedelta(milliseconds=50)
                    called_at = clock()
                    assert await sender.deliver_due() == len(ids)
                    for row, before in zip((store.outbound()[i] for i in ids), rows,
                                           strict=True):
                        assert row.status == "queued" and row.attempts == before.attempts + 1
                        delay = (row.next_attempt_at - called_at).total_seconds()
                        # exponential, with jitter: attempt n waits 2^(n-1) .. 2^n s
                        assert 2 ** (row.attempts - 1) <= delay <= 2 ** row.attempts + 1.0
                        backoffs.append(round(delay, 2))
                assert not any(sim.sent(c) for c in CHANNELS)
                sim.down = False

                # 2. The vendors are back but misbehave once per send.
                for trouble in TROUBLES:
                    for channel in CHANNELS:
                        if trouble == "token_unreadable" and channel != "wecom":
                            continue
                        send = load.new_send(channel)
                        assert send is not None
                        _trouble(sim, trouble, channel)
                        await load.send(send)
                        cases.append((trouble, send))
                await asyncio.sleep(VENDOR_TIMEOUT + 2)  # the late answers have come back

                # 3. Time passes: every send still queued goes, once; nothing else does.
                for step in (10, 60, 120, 200):
                    clock.offset = timedelta(seconds=step)
                    await sender.deliver_due()
                await load.finish()
                await h.sweep(url, env, ahead=h.LEASE + timedelta(seconds=30))
                await load.finish()
            await h.sweep(url, env, ahead=timedelta(hours=73))
        finally:
            engine.dispose()

        wrong = []
        rows = store.outbound()
        counts = h.sim_counts(sim)
        for trouble, send in cases:
            answered, final, received = EXPECTED[trouble]
            assert send.accepted, (trouble, send.channel, send.status_code, send.answer)
            row = rows[send.message_id]
            got = (send.answer or {}).get("status"), row.status, counts[send.channel][send.text]
            if got[0] not in answered or got[1] not in final or got[2] != received:
                wrong.append((trouble, send.channel, got, (answered, final, received)))
        assert not wrong, f"(trouble, channel, (answer, final, vendor got), expected): {wrong}"
        trouble_of = {send.key: trouble for trouble, send in cases}
        figures = h.check_sends(store, sim, [s for _, s in cases],
                                outcome=lambda send: EXPECTED[trouble_of[send.key]][1])
    figures |= {"troubles": len(cases), "backoff_delays_s": backoffs}
    return figures


@pytest.mark.parametrize("kind", DATABASES)
def test_vendor_outage_backs_off_loses_nothing_and_sends_nothing_twice(
        kind: str, tmp_path: Path) -> None:
    with h.fresh_database(kind, tmp_path) as url, h.Store(url) as store:
        figures = asyncio.run(_outage_run(url, store, tmp_path))
    print(h.figures_line(f"outage[{kind}]", figures))
    assert figures["sent_twice"] == 0


# -- the database is slow: 云真机 still gets an answer within 1 s ---------------------------------

@contextlib.contextmanager
def locked_inbox(kind: str, url: str) -> Iterator[None]:
    """Another connection holds a lock that blocks every webhook batch until released (on
    SQLite the spool's: webhooks write there, store/spool.py)."""
    if kind == "sqlite":
        conn = sqlite3.connect(str(path_for(url)), isolation_level=None)
        try:
            conn.execute("BEGIN IMMEDIATE")  # the write lock: no other writer until rollback
            yield
            conn.execute("ROLLBACK")
        finally:
            conn.close()
        return
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            transaction = conn.begin()
            conn.execute(text("LOCK TABLE inbox_bodies IN ACCESS EXCLUSIVE MODE"))
            yield
            transaction.rollback()
    finally:
        engine.dispose()


LOCK_SECONDS = 3.0
YZJ_DEADLINE = 1.0


async def _slow_database_run(kind: str, url: str, store: h.Store,
                             workdir: Path) -> dict[str, Any]:
    sim = h.simulator()
    async with h.serving(sim) as sim_url, httpx.AsyncClient(timeout=15) as client:
        env = h.service_env(url, sim_url, run_scheduler="false")
        service = h.Service("slowdb", env, workdir)
        async with h.running(service):
            vendors = h.Vendors(sim, [service.url], client)
            load = h.Load(sim, vendors, client, [service.url], tag="slowdb")
            assert (await load.write_in("wecom")).acked  # warm: connections, the first batch

            async def timed(delivery: h.Delivery) -> tuple[float, int | None, float]:
                started = time.monotonic()
                await vendors.post(delivery)
                return time.monotonic() - started, delivery.last_status, time.monotonic()

            deliveries = [load.customer("wecom") for _ in range(5)]
            for delivery in deliveries:
                vendors.waiting.remove(delivery)
            with locked_inbox(kind, url):
                locked_at = time.monotonic()
                answers = await asyncio.gather(*(timed(d) for d in deliveries))
                await asyncio.sleep(max(0.0, LOCK_SECONDS - (time.monotonic() - locked_at)))
                released_at = time.monotonic()
            slowest = max(took for took, _, _ in answers)
            assert slowest < YZJ_DEADLINE, f"a 云真机 callback took {slowest:.2f} s"
            assert all(at < released_at for _, _, at in answers)
            assert {status for _, status, _ in answers} == {503}, "acknowledged, not stored"

            # Once the lock is gone the bodies are stored and applied, though never acknowledged.
            svrids = [d.marks[0][2] for d in deliveries]

            def stored() -> bool:
                with store.session() as session:
                    found = session.exec(select(ChatMessage.vendor_message_id).where(
                        ChatMessage.channel == "wecom")).all()
                return set(svrids) <= set(found)

            deadline = time.monotonic() + 10
            while not stored():
                assert time.monotonic() < deadline, "bodies not stored after the lock"
                await asyncio.sleep(0.1)
            stored_after = time.monotonic() - released_at
            # The vendor tries again: acknowledged now, applied no second time.
            vendors.waiting.extend(deliveries)
            await load.finish()
        figures = h.check_callbacks(store, load.inbound)
    return {"lock_s": LOCK_SECONDS, "slowest_answer_s": round(slowest, 3),
            "answers": sorted({a for _, a, _ in answers}),
            "stored_after_release_s": round(stored_after, 2), **figures}


@pytest.mark.parametrize("kind", DATABASES)
def test_wecom_callbacks_answer_within_a_second_while_the_database_is_locked(
        kind: str, tmp_path: Path) -> None:
    with h.fresh_database(kind, tmp_path) as url, h.Store(url) as store:
        figures = asyncio.run(_slow_database_run(kind, url, store, tmp_path))
    print(h.figures_line(f"slow-db[{kind}]", figures))
    assert figures["lost"] == 0 and figures["duplicates"] == 0



# -- a channel with no credentials: its messages wait, they are not lost ---------------------

async def _not_configured_run(url: str, store: h.Store, workdir: Path) -> dict[str, Any]:
    sim = h.simulator()
    async with h.serving(sim) as sim_url, httpx.AsyncClient(timeout=15) as client:
        env = h.service_env(url, sim_url, run_scheduler="false", yzj_app_id="",
                            yzj_app_secret="")
        env = {k: v for k, v in env.items() if v != ""}
        service = h.Service("unconfigured", env, workdir)
        async with h.running(service):
            load = h.Load(sim, h.Vendors(sim, [service.url], client), client, [service.url],
                          tag="unconfigured")
            send = load.new_send("wecom")
            assert send is not None
            await load.send(send)
            row = store.outbound()[send.message_id]
    assert send.status_code == 202 and send.answer is not None
    assert (send.answer["status"], row.status) == ("queued", "queued")
    assert row.next_attempt_at is not None and row.attempts == 1
    return {"status": row.status}


def test_a_channel_without_credentials_keeps_its_messages_queued(tmp_path: Path) -> None:
    """Not held in `sending` by an error while reporting the error (it would end unknown)."""
    with h.fresh_database("sqlite", tmp_path) as url, h.Store(url) as store:
        asyncio.run(_not_configured_run(url, store, tmp_path))


# -- a backlog behind a slow vendor -------------------------------------------------------------

BACKLOG = 40  # more than the 32 vendor calls one replica makes at once (sender/service.py)


async def _backlog_run(url: str, store: h.Store, workdir: Path) -> dict[str, Any]:
    sim = h.simulator(answer_after=1.5)  # slow, within the timeout
    async with h.serving(sim) as sim_url, httpx.AsyncClient(timeout=15) as client:
        env = h.service_env(url, sim_url, vendor_timeout_seconds="5")
        service = h.Service("backlog", env, workdir)
        async with h.running(service):
            vendors = h.Vendors(sim, [service.url], client)
            load = h.Load(sim, vendors, client, [service.url], tag="backlog")
            send_at = (h.utcnow() + timedelta(seconds=3)).isoformat().replace("+00:00", "Z")
            sends = [s for s in (load.new_send("sms") for _ in range(BACKLOG)) if s]
            for send in sends:
                send.extra = {"send_at": send_at}
            await asyncio.gather(*(load.send(s) for s in sends))
            assert all(s.status_code == 202 for s in sends)
            # The outbox job claims the whole backlog at once; 32 calls go out, the rest wait
            # for a free slot. A sweep that runs while they wait (its clock moved past the
            # lease: as if the wait had lasted minutes) finds them `sending` and expired.
            deadline = time.monotonic() + 20
            while store.count_status("sending") < BACKLOG:
                assert time.monotonic() < deadline, "the backlog was not claimed at once"
                await asyncio.sleep(0.05)
            await h.sweep(url, env, ahead=h.LEASE + timedelta(seconds=5))
            held = store.count_status("unknown")
            await asyncio.sleep(4.0)  # every call made and answered
            await load.finish()
        await h.sweep(url, env, ahead=timedelta(hours=73))
        counts = h.sim_counts(sim)["sms"]
        rows = store.outbound()
    never_sent = [s.text for s in sends if counts[s.text] == 0]
    assert not never_sent, f"{len(never_sent)} of the backlog were held and never sent"
    assert all(counts[s.text] == 1 for s in sends)
    assert {rows[s.message_id].status for s in sends} == {"delivered"}
    return {"backlog": BACKLOG, "held_by_the_sweep": held}


def test_a_backlog_behind_a_slow_vendor_is_sent_once_though_a_sweep_runs_meanwhile(
        tmp_path: Path) -> None:
    with h.fresh_database("sqlite", tmp_path) as url, h.Store(url) as store:
        figures = asyncio.run(_backlog_run(url, store, tmp_path))
    print(h.figures_line("backlog[sqlite]", figures))
