"""APScheduler entry points: module-level, thin. Every replica runs its own in-memory
scheduler; the sweeps claim rows in the database, so running them everywhere is safe."""

from __future__ import annotations

import logging

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from sender import sweeps
from sender.push import BotPusher
from sender.service import Sender

logger = logging.getLogger(__name__)


async def deliver_due(sender: Sender) -> None:
    await sender.deliver_due()


async def run_sweeps(sender: Sender) -> None:
    await sweeps.recover_stale(sender)
    await sweeps.attach_stranded(sender)
    await sweeps.confirm_wecom(sender)
    await sweeps.expire_old(sender)


async def announce_expiring(sender: Sender) -> None:
    await sweeps.announce_expiring(sender)


async def push_events(pusher: BotPusher) -> None:
    await pusher.push_due()


async def reconcile_sms(sender: Sender) -> None:
    await sweeps.reconcile_sms(sender)


async def sync_templates(sender: Sender) -> None:
    await sweeps.sync_templates(sender)


async def refresh_yzj_token(sender: Sender) -> None:
    await sweeps.refresh_yzj_token(sender)


def schedule(scheduler: AsyncIOScheduler, sender: Sender, pusher: BotPusher | None) -> None:
    every = {"max_instances": 1, "coalesce": True, "args": [sender]}
    scheduler.add_job(announce_expiring, "interval", seconds=30, id="window_expiring", **every)
    if pusher is not None:
        scheduler.add_job(push_events, "interval", seconds=1, id="push_events",
                          max_instances=1, coalesce=True, args=[pusher])
    scheduler.add_job(deliver_due, "interval", seconds=1, id="deliver_due", **every)
    scheduler.add_job(run_sweeps, "interval", seconds=30, id="sweeps", **every)
    scheduler.add_job(reconcile_sms, "interval", minutes=5, id="reconcile_sms", **every)
    scheduler.add_job(sync_templates, "interval", minutes=15, id="sync_templates", **every)
    scheduler.add_job(refresh_yzj_token, "interval", minutes=30, id="yzj_token", **every)
