"""Slow clients hold up no one: under a real uvicorn on loopback, webhook bodies dribbled in a
byte at a time while other vendors post normally. The others are all acknowledged while the
slow bodies are still arriving, and the slow ones are handled in the end, stored whole.

No timing is asserted: a slow client sends a byte every SLOW_GAP seconds until the others are
done (its body would last minutes), then the rest; what is checked is that it still had bytes
to send when the last of the others had its answer.
"""

from __future__ import annotations

import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import httpx
from sqlmodel import Session, select

from receiver.app import create_app
from receiver.settings import Settings
from store import db
from store.models import InboxBody
from tests.conftest import API_KEY, DATA, TOKEN
from tests.receiver.hostile_support import serve

SLOW_GAP = 0.05
NORMAL_POSTS = 40
ROUTES = {"whatsapp": f"/webhooks/itnio/whatsapp/{TOKEN}", "sms": f"/webhooks/itnio/sms/{TOKEN}"}


def _uplink(message_id: str, padding: int = 0) -> bytes:
    doc = json.loads((DATA / "webhooks" / "itnio_wa_uplink_text.json").read_text())
    doc["messageId"] = message_id
    if padding:
        doc["note"] = "x" * padding  # an unknown field: stored, not rejected
    return json.dumps(doc).encode()


def _dlr(msgid: str, padding: int = 0) -> bytes:
    doc = json.loads((DATA / "webhooks" / "itnio_sms_dlr.json").read_text())
    doc["msgid"] = msgid
    if padding:
        doc["note"] = "x" * padding
    return json.dumps(doc).encode()


class SlowClient(threading.Thread):
    """POSTs `body` to `path` a byte at a time, every SLOW_GAP seconds until `hurry` is set."""

    def __init__(self, base: str, path: str, body: bytes, hurry: threading.Event) -> None:
        super().__init__(daemon=True)
        self.address = urlsplit(base)
        self.path, self.body, self.hurry = path, body, hurry
        self.started_body = threading.Event()
        self.left_when_hurried: int | None = None
        self.response = b""

    def run(self) -> None:
        host, port = self.address.hostname, self.address.port
        with socket.create_connection((host, port), timeout=120) as sock:
            sock.sendall(
                f"POST {self.path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
                "Connection: close\r\n\r\n".encode())
            for index in range(len(self.body)):
                sock.sendall(self.body[index:index + 1])
                self.started_body.set()
                if self.hurry.is_set():
                    self.left_when_hurried = len(self.body) - index - 1
                    sock.sendall(self.body[index + 1:])
                    break
                self.hurry.wait(SLOW_GAP)
            while chunk := sock.recv(65536):
                self.response += chunk


def test_slow_clients_hold_up_no_one_and_are_handled_in_the_end(db_url: str) -> None:
    settings = Settings(database_url=db_url, webhook_token=TOKEN, api_keys=API_KEY,
                        run_scheduler=False, _env_file=None)  # type: ignore[call-arg]
    hurry = threading.Event()
    # At SLOW_GAP a byte, these bodies would take minutes.
    slow_bodies = {"whatsapp": _uplink("wamid.slow", padding=4000), "sms": _dlr("slow-1", 4000)}
    with serve(create_app(settings)) as base:
        slow = [SlowClient(base, ROUTES[route], body, hurry) for route, body in
                slow_bodies.items()]
        for client in slow:
            client.start()
        for client in slow:
            assert client.started_body.wait(60)

        def post(index: int) -> int:
            route = "whatsapp" if index % 2 else "sms"
            body = _uplink(f"wamid.fast-{index}") if index % 2 else _dlr(f"fast-{index}")
            with httpx.Client(timeout=120) as http:
                return http.post(base + ROUTES[route], content=body).status_code

        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(post, range(NORMAL_POSTS)))
        hurry.set()
        for client in slow:
            client.join(timeout=120)
            assert not client.is_alive()

    assert statuses == [200] * NORMAL_POSTS
    for client in slow:
        # Everyone else was answered while this body was still arriving ...
        assert client.left_when_hurried is not None and client.left_when_hurried > 0
        # ... and it was handled in the end.
        head, _, answer = client.response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), client.response[:300]
        assert json.loads(answer) == {"status": "0", "reason": "success"}

    engine = db.make_engine(db_url)
    try:
        with Session(engine) as session:
            rows = list(session.exec(select(InboxBody)).all())
    finally:
        engine.dispose()
    assert len(rows) == NORMAL_POSTS + len(slow_bodies)
    assert set(slow_bodies.values()) <= {bytes(row.body) for row in rows}
    assert all(row.state != "failed" for row in rows)
