"""`replywindow inbox replay`: re-read archived bodies with today's parsers and apply what is
new. Idempotent: every event's key is claimed once, so replaying twice changes nothing."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine
from sqlmodel import Session

from receiver.applier import APPLY_LOCK
from receiver.apply import apply_body
from receiver.errors import BadPayload
from receiver.parsers import parsers
from receiver.settings import Settings
from store import db, inbox

logger = logging.getLogger(__name__)
PAGE = 200

# Told (bodies done, bodies in all) as the replay goes: stored bodies, then quarantined ones.
Progress = Callable[[int, int], None]


@dataclass
class ReplayReport:
    bodies: Counter[str] = field(default_factory=Counter)
    recovered: int = 0
    still_unreadable: int = 0

    def summary(self) -> str:
        states = ", ".join(f"{n} {state}" for state, n in sorted(self.bodies.items())) or "none"
        return (f"replayed {sum(self.bodies.values())} stored bodies ({states}); "
                f"quarantine: {self.recovered} recovered, {self.still_unreadable} still unreadable")


def _replay_state(previous: str, outcome: str) -> str:
    # A body whose effects are in the store keeps saying so: its events come back as
    # duplicates, or, if the configuration has since narrowed or its parse now fails (a key
    # rotated), as flagged or failed, and neither undoes what was applied.
    if previous in ("applied", "duplicate") and outcome != "applied":
        return previous
    return outcome


def _count(engine: Engine, *, states: list[str] | None, quarantined: bool) -> int:
    with Session(engine) as session:
        total = inbox.count_bodies(session, states=states)
        if quarantined:
            total += inbox.count_unresolved_quarantine(session)
    return total


def replay(engine: Engine, *, settings: Settings, states: list[str] | None, quarantined: bool,
           now: datetime, progress: Progress | None = None) -> ReplayReport:
    """Re-apply stored (and quarantined) bodies. `progress`, if given, is told how far it is
    after every page (the total is counted first; bodies arriving meanwhile may exceed it)."""
    report = ReplayReport()
    read = parsers(settings)
    total = _count(engine, states=states, quarantined=quarantined) if progress else 0
    done = 0
    engine = db.writer(engine)
    after_id = 0
    while True:
        with Session(engine) as session, session.begin():
            # Turns with the appliers (PostgreSQL; SQLite's writer takes turns already): a
            # page read while one applies would be written over what it applied.
            db.serialize_writers(session, APPLY_LOCK)
            page = inbox.bodies_page(session, after_id=after_id, states=states, limit=PAGE)
            for body in page:
                parse = read.get((body.vendor, body.route))
                try:
                    if parse is None:
                        raise BadPayload(f"no parser for {body.vendor}/{body.route}")
                    events = parse(body.body)
                except Exception as exc:
                    outcome, body.detail = "failed", f"{type(exc).__name__}: {exc}"[:2000]
                else:
                    previous_detail, applied_before = body.detail, body.applied_at
                    body.detail = None
                    outcome = apply_body(session, body, events=events, settings=settings, now=now)
                    if outcome != "applied":  # only effects applied by this replay count
                        body.applied_at = applied_before
                    if outcome != "failed" and body.state != "failed":
                        body.detail = previous_detail
                    body.event_count = len(events)
                    body.dedup_key = next((e.key for e in events if e.key), None)
                body.state = _replay_state(body.state, outcome)
                session.add(body)
                report.bodies[body.state] += 1
            # Read while the session is open: its objects expire when the page commits.
            last_id = page[-1].id if page else None
        done += len(page)
        if progress is not None:
            progress(done, max(total, done))
        if len(page) < PAGE or last_id is None:
            break
        after_id = last_id
    if quarantined:
        def one_more() -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, max(total, done))

        _replay_quarantine(engine, settings=settings, read=read, now=now, report=report,
                           tick=one_more)
    logger.info("inbox replayed", extra={"action": "inbox_replayed"})
    return report


def _replay_quarantine(engine: Engine, *, settings: Settings, read: dict, now: datetime,
                       report: ReplayReport, tick: Callable[[], None]) -> None:
    with Session(engine) as session, session.begin():
        db.serialize_writers(session, APPLY_LOCK)
        for row in inbox.unresolved_quarantine(session):
            tick()
            if row.error == "payload_too_large":
                # Only its first MiB was kept: never apply a part as if it were the whole.
                report.still_unreadable += 1
                continue
            parse = read.get((row.vendor, row.route))
            try:
                events = parse(row.body) if parse is not None else None
            except BadPayload:
                events = None
            except Exception:  # a parser bug must not stop the rest of the quarantine
                logger.error("parsing a quarantined body failed", exc_info=True,
                                 extra={"action": "quarantine_parse_failed",
                                        "quarantined_body_id": row.id})
                events = None
            if events is None:
                report.still_unreadable += 1
                continue
            body = inbox.add_body(
                session, vendor=row.vendor, route=row.route, received_at=row.received_at,
                headers=row.headers, body=row.body,
                dedup_key=next((e.key for e in events if e.key), None), event_count=len(events),
            )
            body.state = apply_body(session, body, events=events, settings=settings, now=now)
            row.resolved_at, row.inbox_body_id = now, body.id
            session.add_all([body, row])
            report.recovered += 1
