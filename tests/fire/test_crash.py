"""Crash: the service as a real process under a steady stream of callbacks and bot sends,
`kill -9`ed at random moments and started again, on SQLite and on PostgreSQL.

What must hold afterwards (SPEC "Vendor webhooks", "Delivery status"):
- every callback that got a 200 is stored and applied exactly once, and nothing is applied
  twice (a body whose 200 was lost in the kill may be stored too; vendors send it again);
- every accepted send reached the vendor exactly once, or never and was held as `unknown`
  (a kill between the claim and the call): never twice, even when the bot asks again with
  its Idempotency-Key after a lost answer;
- after the sweeps, nothing is left in a non-final state, and a message the vendor got ends
  with the vendor's outcome (delivered), not a guess.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import httpx
import pytest

from tests.fire import harness as h

SEED = 20261124
KILLS = 4


async def _crash_run(kind: str, url: str, store: h.Store, workdir: Path,
                     seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    sim = h.simulator(answer_after=0.4)
    async with h.serving(sim) as sim_url, httpx.AsyncClient(timeout=10) as client:
        env = h.service_env(url, sim_url)
        service = h.Service(f"crash-{kind}", env, workdir)
        try:
            await service.astart()
            vendors = h.Vendors(sim, [service.url], client)
            load = h.Load(sim, vendors, client, [service.url], tag=f"crash{seed}")
            stop = asyncio.Event()
            killer = h.Killer(service, rng, kills=KILLS * h.soak())
            streams = [
                asyncio.create_task(load.customers_stream(stop, per_second=25)),
                asyncio.create_task(load.bot_stream(stop, per_second=12)),
                asyncio.create_task(load.pump(stop)),
            ]
            try:
                await killer.run()
            finally:
                stop.set()
                await asyncio.gather(*streams)
            settled = await h.settle([service], load, store, url, env)
        finally:
            service.stop()
        figures = {"kills": service.kills, "kill_moments_s": killer.moments}
        figures |= h.check_callbacks(store, vendors.acked + list(vendors.waiting)
                                     + [d for d in load.inbound if not d.acked])
        figures |= h.check_sends(store, sim, load.sends)
        figures |= settled
        figures["retried_sends"] = sum(s.tries > 1 for s in load.sends)
    assert service.kills == KILLS * h.soak()
    return {"seed": seed, **figures}


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_kill_9_under_load_loses_nothing_and_sends_nothing_twice(kind: str,
                                                                 tmp_path: Path) -> None:
    with h.fresh_database(kind, tmp_path) as url, h.Store(url) as store:
        figures = asyncio.run(_crash_run(kind, url, store, tmp_path, h.seed(SEED)))
    print(h.figures_line(f"crash[{kind}]", figures))
    assert figures["callbacks_acknowledged"] > 100
    assert figures["sends_accepted"] > 40
    assert figures["lost"] == 0 and figures["duplicates"] == 0 and figures["sent_twice"] == 0
