"""Replicas: three service processes on one PostgreSQL database, each with its scheduler
running (the outbox every second, the sweeps every 30 s), behind one round-robin load.

SPEC "Scale-out": any number of replicas behave as one. Checked: no send reaches the vendor
twice (each replica's POST attempt and every replica's outbox job race for the same rows);
the event feed read through all replicas in turn repeats no event and misses none, and each
inbound message appears in it once; sweeps happen once (window.expiring once per unanswered
message, a WeCom message confirmed delivered once), also when three replicas' sweeps land at
the same instant.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fire import harness as h

REPLICAS = 3
SILENT = 12  # customers who write in and get no answer: each window announced once
SCHEDULER_TICK = 30.0  # sender/jobs.py: the sweeps' interval


async def read_feed(client: httpx.AsyncClient, urls: list[str]) -> list[dict[str, Any]]:
    """GET /v1/events from the start, each page from the next replica, until it is empty."""
    events: list[dict[str, Any]] = []
    cursor = ""
    for url in itertools.cycle(urls):
        answer = await client.get(f"{url}/v1/events", params={"after": cursor, "limit": 50},
                                  headers=h.AUTH)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        if not page["events"]:
            return events
        events += page["events"]
        cursor = page["next_cursor"]
    raise AssertionError("unreachable")


async def _wait_for(what: str, ready: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.5)


async def _replicas_run(url: str, store: h.Store, workdir: Path) -> dict[str, Any]:
    sim = h.simulator(answer_after=0.05)
    async with h.serving(sim) as sim_url, httpx.AsyncClient(timeout=15) as client:
        env = h.service_env(url, sim_url, wecom_confirm_seconds="0",
                            window_expiring_seconds=str(24 * 3600))
        services = [h.Service(f"replica{i}", env, workdir) for i in range(REPLICAS)]
        async with h.running(*services):
            started = time.monotonic()
            urls = [s.url for s in services]
            vendors = h.Vendors(sim, urls, client)
            load = h.Load(sim, vendors, client, urls, tag="replicas")
            silent = [await load.write_in("whatsapp", answer=False) for _ in range(SILENT)]
            stop = asyncio.Event()
            streams = [
                asyncio.create_task(load.customers_stream(stop, per_second=20)),
                asyncio.create_task(load.bot_stream(stop, per_second=15)),
                asyncio.create_task(load.pump(stop)),
            ]
            await asyncio.sleep(12.0 * h.soak())
            stop.set()
            await asyncio.gather(*streams)
            await load.finish()

            # Every replica's scheduler sweeps once (30 s after it started), all near the same
            # moment: every window announced, every WeCom message confirmed.
            wecom = sum(s.accepted and s.channel == "wecom" for s in load.sends)
            await _wait_for("the replicas' sweeps", lambda: (
                len(store.events("window.expiring")) >= SILENT
                and store.count_status("delivered") + store.count_status("read")
                >= sum(s.accepted for s in load.sends)),
                timeout=SCHEDULER_TICK + 30 - (time.monotonic() - started))
            await asyncio.sleep(max(0.0, SCHEDULER_TICK + 3 - (time.monotonic() - started)))

            # Three replicas' sweeps at the same instant, with new work for them.
            burst_silent = [await load.write_in("whatsapp", answer=False) for _ in range(SILENT)]
            burst = [s for s in (load.new_send("wecom") for _ in range(10)) if s is not None]
            await asyncio.gather(*(load.send(s) for s in burst))
            await load.finish()
            await store.applied()  # the echoes a WeCom confirmation goes by
            await asyncio.gather(*(h.sweep(url, env, ahead=timedelta(0))
                                   for _ in range(REPLICAS)))
            await load.finish()

            feed = await read_feed(client, urls)
            in_store = store.events()
        figures: dict[str, Any] = {"replicas": REPLICAS, "feed_events": len(feed)}
        figures |= h.check_callbacks(store, vendors.acked + list(vendors.waiting))
        figures |= h.check_sends(store, sim, load.sends,
                                 outcome=lambda send: ("delivered", "read"))

    ids = Counter(event["id"] for event in feed)
    assert not [i for i, n in ids.items() if n > 1], "the feed repeated events"
    assert set(ids) == {f"evt_{e.id}" for e in in_store}, "the feed missed events"

    inbound = Counter(e["data"]["message_id"] for e in feed if e["type"] == "message.inbound")
    acked_inbound = [d.marks[0][2] for d in load.inbound if d.acked]
    assert all(inbound[m] == 1 for m in acked_inbound)
    assert all(n == 1 for n in inbound.values())

    expiring = Counter((e["data"]["customer"], e["data"]["last_inbound_message_id"])
                       for e in feed if e["type"] == "window.expiring")
    assert all(n == 1 for n in expiring.values()), "a window was announced twice"
    for delivery in silent + burst_silent:
        phone = h.Load._phone_of(delivery)
        assert expiring[(phone, delivery.marks[0][2])] == 1, "a silent window not announced"

    wecom_ids = {s.message_id for s in load.sends if s.accepted and s.channel == "wecom"}
    confirmed = Counter(e["data"]["id"] for e in feed if e["type"] == "message.status"
                        and e["data"]["status"] == "delivered" and e["data"]["id"] in wecom_ids)
    assert set(confirmed) == wecom_ids and set(confirmed.values()) == {1}, \
        "a WeCom message was confirmed delivered twice, or never"
    figures |= {"windows_announced": len(expiring), "wecom_confirmed": len(confirmed),
                "wecom_sent_by_load": wecom}
    return figures


@pytest.mark.postgres
def test_three_replicas_behave_as_one(tmp_path: Path) -> None:
    with h.fresh_database("postgresql", tmp_path) as url, h.Store(url) as store:
        figures = asyncio.run(_replicas_run(url, store, tmp_path))
    print(h.figures_line("replicas[postgresql]", figures))
    assert figures["sends_accepted"] > 40
    assert figures["duplicates"] == 0 and figures["sent_twice"] == 0
