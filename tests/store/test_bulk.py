"""store/bulk.py hands rows to the driver without SQLAlchemy's per-row processing: what it
stores must be exactly what SQLAlchemy stores for the same values (times in SQLite's text
form, JSON, bytes, NULLs), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, insert
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from store import batch, bulk, conversations, events, inbox, json_text
from store.db import UTCDateTime
from store.models import ChatMessage, StatusEvent

NOW = datetime(2026, 11, 24, 10, 0, 0, 123456, tzinfo=UTC)
WHOLE_SECOND = datetime(2026, 11, 24, 18, 0, 5, tzinfo=timezone(timedelta(hours=8)))


def _stored(engine: Engine, table: str, order: str = "id") -> list[tuple[Any, ...]]:
    """The rows as the database holds them (no result processing), without their ids."""
    with engine.connect() as conn:
        result = conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {order}")
        columns = list(result.keys())
        return [tuple(v for c, v in zip(columns, row, strict=True) if c != "id")
                for row in result.all()]


def _conversation(session: Session) -> int:
    return conversations.record_inbound(session, channel="whatsapp", account="91856321412",
                                        customer="91856321432", message_at=NOW,
                                        message_id="m0", customer_name=None, now=NOW)


def test_chat_messages_and_status_events_stored_as_sqlalchemy_stores_them(
        engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        conversation_id = _conversation(session)
    chat = {"conversation_id": conversation_id, "channel": "whatsapp", "direction": "in",
            "vendor_message_id": "wamid.1", "msg_type": "text", "text": "你好 STOP",
            "content": {"items": [{"type": "text", "text": "你好"}]}, "sent_at": WHOLE_SECOND,
            "received_at": NOW, "inbox_body_id": None}
    status = {"channel": "sms", "vendor_message_id": "2108021059531000096", "client_ref": None,
              "message_id": None, "status": "delivered", "occurred_at": WHOLE_SECOND,
              "received_at": NOW, "failure_code": None, "failure_reason": None,
              "detail": {"billable": True, "cost": None}, "inbox_body_id": None}
    for table, bulk_insert, model, row in (
            ("chat_messages", batch.ADD_CHAT_MESSAGES, ChatMessage, chat),
            ("status_events", batch.ADD_STATUS_EVENTS, StatusEvent, status)):
        with Session(engine) as session, session.begin():
            session.connection().execute(insert(model.__table__), [row])  # type: ignore[attr-defined]
            bulk_insert.run(session.connection(), [row])
        by_sqlalchemy, by_bulk = _stored(engine, table)
        assert by_bulk == by_sqlalchemy


def test_events_inbox_moves_and_states_stored_as_sqlalchemy_stores_them(
        engine: Engine) -> None:
    event = events.row(kind="message.inbound", account="91856321412",
                       conversation_key="whatsapp:91856321412:91856321432",
                       data={"text": "hi", "sent_at": "2026-11-24T10:00:00Z"}, now=NOW,
                       push=True)
    with Session(engine) as session, session.begin():
        events.add_many(session, [event])  # one row: through SQLAlchemy
        events.add_many(session, [event, event])  # many: through the driver
    first, *by_bulk = _stored(engine, "events")
    assert by_bulk == [first, first]

    body = {"vendor": "itnio", "route": "whatsapp", "received_at": WHOLE_SECOND,
            "headers": {"content-type": "application/json"}, "body": b'{"a":1}\x00\xff',
            "state": "pending", "dedup_key": "k", "event_count": 1, "detail": None,
            "applied_at": None}
    with Session(engine) as session, session.begin():
        session.connection().execute(insert(inbox._BODIES), [{**body, "id": 1}])
        # move_in takes headers as the spool keeps them: JSON text, as the column writes it.
        assert inbox.move_in(session, [{**body, "id": 2,
                                        "headers": json_text.dumps(body["headers"])}]) == {2: 2}
    by_sqlalchemy, by_bulk = _stored(engine, "inbox_bodies")
    assert by_bulk == by_sqlalchemy

    with Session(engine) as session, session.begin():
        inbox.set_states(session, [(1, "applied", NOW, None), (2, "applied", NOW, None)])
    applied = [row[-1] for row in _stored(engine, "inbox_bodies")]  # applied_at
    assert applied == [_stored_time(engine, NOW)] * 2


def _stored_time(engine: Engine, value: datetime) -> Any:
    """`value` as SQLAlchemy stores it in a UTCDateTime column."""
    with Session(engine) as session, session.begin():
        session.connection().execute(insert(inbox._BODIES), [{
            "id": 99, "vendor": "itnio", "route": "sms", "received_at": value, "headers": {},
            "body": b"", "state": "stored", "event_count": 0}])
    with engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT received_at FROM inbox_bodies WHERE id = 99").scalar_one()


def test_many_conversation_upserts_match_one_at_a_time(engine: Engine) -> None:
    """A batch names a customer several times: in and out of order, with and without a name,
    at the same time twice, both ways; one statement a kind must leave what one statement a
    message leaves."""
    def inbound(customer: str, hours: int, message_id: str, name: str | None) -> dict[str, Any]:
        return {"channel": "whatsapp", "account": "91856321412", "customer": customer,
                "customer_name": name, "at": WHOLE_SECOND + timedelta(hours=hours),
                "message_id": message_id, "now": NOW + timedelta(seconds=hours)}

    def outbound(customer: str, hours: int) -> dict[str, Any]:
        return {"channel": "whatsapp", "account": "91856321412", "customer": customer,
                "at": WHOLE_SECOND + timedelta(hours=hours), "now": NOW}

    before = [inbound("91856321432", 5, "wamid.old", "Old name"), outbound("91856321433", 9)]
    rows = [inbound("91856321430", 0, "wamid.0", None),
            inbound("91856321431", 1, "wamid.1", "Priya"),
            inbound("91856321431", 3, "wamid.3", None),
            inbound("91856321431", 2, "wamid.2", "Priya S"),  # older: the window stays at 3
            inbound("91856321431", 3, "wamid.3b", None),  # the same time: the first stays
            inbound("91856321432", 4, "wamid.4", None),  # older than what is stored
            inbound("91856321433", 6, "wamid.6", "Ravi")]
    replies = [outbound("91856321430", 2), outbound("91856321430", 1),
               outbound("91856321433", 8), outbound("91856321434", 7)]

    def one_at_a_time(session: Session) -> None:
        for row in (r for r in before if "message_id" in r):
            conversations.record_inbound(session, channel=row["channel"],
                                         account=row["account"], customer=row["customer"],
                                         message_at=row["at"], message_id=row["message_id"],
                                         customer_name=row["customer_name"], now=row["now"])
        for row in (r for r in before if "message_id" not in r):
            conversations.record_outbound(session, channel=row["channel"],
                                          account=row["account"], customer=row["customer"],
                                          message_at=row["at"], now=row["now"])

    with Session(engine) as session, session.begin():
        one_at_a_time(session)
    with Session(engine) as session, session.begin():
        ids = conversations.record_inbounds(session, rows, replies)
    assert len(ids) == 5
    with engine.connect() as conn:
        assert ids == {tuple(key): id_ for id_, *key in conn.exec_driver_sql(
            "SELECT id, channel, account, customer FROM conversations")}
    many = _stored(engine, "conversations")

    with Session(engine) as session, session.begin():
        session.connection().exec_driver_sql("DELETE FROM conversations")
        one_at_a_time(session)
        for row in rows:
            conversations.record_inbound(session, channel=row["channel"],
                                         account=row["account"], customer=row["customer"],
                                         message_at=row["at"], message_id=row["message_id"],
                                         customer_name=row["customer_name"], now=row["now"])
        for row in replies:
            conversations.record_outbound(session, channel=row["channel"],
                                          account=row["account"], customer=row["customer"],
                                          message_at=row["at"], now=row["now"])
    assert _stored(engine, "conversations") == many


def test_driver_errors_are_raised_as_sqlalchemy_raises_them(engine: Engine) -> None:
    """Callers tell a refused row from a deadlock by SQLAlchemy's exception classes
    (store.db.is_transient); the driver's own would slip past them. No values are shown."""
    body = {"id": 7, "vendor": "itnio", "route": "sms", "received_at": NOW, "headers": "{}",
            "body": b"", "state": "pending", "dedup_key": "91856321432", "event_count": 0,
            "detail": None, "applied_at": None}
    with pytest.raises(IntegrityError) as raised, Session(engine) as session, session.begin():
        inbox.MOVE_IN.run(session.connection(), [body, body])
    assert "91856321432" not in str(raised.value)


@pytest.mark.parametrize("value", [
    NOW, NOW.replace(microsecond=0), NOW.replace(microsecond=1), WHOLE_SECOND,
    datetime(1, 1, 1, tzinfo=UTC), datetime(999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    datetime(2026, 3, 1, 0, 0, 0, 500, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
])
def test_utc_times_are_converted_for_sqlite_as_sqlalchemy_converts_them(value: datetime) -> None:
    dialect = sqlite.dialect()
    ours = bulk.converter(UTCDateTime(), dialect)
    theirs = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    assert ours(value) == theirs(value)


def test_a_naive_time_is_refused_by_the_fast_converter_too() -> None:
    ours = bulk.converter(UTCDateTime(), sqlite.dialect())
    assert ours is not None
    with pytest.raises(ValueError, match="naive"):
        ours(datetime(2026, 11, 24, 10, 0))


def test_a_query_through_the_driver_reads_what_sqlalchemy_reads(engine: Engine) -> None:
    """bulk.first: the same values, of the same types (aware UTC times, booleans, NULLs, a
    constant bound in the statement itself), as `execute(...).first()`."""
    from store import optouts, outbox

    message = outbox.NEW_ROW | {
        "id": "msg_q", "channel": "whatsapp", "account": "91856321412",
        "recipient": "91856321432", "route": "sms", "status": "sending",
        "request": {"message": {"type": "text"}}, "client_ref": "msg_q",
        "created_at": NOW, "status_at": WHOLE_SECOND, "flagged": True,
        "first_answer": {"id": "msg_q"}}
    with Session(engine) as session, session.begin():
        _conversation(session)
        outbox.add_row(session, message)
        optouts.record(session, customer="91856321432", opted_out=True, source="test", at=NOW)
    cases = [
        (outbox._FOR_ANSWER, {"id": "msg_q", "vendor_message_id": "wamid.x"}),
        (outbox._FOR_ANSWER, {"id": "msg_missing", "vendor_message_id": None}),
        (outbox._ROUTE_FACTS, {"channel": "whatsapp", "account": "91856321412",
                               "customer": "91856321432"}),
        (outbox._ROUTE_FACTS, {"channel": "whatsapp", "account": "91856321412",
                               "customer": "nobody"}),
    ]
    with Session(engine) as session, session.begin():
        connection = session.connection()
        for statement, params in cases:
            theirs = connection.execute(statement, params).first()
            ours = bulk.first(connection, statement, params)
            if theirs is None:
                assert ours is None
                continue
            assert ours == dict(theirs._mapping)
            assert [type(v) for v in ours.values()] == [type(v) for v in theirs]
    with engine.connect() as connection:
        found = bulk.first(connection, outbox._FOR_ANSWER,
                           {"id": "msg_q", "vendor_message_id": None})
    assert found is not None
    assert (found["created_at"], found["flagged"], found["first_answer_missing"],
            found["conversation_last_inbound_at"], found["has_orphans"]) == \
        (NOW, True, False, NOW, False)
    assert found["status_at"] == WHOLE_SECOND and found["status_at"].tzinfo is UTC
