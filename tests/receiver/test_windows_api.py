"""GET /v1/windows: what a bot sees of the reply windows, at the edges, on both databases."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from store import db
from tests.conftest import DATA, TOKEN, FakeClock

WA = f"/webhooks/itnio/whatsapp/{TOKEN}"
BUSINESS, CUSTOMER = "91856321412", "91856321432"
WINDOW_URL = f"/v1/windows/whatsapp/{BUSINESS}/{CUSTOMER}"


def uplink(client: TestClient, clock: FakeClock, *, customer: str = CUSTOMER,
           message_id: str = "m1", ago: timedelta = timedelta(0)) -> None:
    body = json.loads((DATA / "webhooks" / "itnio_wa_uplink_text.json").read_text())
    body |= {"messageId": message_id, "timestamp": int((clock.now - ago).timestamp()),
             "from": {"phone": customer, "name": "C"}}
    assert client.post(WA, json=body).status_code == 200


def test_a_window_never_opened_is_closed_not_404(client: TestClient, auth: dict[str, str]) -> None:
    response = client.get(WINDOW_URL, headers=auth)

    assert response.status_code == 200
    assert response.json() == {
        "channel": "whatsapp", "business_phone": BUSINESS, "recipient": CUSTOMER, "open": False,
        "last_inbound_at": None, "expires_at": None, "closes_at": None, "seconds_left": 0,
        "unanswered": False,
    }


def test_an_inbound_message_opens_the_window(client: TestClient, clock: FakeClock,
                                             auth: dict[str, str]) -> None:
    uplink(client, clock)

    window = client.get(WINDOW_URL, headers=auth).json()
    assert window["open"] is True
    assert window["last_inbound_at"] == "2026-11-24T10:00:00Z"
    assert window["expires_at"] == "2026-11-25T09:58:00Z"  # 24 h less the 120 s margin
    assert window["closes_at"] == "2026-11-25T10:00:00Z"
    assert window["seconds_left"] == 24 * 3600 - 120
    assert window["unanswered"] is True


@pytest.mark.parametrize(
    ("after", "is_open", "seconds_left"),
    [
        (timedelta(hours=24, seconds=-121), True, 1),  # one second before the margin
        (timedelta(hours=24, seconds=-120), False, 0),  # exactly 24 h less the margin
        (timedelta(hours=24, seconds=-119), False, 0),  # one second after
        (timedelta(hours=24), False, 0),
    ],
)
def test_the_window_edge_to_the_second(client: TestClient, clock: FakeClock, auth: dict[str, str],
                                       after: timedelta, is_open: bool, seconds_left: int) -> None:
    uplink(client, clock)
    clock.advance(seconds=after.total_seconds())

    window = client.get(WINDOW_URL, headers=auth).json()
    assert (window["open"], window["seconds_left"]) == (is_open, seconds_left)


def test_a_later_message_extends_the_window(client: TestClient, clock: FakeClock,
                                            auth: dict[str, str]) -> None:
    uplink(client, clock, message_id="m1")
    clock.advance(hours=23)
    uplink(client, clock, message_id="m2")
    clock.advance(hours=2)

    assert client.get(WINDOW_URL, headers=auth).json()["open"] is True


def test_expiring_windows_are_listed_soonest_first(client: TestClient, clock: FakeClock,
                                                   auth: dict[str, str]) -> None:
    uplink(client, clock, customer="91800000001", message_id="a",
           ago=timedelta(hours=23, minutes=30))
    uplink(client, clock, customer="91800000002", message_id="b", ago=timedelta(hours=23))
    uplink(client, clock, customer="91800000003", message_id="c", ago=timedelta(hours=1))
    uplink(client, clock, customer="91800000004", message_id="d", ago=timedelta(hours=25))

    response = client.get("/v1/windows?expiring_within=3600", headers=auth)

    assert response.status_code == 200
    listed = [w["recipient"] for w in response.json()["windows"]]
    assert listed == ["91800000001", "91800000002"]
    every_open = client.get("/v1/windows", headers=auth).json()["windows"]
    assert [w["recipient"] for w in every_open] == ["91800000001", "91800000002", "91800000003"]


def test_unanswered_leaves_out_windows_a_reply_already_answered(
        client: TestClient, clock: FakeClock, auth: dict[str, str], engine: object) -> None:
    from sqlmodel import Session

    from store import conversations

    uplink(client, clock, customer="91800000001", message_id="a", ago=timedelta(hours=23))
    uplink(client, clock, customer="91800000002", message_id="b", ago=timedelta(hours=23))
    with Session(engine) as session, session.begin():  # type: ignore[call-overload]
        conversations.record_outbound(session, channel="whatsapp", account=BUSINESS,
                                      customer="91800000002", message_at=clock.now, now=clock.now)

    answered = client.get("/v1/windows?expiring_within=7200", headers=auth).json()["windows"]
    unanswered = client.get("/v1/windows?expiring_within=7200&unanswered=true",
                            headers=auth).json()["windows"]
    assert len(answered) == 2
    assert [w["recipient"] for w in unanswered] == ["91800000001"]


@pytest.mark.parametrize("query", ["expiring_within=-1", "expiring_within=abc",
                                   "expiring_within=999999", "unanswered=maybe", "limit=0"])
def test_bad_parameters_are_422_naming_the_field(client: TestClient, auth: dict[str, str],
                                                 query: str) -> None:
    response = client.get(f"/v1/windows?{query}", headers=auth)

    assert response.status_code == 422
    assert response.json()["field"] == query.split("=")[0]


def test_a_recipient_that_is_not_a_phone_number_is_422(client: TestClient,
                                                        auth: dict[str, str]) -> None:
    response = client.get(f"/v1/windows/whatsapp/{BUSINESS}/12ab", headers=auth)

    assert response.status_code == 422
    assert response.json()["error"] == "invalid_phone"


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "Basic dGVzdDp0ZXN0"}])
def test_no_or_a_wrong_key_is_401(client: TestClient, headers: dict[str, str]) -> None:
    response = client.get(WINDOW_URL, headers=headers)

    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready"}


def test_an_unknown_path_is_a_json_404(client: TestClient) -> None:
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("value", [
    "%C2%B2",  # superscript two: str.isdigit() says yes, int() says no
    "%D9%A1%D9%A0",  # Arabic-Indic "10"
    "1" * 5000,  # over Python's int() digit limit
    "0000001",  # seven digits: more than any bound here needs
    "%2B10", "10.0", "1e2", "%2010", "10%0A",
])
@pytest.mark.parametrize("field", ["limit", "expiring_within"])
def test_only_a_few_ascii_digits_are_a_whole_number(client: TestClient, auth: dict[str, str],
                                                   field: str, value: str) -> None:
    response = client.get(f"/v1/windows?{field}={value}", headers=auth)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["error"] == "invalid_parameter"


def test_six_ascii_digits_with_leading_zeros_are_a_whole_number(
        client: TestClient, auth: dict[str, str]) -> None:
    response = client.get("/v1/windows?limit=000010&expiring_within=003600", headers=auth)

    assert response.status_code == 200, response.text


@pytest.mark.parametrize(("business", "recipient", "field"), [
    (BUSINESS, f"{CUSTOMER}%0A", "recipient"),  # `$` would let a trailing newline by
    (f"{BUSINESS}%0A", CUSTOMER, "business_phone"),
    (BUSINESS, "%D9%A9%D9%A1%D9%A8%D9%A5%D9%A6%D9%A3%D9%A2%D9%A1%D9%A4%D9%A3%D9%A2",
     "recipient"),  # 91856321432 in Arabic-Indic digits
    (BUSINESS, "%EF%BC%99%EF%BC%91%EF%BC%98%EF%BC%95%EF%BC%96%EF%BC%93%EF%BC%92", "recipient"),
    (BUSINESS, f"%2B%2B{CUSTOMER}", "recipient"),
])
def test_a_phone_is_ascii_digits_and_nothing_after(client: TestClient, auth: dict[str, str],
                                                   business: str, recipient: str,
                                                   field: str) -> None:
    response = client.get(f"/v1/windows/whatsapp/{business}/{recipient}", headers=auth)

    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_phone"
    assert response.json()["field"] == field


def test_a_window_opened_by_a_push_with_a_plus_is_found_by_digits(
        client: TestClient, clock: FakeClock, auth: dict[str, str]) -> None:
    body = json.loads((DATA / "webhooks" / "itnio_wa_uplink_text.json").read_text())
    body |= {"timestamp": int(clock.now.timestamp()), "businessPhone": f"+{BUSINESS}",
             "from": {"phone": "+91 856-321-432", "name": "C"}}
    assert client.post(WA, json=body).status_code == 200

    for url in (WINDOW_URL, f"/v1/windows/whatsapp/%2B{BUSINESS}/%2B{CUSTOMER}"):
        window = client.get(url, headers=auth).json()
        assert window["open"] is True, url
        assert (window["business_phone"], window["recipient"]) == (BUSINESS, CUSTOMER)
    [listed] = client.get("/v1/windows", headers=auth).json()["windows"]
    assert (listed["business_phone"], listed["recipient"]) == (BUSINESS, CUSTOMER)


# --- keys from the database, remembered for a few seconds ------------------------------------

def _db_key(engine: Engine, clock: FakeClock, accounts: list[str] | None = None) -> str:
    from store import keys

    with Session(db.writer(engine)) as session, session.begin():
        _, key = keys.create(session, name="bot", accounts=accounts, now=clock.now)
    return key


def _revoke_elsewhere(engine: Engine) -> None:
    """What `replywindow keys revoke` in another process does: the row only."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("UPDATE api_keys SET revoked_at = created_at"))


def test_a_key_revoked_elsewhere_stops_working_once_the_cache_has_expired(
        client: TestClient, clock: FakeClock, engine: Engine) -> None:
    from receiver.auth import KEY_CACHE_TTL

    key = _db_key(engine, clock)
    bearer = {"Authorization": f"Bearer {key}"}
    assert client.get(WINDOW_URL, headers=bearer).status_code == 200  # verified, remembered

    _revoke_elsewhere(engine)

    clock.advance(seconds=KEY_CACHE_TTL.total_seconds() - 0.5)
    assert client.get(WINDOW_URL, headers=bearer).status_code == 200  # still remembered
    clock.advance(seconds=0.5)
    assert client.get(WINDOW_URL, headers=bearer).status_code == 401
    assert client.get("/v1/windows", headers=bearer).status_code == 401


def test_a_key_revoked_by_this_process_stops_working_at_once(
        client: TestClient, clock: FakeClock, engine: Engine) -> None:
    from store import keys

    key = _db_key(engine, clock)
    bearer = {"Authorization": f"Bearer {key}"}
    assert client.get(WINDOW_URL, headers=bearer).status_code == 200

    with Session(db.writer(engine)) as session, session.begin():
        keys.revoke(session, ref="bot", now=clock.now)

    assert client.get(WINDOW_URL, headers=bearer).status_code == 401


def test_a_remembered_key_keeps_its_scope(client: TestClient, clock: FakeClock,
                                          engine: Engine) -> None:
    uplink(client, clock)
    key = _db_key(engine, clock, accounts=[BUSINESS])
    bearer = {"Authorization": f"Bearer {key}"}
    other = f"/v1/windows/whatsapp/91800000000/{CUSTOMER}"

    for _ in range(2):  # the first verifies the key in the database, the second remembers it
        assert client.get(WINDOW_URL, headers=bearer).json()["open"] is True
        forbidden = client.get(other, headers=bearer)
        assert forbidden.status_code == 403
        assert forbidden.json()["error"] == "forbidden"


def test_a_wrong_key_is_never_remembered_and_a_new_one_works_at_once(
        client: TestClient, clock: FakeClock, engine: Engine) -> None:
    key = _db_key(engine, clock)
    for _ in range(3):
        assert client.get(WINDOW_URL, headers={"Authorization": f"Bearer {key}x"}
                          ).status_code == 401
    assert client.get(WINDOW_URL, headers={"Authorization": f"Bearer {key}"}).status_code == 200
    second = _db_key(engine, clock)
    assert client.get(WINDOW_URL, headers={"Authorization": f"Bearer {second}"}
                      ).status_code == 200


def test_the_key_cache_is_bounded_and_a_clock_gone_back_expires_it() -> None:
    from receiver.auth import Caller, KeyCache
    from store import keys

    now = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
    cache = KeyCache(ttl=timedelta(seconds=5), size=3)
    for n in range(5):
        cache.put(f"h{n}", Caller(f"db:{n}", None), now=now, revocations=keys.revocations())

    assert len(cache) == 3
    assert cache.get("h0", now) is None  # the oldest went first
    assert cache.get("h4", now) == Caller("db:4", None)
    assert cache.get("h4", now - timedelta(seconds=1)) is None
    assert cache.get("h4", now) is None  # and it is gone


# --- the lookup is answered before Starlette's router: the same answers as through it ---------

def test_the_window_is_compact_json_with_its_length(client: TestClient, clock: FakeClock,
                                                    auth: dict[str, str]) -> None:
    uplink(client, clock)

    response = client.get(WINDOW_URL, headers=auth)

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-length"] == str(len(response.content))
    assert response.content == json.dumps(response.json(), separators=(",", ":"),
                                          ensure_ascii=False).encode()
    assert list(response.json()) == ["channel", "business_phone", "recipient", "open",
                                     "last_inbound_at", "expires_at", "closes_at",
                                     "seconds_left", "unanswered"]


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_on_a_window_are_405_naming_the_allowed(
        client: TestClient, auth: dict[str, str], method: str) -> None:
    response = client.request(method, WINDOW_URL, headers=auth)

    assert response.status_code == 405
    assert response.json() == {"error": "method_not_allowed", "detail": "Method Not Allowed"}
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD"}


def test_head_on_a_window_has_the_headers_of_get(client: TestClient, auth: dict[str, str]) -> None:
    got = client.get(WINDOW_URL, headers=auth)
    head = client.head(WINDOW_URL, headers=auth)

    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == "application/json"
    assert head.headers["content-length"] == got.headers["content-length"]


def test_a_trailing_slash_redirects_to_the_window(client: TestClient,
                                                  auth: dict[str, str]) -> None:
    response = client.get(WINDOW_URL + "/", headers=auth, follow_redirects=False)

    assert response.status_code == 307
    assert response.headers["location"] == f"http://testserver{WINDOW_URL}"


@pytest.mark.parametrize("path", [f"/v1/windows/whatsapp/{BUSINESS}/{CUSTOMER}/more",
                                  f"/v1/windows/whatsapp/{BUSINESS}", "/v1/windows/whatsapp/",
                                  f"/v1/windows/whatsapp/{BUSINESS}//{CUSTOMER}"])
def test_a_path_that_is_not_a_window_is_a_json_404(client: TestClient, auth: dict[str, str],
                                                   path: str) -> None:
    response = client.get(path, headers=auth)

    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not Found"}


@pytest.mark.parametrize(("headers", "detail"), [
    ({}, "Send your API key as 'Authorization: Bearer <key>'."),
    ({"Authorization": "Bearer "}, "Send your API key as 'Authorization: Bearer <key>'."),
    ({"Authorization": "Bearer wrong"}, "That API key is not valid."),
])
def test_a_401_asks_for_a_bearer_key(client: TestClient, headers: dict[str, str],
                                     detail: str) -> None:
    response = client.get(WINDOW_URL, headers=headers)

    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": detail}
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "application/json"


def test_a_key_in_the_query_is_not_taken_for_a_window(client: TestClient) -> None:
    from tests.conftest import API_KEY

    assert client.get(f"{WINDOW_URL}?key={API_KEY}").status_code == 401


def test_a_lowercase_bearer_with_spaces_is_taken(client: TestClient) -> None:
    from tests.conftest import API_KEY

    response = client.get(WINDOW_URL, headers={"Authorization": f"bearer   {API_KEY}  "})

    assert response.status_code == 200


def test_the_403_and_422_bodies(client: TestClient, clock: FakeClock, engine: Engine,
                                auth: dict[str, str]) -> None:
    key = _db_key(engine, clock, accounts=[BUSINESS])

    forbidden = client.get(f"/v1/windows/whatsapp/91800000000/{CUSTOMER}",
                           headers={"Authorization": f"Bearer {key}"})
    invalid = client.get(f"/v1/windows/whatsapp/{BUSINESS}/12ab", headers=auth)

    assert forbidden.status_code == 403
    assert forbidden.json() == {"error": "forbidden",
                                "detail": "This API key is not scoped to that account."}
    assert "www-authenticate" not in forbidden.headers
    assert invalid.status_code == 422
    assert invalid.json() == {
        "error": "invalid_phone", "field": "recipient",
        "detail": "recipient must be a phone number of 7 to 14 digits (country code first)."}


def test_an_app_under_a_root_path_answers_windows_too(settings: object, clock: FakeClock,
                                                      auth: dict[str, str]) -> None:
    from receiver.app import create_app
    from tests.settling import SettlingClient

    app = create_app(settings, clock=clock)  # type: ignore[arg-type]
    with SettlingClient(app, root_path="/api") as api:
        uplink(api, clock)
        assert api.get(WINDOW_URL, headers=auth).json()["open"] is True
        assert api.get(f"/v1/windows/whatsapp/{BUSINESS}/12ab",
                       headers=auth).status_code == 422


def test_a_lookup_the_database_cannot_answer_is_a_logged_json_500(
        settings: object, clock: FakeClock, engine: Engine, auth: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy import text

    from receiver.app import create_app
    from tests.settling import SettlingClient

    app = create_app(settings, clock=clock)  # type: ignore[arg-type]
    with SettlingClient(app, raise_server_exceptions=False) as api:
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE conversations RENAME TO conversations_away"))
        try:
            response = api.get(WINDOW_URL, headers=auth)
        finally:
            with engine.begin() as conn:
                conn.execute(text("ALTER TABLE conversations_away RENAME TO conversations"))

    assert response.status_code == 500
    assert response.json() == {"error": "internal",
                               "detail": "Something went wrong on our side; it was logged."}
    [record] = [r for r in caplog.records if getattr(r, "action", None) == "unexpected_error"]
    assert record.exc_info is not None
