"""create_app(settings): the Starlette app. Nothing is built at import; the lifespan builds the
engine, the HTTP client, the ingest writer and the scheduler, and tears them down."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
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

from receiver import (
    events_api,
    gc_tuning,
    messages_api,
    reports_api,
    unrouted,
    webhooks,
    windows_api,
)
from receiver.applier import Applier, Drainer
from receiver.applier_process import ApplierProcess
from receiver.errors import exception_handlers
from receiver.identity import announce, resolve_bot_secret, resolve_webhook_token
from receiver.ingest import Ingestor
from receiver.metrics import Metrics, VendorMetricsTransport
from receiver.metrics import route as metrics_route
from receiver.notifier import Notifier
from receiver.openapi import route as openapi_route
from receiver.parsers import parsers
from receiver.runtime import Clock, Runtime, utcnow
from receiver.settings import Settings
from sender import jobs
from sender.http import VendorTransport
from sender.itnio import ItnioClient
from sender.push import BotPusher
from sender.service import Sender
from sender.yzj import YzjClient
from store import db, inbox
from store import spool as spool_module
from store.spool import Spool

logger = logging.getLogger(__name__)

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


VENDOR_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=50)


def itnio_client(settings: Settings, http: httpx.AsyncClient, clock: Clock) -> ItnioClient | None:
    if settings.itnio_api_key is None or settings.itnio_api_secret is None:
        return None
    return ItnioClient(http, base_url=settings.itnio_base_url,
                       api_key=settings.itnio_api_key.get_secret_value(),
                       api_secret=settings.itnio_api_secret.get_secret_value(),
                       wa_app_id=settings.itnio_wa_app_id, sms_app_id=settings.itnio_sms_app_id,
                       clock=clock)


def yzj_client(settings: Settings, http: httpx.AsyncClient, clock: Clock) -> YzjClient | None:
    if settings.yzj_app_id is None or settings.yzj_app_secret is None:
        return None
    return YzjClient(http, base_url=settings.yzj_base_url, app_id=settings.yzj_app_id,
                     app_secret=settings.yzj_app_secret.get_secret_value(), clock=clock)


BOT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def create_app(settings: Settings, *, clock: Clock = utcnow,
               vendor_transport: httpx.AsyncBaseTransport | None = None,
               bot_transport: httpx.AsyncBaseTransport | None = None,
               freeze_gc: bool = False) -> Starlette:
    """The app. `vendor_transport` / `bot_transport` replace the network for vendor calls
    and for pushes to the bot (tests, the demo). `freeze_gc`: once started, keep what start-up
    made out of the garbage collector's full collections (receiver/gc_tuning.py; the server
    does, being the process's one app)."""
    read = parsers(settings)  # decodes the 云真机 key now: a bad key fails at start

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
        engine = db.make_engine(settings.database_url)
        token, generated = await run_in_threadpool(resolve_webhook_token, settings, engine, clock)
        bot_secret, secret_made = await run_in_threadpool(resolve_bot_secret, settings, engine,
                                                          clock)
        announce(settings, token, generated=generated, bot_secret=bot_secret,
                 secret_generated=secret_made)
        notifier = Notifier()
        yzj_host = httpx.URL(settings.yzj_base_url).host
        spool = await run_in_threadpool(_open_spool, settings, engine)
        metrics = Metrics(engine, clock, spool)

        def stored() -> None:
            notifier.notify()
            applier.wake()

        ingestor = Ingestor(engine, spool=spool, on_commit=stored)
        applier = _applier(settings, engine, clock, notifier, spool, on_moved=ingestor.moved)
        applier.start()
        await ingestor.start()
        scheduler = AsyncIOScheduler(timezone="UTC")
        timeout = httpx.Timeout(settings.vendor_timeout_seconds,
                                connect=min(5.0, settings.vendor_timeout_seconds))
        vendor_of = lambda url: "yzj" if url.host == yzj_host else "itnio"  # noqa: E731
        # httpx on aiohttp (sender/http.py); the transport also keeps the vendor metrics.
        transport = VendorMetricsTransport(
            vendor_transport or VendorTransport(limits=VENDOR_LIMITS), metrics, vendor_of)
        reads = None
        if engine.dialect.name == "postgresql":
            from store.pg_reads import AsyncReads  # asyncpg: only where it is used
            reads = AsyncReads(engine.url)
        async with httpx.AsyncClient(timeout=timeout, transport=transport) as http:
            sender = Sender(engine, itnio=itnio_client(settings, http, clock),
                            yzj=yzj_client(settings, http, clock),
                            config=settings.send_config(), clock=clock,
                            on_commit=notifier.notify)
            bot_http = httpx.AsyncClient(timeout=BOT_TIMEOUT, transport=bot_transport)
            pusher = (BotPusher(engine, url=settings.bot_webhook_url, secret=bot_secret,
                                http=bot_http, clock=clock)
                      if settings.bot_webhook_url else None)
            runtime = Runtime(settings=settings, engine=engine, ingestor=ingestor,
                              applier=applier, http=http,
                              scheduler=scheduler, clock=clock, webhook_token=token,
                              parsers=read, sender=sender, notifier=notifier, pusher=pusher,
                              metrics=metrics, reads=reads)
            if settings.run_scheduler:
                jobs.schedule(scheduler, sender, pusher)
                scheduler.start()
            if freeze_gc:
                gc_tuning.freeze_startup_objects()
            try:
                yield {"runtime": runtime}
            finally:
                await bot_http.aclose()
                if reads is not None:
                    await reads.close()
                if scheduler.running:
                    scheduler.shutdown(wait=False)
                for attempt in list(runtime.background):
                    attempt.cancel()  # the message stays `sending`; the lease sweep settles it
                await ingestor.stop()
                await _stop(applier)
                if spool is not None:
                    spool.close()
                engine.dispose()
                if freeze_gc:
                    gc_tuning.thaw()

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        *windows_api.routes,
        *messages_api.routes,
        *events_api.routes,
        *reports_api.routes,
        metrics_route,
        openapi_route,
    ]
    return ReplyWindow(routes=routes, lifespan=lifespan,
                       exception_handlers=exception_handlers)  # type: ignore[arg-type]


class ReplyWindow(Starlette):
    """Starlette, with the vendor webhooks answered before routing and middleware: they are
    the hot path (receiver/webhooks.py), and their errors are answered there. The bots' hot
    paths too, each as its route would answer (receiver/unrouted.py)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            if path.startswith(webhooks.PREFIX):
                await webhooks.handle(scope, receive, send)
                return
            # The bots' window lookup, likewise (receiver/windows_api.py); what it leaves
            # (other methods, HEAD, ...) goes to the router below.
            if path.startswith(windows_api.LOOKUP_PREFIX):
                params = windows_api.lookup_params(scope)
                if params is not None:
                    await windows_api.answer_lookup(scope, receive, send, *params)
                    return
            # A send (an app under a root_path, and anything but POST, go to the router).
            elif (path == messages_api.SEND_PATH and scope["method"] == "POST"
                  and not scope.get("root_path")):
                await unrouted.answer(scope, receive, send, messages_api.post_message)
                return
        await super().__call__(scope, receive, send)


def _open_spool(settings: Settings, engine: Engine) -> Spool | None:
    with Session(engine) as session:
        return spool_module.open_for(settings.database_url, above=inbox.max_id(session))


def _applier(settings: Settings, engine: Engine, clock: Clock, notifier: Notifier,
             spool: Spool | None, *, on_moved: Callable[[int], None]) -> Applier | ApplierProcess:
    loop = asyncio.get_running_loop()
    if settings.applier == "process":
        return ApplierProcess(settings, engine, spool, on_applied=notifier.notify,
                              on_moved=on_moved)
    return Applier(Drainer(engine, settings, clock, spool=spool,
                           on_applied=lambda: loop.call_soon_threadsafe(notifier.notify),
                           on_moved=on_moved))


async def _stop(applier: Applier | ApplierProcess) -> None:
    if isinstance(applier, ApplierProcess):
        await applier.stop()
    else:
        await run_in_threadpool(applier.stop)


def app_from_env() -> Starlette:
    """The uvicorn factory (`receiver.app:app_from_env`)."""
    return create_app(Settings(), freeze_gc=True)
