"""Shared by the hostile-input tests: hypothesis profiles, the checks every answer must pass,
the raw archive's newest rows, and a real uvicorn server on loopback.

Example counts are bounded so the fuzz files run in about a minute; `HYPOTHESIS_PROFILE=long`
multiplies every count by LONG_FACTOR for a soak run:

    HYPOTHESIS_PROFILE=long ./dev test tests/receiver/test_hostile_input.py \
        tests/receiver/test_openapi.py
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import uvicorn
from hypothesis import HealthCheck, settings
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select
from starlette.applications import Starlette

from receiver import openapi
from receiver.http_protocol import HttpProtocol
from store.models import InboxBody, QuarantinedBody

PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
LONG_FACTOR = 25
_SHARED = {
    "deadline": None,  # a commit on a busy machine is slow now and then; that is no failure
    "database": None,  # no .hypothesis/ directory in the checkout
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large,
                              HealthCheck.filter_too_much],
    "print_blob": True,  # a failure prints how to reproduce it (@reproduce_failure)
}
settings.register_profile("ci", **_SHARED)
settings.register_profile("long", **_SHARED)
settings.load_profile("long" if PROFILE == "long" else "ci")


def examples(n: int) -> settings:
    """`n` examples (LONG_FACTOR times as many with HYPOTHESIS_PROFILE=long)."""
    return settings(max_examples=n * (LONG_FACTOR if PROFILE == "long" else 1))


def check_error_shape(status: int, content_type: str, body: bytes, where: str) -> None:
    """Never a 5xx; every 4xx a JSON object with a string `error` and `detail`."""
    assert status < 500, f"{where}: {status} {body[:500]!r}"
    if status >= 400:
        assert content_type.startswith("application/json"), (where, status, content_type)
        answer = json.loads(body)
        assert isinstance(answer, dict), (where, answer)
        assert isinstance(answer.get("error"), str) and answer["error"], (where, answer)
        assert isinstance(answer.get("detail"), str) and answer["detail"], (where, answer)


class Archive:
    """What the raw archive (inbox_bodies + quarantined_bodies) gained since the last look."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.seen = self._last_ids()

    def _last_ids(self) -> tuple[int, int]:
        with Session(self.engine) as session:
            inbox = session.exec(select(func.max(InboxBody.id))).one() or 0
            quarantine = session.exec(select(func.max(QuarantinedBody.id))).one() or 0
        return int(inbox), int(quarantine)

    def new_rows(self) -> list[InboxBody | QuarantinedBody]:
        inbox_after, quarantine_after = self.seen
        with Session(self.engine) as session:
            rows: list[Any] = list(session.exec(
                select(InboxBody).where(col(InboxBody.id) > inbox_after)).all())
            rows += list(session.exec(
                select(QuarantinedBody).where(col(QuarantinedBody.id) > quarantine_after)).all())
        self.seen = self._last_ids()
        return rows


def with_openapi(app: Starlette) -> Starlette:
    """The app serving /openapi.json (a no-op once app.py mounts it)."""
    if not any(getattr(r, "path", None) == "/openapi.json" for r in app.router.routes):
        app.router.routes.append(openapi.route)
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def serve(app: Starlette, **options: Any) -> Iterator[str]:
    """`app` under a real uvicorn on loopback, in a thread; yields its base URL."""
    port = free_port()
    options.setdefault("http", HttpProtocol)  # as `replywindow serve` runs it
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive(), "uvicorn did not start"
        assert time.monotonic() < deadline, "uvicorn took over 30 s to start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
