"""create_app(settings): the Starlette app. Nothing is built at import; the lifespan builds the
engine, the HTTP client, the ingest writer and the scheduler, and tears them down."""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import Engine, text
from sqlmodel import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver import webhooks, windows_api
from receiver.errors import exception_handlers
from receiver.ingest import Ingestor
from receiver.parsers import parsers
from receiver.runtime import Clock, Runtime, utcnow
from receiver.settings import Settings
from store import db, secrets as stored_secrets

logger = logging.getLogger(__name__)

WEBHOOK_PATHS = {
    "ITNIO WhatsApp": "/webhooks/itnio/whatsapp/{token}",
    "ITNIO SMS": "/webhooks/itnio/sms/{token}",
    "云真机 WeCom": "/webhooks/yzj/{token}",
}


def webhook_urls(public_url: str, token: str) -> dict[str, str]:
    base = public_url.rstrip("/")
    return {name: base + path.format(token=token) for name, path in WEBHOOK_PATHS.items()}


def resolve_webhook_token(settings: Settings, engine: Engine, clock: Clock) -> tuple[str, bool]:
    """The configured token, else the stored one (made on first start); and whether it was
    made just now."""
    if settings.webhook_token is not None:
        return settings.webhook_token.get_secret_value(), False
    with Session(db.writer(engine)) as session, session.begin():
        return stored_secrets.get_or_create(
            session, name="webhook_token", make=lambda: secrets.token_urlsafe(24), now=clock()
        )


def _announce(settings: Settings, token: str, *, generated: bool) -> None:
    shown = token if generated else token[:4] + "…"
    lines = ["replywindow: vendor webhook URLs" + ("" if generated else
             " (token hidden; `replywindow urls` prints it)") + ":"]
    lines += [f"  POST {url}   ({name})" for name, url in
              webhook_urls(settings.public_url, shown).items()]
    if generated:
        lines.append("  (REPLYWINDOW_WEBHOOK_TOKEN was unset: this token was generated and "
                     "stored; it stays the same on later starts)")
    print("\n".join(lines), file=sys.stderr, flush=True)


async def healthz(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> JSONResponse:
    runtime: Runtime = request.state.runtime

    def ping() -> None:
        with runtime.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await run_in_threadpool(ping)
    except Exception:
        logger.warning("database not reachable", extra={"action": "readyz_failed"})
        return JSONResponse({"error": "unavailable", "detail": "The database is not reachable."},
                            status_code=503)
    return JSONResponse({"status": "ready"})


def create_app(settings: Settings, *, clock: Clock = utcnow) -> Starlette:
    read = parsers(settings)  # decodes the 云真机 key now: a bad key fails at start

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine = db.make_engine(settings.database_url)
        token, generated = await run_in_threadpool(resolve_webhook_token, settings, engine, clock)
        _announce(settings, token, generated=generated)
        ingestor = Ingestor(engine, settings, clock)
        await ingestor.start()
        scheduler = AsyncIOScheduler(timezone="UTC")
        if settings.run_scheduler:
            scheduler.start()
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as http:
            runtime = Runtime(settings=settings, engine=engine, ingestor=ingestor, http=http,
                              scheduler=scheduler, clock=clock, webhook_token=token,
                              parsers=read)
            try:
                yield {"runtime": runtime}
            finally:
                if scheduler.running:
                    scheduler.shutdown(wait=False)
                await ingestor.stop()
                engine.dispose()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *webhooks.routes,
        *windows_api.routes,
    ]
    return Starlette(routes=routes, lifespan=lifespan,
                     exception_handlers=exception_handlers)  # type: ignore[arg-type]


def app_from_env() -> Starlette:
    """The uvicorn factory (`receiver.app:app_from_env`)."""
    return create_app(Settings())
