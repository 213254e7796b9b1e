"""The other servers of the benchmark, each run as its own `uvicorn --workers 1` process:

- `ceiling_app`: reads the body and answers 200; what Starlette and uvicorn cost alone.
- `naive_app` (factory): parses the body (decrypting a 云真机 one, as the service must) and
  commits one SQLModel row per request, on a SQLite file in WAL mode with synchronous=FULL:
  the same durability as replywindow, bought the obvious way.
- `simulator_app` (factory): the vendor simulator (sender/simulator.py) as an HTTP server.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, LargeBinary, create_engine, event
from sqlmodel import Field, Session, SQLModel
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.payloads import AES_KEY, TOKEN
from receiver.crypto import decode_key, decrypt

ITNIO_ACK = b'{"status":"0","reason":"success"}'
YZJ_ACK = b'{"errcode":0}'


def _ack(path: str) -> bytes:
    return YZJ_ACK if path.startswith("/webhooks/yzj/") else ITNIO_ACK


async def _bare(request: Request) -> Response:
    await request.body()
    return Response(_ack(request.url.path), media_type="application/json")


ceiling_app = Starlette(routes=[Route("/{path:path}", _bare, methods=["GET", "POST"])])


class NaiveEvent(SQLModel, table=True):
    __tablename__ = "naive_events"

    id: int | None = Field(default=None, primary_key=True)
    route: str
    received_at: datetime
    payload: Any = Field(sa_type=JSON)
    body: bytes = Field(sa_type=LargeBinary)


def naive_engine(path: str) -> Any:
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False,
                                                              "timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    return engine


def naive_app() -> Starlette:
    engine = naive_engine(os.environ["BENCH_NAIVE_DB"])
    key = decode_key(AES_KEY)

    def store(route: str, payload: Any, body: bytes) -> None:
        with Session(engine) as session:
            session.add(NaiveEvent(route=route, received_at=datetime.now(UTC),
                                   payload=payload, body=body))
            session.commit()

    async def webhook(request: Request) -> Response:
        route = request.path_params["route"]
        if request.path_params["token"] != TOKEN:
            return Response(status_code=404)
        body = await request.body()
        payload = json.loads(decrypt(body, key) if route == "yzj" else body)
        await run_in_threadpool(store, route, payload, body)
        return Response(_ack(request.url.path), media_type="application/json")

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        SQLModel.metadata.create_all(engine, tables=[NaiveEvent.__table__])  # type: ignore[list-item]
        yield
        engine.dispose()

    return Starlette(routes=[
        Route("/webhooks/{route:path}/{token}", webhook, methods=["POST"]),
    ], lifespan=lifespan)


def simulator_app() -> Starlette:
    from sender.simulator import VendorSimulator

    # The simulator keeps every message it is sent, so its full garbage collections grow with
    # the run: measured, 60 ms at first and 300 ms by the end, each holding up every vendor
    # call in flight, which made them the sends' p99. A vendor's pauses are not what the
    # bench measures: this stand-in for one runs without the cyclic collector (reference
    # counting still frees what it drops; a run is seconds long).
    gc.disable()
    return VendorSimulator(yzj_aes_key=AES_KEY, webhook_token=TOKEN).app
