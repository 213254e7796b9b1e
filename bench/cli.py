"""`python -m bench`: every scenario in one run, one table, bench/results/latest.json.

    .venv/bin/python -m bench                  # 10 s per run, 32 connections (16 for the API)
    .venv/bin/python -m bench --duration 60    # e.g. to see whether applying keeps up
    .venv/bin/python -m bench --smoke          # ~1 s per scenario: does the harness work?

Each server is its own `python -m uvicorn ... --workers 1` process on a loopback port; the
load generator (wrk, else bench/pyload.py) is another. See bench/__init__.py for the list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import shlex
import sqlite3
import sys
import tempfile
import time
import traceback
import unicodedata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import SCENARIOS, payloads, stores
from bench.load import LoadResult, describe, run_load, which_wrk
from bench.procs import QUIET_CORES, ROOT, Server, family_kb, running, wait_quiet
from receiver.http_protocol import UVICORN_HTTP

(CEILING, NAIVE, RW_SQLITE, RW_PG, SUSTAINED, YZJ_ONLY, SENDS, SENDS_HALF, LOOKUP_SQLITE,
 LOOKUP_SQLITE_HALF, LOOKUP_SQLITE_FLOOR, LOOKUP_PG, LOOKUP_PG_HALF, LOOKUP_PG_FLOOR) = SCENARIOS
RESULTS = ROOT / "bench" / "results"
OTHER_CPU_LIMIT = QUIET_CORES  # cores: above this, another job shared the machine
# Before each scenario, the harness waits at most this long for the machine to quiet down.
QUIET_WAIT, QUIET_WAIT_SMOKE = 30.0, 2.0
PARTS = ("ceiling", "naive", "webhooks-sqlite", "webhooks-postgres", "webhooks-sustained",
         "yzj-only", "sends", "lookup-sqlite", "lookup-postgres")
SUSTAIN_SHARE = 0.35  # the sustained run is paced at this share of the ceiling's acked/s
BUSINESS = "91856321412"


@dataclass
class Row:
    name: str
    status: str = "ok"  # ok | skipped | failed
    reason: str = ""
    connections: int = 0
    acked_per_s: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    applied_per_s: float | None = None
    peak_rss_mb: float | None = None
    rss_start_mb: float | None = None
    rss_end_mb: float | None = None
    server_cpu: float | None = None  # the server process's CPU seconds per second
    other_cpu: float | None = None  # other processes' on the machine, during the run
    requests: int = 0
    errors: int = 0  # responses over 399, and socket errors
    ratio_to_ceiling: float | None = None
    ratio_to_naive: float | None = None
    applied_ratio_to_ceiling: float | None = None
    notes: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Options:
    duration: float
    warmup: float
    connections: int
    api_connections: int
    threads: int
    slots: int
    windows: int
    recipients: int
    sustain: float
    smoke: bool
    loadgen: str
    pg_url: str
    json_path: Path
    keep: bool
    only: frozenset[str]


# The pool's size without a measured ceiling (`--only` without it): above every machine's
# ceiling seen so far (27,533/s), so that a run of the webhook routes alone sees no
# duplicates, as the full run sees none: its applied/s counted one body in six as a
# duplicate, not applied, when the pool was sized for 1,000/s.
UNMEASURED_CEILING = 30_000.0


class YzjBodies:
    """Distinct encrypted 云真机 bodies, numbered from `start`, made as they are first asked
    for (encrypting takes ~0.1 ms a body)."""

    def __init__(self, start: int, now: int) -> None:
        self.start, self.now = start, now
        self.bodies: list[str] = []

    def first(self, count: int) -> list[str]:
        if count > len(self.bodies):
            self.bodies += payloads.yzj_pool(self.start + len(self.bodies),
                                             count - len(self.bodies), self.now)
        return self.bodies[:count]


def backlog_note(backlog: stores.BacklogSampler, rate: float) -> str:
    """The backlog at the start and end of the run, its peak, and whether it grew (by more
    than a second's worth of arrivals: `rate`, the bodies acknowledged a second)."""
    if backlog.start is None or backlog.end is None:
        return "backlog: not sampled"
    slope = backlog.slope()
    trend = f", trend {slope:+,.0f}/s" if slope is not None else ""
    grown = backlog.end - backlog.start
    verdict = ("it GREW: applying did not keep up" if grown > max(rate, 100.0)
               else "it did not grow: applying kept up")
    return (f"backlog (bodies not yet applied), sampled every second: {backlog.start:,} at the "
            f"start, {backlog.end:,} at the end, at most {backlog.peak:,}{trend}; {verdict}")


class Bench:
    def __init__(self, opts: Options, workdir: Path) -> None:
        self.o = opts
        self.workdir = workdir
        self.loadgen = opts.loadgen
        self.log = workdir / "load.log"
        self.rows: dict[str, Row] = {}
        self.nonce = 10
        self.now = int(time.time())
        self.slots = payloads.webhook_slots(opts.slots, now=self.now)
        self.y_slots = sum(1 for s in self.slots if s.kind == "Y")
        # Every run that stores has a fresh database, so each draws its bodies from the same
        # sequence; warm-ups from another (they go to the database measured next).
        self.yzj = YzjBodies(0, self.now)
        self.yzj_warm = YzjBodies(100_000_000, self.now)
        self.small_pool = self.yzj.first(self.y_slots)
        self.webhooks_small = payloads.write_entries(workdir / "webhooks-small.txt", self.slots,
                                                     pool=self.small_pool)
        self.webhooks_warm: Path | None = None
        self.webhooks_measure: Path | None = None
        self.pool_size = self.y_slots
        self.pg_version = stores.pg_version(opts.pg_url)

    # ---- running load ---------------------------------------------------------------------

    def _load(self, url: str, entries: Path, *, duration: float, connections: int,
              rate: float = 0.0) -> LoadResult:
        self.nonce += 1
        return run_load(self.loadgen, url, entries, duration=duration, connections=connections,
                        threads=self.o.threads, nonce=str(self.nonce), rate=rate, log=self.log)

    def warm_and_measure(self, server: Server, warm: Path, measure: Path, *, connections: int,
                         before_measure: Callable[[], None] | None = None,
                         rate: float = 0.0) -> LoadResult:
        """A warm-up at full rate, then the measured run (paced at `rate` if given)."""
        if self.o.warmup > 0:
            self._load(server.url, warm, duration=self.o.warmup, connections=connections)
            time.sleep(0.3)
        if before_measure is not None:
            before_measure()
        return self._load(server.url, measure, duration=self.o.duration, connections=connections,
                          rate=rate)

    def fill_row(self, row: Row, server: Server, load: LoadResult, connections: int) -> None:
        row.connections = connections
        row.requests = load.requests
        row.errors = load.status_errors + load.socket_errors
        row.acked_per_s = load.ok_per_s
        row.p50_ms, row.p99_ms, row.p999_ms = load.p50_ms, load.p99_ms, load.p999_ms
        row.detail["load"] = asdict(load) | {"ok": load.ok}
        if server.watch is not None:
            start_kb = server.watch.rss_at(load.started)
            end_kb = server.watch.rss_at(load.started + load.duration_s)
            row.rss_start_mb = start_kb / 1024 if start_kb else None
            row.rss_end_mb = end_kb / 1024 if end_kb else None
            row.server_cpu = server.watch.cpu_share(load.started, load.started + load.duration_s)
        peak = family_kb(server.pid, "VmHWM")
        row.peak_rss_mb = peak / 1024 if peak else None
        row.other_cpu = load.other_cpu
        if load.other_cpu is not None and load.other_cpu > OTHER_CPU_LIMIT:
            row.notes.append(f"WARNING: other processes on the machine used "
                             f"{load.other_cpu:.0%} of a core during this run: figures skewed")
        if load.status_errors or load.socket_errors:
            row.notes.append(f"{load.status_errors} answers over 399, "
                             f"{load.socket_errors} socket errors/timeouts")

    # ---- scenarios ------------------------------------------------------------------------

    def ceiling(self) -> Row:
        row = Row(CEILING)
        with running(Server("ceiling", "bench.servers:ceiling_app", workdir=self.workdir)) as s:
            load = self.warm_and_measure(s, self.webhooks_small, self.webhooks_small,
                                         connections=self.o.connections)
            self.fill_row(row, s, load, self.o.connections)
        row.notes.append("reads the body, answers 200; stores nothing")
        return row

    def prepare_pools(self) -> None:
        """Enough distinct 云真机 bodies that none repeats in a run up to 1.25 x the ceiling
        (not measured: `UNMEASURED_CEILING`)."""
        ceiling = self.rows.get(CEILING)
        measured = ceiling.acked_per_s if ceiling is not None else None
        rate = max(1000.0, measured or UNMEASURED_CEILING) * 1.25
        measure = math.ceil(payloads.YZJ_SHARE * rate * self.o.duration) + self.y_slots
        warm = math.ceil(payloads.YZJ_SHARE * rate * max(self.o.warmup, 1)) + 100
        started = time.perf_counter()
        pool = self.yzj.first(measure)
        warm_pool = self.yzj_warm.first(warm)
        self.webhooks_measure = payloads.write_entries(self.workdir / "webhooks-measure.txt",
                                                       self.slots, pool=pool)
        self.webhooks_warm = payloads.write_entries(self.workdir / "webhooks-warm.txt",
                                                    self.slots, pool=warm_pool)
        self.pool_size = len(pool)
        self.pool_seconds = time.perf_counter() - started

    def naive(self) -> Row:
        row = Row(NAIVE)
        path = self.workdir / "naive.db"
        assert self.webhooks_measure is not None and self.webhooks_warm is not None
        server = Server("naive", "bench.servers:naive_app", workdir=self.workdir, factory=True,
                        env={"BENCH_NAIVE_DB": str(path)})
        marks: list[int] = []
        with running(server) as s:
            load = self.warm_and_measure(
                s, self.webhooks_warm, self.webhooks_measure, connections=self.o.connections,
                before_measure=lambda: marks.append(stores.naive_mark(path)))
            self.fill_row(row, s, load, self.o.connections)
            out = stores.naive_outcome(path, marks[0], load.started)
        self._applied(row, load, out)
        row.notes.append("parse (and decrypt), then one INSERT + COMMIT per request; SQLite "
                         "WAL, synchronous=FULL")
        return row

    def _rw_env(self, url: str, *, scheduler: bool, sim_url: str | None = None) -> dict[str, str]:
        env = {
            "REPLYWINDOW_DATABASE_URL": url,
            "REPLYWINDOW_WEBHOOK_TOKEN": payloads.TOKEN,
            "REPLYWINDOW_API_KEYS": payloads.API_KEY,
            "REPLYWINDOW_RUN_SCHEDULER": "true" if scheduler else "false",
            "REPLYWINDOW_YZJ_ENCODING_AES_KEY": payloads.AES_KEY,
        }
        if sim_url is not None:
            env |= {
                "REPLYWINDOW_ITNIO_BASE_URL": sim_url, "REPLYWINDOW_ITNIO_API_KEY": "sim-key",
                "REPLYWINDOW_ITNIO_API_SECRET": "sim-secret",
                "REPLYWINDOW_ITNIO_WA_APP_ID": "simWA001",
                "REPLYWINDOW_ITNIO_SMS_APP_ID": "simSMS01",
                "REPLYWINDOW_YZJ_BASE_URL": sim_url, "REPLYWINDOW_YZJ_APP_ID": "sim-yzj",
                "REPLYWINDOW_YZJ_APP_SECRET": "sim-yzj-secret",
            }
        return env

    def _replywindow(self, name: str, url: str, **env: Any) -> Server:
        return Server(name, "receiver.app:app_from_env", workdir=self.workdir, factory=True,
                      env=self._rw_env(url, **env), http=UVICORN_HTTP)

    def webhooks(self, name: str, url: str, *, server: str | None = None,
                 warm: Path | None = None, measure: Path | None = None) -> Row:
        row = Row(name)
        warm = warm or self.webhooks_warm
        measure = measure or self.webhooks_measure
        assert measure is not None and warm is not None
        marks: list[int] = []
        with running(self._replywindow(server or name.split(",")[-1].strip().lower(), url,
                                       scheduler=False)) as s:
            load = self.warm_and_measure(
                s, warm, measure, connections=self.o.connections,
                before_measure=lambda: marks.append(stores.inbox_mark(url)))
            self.fill_row(row, s, load, self.o.connections)
            out = stores.inbox_outcome(url, marks[0], load.started)
        self._applied(row, load, out)
        return row

    def sustained(self) -> Row:
        """The webhook mix paced at SUSTAIN_SHARE x the ceiling's acked/s for --sustain
        seconds, on SQLite: does applying keep up? The backlog (bodies in state 'pending') is
        counted every second from here, read-only."""
        row = Row(SUSTAINED)
        ceiling = self.rows.get(CEILING)
        if ceiling is None or ceiling.status != "ok" or not ceiling.acked_per_s:
            raise RuntimeError("the ceiling's acked/s is needed, and it was not measured")
        target = SUSTAIN_SHARE * ceiling.acked_per_s
        conns = self.o.connections
        # Distinct 云真机 bodies for the whole run (10% spare), none shared with the warm-up.
        bodies = math.ceil(payloads.YZJ_SHARE * target * self.o.sustain * 1.1) + self.y_slots
        warm_bodies = math.ceil(payloads.YZJ_SHARE * target * max(self.o.warmup, 1) * 1.1) + 100
        measure = payloads.write_entries(self.workdir / "sustained-measure.txt", self.slots,
                                         pool=self.yzj.first(bodies))
        warm = payloads.write_entries(self.workdir / "sustained-warm.txt", self.slots,
                                      pool=self.yzj_warm.first(warm_bodies))
        url = stores.sqlite_database(self.workdir, "sustained")
        with running(self._replywindow("sustained", url, scheduler=False)) as s:
            if self.o.warmup > 0:
                self._load(s.url, warm, duration=self.o.warmup, connections=conns, rate=target)
            mark = stores.inbox_mark(url)
            with stores.BacklogSampler(url) as backlog:
                load = self._load(s.url, measure, duration=self.o.sustain, connections=conns,
                                  rate=target)
            self.fill_row(row, s, load, conns)
            out = stores.inbox_outcome(url, mark, load.started)
        self._applied(row, load, out)
        row.detail |= {"target_per_s": target, "sustain_s": self.o.sustain,
                       "backlog_samples": backlog.samples, "backlog_sample_errors": backlog.errors,
                       "backlog_start": backlog.start, "backlog_end": backlog.end,
                       "backlog_max": backlog.peak, "backlog_slope_per_s": backlog.slope()}
        row.notes.insert(0, f"paced at {target:,.0f}/s ({SUSTAIN_SHARE}x the ceiling's "
                            f"{ceiling.acked_per_s:,.0f}/s) for {self.o.sustain:g} s; got "
                            f"{load.ok_per_s:,.0f}/s")
        row.notes.insert(1, backlog_note(backlog, load.ok_per_s))
        if load.ok_per_s < 0.9 * target:
            row.notes.insert(2, f"WARNING: acknowledged {load.ok_per_s / target:.0%} of the pace: "
                                "the acknowledging side was the limit, so the backlog shows "
                                "whether applying kept up with that, not with the pace")
        return row

    def yzj_only(self) -> Row:
        """Only the 云真机 route (encrypted chatMsg callbacks), so its p99.9 reads on its own."""
        mixed = self.rows.get(RW_SQLITE)
        ceiling = self.rows.get(CEILING)
        # Enough distinct bodies for twice the mixed SQLite run's rate (else 1.25 x the
        # ceiling's); a pool that wraps shows as duplicates in the notes.
        if mixed is not None and mixed.status == "ok" and mixed.acked_per_s:
            rate = 2 * mixed.acked_per_s
        elif ceiling is not None and ceiling.status == "ok" and ceiling.acked_per_s:
            rate = 1.25 * ceiling.acked_per_s
        else:
            rate = 2000.0
        rate = max(rate, 500.0)
        slots = [payloads.Slot("Y", "POST", payloads.webhook_path("wecom"), payloads.YZJ_TYPE)]
        measure = payloads.write_entries(
            self.workdir / "yzj-measure.txt", slots,
            pool=self.yzj.first(math.ceil(rate * self.o.duration) + 1))
        warm = payloads.write_entries(
            self.workdir / "yzj-warm.txt", slots,
            pool=self.yzj_warm.first(math.ceil(rate * max(self.o.warmup, 1)) + 1))
        row = self.webhooks(YZJ_ONLY, stores.sqlite_database(self.workdir, "yzj"),
                            server="yzj-only", warm=warm, measure=measure)
        row.detail["yzj_pool"] = math.ceil(rate * self.o.duration) + 1
        row.notes.append("only POST /webhooks/yzj/…: 云真机 chatMsg callbacks, each encrypted "
                         "(AES-256-CBC, as the vendor sends them), every one distinct")
        return row

    def _applied(self, row: Row, load: LoadResult, out: stores.Outcome) -> None:
        row.detail["store"] = asdict(out)
        if out.last_applied_s is not None and out.applied:
            row.applied_per_s = out.applied / max(out.last_applied_s, 1e-3)
        else:
            row.applied_per_s = 0.0
        states = ", ".join(f"{k} {v}" for k, v in sorted(out.states.items()))
        row.notes.append(f"acknowledged {load.ok}; stored {out.stored} ({states}); "
                         f"last applied {out.last_applied_s or 0:.2f} s after the start")
        if out.stored < load.ok:
            row.notes.append(f"WARNING: {load.ok - out.stored} acknowledged but not in the store")
        if out.states.get("duplicate"):
            row.notes.append("duplicates: the 云真机 pool wrapped (the run outpaced the bodies "
                             "made for it)")
        if out.backlog:
            spooled = f" ({out.spooled} still in the spool)" if out.spooled else ""
            row.notes.append(f"backlog: {out.backlog} bodies not applied{spooled} "
                             f"when we stopped waiting")
        elif out.settle_s > 0.5:
            row.notes.append(f"the last bodies were applied {out.settle_s:.1f} s after the load")

    # -- sending ------------------------------------------------------------------------------

    async def _open_windows(self, service_url: str, recipients: list[str]) -> None:
        """The customers write first (the simulator's customer_writes_whatsapp, delivered to
        the webhook), so every send below goes inside an open window."""
        from sender.simulator import VendorSimulator

        sim = VendorSimulator(webhook_token=payloads.TOKEN, callback_base_url=service_url)
        for recipient in recipients:
            sim.customer_writes_whatsapp(BUSINESS, recipient, "hello, a question about my order")
        gate = asyncio.Semaphore(16)
        async with httpx.AsyncClient(base_url=service_url, timeout=30) as client:
            async def post(callback: Any) -> None:
                async with gate:
                    answer = await client.post(
                        f"{callback.url_path}/{payloads.TOKEN}", content=callback.body,
                        headers={"Content-Type": callback.content_type, **callback.headers})
                    answer.raise_for_status()

            await asyncio.gather(*(post(c) for c in sim.pending_callbacks))

            async def is_open(recipient: str) -> bool:
                async with gate:
                    answer = await client.get(
                        f"/v1/windows/whatsapp/{BUSINESS}/{recipient}",
                        headers={"Authorization": f"Bearer {payloads.API_KEY}"})
                    return bool(answer.status_code == 200 and answer.json().get("open"))

            # A service that applies after acknowledging opens them a moment later.
            closed, deadline = list(recipients), time.monotonic() + 60
            while closed:
                opened = await asyncio.gather(*(is_open(r) for r in closed))
                closed = [r for r, ok in zip(closed, opened, strict=True) if not ok]
                if closed and time.monotonic() > deadline:
                    raise RuntimeError(f"{len(closed)} of {len(recipients)} windows did not "
                                       "open within 60 s of their uplinks")
                if closed:
                    await asyncio.sleep(0.2)

    def sends(self) -> tuple[Row, Row]:
        full, half = Row(SENDS), Row(SENDS_HALF)
        conns = self.o.api_connections
        url = stores.sqlite_database(self.workdir, "sends")
        recipients = [f"9197{i:08d}" for i in range(self.o.recipients)]
        entries = payloads.write_entries(
            self.workdir / "sends.txt", payloads.send_slots(BUSINESS, recipients),
            headers={"Authorization": f"Bearer {payloads.API_KEY}"})
        sim = Server("simulator", "bench.servers:simulator_app", workdir=self.workdir,
                     factory=True)
        with running(sim):
            service = self._replywindow("sends", url, scheduler=True, sim_url=sim.url)
            with running(service) as s:
                asyncio.run(self._open_windows(s.url, recipients))
                load = self.warm_and_measure(s, entries, entries, connections=conns)
                self.fill_row(full, s, load, conns)
                statuses = stores.outbound_statuses(url, load.started)
                full.detail["outbound"] = statuses
                full.notes.append(f"{len(recipients)} windows opened by uplinks first; "
                                  f"messages by status: {statuses}")
                self.at_half_rate(half, s, entries, load, conns)
        full.notes.append("the service on SQLite, the simulator as its own uvicorn server, "
                          "scheduler on")
        return full, half

    def at_half_rate(self, half: Row, server: Server, entries: Path, full: LoadResult,
                     conns: int) -> None:
        """The same load paced at half the rate `full` reached: the latency at a load the
        service carries, not when it is saturated."""
        target = max(full.ok_per_s / 2, 1.0)
        slow = self._load(server.url, entries, duration=self.o.duration, connections=conns,
                          rate=target)
        self.fill_row(half, server, slow, conns)
        half.detail["target_per_s"] = target
        half.notes.append(f"paced at {target:,.0f}/s (half the row above); "
                          f"got {slow.ok_per_s:,.0f}/s")

    # -- window lookups -----------------------------------------------------------------------

    def lookup(self, name: str, half_name: str, floor_name: str,
               url: str) -> tuple[Row, Row, Row]:
        row, half = Row(name), Row(half_name)
        conns = self.o.api_connections
        seconds = stores.load_conversations(url, self.o.windows)
        self.wait_quiet()  # the load's writes
        count = 2000 if self.o.smoke else 20000
        entries = payloads.write_entries(
            self.workdir / "lookups.txt", payloads.lookup_slots(count, self.o.windows),
            headers={"Authorization": f"Bearer {payloads.API_KEY}"})
        with running(self._replywindow(name.split(",")[-1].strip().lower() + "-windows", url,
                                       scheduler=False)) as s:
            account, customer = payloads.conversation_key(0)
            first = httpx.get(f"{s.url}/v1/windows/whatsapp/{account}/{customer}",
                              headers={"Authorization": f"Bearer {payloads.API_KEY}"})
            if first.status_code != 200 or first.json().get("last_inbound_at") is None:
                raise RuntimeError(f"the loaded windows do not read back: {first.text}")
            load = self.warm_and_measure(s, entries, entries, connections=conns)
            self.fill_row(row, s, load, conns)
            self.at_half_rate(half, s, entries, load, conns)
            mapped = family_kb(s.pid, "RssFile")
        row.detail["loaded_in_s"] = seconds
        row.notes.append(f"{self.o.windows:,} conversations bulk-loaded in {seconds:.1f} s; "
                         f"{count:,} distinct lookups (95% in the table)")
        if mapped is not None:
            # SQLite's lookups read the database through a memory map (store/conversations.py):
            # the pages they touch count in RSS, as the kernel's page cache, not the heap.
            row.detail["rss_file_mb"] = mapped / 1024
            row.notes.append(f"RSS at the end: {mapped / 1024:,.0f} MB of it files mapped (RssFile:"
                             " the libraries, and on SQLite the database the lookups read)")
        try:  # the lookups' rows stand whatever becomes of their floor's
            floor = self.floor(floor_name, entries, half)
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            floor = Row(floor_name, status="failed", reason=f"{type(exc).__name__}: {exc}")
        return row, half, floor

    def floor(self, name: str, entries: Path, paced: Row) -> Row:
        """The bare endpoint under `paced`'s load (the same requests, connections and pace):
        the latency of the framework and the load generator alone on this machine. wrk paces
        in whole milliseconds, so the requests due in one millisecond arrive together and
        queue even where nothing is done."""
        row = Row(name)
        rate = paced.detail["target_per_s"]
        with running(Server("floor", "bench.servers:ceiling_app", workdir=self.workdir)) as s:
            load = self.warm_and_measure(s, entries, entries, connections=paced.connections,
                                         rate=rate)
            self.fill_row(row, s, load, paced.connections)
        row.detail["target_per_s"] = rate
        row.notes.append(f"the ceiling's endpoint paced at {rate:,.0f}/s with the same requests "
                         f"and connections as \"{paced.name}\": the latency of the framework "
                         "and the load generator alone (a p99 like this moves by ±0.5 ms from "
                         "one run to the next)")
        return row

    # ---- the whole run ------------------------------------------------------------------------

    def attempt(self, name: str, run: Callable[[], Row | tuple[Row, ...]]) -> None:
        waited, busy = self.wait_quiet()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            result = run()
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            self.rows[name] = Row(name, status="failed", reason=f"{type(exc).__name__}: {exc}")
            return
        finally:
            self.drop_databases()
        for row in result if isinstance(result, tuple) else (result,):
            row.detail["quiet_wait_s"] = round(waited, 2)
            row.detail["busy_cores_before"] = round(busy, 3)
            if busy >= QUIET_CORES:
                row.notes.append(f"the machine was still busy when it started ({busy:.2f} "
                                 f"cores in use after waiting {waited:.0f} s)")
            self.rows[row.name] = row
        print(f"bench: {name} done in {time.perf_counter() - started:.1f} s", file=sys.stderr,
              flush=True)

    def wait_quiet(self) -> tuple[float, float]:
        return wait_quiet(limit=QUIET_WAIT_SMOKE if self.o.smoke else QUIET_WAIT)

    def drop_databases(self) -> None:
        """A finished scenario's SQLite files, deleted (unless --keep): the kernel would
        otherwise write them out while the next scenario measures."""
        if self.o.keep:
            return
        for path in self.workdir.glob("*.db*"):
            path.unlink(missing_ok=True)

    def skip(self, name: str, reason: str) -> None:
        self.rows[name] = Row(name, status="skipped", reason=reason)

    def want(self, key: str) -> bool:
        return not self.o.only or key in self.o.only

    def run(self) -> None:
        if self.want("ceiling") or self.want("webhooks-sustained"):  # paced from its rate
            self.attempt(CEILING, self.ceiling)
        self.prepare_pools()
        if self.want("naive"):
            self.attempt(NAIVE, self.naive)
        if self.want("webhooks-sqlite"):
            self.attempt(RW_SQLITE, lambda: self.webhooks(
                RW_SQLITE, stores.sqlite_database(self.workdir, "webhooks")))
        no_pg = f"PostgreSQL not reachable at {_hide_password(self.o.pg_url)}"
        if not self.want("webhooks-postgres"):
            pass
        elif self.pg_version:
            def pg_webhooks() -> Row:
                with stores.pg_database(self.o.pg_url, "webhooks") as url:
                    return self.webhooks(RW_PG, url)

            self.attempt(RW_PG, pg_webhooks)
        else:
            self.skip(RW_PG, no_pg)
        if self.want("webhooks-sustained"):
            self.attempt(SUSTAINED, self.sustained)
        if self.want("yzj-only"):
            self.attempt(YZJ_ONLY, self.yzj_only)
        if self.want("sends"):
            self.attempt(SENDS, self.sends)
            self.failed_with(SENDS_HALF, SENDS)
        if self.want("lookup-sqlite"):
            self.attempt(LOOKUP_SQLITE, lambda: self.lookup(
                LOOKUP_SQLITE, LOOKUP_SQLITE_HALF, LOOKUP_SQLITE_FLOOR,
                stores.sqlite_database(self.workdir, "windows")))
            self.failed_with(LOOKUP_SQLITE_HALF, LOOKUP_SQLITE)
            self.failed_with(LOOKUP_SQLITE_FLOOR, LOOKUP_SQLITE)
        if not self.want("lookup-postgres"):
            pass
        elif self.pg_version:
            def pg_lookup() -> tuple[Row, Row, Row]:
                with stores.pg_database(self.o.pg_url, "windows") as url:
                    return self.lookup(LOOKUP_PG, LOOKUP_PG_HALF, LOOKUP_PG_FLOOR, url)

            self.attempt(LOOKUP_PG, pg_lookup)
            self.failed_with(LOOKUP_PG_HALF, LOOKUP_PG)
            self.failed_with(LOOKUP_PG_FLOOR, LOOKUP_PG)
        else:
            for name in (LOOKUP_PG, LOOKUP_PG_HALF, LOOKUP_PG_FLOOR):
                self.skip(name, no_pg)
        self.ratios()

    def failed_with(self, paced: str, full: str) -> None:
        """A paced row is measured after its full-rate one, at half its rate: no row, no rate."""
        if paced not in self.rows:
            self.rows[paced] = Row(paced, status="failed", reason="the full-rate run failed")

    def ratios(self) -> None:
        ceiling = self.rows.get(CEILING)
        naive = self.rows.get(NAIVE)
        top = ceiling.acked_per_s if ceiling and ceiling.status == "ok" else None
        base = naive.acked_per_s if naive and naive.status == "ok" else None
        # Not the 云真机-only row: its bodies are not the mix the ceiling was measured with.
        for name in (CEILING, NAIVE, RW_SQLITE, RW_PG, SUSTAINED):
            row = self.rows.get(name)
            if row is None or row.status != "ok" or row.acked_per_s is None:
                continue
            if top:
                row.ratio_to_ceiling = row.acked_per_s / top
                if row.applied_per_s is not None:
                    row.applied_ratio_to_ceiling = row.applied_per_s / top
            if base and name != SUSTAINED:  # paced: its rate is the pace, not a capacity
                row.ratio_to_naive = row.acked_per_s / base


# ---- machine, table, JSON -------------------------------------------------------------------

def _hide_password(url: str) -> str:
    from sqlalchemy import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count() or 0
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": nproc, "cpu": model, "memory_gb": round(mem_kb / 1024 / 1024, 1),
            "kernel": platform.release(), "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version}


def loadavg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def code_version() -> str:
    """The commit the service's code is at, and whether the tree differs from it."""
    import subprocess

    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return out.stdout.strip() or "unknown"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


COLUMNS = (("scenario", 40, "<"), ("conns", 5, ">"), ("acked/s", 9, ">"), ("p50 ms", 7, ">"),
           ("p99 ms", 7, ">"), ("p99.9 ms", 8, ">"), ("applied/s", 9, ">"), ("peak RSS", 9, ">"),
           ("ack/ceil", 8, ">"), ("ack/naive", 9, ">"), ("appl/ceil", 9, ">"))


def _width(text_: str) -> int:
    """Columns on a terminal: CJK characters (云真机) take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text_)


def _pad(text_: str, width: int, align: str) -> str:
    space = " " * max(0, width - _width(text_))
    return text_ + space if align == "<" else space + text_


def _line(cells: list[str]) -> str:
    return "  ".join(_pad(c, width, align) for c, (_, width, align) in zip(cells, COLUMNS,
                                                                          strict=True)).rstrip()


def table(rows: list[Row], header: list[str]) -> str:
    out = [*header, "", _line([c[0] for c in COLUMNS]),
           _line(["-" * c[1] for c in COLUMNS])]
    for row in rows:
        if row.status != "ok":
            out.append(f"{_pad(row.name, COLUMNS[0][1], '<')}  {row.status}: {row.reason}")
            continue
        out.append(_line([
            row.name, str(row.connections), _num(row.acked_per_s), _ms(row.p50_ms),
            _ms(row.p99_ms), _ms(row.p999_ms), _num(row.applied_per_s),
            f"{row.peak_rss_mb:.0f} MB" if row.peak_rss_mb else "-",
            _ratio(row.ratio_to_ceiling), _ratio(row.ratio_to_naive),
            _ratio(row.applied_ratio_to_ceiling)]))
    out.append("")
    for row in rows:
        if row.status != "ok":
            continue
        process = []
        if row.rss_start_mb and row.rss_end_mb:
            process.append(f"RSS {row.rss_start_mb:.0f} -> {row.rss_end_mb:.0f} MB over the run")
        if row.server_cpu is not None:
            process.append(f"server (and applier) processes' CPU {row.server_cpu:.0%} of a core")
        notes = [*row.notes, "; ".join(process)] if process else row.notes
        out.append(f"{row.name}:")
        out.extend(f"    {note}" for note in notes)
    return "\n".join(out)


def parse_args(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="replywindow's benchmark: every scenario, one table, "
                    "bench/results/latest.json.")
    parser.add_argument("--smoke", action="store_true",
                        help="every scenario for ~1 s, few connections, 10,000 windows: "
                             "checks that the harness works")
    parser.add_argument("--duration", type=float, help="seconds per measured run (default 10)")
    parser.add_argument("--warmup", type=float, help="seconds of warm-up before each (default 2)")
    parser.add_argument("--connections", type=int, help="for the webhooks (default 32)")
    parser.add_argument("--api-connections", type=int,
                        help="for POST /v1/messages and the window lookups (default 16)")
    parser.add_argument("--threads", type=int, default=1, help="load generator threads")
    parser.add_argument("--windows", type=int, help="conversations in the lookup table "
                                                    "(default 1,000,000)")
    parser.add_argument("--sustain", type=float,
                        help="seconds of the sustained webhook run, paced at "
                             f"{SUSTAIN_SHARE}x the ceiling (default 60; --smoke: 2)")
    parser.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--pg-url", help="PostgreSQL to create the run's databases in "
                                         "(default: $BENCH_DATABASE_URL, $TEST_DATABASE_URL, "
                                         f"{stores.DEFAULT_PG})")
    parser.add_argument("--json", type=Path, help="where to write the results "
                                                  "(default bench/results/latest.json; "
                                                  "smoke.json with --smoke)")
    parser.add_argument("--only", help="a comma-separated subset of: " + ", ".join(PARTS)
                        + " (the ratios need ceiling and naive; webhooks-sustained runs the "
                          "ceiling too)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory "
                                                            "(databases, logs)")
    a = parser.parse_args(argv)
    only = frozenset(p.strip() for p in (a.only or "").split(",") if p.strip())
    if only - set(PARTS):
        parser.error(f"--only: unknown {', '.join(sorted(only - set(PARTS)))}; "
                     f"choose from {', '.join(PARTS)}")
    smoke = a.smoke
    loadgen = a.loadgen
    if loadgen == "auto":
        loadgen = "wrk" if which_wrk() else "python"
    elif loadgen == "wrk" and not which_wrk():
        parser.error("wrk is not installed (apt-get install -y wrk), use --loadgen python")
    return Options(
        duration=a.duration if a.duration is not None else (1 if smoke else 10),
        warmup=a.warmup if a.warmup is not None else (0 if smoke else 2),
        connections=a.connections or (4 if smoke else 32),
        api_connections=a.api_connections or (4 if smoke else 16),
        threads=a.threads, slots=600 if smoke else 3000,
        windows=a.windows or (10_000 if smoke else 1_000_000),
        recipients=50 if smoke else 1000,
        sustain=a.sustain if a.sustain is not None else (2 if smoke else 60),
        smoke=smoke, loadgen=loadgen,
        pg_url=stores.pg_base_url(a.pg_url),
        json_path=a.json or RESULTS / ("smoke.json" if smoke else "latest.json"), keep=a.keep,
        only=only)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    command = "python -m bench" + ("" if not (argv if argv is not None else sys.argv[1:])
                                   else " " + shlex.join(argv if argv is not None
                                                         else sys.argv[1:]))
    info = machine()
    info["loadavg_before"] = loadavg()
    info["code"] = code_version()
    workdir = Path(tempfile.mkdtemp(prefix="replywindow-bench-"))
    started = datetime.now(UTC)
    bench = Bench(opts, workdir)
    try:
        bench.run()
    finally:
        if not opts.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)
    rows = [bench.rows[name] for name in SCENARIOS if name in bench.rows]
    info["loadavg_after"] = loadavg()
    # Before only: afterwards the average holds the benchmark's own servers and load.
    before = info["loadavg_before"]
    busy = before is not None and before > 0.5 * max(1, info["nproc"])
    header = [
        f"replywindow benchmark, {started:%Y-%m-%d %H:%M} UTC",
        f"command:  {command}",
        f"machine:  {info['nproc']} cores (nproc), {info['cpu']}, {info['memory_gb']} GB, "
        f"Linux {info['kernel']}; load average {info['loadavg_before']} before the run",
        f"code:     {info['code']} (git describe --dirty)",
        f"software: Python {info['python']}, SQLite {info['sqlite']}, "
        + (f"PostgreSQL {bench.pg_version}" if bench.pg_version else "no PostgreSQL"),
        f"load:     {describe(opts.loadgen)}, {opts.threads} thread(s); "
        f"{opts.duration:g} s runs after {opts.warmup:g} s warm-up (sustained: "
        f"{opts.sustain:g} s); {opts.connections} connections (webhooks), "
        f"{opts.api_connections} (API)",
        "servers:  one `uvicorn --workers 1` process each, on loopback, no access log",
        f"payloads: {opts.slots:,} distinct webhook bodies: "
        + ", ".join(f"{share:.0%} {kind}" for kind, share in payloads.MIX)
        + f"; every ITNIO id unique per request, {bench.pool_size:,} distinct encrypted "
          "云真机 bodies",
        "acked/s: 2xx answers per second.  p50/p99/p99.9: latency as the load generator "
        "measures it.",
        "applied/s: bodies whose events are in the store (state 'applied'), divided by the time "
        "from the run's start to the last applied_at.",
        "peak RSS: VmHWM of the server and its applier process.  ack/ceil, ack/naive, "
        "appl/ceil: ratios of acked/s (applied/s) to the ceiling's and the naive way's acked/s.",
    ]
    skewed = [r.name for r in rows if r.other_cpu is not None and r.other_cpu > OTHER_CPU_LIMIT]
    if skewed:
        header.insert(4, f"WARNING:  other work on the machine during: {'; '.join(skewed)} "
                         "(see the notes): those figures are low and noisy")
    if busy:
        header.insert(4, "WARNING:  the machine was busy with other work when the run began (load "
                         "average over half the cores): figures low and noisy")
    text = table(rows, header)
    print(text, flush=True)
    opts.json_path.parent.mkdir(parents=True, exist_ok=True)
    opts.json_path.write_text(json.dumps({
        "command": command, "started_at": started.isoformat(), "machine": info,
        "postgresql": bench.pg_version, "load_generator": describe(opts.loadgen),
        "options": {k: str(v) if isinstance(v, Path) else sorted(v) if isinstance(v, frozenset)
                    else v for k, v in asdict(opts).items() if k != "pg_url"},
        "yzj_pool": bench.pool_size, "mix": dict(payloads.MIX),
        "scenarios": [asdict(r) for r in rows], "table": text,
    }, indent=2, ensure_ascii=False) + "\n")
    print(f"\n(written to {_relative(opts.json_path)})", flush=True)
    return 1 if any(r.status == "failed" for r in rows) else 0


def _relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
