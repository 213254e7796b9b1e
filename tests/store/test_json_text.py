"""The JSON columns' text (store/json_text.py): orjson where it can, the standard library
for what orjson refuses, and every value read back as it went in, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlmodel import Session

from store import batch, conversations, json_text
from store.models import ChatMessage
from tests.conftest import DATA

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
# The 云真机 example's message content (Chinese text), with what only the fallback writes.
_EXAMPLE = json.loads((DATA / "webhooks" / "yzj_chatmsg_inbound.json").read_text())
CONTENT = {**_EXAMPLE[0]["data"][0]["content"], "big": 2 ** 70}


def test_text_is_json_that_reads_back_the_same() -> None:
    plain = {"type": "text", "text": {"body": "你好"}, "n": [1, 2.5, None, True]}
    assert json.loads(json_text.dumps(plain)) == plain
    assert "你好" in json_text.dumps(plain)  # as it is, not as \u escapes


def test_what_orjson_refuses_is_written_by_the_standard_library_in_the_same_form() -> None:
    for value in ({"big": 2 ** 70, "text": "你好"}, {1: "a key that is not a string"}):
        assert json_text.dumps(value) == json.dumps(value, ensure_ascii=False,
                                                    separators=(",", ":"))


def test_a_number_too_large_for_a_float_is_written_as_null_not_infinity() -> None:
    # json reads 1e400 as infinity; json.dumps would write Infinity, which is not JSON.
    assert json.loads(json_text.dumps(json.loads('{"amount": 1e400}'))) == {"amount": None}


def test_a_message_content_is_stored_and_read_back_whole(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        conversation_id = conversations.record_inbound(
            session, channel="whatsapp", account="91856321412", customer="91856321432",
            message_at=NOW, message_id="m0", customer_name=None, now=NOW)
        row = {"conversation_id": conversation_id, "channel": "whatsapp", "direction": "in",
               "vendor_message_id": "wamid.1", "msg_type": "text", "text": "你好",
               "content": CONTENT, "sent_at": NOW, "received_at": NOW, "inbox_body_id": None}
        batch.ADD_CHAT_MESSAGES.run(session.connection(), [row])  # through the driver
        session.add(ChatMessage(**{**row, "vendor_message_id": "wamid.2"}))  # the ORM
    with Session(engine) as session:
        stored = session.exec(select(ChatMessage.content)).scalars().all()  # type: ignore[call-overload]
    assert stored == [CONTENT, CONTENT]
