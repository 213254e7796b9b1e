"""`replywindow demo`: a day in the life, against the vendor simulator, on SQLite.

The service and the simulator run as real HTTP servers on loopback ports and share one clock
that the demo can move forward (a window takes 24 h to close; the demo takes seconds). The
bot's side is plain HTTP calls to the service, as a real bot would make them.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from receiver.app import create_app
from receiver.applier import wait_applied
from receiver.settings import Settings
from sender.simulator import VendorSimulator
from store import migrate
from store.db import make_engine
from store.spool import Spool, path_for

TOKEN = "demo-webhook-token"
API_KEY = "demo-api-key"
AES_KEY = "replywindowDemoAesKey32bytes!!!!"
BUSINESS, ALICE = "91856321412", "91856321432"
STAFF, BOB = "1688851873049028", "7881302848173300"


class ShiftingClock:
    """Real time, moved forward on demand."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, delta: timedelta) -> None:
        self.offset += delta


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _serve(app: Any, port: int) -> tuple[uvicorn.Server, asyncio.Task[None]]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    return server, task


class Demo:
    def __init__(self, out: Callable[[str], None], workdir: Path) -> None:
        self.out = out
        self.clock = ShiftingClock()
        self.service_port, self.sim_port = _free_port(), _free_port()
        self.db_url = f"sqlite:///{workdir / 'demo.db'}"
        self.callbacks = httpx.AsyncClient(timeout=5)
        self.sim = VendorSimulator(
            clock=self.clock, yzj_aes_key=AES_KEY, webhook_token=TOKEN, http=self.callbacks,
            callback_base_url=f"http://127.0.0.1:{self.service_port}",
        )
        self.sim.add_approved_template("order_update", "en", "Your order {{1}} has shipped")
        sim_url = f"http://127.0.0.1:{self.sim_port}"
        self.settings = Settings(
            database_url=self.db_url, webhook_token=TOKEN, api_keys=API_KEY,
            itnio_base_url=sim_url, itnio_api_key="sim-key", itnio_api_secret="sim-secret",
            itnio_wa_app_id="simWA001", itnio_sms_app_id="simSMS01",
            yzj_base_url=sim_url, yzj_app_id="sim-yzj", yzj_app_secret="sim-yzj-secret",
            yzj_encoding_aes_key=AES_KEY, run_scheduler=True, wecom_confirm_seconds=600,
            applier="thread", _env_file=None,  # type: ignore[call-arg]
        )
        self.bot = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.service_port}",
                                     headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)

    def say(self, when: str, text: str) -> None:
        self.out(f"{when:>14}  {text}")

    async def callbacks_arrive(self) -> None:
        await self.sim.deliver_callbacks()
        await asyncio.to_thread(wait_applied, self.engine, self.spool)  # acked, then applied

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self.bot.post("/v1/messages", json=body)
        return dict(response.json(), http_status=response.status_code)

    async def message(self, message_id: str) -> dict[str, Any]:
        return dict((await self.bot.get(f"/v1/messages/{message_id}")).json())

    async def window(self) -> dict[str, Any]:
        return dict((await self.bot.get(f"/v1/windows/whatsapp/{BUSINESS}/{ALICE}")).json())

    async def run(self) -> list[dict[str, Any]]:
        migrate.upgrade(self.db_url)
        self.engine = make_engine(self.db_url)
        self.spool = Spool(spool_path) if (spool_path := path_for(self.db_url)) else None
        app = create_app(self.settings, clock=self.clock)
        servers = [await _serve(self.sim.app, self.sim_port),
                   await _serve(app, self.service_port)]
        try:
            return await self.play()
        finally:
            for server, task in servers[::-1]:
                server.should_exit = True
                await task
            await self.bot.aclose()
            await self.callbacks.aclose()
            if self.spool is not None:
                self.spool.close()
            self.engine.dispose()

    async def play(self) -> list[dict[str, Any]]:
        ids = []
        self.out(f"replywindow demo: service on :{self.service_port}, vendor simulator on "
                 f":{self.sim_port}, SQLite at {self.db_url.removeprefix('sqlite:///')}\n")
        # The service learns the approved templates (its sync job runs every 15 min).
        await self._sync_templates()

        self.sim.customer_writes_whatsapp(BUSINESS, ALICE, "Hi, where is my order?", name="Alice")
        await self.callbacks_arrive()
        window = await self.window()
        self.say("day 1 09:00", f"Alice writes on WhatsApp -> window open, "
                 f"{window['seconds_left'] // 3600} h "
                 f"{window['seconds_left'] % 3600 // 60} min left")

        self.sim.set_outcome(ALICE, "read")
        sent = await self.send({"channel": "whatsapp", "from": BUSINESS, "to": ALICE,
                                "message": {"type": "text", "text": {"body": "It ships today."}},
                                "fallback": ["template", "sms"]})
        ids.append(sent["id"])
        await self.callbacks_arrive()
        final = await self.message(sent["id"])
        self.say("day 1 09:01", f"the bot replies -> route {sent['route']}, "
                 f"{sent['status']}, then {final['status']}")

        self.clock.advance(timedelta(hours=25))
        window = await self.window()
        self.say("day 2 10:01", f"no word from Alice for 25 h -> window "
                 f"{'open' if window['open'] else 'closed'}")
        self.sim.set_outcome(ALICE, "delivered")
        sent = await self.send({
            "channel": "whatsapp", "from": BUSINESS, "to": ALICE,
            "message": {"type": "text", "text": {"body": "Your order has shipped"}},
            "template": {"name": "order_update", "language": "en", "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "A-1001"}]}]},
            "fallback": ["template", "sms"]})
        ids.append(sent["id"])
        await self.callbacks_arrive()
        final = await self.message(sent["id"])
        self.say("day 2 10:02", f"the bot replies again -> route {sent['route']} "
                 f"({sent['fallback_reason']}), then {final['status']}")

        self.sim.set_outcome(BOB, "failed:客户已删除")
        sent = await self.send({"channel": "wecom", "from": STAFF, "to": BOB, "message": [
            {"msg_type": "text", "content": {"items": [{"type": "text", "text": "您好"}]}}]})
        ids.append(sent["id"])
        await self.callbacks_arrive()
        final = await self.message(sent["id"])
        self.say("day 2 11:00", f"a WeCom message to Bob -> {sent['status']}, then "
                 f"{final['status']}: {final['failure']['reason'] if final['failure'] else '-'}")

        sent = await self.send({"channel": "sms", "from": BUSINESS, "to": ALICE,
                                "sms_text": "Your parcel arrives tomorrow"})
        ids.append(sent["id"])
        await self.callbacks_arrive()
        final = await self.message(sent["id"])
        self.say("day 2 12:00", f"an SMS to Alice -> {sent['status']}, then {final['status']}")

        self.out("\nWhat happened (GET /v1/messages/{id}):")
        results = [await self.message(message_id) for message_id in ids]
        self.out(f"  {'id':<28} {'channel':<9} {'route':<9} {'status':<10} failure")
        for item in results:
            failure = item["failure"]["reason"] if item["failure"] else ""
            self.out(f"  {item['id']:<28} {item['channel']:<9} {item['route'] or '-':<9} "
                     f"{item['status']:<10} {failure}")
        return results

    async def _sync_templates(self) -> None:
        from sqlalchemy import Engine

        from receiver.app import itnio_client
        from sender import sweeps
        from sender.service import Sender

        engine: Engine = make_engine(self.db_url)
        async with httpx.AsyncClient(timeout=5) as http:
            # Another replica would do the same: sweeps are safe anywhere.
            sender = Sender(engine, itnio=itnio_client(self.settings, http, self.clock),
                            yzj=None, config=self.settings.send_config(), clock=self.clock)
            await sweeps.sync_templates(sender)
        engine.dispose()


def run(out: Callable[[str], None] = print) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="replywindow-demo-") as workdir:
        return asyncio.run(Demo(out, Path(workdir)).run())
