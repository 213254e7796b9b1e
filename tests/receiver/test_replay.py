"""`inbox replay`: stored bodies re-read with today's parsers and settings; what is new is
applied, nothing is applied twice, and the quarantine gives back what can now be read."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text
from starlette.testclient import TestClient

from receiver.app import create_app
from receiver.applier import APPLY_LOCK
from receiver.cli import main
from receiver.replay import PAGE, ReplayReport, replay
from receiver.settings import MAX_BODY_BYTES, Settings
from tests.conftest import DATA, TOKEN, FakeClock
from tests.settling import SettlingClient

WEBHOOKS = DATA / "webhooks"
YZJ_KEY = "replywindowTestVectorKey32bytes!"
WA_APP = "xJdRmKR3"

ITNIO_WA = f"/webhooks/itnio/whatsapp/{TOKEN}"
ITNIO_SMS = f"/webhooks/itnio/sms/{TOKEN}"
YZJ = f"/webhooks/yzj/{TOKEN}"

# Every example body, each to its route: uplinks, statuses, templates, SMS, WeCom.
EXAMPLES = [
    (ITNIO_WA, "itnio_wa_uplink_text.json"),
    (ITNIO_WA, "itnio_wa_uplink_image.json"),
    (ITNIO_WA, "itnio_wa_status_delivered.json"),
    (ITNIO_WA, "itnio_wa_status_failed.json"),
    (ITNIO_WA, "itnio_wa_template_status.json"),
    (ITNIO_SMS, "itnio_sms_dlr.json"),
    (ITNIO_SMS, "itnio_sms_dlr_single_quoted.txt"),
    (ITNIO_SMS, "itnio_sms_mo.json"),
    (YZJ, "yzj_chatmsg_inbound.json"),
    (YZJ, "yzj_chatmsg_echo.json"),
    (YZJ, "yzj_chatmsg_send_fail.json"),
]

COUNTED = ("conversations", "chat_messages", "status_events", "event_keys", "templates",
           "inbox_bodies", "quarantined_bodies")


def _settings(db_url: str, **overrides: Any) -> Settings:
    return Settings(database_url=db_url, webhook_token=TOKEN, api_keys="test-api-key",
                    run_scheduler=False, _env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture
def app_with(db_url: str, clock: FakeClock) -> Iterator[Any]:
    """Start the app with these settings overrides (the clock is the test's)."""
    clients: list[TestClient] = []

    def start(**overrides: Any) -> TestClient:
        client = SettlingClient(create_app(_settings(db_url, **overrides), clock=clock))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def _post(client: TestClient, path: str, body: bytes, status: int = 200) -> dict[str, Any]:
    response = client.post(path, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text
    return response.json()


def _example(name: str) -> bytes:
    return (WEBHOOKS / name).read_bytes()


def _uplink(message_id: str, app_id: str, *, customer: str = "91856321432",
            timestamp: int = 1795514400) -> bytes:
    """A WhatsApp text from `customer` (2026-11-24 10:00 UTC by default)."""
    return json.dumps({
        "appId": app_id, "channelType": 0, "messageId": message_id, "timestamp": timestamp,
        "eventType": "up-message-event", "businessPhone": "91856321412",
        "from": {"phone": customer, "name": "Alice"},
        "message": {"type": "text", "text": {"body": "hello?"}},
    }).encode()


def _rows(engine: Engine, sql: str, **params: Any) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text(sql), params)]


def _snapshot(engine: Engine) -> dict[str, Any]:
    """Everything replay could change, in a comparable form."""
    snap: dict[str, Any] = {
        table: _rows(engine, f"SELECT COUNT(*) FROM {table}")[0][0] for table in COUNTED
    }
    snap["conversation_rows"] = _rows(engine, "SELECT * FROM conversations ORDER BY id")
    snap["event_key_rows"] = _rows(engine, "SELECT key, inbox_body_id FROM event_keys ORDER BY key")
    snap["body_states"] = _rows(engine,
                                "SELECT id, state, event_count FROM inbox_bodies ORDER BY id")
    snap["templates_rows"] = _rows(engine, "SELECT * FROM templates ORDER BY id")
    snap["status_rows"] = _rows(
        engine, "SELECT channel, vendor_message_id, client_ref, status, occurred_at, inbox_body_id"
                " FROM status_events ORDER BY id")
    return snap


def _replay(engine: Engine, settings: Settings, now: datetime) -> ReplayReport:
    return replay(engine, settings=settings, states=None, quarantined=True, now=now)


def _quarantine(engine: Engine) -> list[tuple[Any, ...]]:
    return _rows(engine, "SELECT id, error, resolved_at, inbox_body_id, received_at "
                         "FROM quarantined_bodies ORDER BY id")


def _wecom_conversations(engine: Engine) -> list[tuple[Any, ...]]:
    return _rows(engine, "SELECT account, customer, last_inbound_at FROM conversations "
                         "WHERE channel = 'wecom'")


def _same_instant(stored: Any, expected: datetime) -> bool:
    """A time read back with raw SQL: aware on PostgreSQL, naive UTC text/datetime on SQLite."""
    value = stored if isinstance(stored, datetime) else datetime.fromisoformat(str(stored))
    if value.tzinfo is None:
        return value == expected.replace(tzinfo=None)
    return value == expected


# --- idempotence --------------------------------------------------------------------------

def test_replaying_twice_changes_nothing(client: TestClient, engine: Engine,
                                         settings: Settings, clock: FakeClock) -> None:
    for path, name in EXAMPLES:
        _post(client, path, _example(name))
    _post(client, ITNIO_WA, _example("itnio_wa_uplink_text.json"))  # the vendor repeats one
    before = _snapshot(engine)
    states = {state for _, state, _ in before["body_states"]}
    assert before["inbox_bodies"] == len(EXAMPLES) + 1
    assert states <= {"applied", "duplicate"}, before["body_states"]
    assert "duplicate" in states
    assert before["conversations"] > 0 and before["chat_messages"] > 0
    assert before["status_events"] > 0

    clock.advance(hours=1)
    first = _replay(engine, settings, clock())
    clock.advance(hours=1)
    second = _replay(engine, settings, clock())

    assert _snapshot(engine) == before
    for report in (first, second):
        assert sum(report.bodies.values()) == len(EXAMPLES) + 1
        assert set(report.bodies) <= {"applied", "duplicate"}
        assert report.recovered == 0 and report.still_unreadable == 0


@pytest.mark.postgres
def test_replay_takes_its_turn_with_the_appliers(client: TestClient, engine: Engine,
                                                settings: Settings, clock: FakeClock,
                                                db_url: str) -> None:
    """A page is read under the appliers' lock: what an applier wrote in its turn is what the
    replay reads, not a state the replay would then write over."""
    if not db_url.startswith("postgresql"):
        pytest.skip("the appliers' lock is PostgreSQL's (SQLite's writers take turns anyway)")
    _post(client, ITNIO_WA, _example("itnio_wa_uplink_text.json"))
    [(body_id, _)] = _rows(engine, "SELECT id, state FROM inbox_bodies")
    done: list[ReplayReport] = []
    with engine.connect() as applier:  # an applier in its turn, writing the body
        applier.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": APPLY_LOCK})
        applier.execute(text("UPDATE inbox_bodies SET detail = 'written in its turn' "
                             "WHERE id = :id"), {"id": body_id})
        replaying = threading.Thread(
            target=lambda: done.append(_replay(engine, settings, clock())))
        replaying.start()
        try:
            # The replay waits for the lock itself (not for the row, after reading the page).
            deadline = time.monotonic() + 30
            while not _rows(engine, "SELECT 1 FROM pg_locks WHERE locktype = 'advisory' "
                                    "AND NOT granted"):
                assert replaying.is_alive() and time.monotonic() < deadline, \
                    "the replay did not wait for the appliers' lock"
                time.sleep(0.01)
            assert not done
        finally:
            applier.commit()
            replaying.join()

    assert done[0].bodies == {"applied": 1}
    assert _rows(engine, "SELECT state, detail FROM inbox_bodies") == [
        ("applied", "written in its turn")]


def test_replay_goes_through_every_page_of_the_archive(client: TestClient, engine: Engine,
                                                       settings: Settings,
                                                       clock: FakeClock) -> None:
    count = PAGE + 5  # more than one page
    for n in range(count):
        _post(client, ITNIO_WA, _uplink(f"wamid.PAGE{n}", "SOMEAPP", customer=f"9185632{n:04d}"))
    before = _snapshot(engine)

    report = _replay(engine, settings, clock())

    assert report.bodies == {"applied": count}
    assert _snapshot(engine) == before


def test_replay_of_an_empty_archive_reports_nothing(engine: Engine, settings: Settings,
                                                   clock: FakeClock) -> None:
    report = _replay(engine, settings, clock())

    assert sum(report.bodies.values()) == 0
    assert "0 stored bodies" in report.summary()


def test_an_applied_body_stays_applied_when_the_configuration_narrows(
        app_with: Any, engine: Engine, db_url: str, clock: FakeClock) -> None:
    """Its effects are in the store: a stricter appId setting later does not undo them, and
    the body is not relabelled as if they were not."""
    client = app_with()
    _post(client, ITNIO_WA, _uplink("wamid.NARROW", "SOMEAPP"))
    _post(client, YZJ, _example("yzj_chatmsg_inbound.json"))  # plaintext: no key then
    before = _snapshot(engine)
    assert {state for _, state, _ in before["body_states"]} == {"applied"}

    later = _settings(db_url, itnio_wa_app_id=WA_APP, yzj_encoding_aes_key=YZJ_KEY)
    _replay(engine, later, clock())

    assert _snapshot(engine) == before


# --- flagged bodies -----------------------------------------------------------------------

def test_a_flagged_body_is_applied_once_its_app_id_is_configured(
        app_with: Any, engine: Engine, db_url: str, clock: FakeClock) -> None:
    client = app_with(itnio_wa_app_id=WA_APP)
    received_at = clock()
    _post(client, ITNIO_WA, _uplink("wamid.FLAGGED1", "OTHER"))
    assert _rows(engine, "SELECT state FROM inbox_bodies") == [("flagged",)]
    assert _rows(engine, "SELECT COUNT(*) FROM conversations") == [(0,)]

    clock.advance(minutes=5)
    unchanged = _replay(engine, _settings(db_url, itnio_wa_app_id=WA_APP), clock())
    assert unchanged.bodies == {"flagged": 1}
    assert _rows(engine, "SELECT COUNT(*) FROM conversations") == [(0,)]

    clock.advance(minutes=5)
    configured = _settings(db_url, itnio_wa_app_id="OTHER")
    report = _replay(engine, configured, clock())

    assert report.bodies == {"applied": 1}
    ((state, applied_at),) = _rows(engine, "SELECT state, applied_at FROM inbox_bodies")
    assert state == "applied"
    assert _same_instant(applied_at, clock())  # when its effects were applied
    conversations = _rows(engine, "SELECT channel, account, customer, last_inbound_at "
                                  "FROM conversations")
    assert [row[:3] for row in conversations] == [("whatsapp", "91856321412", "91856321432")]
    # Applied as received then, not now.
    ((message_received_at,),) = _rows(engine, "SELECT received_at FROM chat_messages")
    assert _same_instant(message_received_at, received_at)

    # The window is open through the API, as if the uplink had been applied when it came.
    with SettlingClient(create_app(configured, clock=clock)) as api:
        window = api.get("/v1/windows/whatsapp/91856321412/91856321432",
                         headers={"Authorization": "Bearer test-api-key"}).json()
    assert window["open"] is True

    before = _snapshot(engine)
    again = _replay(engine, configured, clock())
    assert again.bodies == {"applied": 1}
    assert _snapshot(engine) == before


def test_replay_can_be_limited_to_some_states(app_with: Any, engine: Engine, db_url: str,
                                              clock: FakeClock) -> None:
    client = app_with(itnio_wa_app_id=WA_APP)
    _post(client, ITNIO_WA, _uplink("wamid.MINE", WA_APP, customer="91856321433"))
    _post(client, ITNIO_WA, _uplink("wamid.THEIRS", "OTHER", customer="91856321434"))

    report = replay(engine, settings=_settings(db_url, itnio_wa_app_id="OTHER"),
                    states=["flagged"], quarantined=False, now=clock())

    assert report.bodies == {"applied": 1}
    assert sorted(_rows(engine, "SELECT state FROM inbox_bodies")) == [("applied",),
                                                                      ("applied",)]


# --- the quarantine -----------------------------------------------------------------------

def test_a_quarantined_body_is_recovered_when_it_can_be_read(
        client: TestClient, engine: Engine, db_url: str, clock: FakeClock) -> None:
    received_at = clock()
    answer = _post(client, YZJ, _example("yzj_test_vector_cipher.txt"), status=400)
    assert answer["error"]
    ((_, _, resolved_at, body_id, _),) = _quarantine(engine)
    assert resolved_at is None and body_id is None
    assert _rows(engine, "SELECT COUNT(*) FROM inbox_bodies") == [(0,)]

    clock.advance(hours=2)
    with_key = _settings(db_url, yzj_encoding_aes_key=YZJ_KEY)
    report = _replay(engine, with_key, clock())

    assert report.recovered == 1 and report.still_unreadable == 0
    ((inbox_id, vendor, route, state, stored_at, body),) = _rows(
        engine, "SELECT id, vendor, route, state, received_at, body FROM inbox_bodies")
    assert (vendor, route, state) == ("yzj", "wecom", "applied")
    assert bytes(body) == _example("yzj_test_vector_cipher.txt")
    assert _same_instant(stored_at, received_at)
    ((_, _, resolved_at, body_id, _),) = _quarantine(engine)
    assert _same_instant(resolved_at, clock())
    assert body_id == inbox_id
    assert [row[:2] for row in _wecom_conversations(engine)] == [
        ("1688851873049028", "7881302848173300")]
    assert _rows(engine, "SELECT text FROM chat_messages") == [("你好",)]

    before = _snapshot(engine)
    clock.advance(hours=1)
    again = _replay(engine, with_key, clock())
    assert again.recovered == 0 and again.still_unreadable == 0
    assert again.bodies == {"applied": 1}
    assert _snapshot(engine) == before
    ((_, _, resolved_again, _, _),) = _quarantine(engine)
    assert resolved_again == resolved_at


def test_a_quarantined_body_recovered_after_its_events_arrived_again_applies_nothing_twice(
        client: TestClient, engine: Engine, db_url: str, clock: FakeClock) -> None:
    """The vendor retried the same callback in plaintext, which was applied; recovering the
    encrypted copy from the quarantine must not add the message again."""
    _post(client, YZJ, _example("yzj_test_vector_cipher.txt"), status=400)
    _post(client, YZJ, _example("yzj_test_vector_plain.json"))
    before = _snapshot(engine)

    report = _replay(engine, _settings(db_url, yzj_encoding_aes_key=YZJ_KEY), clock())

    assert report.recovered == 1
    after = _snapshot(engine)
    for table in ("conversations", "chat_messages", "event_keys"):
        assert after[table] == before[table]
    assert after["inbox_bodies"] == before["inbox_bodies"] + 1
    assert after["body_states"][-1][1] == "duplicate"


def test_a_body_that_is_still_unreadable_stays_in_the_quarantine(
        client: TestClient, engine: Engine, settings: Settings, clock: FakeClock) -> None:
    _post(client, ITNIO_WA, b"this is not json", status=400)

    report = _replay(engine, settings, clock())

    assert report.recovered == 0 and report.still_unreadable == 1
    ((_, error, resolved_at, body_id, _),) = _quarantine(engine)
    assert error == "invalid_json"
    assert resolved_at is None and body_id is None
    assert _rows(engine, "SELECT COUNT(*) FROM inbox_bodies") == [(0,)]


def test_a_body_quarantined_as_too_large_stays_unreadable(
        client: TestClient, engine: Engine, settings: Settings, clock: FakeClock) -> None:
    # Its first MiB, which is what was kept, is a perfectly readable uplink: it must still
    # not be applied, since the vendor's body was more than what we kept.
    uplink = _uplink("wamid.TOOLARGE", "SOMEAPP")
    body = uplink + b" " * (MAX_BODY_BYTES + 1 - len(uplink))
    response = client.post(ITNIO_WA, content=body)
    assert response.status_code == 413, response.text
    ((_, error, _, _, _),) = _quarantine(engine)
    assert error == "payload_too_large"

    for _ in range(2):
        report = _replay(engine, settings, clock())
        assert report.recovered == 0 and report.still_unreadable == 1

    ((_, _, resolved_at, body_id, _),) = _quarantine(engine)
    assert resolved_at is None and body_id is None
    assert _rows(engine, "SELECT COUNT(*) FROM inbox_bodies") == [(0,)]
    assert _rows(engine, "SELECT COUNT(*) FROM conversations") == [(0,)]


def test_replay_can_leave_the_quarantine_alone(client: TestClient, engine: Engine,
                                               db_url: str, clock: FakeClock) -> None:
    _post(client, YZJ, _example("yzj_test_vector_cipher.txt"), status=400)

    report = replay(engine, settings=_settings(db_url, yzj_encoding_aes_key=YZJ_KEY),
                    states=None, quarantined=False, now=clock())

    assert report.recovered == 0
    ((_, _, resolved_at, _, _),) = _quarantine(engine)
    assert resolved_at is None


# --- the command --------------------------------------------------------------------------

@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, db_url: str) -> dict[str, str]:
    for name in list(os.environ):
        if name.startswith("REPLYWINDOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no developer's .env
    return {"REPLYWINDOW_DATABASE_URL": db_url, "REPLYWINDOW_WEBHOOK_TOKEN": TOKEN}


def test_inbox_replay_command_recovers_the_quarantine_and_is_idempotent(
        client: TestClient, engine: Engine, cli_env: dict[str, str]) -> None:
    for path, name in EXAMPLES[:3]:
        _post(client, path, _example(name))
    _post(client, YZJ, _example("yzj_test_vector_cipher.txt"), status=400)
    env = {**cli_env, "REPLYWINDOW_YZJ_ENCODING_AES_KEY": YZJ_KEY}

    first = CliRunner().invoke(main, ["inbox", "replay"], env=env, catch_exceptions=False)

    assert first.exit_code == 0, first.output
    assert "replayed 3 stored bodies" in first.stdout
    assert "1 recovered" in first.stdout
    assert len(_wecom_conversations(engine)) == 1
    assert _quarantine(engine)[0][2] is not None
    before = _snapshot(engine)

    second = CliRunner().invoke(main, ["inbox", "replay"], env=env, catch_exceptions=False)

    assert second.exit_code == 0, second.output
    assert "replayed 4 stored bodies" in second.stdout
    assert "0 recovered" in second.stdout
    assert _snapshot(engine) == before


def test_inbox_replay_command_without_the_quarantine(
        client: TestClient, engine: Engine, cli_env: dict[str, str]) -> None:
    _post(client, YZJ, _example("yzj_test_vector_cipher.txt"), status=400)
    env = {**cli_env, "REPLYWINDOW_YZJ_ENCODING_AES_KEY": YZJ_KEY}

    result = CliRunner().invoke(main, ["inbox", "replay", "--no-quarantined"], env=env,
                                catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "0 recovered" in result.stdout
    assert _quarantine(engine)[0][2] is None

