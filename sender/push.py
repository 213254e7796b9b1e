"""Pushing events to the bot's webhook, signed the Standard Webhooks way.

Each event is POSTed with `webhook-id`, `webhook-timestamp` and
`webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`, keyed by the secret's
bytes (`whsec_` + base64). A conversation's events go in order: the next is pushed only
once the one before it was delivered or given up. A failure is retried on a schedule that
spans more than a day; then the event is dead-lettered (`replywindow events revive`).
The pusher runs from the scheduler, apart from the webhooks: a slow or absent bot never
slows an acknowledgement.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine
from sqlmodel import Session

from store import db
from store import events as store_events
from store.models import Event
from store.utc_text import iso_z

logger = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
# 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 2 h, 4 h, then 8 h three times: about 32 h in all.
RETRY_SCHEDULE = tuple(timedelta(seconds=s) for s in
                       (5, 30, 120, 600, 1800, 3600, 7200, 14400, 28800, 28800, 28800))
LEASE = timedelta(seconds=60)


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(raw)


def sign(secret: str, *, msg_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_bytes(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def payload(event: Event) -> bytes:
    return json.dumps({
        "id": f"evt_{event.id}", "cursor": f"{event.txid}.{event.id}", "type": event.kind,
        "created_at": iso_z(event.created_at), "data": event.data,
    }, ensure_ascii=False, separators=(",", ":")).encode()


def next_try(attempts: int, *, now: datetime) -> datetime | None:
    """When to try again after `attempts` failures; None: give up (dead-letter)."""
    if attempts > len(RETRY_SCHEDULE):
        return None
    return now + RETRY_SCHEDULE[attempts - 1]


class BotPusher:
    def __init__(self, engine: Engine, *, url: str, secret: str, http: httpx.AsyncClient,
                 clock: Callable[[], datetime], concurrency: int = 16) -> None:
        self._engine = db.writer(engine)
        self._url = url
        self._secret = secret
        self._http = http
        self._clock = clock
        self._slots = asyncio.Semaphore(concurrency)

    def _tx(self, work: Callable[[Session], Any]) -> Any:
        with Session(self._engine, expire_on_commit=False) as session, session.begin():
            return work(session)

    async def push_due(self, *, limit: int = 200) -> int:
        """Push the next due event of every conversation; how many were tried."""
        now = self._clock()
        claimed: list[Event] = await asyncio.to_thread(
            self._tx, lambda s: store_events.claim_pushes(s, now=now, lease_until=now + LEASE,
                                                          limit=limit))
        await asyncio.gather(*(self._push(event) for event in claimed))
        return len(claimed)

    async def _push(self, event: Event) -> None:
        async with self._slots:
            body = payload(event)
            msg_id = f"evt_{event.id}"
            timestamp = int(self._clock().timestamp())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._secret, msg_id=msg_id, timestamp=timestamp,
                                          body=body),
            }
            try:
                response = await self._http.post(self._url, content=body, headers=headers)
                error = None if response.is_success else f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            await asyncio.to_thread(self._tx, lambda s: self._record(s, event.id, error))

    def _record(self, session: Session, event_id: int | None, error: str | None) -> None:
        now = self._clock()
        event = store_events.get(session, event_id or 0)
        if event is None or event.push_state != "pending":
            return
        if error is None:
            event.push_state, event.pushed_at, event.push_error = "delivered", now, None
        else:
            event.push_attempts += 1
            event.push_error = error
            retry_at = next_try(event.push_attempts, now=now)
            if retry_at is None:
                event.push_state = "dead"
                logger.warning("bot webhook kept failing; event dead-lettered",
                               extra={"action": "event_push_dead", "event_id": event.id})
            else:
                event.next_push_at = retry_at
        session.add(event)
