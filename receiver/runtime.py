"""What the lifespan builds and every request can reach (as `request.state.runtime`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine

from receiver.ingest import Ingestor
from receiver.parsers import Parser
from receiver.settings import Settings

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    ingestor: Ingestor
    http: httpx.AsyncClient
    scheduler: AsyncIOScheduler
    clock: Clock
    webhook_token: str
    parsers: dict[tuple[str, str], Parser]

    @property
    def margin(self) -> timedelta:
        return timedelta(seconds=self.settings.window_margin_seconds)
