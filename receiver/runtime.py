"""What the lifespan builds and every request can reach (as `request.state.runtime`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine

from receiver.applier import Applier
from receiver.applier_process import ApplierProcess
from receiver.ingest import Ingestor
from receiver.metrics import Metrics
from receiver.notifier import Notifier
from receiver.parsers import Parser
from receiver.settings import Settings
from sender.push import BotPusher
from sender.service import Sender

if TYPE_CHECKING:  # psycopg is imported only on PostgreSQL
    from store.pg_reads import AsyncReads

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    ingestor: Ingestor
    applier: Applier | ApplierProcess
    http: httpx.AsyncClient
    scheduler: AsyncIOScheduler
    clock: Clock
    webhook_token: str
    parsers: dict[tuple[str, str], Parser]
    sender: Sender | None = None
    notifier: Notifier = field(default_factory=Notifier)
    pusher: BotPusher | None = None
    metrics: Metrics | None = None
    # PostgreSQL: the window lookups' reads, on the event loop (store/pg_reads.py).
    reads: AsyncReads | None = None
    # Vendor calls that outlive the request that started them (kept so they are not lost).
    background: set[asyncio.Future[None]] = field(default_factory=set)

    @property
    def margin(self) -> timedelta:
        return timedelta(seconds=self.settings.window_margin_seconds)
