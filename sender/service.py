"""Sending: accept a bot's reply durably, decide its route, call the vendor, record what the
vendor said. Only this module and sender/jobs.py read the clock.

A message is committed before any vendor call: `queued`, or, when it can go at once, already
claimed for sending (`sending`, with a lease) in the transaction that stores it. Sending claims
it, calls the vendor outside any transaction, then records the answer:
    accepted       -> `accepted`, and any status push that raced ahead is applied
    refused        -> `rejected` with the vendor's code (131047 may re-send by the fallback)
    unavailable    -> back to `queued` with exponential backoff and jitter
    outcome unknown-> `unknown`: held, settled by status pushes, never blindly re-sent

Every transaction goes through one group commit (sender/group_commit.py): the sends of a
burst share their commits.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session

from sender import events as bot_events
from sender import outcomes, pacing, policy
from sender.errors import OutcomeUnknown, VendorError, VendorRejected, VendorUnavailable
from sender.group_commit import Deferring, GroupCommit, write_now
from sender.itnio import ItnioClient, SmsItem
from sender.outcomes import SendConfig
from sender.yzj import YzjClient
from store import conversations, outbox
from store import pacing as pacing_store
from store.models import OutboundMessage

logger = logging.getLogger(__name__)

LEASE = timedelta(minutes=2)
BACKOFF_BASE = 2.0
BACKOFF_CAP = 600.0


def backoff(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with full jitter: 2 s, 4 s, 8 s ... at most 10 min."""
    ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** max(0, attempts - 1))
    return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))


@dataclass(frozen=True)
class Call:
    """What to ask the vendor, decided inside a transaction and made outside it."""

    message_id: str
    channel: str
    route: str
    account: str
    recipient: str
    request: dict[str, Any]
    decision: policy.SendDecision
    # WeCom: each part's delayed_time, spreading the staff account's sends over time.
    delays: tuple[int, ...] = ()


# Stands for a first answer already kept (not read: recording the vendor's leaves it as it is).
_KEPT = object()


class NotConfigured(VendorError):
    """The vendor's credentials are not configured; nothing can be sent on this channel."""


# What the bot is answered, built in the transaction that records the vendor's answer:
# `answer(session, message, last_inbound_at=...)` with the message as recorded (an ORM object
# or a MessageView) and, when already read, its conversation's last inbound time.
AnswerBody = Callable[..., dict[str, Any]]


class Sender:
    def __init__(self, engine: Engine, *, itnio: ItnioClient | None, yzj: YzjClient | None,
                 config: SendConfig, clock: Callable[[], datetime], concurrency: int = 32,
                 on_commit: Callable[[], None] | None = None) -> None:
        self._on_commit = on_commit
        self.commits = GroupCommit(engine)
        self.itnio = itnio
        self.yzj = yzj
        self.config = config
        self.clock = clock
        self._slots = asyncio.Semaphore(concurrency)

    # -- the transaction helper (the session is sync: works run in a thread) -------------

    async def run(self, work: Callable[[Session], Any], *,
                  then: Callable[[Any], None] | None = None, defers: bool = False) -> Any:
        """Run `work(session)` in a transaction, committed before this returns; the works
        of concurrent callers share it (group commit). `then(result)` runs in the event loop
        once it is committed, even if the caller has stopped waiting. `defers`: the work
        leaves writes to the end of the batch (see sender/group_commit.py)."""
        result = await self.commits.run(work, then=then, defers=defers)
        if self._on_commit is not None:
            self._on_commit()
        return result

    # -- claiming ------------------------------------------------------------------------

    async def deliver_due(self, *, limit: int = 100) -> int:
        """Send every due message (claimed so no other replica sends it too)."""
        now = self.clock()
        claimed = await self.run(
            lambda s: [m.id for m in outbox.claim_due(s, now=now, limit=limit, lease=LEASE)])
        await asyncio.gather(*(self._send_claimed(message_id) for message_id in claimed))
        return len(claimed)

    def claim_new(self, session: Session, fields: dict[str, Any],
                  decision: policy.SendDecision) -> Call:
        """A message being stored now (`fields`, its row, not yet inserted) that can go at
        once: claimed for sending in the same transaction, so no other attempt takes it and
        a crash before the call leaves it to the lease sweep, never to a second send."""
        now = self.clock()
        fields.update(status="sending", attempts=1, next_attempt_at=now + LEASE)
        delays: tuple[int, ...] = ()
        if fields["channel"] == "wecom":
            delays = self._pace(session, fields["account"], len(fields["request"]["message"]))
        return Call(message_id=fields["id"], channel=fields["channel"],
                    route=fields["route"] or "", account=fields["account"],
                    recipient=fields["recipient"], request=fields["request"],
                    decision=decision, delays=delays)

    async def send_claimed(self, call: Call, *,
                           answer: AnswerBody | None = None) -> dict[str, Any] | None:
        """Send a message claimed by `claim_new`. With `answer`, the bot's answer is built
        and kept (`first_answer`) in the transaction that records the vendor's; it is
        returned (None if the message was not sent after all)."""
        return await self._send_claimed(call.message_id, call=call, answer=answer)

    # -- one message ---------------------------------------------------------------------

    async def _send_claimed(self, message_id: str, *, call: Call | None = None,
                            answer: AnswerBody | None = None) -> dict[str, Any] | None:
        # A call prepared in the claiming transaction goes as it is, unless it must wait
        # for a slot: then the lease is renewed and the route checked again, as for any.
        fresh = call is not None and not self._slots.locked()
        async with self._slots:
            if not fresh:
                call = await self.run(lambda s: self._prepare(s, message_id))
                if call is None:
                    return None
            assert call is not None
            outcome = await self._outcome_of(call, answer)
            return await self.run(partial(self._record, outcome=outcome, message_id=message_id,
                                          answer=answer),
                                  defers=True)  # type: ignore[no-any-return]

    async def _outcome_of(self, call: Call,
                          answer: AnswerBody | None) -> Callable[[Session], Any]:
        """Call the vendor (outside any transaction); what records its answer."""
        message_id = call.message_id
        try:
            result = await self._call(call)
        except VendorRejected as exc:
            return partial(self._refused, message_id=message_id, exc=exc)
        except (VendorUnavailable, NotConfigured) as exc:
            return partial(self._retry_later, message_id=message_id, exc=exc)
        except OutcomeUnknown as exc:
            return partial(self._unknown, message_id=message_id, exc=exc)
        except Exception as exc:  # our bug or our configuration: nothing was sent
            logger.exception("sending failed before the vendor was reached", extra={
                "action": "message_send_error", "message_id": message_id})
            error = NotConfigured(vendor="local", reason=f"{type(exc).__name__}: {exc}")
            return partial(self._retry_later, message_id=message_id, exc=error)
        return partial(self._accepted, message_id=message_id, result=result, call=call,
                       answer=answer)

    def _record(self, session: Session, *, outcome: Callable[[Session], Any],
                message_id: str, answer: AnswerBody | None) -> dict[str, Any] | None:
        """Record the vendor's answer, and with `answer` the bot's, in one transaction. (The
        common acceptance builds and keeps the bot's answer itself, and returns it.)"""
        body = outcome(session)
        if answer is None or body is not None:
            return body  # type: ignore[no-any-return]
        write_now(session)
        message = outbox.get(session, message_id, for_update=True)
        if message is None:
            return None
        body = answer(session, message)
        if message.first_answer is None:
            message.first_answer = {**body, "_status": 202}
            session.add(message)
        return body

    def _prepare(self, session: Session, message_id: str) -> Call | None:
        """Decide the route if it waited for `send_at`; None if nothing is to be sent."""
        message = outbox.get(session, message_id, for_update=True)
        if message is None:
            return None
        if message.status == "unknown" and message.vendor_message_id is None:
            # Claimed by us, it waited for a free slot so long that the lease sweep held it
            # as unknown. No call was made for it (the claim is ours, and a message held as
            # unknown is never claimed again), so it is ours to send, not a possible repeat.
            message.status = "sending"
            logger.info("taken back from the lease sweep before any call", extra={
                "action": "message_lease_reclaimed", "message_id": message.id})
        if message.status != "sending":
            return None
        # The lease covers the vendor call, not the wait for a slot before it.
        message.next_attempt_at = self.clock() + LEASE
        request = outcomes.send_request(message)
        situation = outcomes.situation(session, channel=message.channel, account=message.account,
                                       recipient=message.recipient, config=self.config)
        # A fallback re-send exists because the vendor said the window is closed (131047).
        decision = policy.choose_route(request, situation, now=self.clock(),
                                       margin=self.config.margin,
                                       after_custom_failed=message.fallback_of is not None)
        # The route is decided again when it was never decided (a scheduled send takes its
        # route when it goes out), for a fallback re-send (its template may have been paused
        # since), and for a custom message whose window closed after the POST: never spend a
        # call the vendor would refuse.
        window_closed_since = (message.route == "custom" and message.channel == "whatsapp"
                               and decision.route != "custom")
        if message.route is None or message.fallback_of is not None or window_closed_since:
            if decision.refused:
                outcomes.record_status(session, message, status="rejected", at=self.clock(),
                                       config=self.config, failure_code=decision.reason,
                                       failure_reason="refused before sending")
                return None
            if decision.route != message.route:
                message.route = decision.route
                message.fallback_reason = message.fallback_reason or decision.reason
                bot_events.message_event(session, "message.route", message, now=self.clock(),
                                         push=self.config.push_events)
        session.add(message)
        delays: tuple[int, ...] = ()
        if message.channel == "wecom":
            delays = self._pace(session, message.account, len(message.request["message"]))
        return Call(message_id=message.id, channel=message.channel, route=message.route or "",
                    account=message.account, recipient=message.recipient,
                    request=message.request, decision=decision, delays=delays)

    def _pace(self, session: Session, account: str, count: int) -> tuple[int, ...]:
        now = self.clock()
        row = pacing_store.next_free(session, account=account, now=now)
        slots, row.next_free_at = pacing.spread(next_free=row.next_free_at, count=count,
                                                gap=self.config.wecom_gap, now=now)
        session.add(row)
        return tuple(pacing.delayed_time(slot, now=now) for slot in slots)

    async def _call(self, call: Call) -> Any:
        body = call.request
        if call.channel == "wecom":
            if self.yzj is None:
                raise NotConfigured(vendor="yzj",
                                    reason="REPLYWINDOW_YZJ_APP_ID / _APP_SECRET not set")
            try:
                # The token first, on its own: no message goes with it, so a token call that
                # timed out or answered nonsense leaves the message unsent (retried later),
                # not held as unknown until it expires.
                await self.yzj.access_token()
            except OutcomeUnknown as exc:
                raise VendorUnavailable(vendor=exc.vendor, code=exc.code,
                                        reason=f"access token: {exc.meaning}",
                                        http_status=exc.http_status) from exc
            parts = [
                dict(part, api_send_id=outcomes.wecom_part_id(call.message_id, index),
                     delayed_time=max(int(part.get("delayed_time") or 0), delay))
                for index, (part, delay) in enumerate(zip(body["message"], call.delays,
                                                          strict=True))
            ]
            return await self.yzj.send_messages(wxid=call.account, target_wxid=call.recipient,
                                                 messages=parts)
        if self.itnio is None:
            raise NotConfigured(vendor="itnio",
                                reason="REPLYWINDOW_ITNIO_API_KEY / _API_SECRET not set")
        if call.route == "sms":
            text = call.decision.sms_text or body.get("sms_text") or policy.message_text(
                body.get("message"))
            return await self.itnio.send_sms([SmsItem(number=call.recipient, content=text or "",
                                                        sender_id=body.get("sender_id"),
                                                        order_id=call.message_id)])
        if call.route == "template":
            template = call.decision.template or body.get("template") or {}
            return await self.itnio.send_template(
                business_phone=call.account, recipient=call.recipient,
                name=str(template.get("name")), language=policy.template_language(template),
                components=list(template.get("components") or []),
            )
        return await self.itnio.send_custom(business_phone=call.account,
                                             recipient=call.recipient, message=body["message"],
                                             reply_to=body.get("reply_to"))

    # -- recording the vendor's answer ---------------------------------------------------

    def _claimed(self, session: Session, message_id: str) -> OutboundMessage | None:
        # Locked; its status may no longer be `sending`: a status push may have moved it
        # on while we waited for the vendor, and each recorder below keeps that.
        write_now(session)  # the ORM reads below see everything the batch wrote so far
        return outbox.get(session, message_id, for_update=True)

    @staticmethod
    def _read_answer(message: Any, result: Any) -> str | None:
        """Take the vendor's id from its answer; why it refused the message, if it did."""
        refused = None
        if message.route == "sms":  # also a WhatsApp request that fell back to SMS
            [submitted] = result
            message.vendor_message_id = submitted.msg_id
            if not submitted.accepted:
                refused = submitted.reason or "refused"
        elif message.channel == "wecom":
            message.vendor_message_id = result[0].api_send_svrid if result else None
            missing = [part.idx for part in result if not part.accepted]
            if missing:
                refused = f"parts {missing} refused by the vendor"
        else:
            message.vendor_message_id = result.message_id
        return refused

    def _accepted_plainly(self, session: Session, message_id: str, result: Any, call: Call,
                          answer: AnswerBody | None) -> tuple[bool, dict[str, Any] | None]:
        """The common case, with plain statements: still `sending` by the route it was called
        by, accepted, and no status push arrived before this answer. (False, None) when it is
        not that case and nothing was written."""
        called = SimpleNamespace(route=call.route, channel=call.channel, vendor_message_id=None)
        if self._read_answer(called, result) is not None:
            return False, None
        found = outbox.row_for_answer(session, message_id,
                                      vendor_message_id=called.vendor_message_id or None)
        if found is None:
            return True, None
        if (found["status"] != "sending" or found["has_orphans"] or found["route"] != call.route
                or found["channel"] != call.channel):
            return False, None
        view = outcomes.MessageView.of(found)
        last_inbound_at = view.__dict__.pop("conversation_last_inbound_at")
        del view.has_orphans
        # The first answer kept, if there is one, is never read nor written here.
        view.first_answer = None if view.__dict__.pop("first_answer_missing") else _KEPT
        view.__dict__["_original"]["first_answer"] = view.first_answer
        view.vendor_message_id = called.vendor_message_id
        now = self.clock()
        view.status = "queued"  # so the transition below is measured from the start
        transition = outcomes.apply_status(view, status="accepted", at=now)
        body = None
        if answer is not None and view.first_answer is None:
            body = answer(session, view, last_inbound_at=last_inbound_at)
            view.first_answer = {**body, "_status": 202}
        # Written at the end of the batch, with the other sends' (nothing here reads them).
        writes = Deferring(session)
        view.save(writes)
        outcomes.announce_status(writes, view, transition,  # type: ignore[arg-type]
                                 previous="queued", at=now, config=self.config)
        outbox.record_reply(writes, channel=view.channel, account=view.account,  # type: ignore[arg-type]
                            customer=view.recipient, at=now, now=now)
        logger.info("vendor accepted the message", extra={
            "action": "message_accepted", "message_id": view.id, "route": view.route})
        return True, body

    def _accepted(self, session: Session, message_id: str, result: Any, call: Call | None = None,
                  answer: AnswerBody | None = None) -> dict[str, Any] | None:
        if call is not None:
            done, body = self._accepted_plainly(session, message_id, result, call, answer)
            if done:
                return body
        now = self.clock()
        message = self._claimed(session, message_id)
        if message is None:
            return None
        refused = self._read_answer(message, result)
        if message.status == "sending":
            message.status = "queued"  # so the transition below is measured from the start
        if refused is not None:
            outcomes.record_status(session, message, status="rejected", at=now, config=self.config,
                                   failure_code="refused", failure_reason=refused)
            return None
        outcomes.record_status(session, message, status="accepted", at=now, config=self.config)
        conversations.record_outbound(session, channel=message.channel, account=message.account,
                                      customer=message.recipient, message_at=now, now=now)
        outcomes.attach_orphans(session, message, config=self.config, now=now)
        logger.info("vendor accepted the message", extra={
            "action": "message_accepted", "message_id": message.id, "route": message.route})
        return None

    def _refused(self, session: Session, message_id: str, exc: VendorRejected) -> None:
        now = self.clock()
        message = self._claimed(session, message_id)
        if message is None:
            return
        if message.status == "sending":
            message.status = "queued"
        outcomes.record_status(session, message, status="rejected", at=now, config=self.config,
                               failure_code=exc.code, failure_reason=exc.meaning)
        outcomes.after_failure(session, message, code=exc.code, config=self.config, now=now)
        logger.info("vendor refused the message", extra={
            "action": "message_refused", "message_id": message.id, "vendor_code": exc.code})

    def _retry_later(self, session: Session, message_id: str, exc: VendorError) -> None:
        message = self._claimed(session, message_id)
        if message is None or message.status != "sending":
            return
        message.status = "queued"
        message.next_attempt_at = self.clock() + backoff(message.attempts)
        session.add(message)
        logger.warning("vendor unavailable; will retry", extra={
            "action": "message_retry", "message_id": message.id, "attempts": message.attempts,
            "vendor_code": exc.code})

    def _unknown(self, session: Session, message_id: str, exc: VendorError) -> None:
        message = self._claimed(session, message_id)
        if message is None or message.status != "sending":
            return
        now = self.clock()
        called_at = (message.next_attempt_at or now) - LEASE  # the claim set it to + LEASE
        message.status, message.status_at = "unknown", now
        session.add(message)
        # Its pushes may have come while we waited for the answer that never came.
        if outcomes.adopt_orphans(session, message, since=called_at, config=self.config,
                                  now=now):
            return
        logger.warning("vendor outcome unknown; held for status pushes", extra={
            "action": "message_outcome_unknown", "message_id": message.id})
