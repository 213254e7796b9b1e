"""What the process-level ("under fire") tests share.

- the service as real processes: `python -m uvicorn receiver.app:app_from_env --factory`, set
  up by REPLYWINDOW_* variables only, started, `kill -9`ed, restarted, stopped;
- the vendor simulator (sender/simulator.py) served by uvicorn on a loopback port inside the
  test's own event loop, so the test reads what it received directly;
- `Vendors`: the vendors' callback senders, posting what the simulator queued and trying again
  what was not acknowledged; `Load`: customers writing in and a bot replying, as a stream;
- a fresh database per test (a SQLite file, or a PostgreSQL database made and dropped);
- the ledger checks: acknowledged callbacks stored and applied once, sends never twice;
- the sweeps run in-process against the same database with a clock moved forward (leases,
  the WeCom confirmation, the 72-hour expiry) instead of waiting for them.

REPLYWINDOW_SOAK=N (default 1) multiplies the streams and the kills, for long runs by hand;
REPLYWINDOW_FIRE_SEED picks other random moments for the kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import Engine, func, make_url
from sqlmodel import Session, select

from receiver.applier import wait_applied
from receiver.crypto import decode_key, decrypt
from receiver.http_protocol import UVICORN_HTTP
from receiver.settings import Settings
from sender import jobs
from sender.service import LEASE, Sender
from sender.simulator import PendingCallback, VendorSimulator
from store import db, migrate
from store.models import ChatMessage, Event, EventKey, InboxBody, OutboundMessage, StatusEvent
from store.spool import Spool, path_for
from tests import conftest

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "fire-webhook-token"
API_KEY = "fire-api-key"
AES_KEY = "replywindowFireAesKey32bytes!!!!"
BUSINESS = "91856321412"
STAFF = "1688851873049028"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
FINAL = ("delivered", "read", "failed", "rejected", "expired")
PATHS = {"whatsapp": "/wa/custom/sendMsg", "sms": "/sms/sendSms/batch",
         "wecom": "/wechat/sendMessage"}


def soak() -> int:
    """REPLYWINDOW_SOAK: how many times longer than in CI (streams, kills)."""
    raw = os.environ.get("REPLYWINDOW_SOAK", "").strip()
    return max(1, int(raw)) if raw.isdigit() else 1


def seed(default: int) -> int:
    """REPLYWINDOW_FIRE_SEED: another seed for the random moments (kills), to vary a soak."""
    raw = os.environ.get("REPLYWINDOW_FIRE_SEED", "").strip()
    return int(raw) if raw.isdigit() else default


def utcnow() -> datetime:
    return datetime.now(UTC)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- databases ------------------------------------------------------------------------------

@contextlib.contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """A migrated database of this test's own; PostgreSQL ones are dropped afterwards."""
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'fire.db'}"
        migrate.upgrade(url)
        yield url
        return
    base = os.environ.get("TEST_DATABASE_URL")
    if not base:
        pytest.skip("TEST_DATABASE_URL is not set: no PostgreSQL to test against")
    name = conftest._pg_create_test_db(base)
    try:
        url = make_url(base).set(database=name).render_as_string(hide_password=False)
        migrate.upgrade(url)
        yield url
    finally:
        conftest._pg_drop_test_db(base, name)


def service_env(db_url: str, sim_url: str, **overrides: str) -> dict[str, str]:
    """The service's whole configuration, as REPLYWINDOW_* variables."""
    env = {
        "DATABASE_URL": db_url, "WEBHOOK_TOKEN": TOKEN, "API_KEYS": API_KEY,
        "ITNIO_BASE_URL": sim_url, "ITNIO_API_KEY": "sim-key", "ITNIO_API_SECRET": "sim-secret",
        "ITNIO_WA_APP_ID": "simWA001", "ITNIO_SMS_APP_ID": "simSMS01",
        "YZJ_BASE_URL": sim_url, "YZJ_APP_ID": "sim-yzj", "YZJ_APP_SECRET": "sim-yzj-secret",
        "YZJ_ENCODING_AES_KEY": AES_KEY, "RUN_SCHEDULER": "true",
        "VENDOR_TIMEOUT_SECONDS": "2", "WECOM_MESSAGES_PER_MINUTE": "600",
        **{k.upper(): v for k, v in overrides.items()},
    }
    return {f"REPLYWINDOW_{k}": v for k, v in env.items()}


def settings_of(env: dict[str, str]) -> Settings:
    """The Settings the service builds from `env` (for the in-process sweeps)."""
    values = {k.removeprefix("REPLYWINDOW_").lower(): v for k, v in env.items()}
    return Settings(**values, _env_file=None)  # type: ignore[arg-type]


# -- the service as a process ---------------------------------------------------------------

class Service:
    """One `uvicorn receiver.app:app_from_env --factory` process on a fixed loopback port
    (kept across restarts), its output in a log file of its own."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / f"{name}.log"
        self.cwd = workdir / f"{name}.cwd"  # its own: no `.env` of the repository is read
        self.cwd.mkdir(parents=True, exist_ok=True)
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("REPLYWINDOW_")}
        self.env = {**inherited, **env, "PYTHONUNBUFFERED": "1",
                    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                                inherited.get("PYTHONPATH")]))}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self, timeout: float = 60.0) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "receiver.app:app_from_env", "--factory",
                 "--http", UVICORN_HTTP,  # as `replywindow serve` runs it
                 "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning",
                 "--no-access-log"],
                cwd=self.cwd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   + self.log_tail())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=1.0).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout:.0f} s:\n"
                           + self.log_tail())

    async def astart(self) -> None:
        await asyncio.to_thread(self.start)

    def kill(self) -> None:
        """kill -9: no lifespan shutdown, no flush, nothing."""
        assert self.proc is not None and self.proc.poll() is None, f"{self.name} is not running"
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.kills += 1

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    async def astop(self) -> None:
        await asyncio.to_thread(self.stop)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


@contextlib.asynccontextmanager
async def running(*services: Service) -> AsyncIterator[None]:
    try:
        await asyncio.gather(*(service.astart() for service in services))
        yield
    finally:
        await asyncio.gather(*(service.astop() for service in services))


# -- the vendor simulator on a loopback port --------------------------------------------------

@contextlib.asynccontextmanager
async def serving(sim: VendorSimulator) -> AsyncIterator[str]:
    """Serve the simulator in this event loop; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(sim.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off", ws="none",
                                           access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def simulator(*, answer_after: float = 0.0) -> VendorSimulator:
    """The simulator; `answer_after`: every send is taken at once and answered that much later
    (so a kill often finds a vendor call under way)."""
    sim = VendorSimulator(yzj_aes_key=AES_KEY, webhook_token=TOKEN)
    if answer_after:
        for path in PATHS.values():
            sim.delay_next(path, answer_after, times=20_000)
    return sim


# -- the vendors' callback senders ----------------------------------------------------------

@dataclass
class Delivery:
    """One callback body and what it should leave in the store once acknowledged."""

    callback: PendingCallback
    # ("chat", channel, vendor message id) or ("status", channel, vendor message id, status)
    marks: list[tuple[str, ...]]
    attempts: int = 0
    acked: bool = False
    last_status: int | None = None  # the HTTP status of the last attempt; None: no answer


def _decode(callback: PendingCallback) -> Any:
    if callback.url_path.startswith("/webhooks/yzj"):
        return json.loads(decrypt(callback.body, decode_key(AES_KEY)))
    return json.loads(callback.body)


def marks_of(callback: PendingCallback) -> list[tuple[str, ...]]:
    """What a callback body from the simulator is about."""
    payload = _decode(callback)
    if callback.url_path.startswith("/webhooks/yzj"):
        marks: list[tuple[str, ...]] = []
        for envelope in payload:
            for item in envelope["data"]:
                if envelope["type"] == "chatMsgSendFail":
                    marks.append(("status", "wecom", item["api_send_svrid"], "failed"))
                elif item.get("api_send_svrid"):
                    marks.append(("status", "wecom", item["api_send_svrid"], "sent"))
                else:
                    marks.append(("chat", "wecom", item["svrid"]))
        return marks
    if callback.url_path.startswith("/webhooks/itnio/sms"):
        if "content" in payload:
            return [("chat", "sms", payload["msgid"])]
        return [("status", "sms", payload["msgid"], "*")]
    if payload.get("eventType") == "up-message-event":
        return [("chat", "whatsapp", payload["messageId"])]
    if payload.get("eventType") == "message-status-event":
        return [("status", "whatsapp", payload["messageId"], payload["status"])]
    return []


class Vendors:
    """Posts every callback the simulator queued, round-robin over the service's replicas,
    a few at a time; one not answered 2xx stays to be tried again later, as vendors do."""

    def __init__(self, sim: VendorSimulator, urls: list[str], client: httpx.AsyncClient,
                 *, parallel: int = 8) -> None:
        self.sim = sim
        self.urls = itertools.cycle(urls)
        self.client = client
        self.parallel = parallel
        self.waiting: deque[Delivery] = deque()
        self.acked: list[Delivery] = []
        self.posts = 0
        self.failures = 0

    def take(self) -> list[Delivery]:
        """Move what the simulator queued into our own queue."""
        taken = [Delivery(cb, marks_of(cb)) for cb in self.sim.pending_callbacks]
        self.sim.pending_callbacks.clear()
        self.waiting.extend(taken)
        return taken

    def take_last(self) -> Delivery:
        """The callback the simulator has just queued (a customer writing in)."""
        callback = self.sim.pending_callbacks.pop()
        delivery = Delivery(callback, marks_of(callback))
        self.waiting.append(delivery)
        return delivery

    async def post(self, delivery: Delivery) -> bool:
        callback = delivery.callback
        delivery.attempts += 1
        self.posts += 1
        url = f"{next(self.urls)}{callback.url_path}/{TOKEN}"
        try:
            answer = await self.client.post(url, content=callback.body, headers={
                "Content-Type": callback.content_type, **callback.headers})
        except httpx.HTTPError:
            self.failures += 1
            delivery.last_status = None
            return False
        delivery.last_status = answer.status_code
        if answer.status_code != 200:
            self.failures += 1
            return False
        delivery.acked = True
        self.acked.append(delivery)
        return True

    async def drain(self) -> int:
        """One pass over everything waiting; returns how many were acknowledged."""
        self.take()
        batch = list(self.waiting)
        self.waiting.clear()
        done = 0
        for start in range(0, len(batch), self.parallel):
            chunk = batch[start:start + self.parallel]
            results = await asyncio.gather(*(self.post(d) for d in chunk))
            done += sum(results)
            self.waiting.extend(d for d, ok in zip(chunk, results, strict=True) if not ok)
        return done

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.sim.pending_callbacks


# -- a bot's sends --------------------------------------------------------------------------

@dataclass
class Send:
    channel: str
    recipient: str
    text: str
    key: str  # Idempotency-Key: a send whose answer was lost is asked again with it
    status_code: int | None = None
    answer: dict[str, Any] | None = None
    tries: int = 0
    extra: dict[str, Any] = field(default_factory=dict)  # more request fields (send_at, …)

    @property
    def body(self) -> dict[str, Any]:
        if self.channel == "whatsapp":
            return {"channel": "whatsapp", "from": BUSINESS, "to": self.recipient,
                    "message": {"type": "text", "text": {"body": self.text}}, **self.extra}
        if self.channel == "sms":
            return {"channel": "sms", "from": BUSINESS, "to": self.recipient,
                    "sms_text": self.text, **self.extra}
        return {"channel": "wecom", "from": STAFF, "to": self.recipient, "message": [
            {"msg_type": "text", "content": {"items": [{"type": "text", "text": self.text}]}}],
            **self.extra}

    @property
    def accepted(self) -> bool:
        return self.status_code in (200, 202)

    @property
    def message_id(self) -> str:
        assert self.answer is not None
        return str(self.answer["id"])


async def post_send(client: httpx.AsyncClient, url: str, send: Send) -> bool:
    """POST /v1/messages once; False when no answer came (the service died, or was down)."""
    send.tries += 1
    try:
        answer = await client.post(f"{url}/v1/messages", json=send.body,
                                   headers={**AUTH, "Idempotency-Key": send.key})
    except httpx.HTTPError:
        return False
    if answer.status_code >= 500:
        return False
    send.status_code, send.answer = answer.status_code, answer.json()
    return True


class Load:
    """Customers writing in on the three channels, and a bot replying to the WhatsApp ones
    inside their windows and sending WeCom messages and SMS: unique ids and texts, so the
    store and the simulator can be counted per message."""

    def __init__(self, sim: VendorSimulator, vendors: Vendors, client: httpx.AsyncClient,
                 urls: list[str], *, tag: str) -> None:
        self.sim, self.vendors, self.client = sim, vendors, client
        self.urls = itertools.cycle(urls)
        self.tag = tag
        self.numbers = itertools.count(1)
        self.inbound: list[Delivery] = []
        self.open_windows: deque[str] = deque()  # WhatsApp customers written in, not answered
        self.sends: list[Send] = []
        self.unanswered: deque[Send] = deque()

    def customer(self, channel: str) -> Delivery:
        n = next(self.numbers)
        if channel == "whatsapp":
            phone = f"9198{n:08d}"
            self.sim.customer_writes_whatsapp(BUSINESS, phone, f"hello {self.tag} {n}")
        elif channel == "sms":
            self.sim.customer_writes_sms(BUSINESS, f"9197{n:08d}", f"sms {self.tag} {n}")
        else:
            self.sim.customer_writes_wecom(STAFF, f"78813{n:011d}", f"你好 {self.tag} {n}")
        delivery = self.vendors.take_last()
        self.inbound.append(delivery)
        return delivery

    async def write_in(self, channel: str, *, answer: bool = True) -> Delivery:
        """A customer writes (the vendor posts it; if that fails, the pump tries again);
        with `answer`, a WhatsApp customer is then answered by the bot stream."""
        delivery = self.customer(channel)
        self.vendors.waiting.remove(delivery)
        if await self.vendors.post(delivery):
            if channel == "whatsapp" and answer:
                phone = self._phone_of(delivery)
                await self._until_open(phone)
                self.open_windows.append(phone)
        else:
            self.vendors.waiting.append(delivery)
        return delivery

    async def _until_open(self, phone: str, timeout: float = 20.0) -> None:
        """As a bot would (it hears of the message once it is applied): wait until the
        service shows the window open. Acknowledged is not yet applied."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                response = await self.client.get(
                    f"{next(self.urls)}/v1/windows/whatsapp/{BUSINESS}/{phone}", headers=AUTH)
                if response.status_code == 200 and response.json().get("open"):
                    return
            await asyncio.sleep(0.02)
        raise AssertionError(f"the window of {phone} did not open within {timeout:.0f} s")

    @staticmethod
    def _phone_of(delivery: Delivery) -> str:
        return str(_decode(delivery.callback)["from"]["phone"])

    def new_send(self, channel: str) -> Send | None:
        n = next(self.numbers)
        if channel == "whatsapp":
            if not self.open_windows:
                return None
            recipient = self.open_windows.popleft()
        elif channel == "sms":
            recipient = f"9196{n:08d}"
        else:
            recipient = f"78814{n:011d}"
        send = Send(channel, recipient, f"reply {self.tag} {channel} {n}",
                    key=f"{self.tag}-{n}")
        self.sends.append(send)
        return send

    async def send(self, send: Send) -> None:
        if not await post_send(self.client, next(self.urls), send):
            self.unanswered.append(send)

    async def customers_stream(self, stop: asyncio.Event, *, per_second: float,
                               parallel: int = 8) -> None:
        channels = itertools.cycle(["whatsapp", "whatsapp", "sms", "wecom"])
        await self._stream(stop, per_second, parallel, lambda: self.write_in(next(channels)))

    async def bot_stream(self, stop: asyncio.Event, *, per_second: float,
                         parallel: int = 8) -> None:
        channels = itertools.cycle(["whatsapp", "wecom", "whatsapp", "sms"])

        async def one() -> None:
            if self.unanswered:  # a lost answer: ask again, same Idempotency-Key
                await self.send(self.unanswered.popleft())
            send = self.new_send(next(channels))
            if send is not None:
                await self.send(send)

        await self._stream(stop, per_second, parallel, one)

    @staticmethod
    async def _stream(stop: asyncio.Event, per_second: float, parallel: int,
                      step: Callable[[], Any]) -> None:
        """`step()` per_second times a second, at most `parallel` at once, until `stop`."""
        slots = asyncio.Semaphore(parallel)
        running: set[asyncio.Task[None]] = set()

        async def guarded() -> None:
            try:
                await step()
            finally:
                slots.release()

        while not stop.is_set():
            await slots.acquire()
            task = asyncio.create_task(guarded())
            running.add(task)
            task.add_done_callback(running.discard)
            await asyncio.sleep(1 / per_second)
        await asyncio.gather(*running)

    async def pump(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.vendors.drain()
            await asyncio.sleep(0.05)

    async def finish(self, *, timeout: float = 60.0) -> None:
        """Every send answered, every callback acknowledged (the service is up)."""
        deadline = time.monotonic() + timeout
        while self.unanswered or not self.vendors.idle:
            assert time.monotonic() < deadline, (
                f"{len(self.unanswered)} sends unanswered, {len(self.vendors.waiting)} "
                "callbacks not acknowledged")
            again = list(self.unanswered)
            self.unanswered.clear()
            await asyncio.gather(self.vendors.drain(), *(self.send(s) for s in again))
            if self.unanswered or not self.vendors.idle:
                await asyncio.sleep(0.2)


# -- the store, read directly ---------------------------------------------------------------

class Store:
    def __init__(self, url: str) -> None:
        self.engine: Engine = db.make_engine(url)
        spool = path_for(url)
        self.spool = Spool(spool) if spool is not None else None

    def close(self) -> None:
        if self.spool is not None:
            self.spool.close()
        self.engine.dispose()

    async def applied(self, timeout: float = 60.0) -> None:
        """Until every acknowledged body is applied (the services' appliers do it a moment
        after the 200), as a sweep run by the test must see their effects."""
        await asyncio.to_thread(wait_applied, self.engine, self.spool, timeout=timeout)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def session(self) -> Session:
        return Session(self.engine)

    def outbound(self) -> dict[str, OutboundMessage]:
        with self.session() as session:
            return {m.id: m for m in session.exec(select(OutboundMessage)).all()}

    def count_status(self, *statuses: str) -> int:
        with self.session() as session:
            return int(session.exec(select(func.count()).select_from(OutboundMessage).where(
                OutboundMessage.status.in_(statuses))).one())  # type: ignore[attr-defined]

    def events(self, kind: str | None = None) -> list[Event]:
        with self.session() as session:
            stmt = select(Event).order_by(Event.id)  # type: ignore[arg-type]
            if kind is not None:
                stmt = stmt.where(Event.kind == kind)
            return list(session.exec(stmt).all())


def check_callbacks(store: Store, deliveries: list[Delivery]) -> dict[str, int]:
    """Every acknowledged callback is stored and applied exactly once; nothing at all is
    applied twice (acknowledged or not: a body whose 200 was lost may be stored too).
    Returns the figures."""
    with store.session() as session:
        chats = Counter(session.exec(select(ChatMessage.channel,
                                            ChatMessage.vendor_message_id)).all())
        statuses = Counter(session.exec(select(StatusEvent.channel, StatusEvent.vendor_message_id,
                                               StatusEvent.status)).all())
        sms_statuses = Counter(v for c, v, _ in statuses.elements() if c == "sms")
        bodies = int(session.exec(select(func.count()).select_from(InboxBody)).one())
        keys = int(session.exec(select(func.count()).select_from(EventKey)).one())
    inbound_events = Counter(e.data.get("message_id") for e in store.events("message.inbound"))
    missing, twice = [], []
    acked = [d for d in deliveries if d.acked]
    for delivery in acked:
        for mark in delivery.marks:
            if mark[0] == "chat":
                found = chats[(mark[1], mark[2])]
                if found == 1 and inbound_events[mark[2]] != 1:
                    found = inbound_events[mark[2]] or -1
            elif mark[1] == "sms":
                found = sms_statuses[mark[2]]
            else:
                found = statuses[(mark[1], mark[2], mark[3])]
            (missing if found < 1 else twice if found > 1 else []).append(mark)
    twice += [k for k, n in chats.items() if n > 1] + [k for k, n in statuses.items() if n > 1]
    twice += [k for k, n in inbound_events.items() if n > 1]
    assert not missing, f"acknowledged but not stored and applied: {missing[:10]}"
    assert not twice, f"applied more than once: {twice[:10]}"
    return {"callbacks_posted": sum(d.attempts for d in deliveries),
            "callbacks_acknowledged": len(acked), "bodies_stored": bodies,
            "events_applied": keys, "lost": len(missing), "duplicates": len(twice)}


def sim_counts(sim: VendorSimulator) -> dict[str, Counter[str]]:
    """How often the simulator took each text, per channel."""
    return {channel: Counter(entry["text"] for entry in sim.sent(channel))
            for channel in ("whatsapp", "sms", "wecom")}


def check_sends(store: Store, sim: VendorSimulator, sends: list[Send], *,
                outcome: Callable[[Send], tuple[str, ...]] | None = None) -> dict[str, int]:
    """Nothing reached the vendor twice; every accepted send reached it exactly once and
    ended delivered, or never reached it and was held (`unknown`) until it expired."""
    counts = sim_counts(sim)
    twice = {(c, t): n for c, counter in counts.items() for t, n in counter.items() if n > 1}
    assert not twice, f"sent more than once: {list(twice.items())[:10]}"
    rows = store.outbound()
    wrong, held = [], 0
    for send in sends:
        if not send.accepted:
            continue
        row = rows.get(send.message_id)
        assert row is not None, f"accepted {send.message_id} is not in the store"
        received = counts[send.channel][send.text]
        expected = outcome(send) if outcome else (
            ("delivered", "read") if received else ("expired",))
        if received == 0:
            held += 1
            if row.accepted_at is not None:
                wrong.append((send.message_id, "accepted but the vendor never got it"))
        if row.status not in expected:
            wrong.append((send.message_id, send.channel, row.status, received, expected))
    assert not wrong, f"sends in the wrong state: {wrong[:10]}"
    not_final = [(m.id, m.status) for m in rows.values() if m.status not in FINAL]
    assert not not_final, f"messages stuck in a non-final state: {not_final[:10]}"
    return {"sends_accepted": sum(s.accepted for s in sends),
            "vendor_received": sum(sum(c.values()) for c in counts.values()),
            "never_reached_vendor": held, "sent_twice": len(twice)}


# -- sweeps with a clock of our choosing ------------------------------------------------------

class ShiftedClock:
    """Real time, moved forward on demand (the vendors' signatures allow 300 s of skew)."""

    def __init__(self, offset: timedelta = timedelta(0)) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return utcnow() + self.offset


async def sweep(url: str, env: dict[str, str], *, ahead: timedelta) -> None:
    """What every replica's scheduler runs every 30 s, run now as if `ahead` had passed."""
    engine = db.make_engine(url)
    try:
        sender = Sender(engine, itnio=None, yzj=None, config=settings_of(env).send_config(),
                        clock=ShiftedClock(ahead))
        await jobs.run_sweeps(sender)
        await jobs.announce_expiring(sender)
    finally:
        engine.dispose()


async def settle(services: list[Service], load: Load, store: Store, url: str,
                 env: dict[str, str], *, timeout: float = 60.0) -> dict[str, int]:
    """After the stream: let the live service(s) send what is queued and take every callback,
    stop them, then run the sweeps past the send lease (a `sending` left by a kill is held as
    unknown, and settled by the pushes it already got) and past 72 h (expired)."""
    await load.finish(timeout=timeout)
    deadline = time.monotonic() + timeout
    quiet = 0
    while quiet < 3:  # three quiet looks in a row: nothing queued, nothing to call back
        assert time.monotonic() < deadline, (
            f"{store.count_status('queued')} messages still queued\n"
            + "\n".join(s.log_tail(15) for s in services))
        await load.vendors.drain()
        await asyncio.sleep(0.3)
        busy = store.count_status("queued") or not load.vendors.idle
        quiet = 0 if busy else quiet + 1
    for service in services:
        await service.astop()
    await store.applied()
    stranded = store.count_status("sending")  # left mid-call by a kill
    await sweep(url, env, ahead=LEASE + timedelta(seconds=30))
    left = store.count_status("queued", "sending")
    assert left == 0, f"{left} messages still queued or sending after the lease sweep"
    unknown = store.count_status("unknown")
    await sweep(url, env, ahead=timedelta(hours=73))
    return {"stranded_sending": stranded, "held_unknown_after_leases": unknown}


def figures_line(name: str, figures: dict[str, Any]) -> str:
    return f"{name}: " + ", ".join(f"{k}={v}" for k, v in figures.items())


@dataclass
class Killer:
    """Kills a service with SIGKILL at seeded random moments and starts it again."""

    service: Service
    rng: random.Random
    kills: int
    between: tuple[float, float] = (1.5, 3.5)
    moments: list[float] = field(default_factory=list)

    async def run(self) -> None:
        started = time.monotonic()
        for _ in range(self.kills):
            await asyncio.sleep(self.rng.uniform(*self.between))
            self.moments.append(round(time.monotonic() - started, 2))
            self.service.kill()
            await asyncio.sleep(self.rng.uniform(0.0, 0.5))
            await self.service.astart()
        await asyncio.sleep(self.rng.uniform(*self.between))
