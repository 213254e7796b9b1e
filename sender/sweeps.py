"""Scheduled sweeps. Each is safe to run in every replica at once: it claims its rows
(FOR UPDATE SKIP LOCKED) and every change it makes is one a status push could make too."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlmodel import Session, func, select

from sender import events as bot_events
from sender import outcomes
from sender.errors import VendorError
from sender.service import LEASE, Sender
from sender.window import open_since, window_state
from store import conversations, inbox, messages, outbox
from store.models import StatusEvent, Template
from store.utc_text import iso_z

logger = logging.getLogger(__name__)

EXPIRE_AFTER = timedelta(hours=72)
SMS_REPORT_AFTER = timedelta(minutes=10)
NOT_FINAL = ("queued", "sending", "unknown", "accepted", "sent")


async def recover_stale(sender: Sender) -> int:
    """A `sending` message whose lease ran out: the process died mid-call. The vendor may
    have it, so it is held as unknown, never sent again blindly."""
    now = sender.clock()

    def work(session: Session) -> int:
        rows = outbox.stale_sending(session, now=now)
        for row in rows:
            called_at = (row.next_attempt_at or now) - LEASE  # the claim set it to + LEASE
            row.status, row.status_at = "unknown", now
            session.add(row)
            outcomes.adopt_orphans(session, row, since=called_at, config=sender.config, now=now)
        return len(rows)

    return int(await sender.run(work))


async def attach_stranded(sender: Sender) -> int:
    """On PostgreSQL a status push and the vendor's answer to our call can be recorded in two
    transactions at once: the push finds no message with its id, the answer finds no push,
    and the push stays an orphan. Apply those here; returns how many were."""
    now = sender.clock()

    def work(session: Session) -> int:
        applied = 0
        for message_id in outbox.stranded_orphans(session, since=now - EXPIRE_AFTER):
            row = outbox.get(session, message_id, for_update=True)
            if row is not None:
                applied += outcomes.attach_orphans(session, row, config=sender.config, now=now)
        return applied

    return int(await sender.run(work))


async def confirm_wecom(sender: Sender) -> int:
    """WeCom has no delivery report: echoed and no failure for the confirm delay = delivered."""
    now = sender.clock()
    before = now - sender.config.wecom_confirm

    def work(session: Session) -> int:
        confirmed = 0
        for row in outbox.unfinished(session, channel="wecom", statuses=("sent",), before=before):
            parts = len(row.request.get("message") or [])
            echoes = session.exec(select(func.count()).select_from(StatusEvent).where(
                StatusEvent.message_id == row.id, StatusEvent.status == "sent")).one()
            if echoes >= parts:
                outcomes.record_status(session, row, status="delivered", at=now,
                                       config=sender.config)
                confirmed += 1
        return confirmed

    return int(await sender.run(work))


async def expire_old(sender: Sender) -> int:
    """Anything without an outcome 72 h after it was asked for is expired."""
    now = sender.clock()

    def work(session: Session) -> int:
        rows = outbox.unfinished(session, channel=None, statuses=NOT_FINAL,
                                 before=now - EXPIRE_AFTER, created=True)
        for row in rows:
            if row.status in ("queued", "sending", "unknown"):
                row.status = "queued"  # measured from the start, like any first outcome
            outcomes.record_status(session, row, status="expired", at=now, config=sender.config)
        return len(rows)

    return int(await sender.run(work))


async def reconcile_sms(sender: Sender) -> int:
    """SMS that got no delivery report: ask sms/getReport (at most 200 ids a call)."""
    if sender.itnio is None:
        return 0
    now = sender.clock()
    pending = await sender.run(lambda s: {
        m.vendor_message_id: m.id
        for m in outbox.unfinished(s, channel="sms", statuses=("accepted", "sent"),
                                   before=now - SMS_REPORT_AFTER)
        if m.vendor_message_id
    })
    if not pending:
        return 0
    try:
        reports = await sender.itnio.get_sms_reports(list(pending))
    except VendorError as exc:
        logger.warning("sms/getReport failed", extra={"action": "sms_reconcile_failed",
                                                      "vendor_code": exc.code})
        return 0

    def work(session: Session) -> int:
        applied = 0
        for report in reports:
            message_id = pending.get(report.msg_id)
            if report.status == "pending" or message_id is None:
                continue
            row = outbox.get(session, message_id, for_update=True)
            if row is None:
                continue
            event = messages.add_status_event(
                session, channel="sms", vendor_message_id=report.msg_id, client_ref=row.id,
                message_id=row.id, status=report.status, occurred_at=report.received_at or now,
                received_at=now, failure_code="getReport" if report.status == "failed" else None,
                detail={"source": "sms/getReport"},
            )
            outcomes.apply_event(session, row, event, config=sender.config, now=now)
            applied += 1
        return applied

    return int(await sender.run(work))


async def sync_templates(sender: Sender) -> int:
    """Bring the templates table up to what ITNIO knows (wa/template/query)."""
    if sender.itnio is None:
        return 0
    try:
        remote = await sender.itnio.query_templates()
    except VendorError as exc:
        logger.warning("template sync failed", extra={"action": "template_sync_failed",
                                                      "vendor_code": exc.code})
        return 0
    now = sender.clock()

    def work(session: Session) -> int:
        for item in remote:
            row = session.exec(select(Template).where(
                Template.name == item.name, Template.language == item.language)
                .with_for_update()).first()
            if row is None:
                row = Template(name=item.name, language=item.language, status=item.status)
            row.vendor_template_id = item.template_id or row.vendor_template_id
            row.status, row.category, row.reason = item.status, item.category, item.reason
            row.components, row.synced_at = item.components, now
            session.add(row)
        return len(remote)

    return int(await sender.run(work))


async def refresh_yzj_token(sender: Sender) -> None:
    if sender.yzj is not None:
        try:
            await sender.yzj.access_token()
        except VendorError as exc:
            logger.warning("云真机 token refresh failed",
                           extra={"action": "yzj_token_failed", "vendor_code": exc.code})




async def announce_expiring(sender: Sender) -> int:
    """window.expiring, once per inbound message: an open window whose last inbound message
    has no reply yet closes within the warning time."""
    now = sender.clock()
    config = sender.config
    after = open_since(now=now, margin=config.margin)

    def work(session: Session) -> int:
        announced = 0
        for row in conversations.by_last_inbound(session, after=after,
                                                 until=after + config.expiring_warning,
                                                 unanswered=True, accounts=None, limit=500):
            key = f"window.expiring:{row.id}:{row.last_inbound_message_id}"
            if not inbox.claim_key(session, key=key, inbox_body_id=None, now=now):
                continue
            state = window_state(row.last_inbound_at, now=now, margin=config.margin)
            bot_events.emit(session, "window.expiring", channel="whatsapp", account=row.account,
                            customer=row.customer, now=now, push=config.push_events, data={
                                "last_inbound_at": iso_z(state.last_inbound_at),
                                "last_inbound_message_id": row.last_inbound_message_id,
                                "expires_at": iso_z(state.expires_at),
                                "closes_at": iso_z(state.closes_at),
                                "seconds_left": state.seconds_left})
            announced += 1
        return announced

    return int(await sender.run(work))
