"""GET /v1/reports/delivery against the hand-worked scenario (tests/receiver/report_scenario.py),
on SQLite and PostgreSQL; and the pure figures (percentiles, masking, grouping)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from receiver import reports
from receiver.app import create_app
from receiver.settings import Settings
from store import keys
from store.reports import DeliveryRow, delivery_rows
from tests.conftest import FakeClock
from tests.receiver.report_scenario import NOW, SINCE, UNTIL, A, B, seed
from tests.settling import SettlingClient

URL = "/v1/reports/delivery"
RANGE = {"since": SINCE, "until": UNTIL}

TOTALS = {
    "submitted": 14, "accepted": 11, "sent": 10, "delivered": 7, "read": 2, "failed": 3,
    "rejected": 2, "expired": 1,
    "delivery_rate": round(7 / 11, 4),
    "accept_to_delivery_seconds": {"count": 7, "median": 30.0, "p95": 300.0},
    "failure_reasons": [
        {"code": "131026", "reason": "message undeliverable", "count": 2},
        {"code": "UNDELIV", "reason": "undelivered", "count": 1},
        {"code": "opted_out", "reason": "refused before sending", "count": 1},
        {"code": "window_closed", "reason": "refused before sending", "count": 1},
    ],
    "routes": {"custom": 6, "template": 2, "sms": 4, "none": 2},
    "refused": {"window_closed": 1, "opted_out": 1},
    "billable": {"total": 5, "by_conversation_type": {"marketing": 1, "service": 4}},
    "sms_cost": {"INR": {"amount": "0.5", "messages": 1, "segments": 1},
                 "USD": {"amount": "0.03", "messages": 2, "segments": 3}},
}


def _figures(**changes: Any) -> dict[str, Any]:
    """Zeroes, with `changes`."""
    base: dict[str, Any] = {
        "submitted": 0, "accepted": 0, "sent": 0, "delivered": 0, "read": 0, "failed": 0,
        "rejected": 0, "expired": 0, "delivery_rate": None,
        "accept_to_delivery_seconds": {"count": 0, "median": None, "p95": None},
        "failure_reasons": [], "routes": {"custom": 0, "template": 0, "sms": 0, "none": 0},
        "refused": {"window_closed": 0, "opted_out": 0},
        "billable": {"total": 0, "by_conversation_type": {}}, "sms_cost": {},
    }
    return {**base, **changes}


BY_DAY_AND_CHANNEL = [
    {"day": "2026-11-22", "channel": "sms", **_figures(
        submitted=1, accepted=1, sent=1, delivered=1, delivery_rate=1.0,
        accept_to_delivery_seconds={"count": 1, "median": 60.0, "p95": 60.0},
        routes={"custom": 0, "template": 0, "sms": 1, "none": 0},
        sms_cost={"USD": {"amount": "0.01", "messages": 1, "segments": 1}})},
    {"day": "2026-11-22", "channel": "whatsapp", **_figures(
        submitted=4, accepted=3, sent=3, delivered=2, read=1, failed=1, rejected=1,
        delivery_rate=round(2 / 3, 4),
        accept_to_delivery_seconds={"count": 2, "median": 20.0, "p95": 30.0},
        failure_reasons=[{"code": "131026", "reason": "message undeliverable", "count": 1},
                         {"code": "window_closed", "reason": "refused before sending",
                          "count": 1}],
        routes={"custom": 2, "template": 1, "sms": 0, "none": 1},
        refused={"window_closed": 1, "opted_out": 0},
        billable={"total": 2, "by_conversation_type": {"service": 2}})},
    {"day": "2026-11-23", "channel": "sms", **_figures(
        submitted=2, accepted=2, sent=1, delivered=1, failed=1, delivery_rate=0.5,
        accept_to_delivery_seconds={"count": 1, "median": 45.0, "p95": 45.0},
        failure_reasons=[{"code": "UNDELIV", "reason": "undelivered", "count": 1}],
        routes={"custom": 0, "template": 0, "sms": 2, "none": 0},
        sms_cost={"INR": {"amount": "0.5", "messages": 1, "segments": 1}})},
    {"day": "2026-11-23", "channel": "whatsapp", **_figures(
        submitted=7, accepted=5, sent=5, delivered=3, read=1, failed=1, rejected=1, expired=1,
        delivery_rate=0.6,
        accept_to_delivery_seconds={"count": 3, "median": 20.0, "p95": 300.0},
        failure_reasons=[{"code": "131026", "reason": "message undeliverable", "count": 1},
                         {"code": "opted_out", "reason": "refused before sending", "count": 1}],
        routes={"custom": 4, "template": 1, "sms": 1, "none": 1},
        refused={"window_closed": 0, "opted_out": 1},
        billable={"total": 3, "by_conversation_type": {"marketing": 1, "service": 2}},
        sms_cost={"USD": {"amount": "0.02", "messages": 1, "segments": 2}})},
]


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    seed(engine)
    return engine


@pytest.fixture
def reports_client(settings: Settings, seeded: Engine) -> Any:
    with SettlingClient(create_app(settings, clock=FakeClock(NOW))) as client:
        yield client


def _get(client: TestClient, auth: dict[str, str], **params: str) -> Any:
    response = client.get(URL, params=params, headers=auth)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_figure_by_day_and_channel(reports_client: TestClient,
                                         auth: dict[str, str]) -> None:
    body = _get(reports_client, auth, **RANGE, group_by="day,channel")

    assert body["since"] == "2026-11-22T00:00:00Z"
    assert body["until"] == "2026-11-24T00:00:00Z"
    assert body["group_by"] == ["day", "channel"]
    assert body["totals"] == TOTALS
    assert body["groups"] == BY_DAY_AND_CHANNEL


def test_no_grouping_is_one_group_equal_to_the_totals(reports_client: TestClient,
                                                      auth: dict[str, str]) -> None:
    body = _get(reports_client, auth, **RANGE, group_by="")
    assert body["groups"] == [TOTALS]


def test_grouped_by_route(reports_client: TestClient, auth: dict[str, str]) -> None:
    body = _get(reports_client, auth, **RANGE, group_by="route")
    by_route = {g["route"]: g for g in body["groups"]}
    assert sorted(by_route) == ["custom", "none", "sms", "template"]
    assert by_route["custom"]["submitted"] == 6
    # custom: m01 10 s, m02 30 s, m06 20 s, m14 15 s -> median (15+20)/2, p95 the 4th
    assert by_route["custom"]["accept_to_delivery_seconds"] == {"count": 4, "median": 17.5,
                                                                "p95": 30.0}
    assert by_route["sms"]["delivery_rate"] == 0.75
    assert by_route["none"]["refused"] == {"window_closed": 1, "opted_out": 1}


def test_accounts_are_masked_by_default(reports_client: TestClient,
                                        auth: dict[str, str]) -> None:
    body = _get(reports_client, auth, **RANGE, group_by="account")
    assert [(g["account"], g["submitted"]) for g in body["groups"]] == [
        ("*******1412", 10), ("*******1499", 4)]
    assert A not in reports_client.get(URL, params={**RANGE, "group_by": "account"},
                                       headers=auth).text


def test_an_env_key_may_ask_for_whole_numbers(reports_client: TestClient,
                                              auth: dict[str, str]) -> None:
    body = _get(reports_client, auth, **RANGE, group_by="account", show_numbers="true")
    assert [g["account"] for g in body["groups"]] == [A, B]


def _db_key(engine: Engine, accounts: list[str] | None) -> dict[str, str]:
    with Session(engine) as session, session.begin():
        _, key = keys.create(session, name="reporter", accounts=accounts, now=NOW)
    return {"Authorization": f"Bearer {key}"}


def test_a_scoped_key_sees_only_its_accounts(reports_client: TestClient,
                                             seeded: Engine) -> None:
    scoped = _db_key(seeded, [B])
    body = _get(reports_client, scoped, **RANGE, group_by="account")
    # B: m06 (read, 20 s), m08 (failed), m10 (opted out), m14 (delivered, 15 s)
    assert [g["account"] for g in body["groups"]] == ["*******1499"]
    totals = body["totals"]
    assert (totals["submitted"], totals["accepted"], totals["delivered"], totals["failed"],
            totals["rejected"]) == (4, 3, 2, 1, 1)
    assert totals["accept_to_delivery_seconds"] == {"count": 2, "median": 17.5, "p95": 20.0}


def test_a_database_key_may_not_see_whole_numbers(reports_client: TestClient,
                                                  seeded: Engine) -> None:
    for accounts in ([B], None):
        response = reports_client.get(URL, params={**RANGE, "show_numbers": "true"},
                                      headers=_db_key(seeded, accounts))
        assert response.status_code == 403
        assert response.json()["error"] == "numbers_not_allowed"


def test_a_key_scoped_to_nothing_we_know_sees_nothing(reports_client: TestClient,
                                                      seeded: Engine) -> None:
    body = _get(reports_client, _db_key(seeded, ["0000000"]), **RANGE)
    assert body["groups"] == []
    assert body["totals"]["submitted"] == 0


def test_channel_filter(reports_client: TestClient, auth: dict[str, str]) -> None:
    body = _get(reports_client, auth, **RANGE, channel="sms", group_by="")
    assert body["totals"]["submitted"] == 3
    assert body["totals"]["sms_cost"] == {"INR": {"amount": "0.5", "messages": 1, "segments": 1},
                                          "USD": {"amount": "0.01", "messages": 1,
                                                  "segments": 1}}


def test_default_range_is_the_last_seven_days(reports_client: TestClient,
                                              auth: dict[str, str]) -> None:
    body = _get(reports_client, auth)
    assert body["since"] == "2026-11-17T10:00:00Z"
    assert body["until"] == "2026-11-24T10:00:00Z"
    assert body["group_by"] == ["day"]
    # m01..m14 and x01, x02 (on the 21st and the 24th) are all within the last 7 days
    assert body["totals"]["submitted"] == 16
    assert [g["day"] for g in body["groups"]] == ["2026-11-21", "2026-11-22", "2026-11-23",
                                                 "2026-11-24"]


def test_times_with_zones(reports_client: TestClient, auth: dict[str, str]) -> None:
    body = _get(reports_client, auth, since="2026-11-23T09:00:00+01:00",
                until="2026-11-23T10:00:00Z", group_by="")
    # [08:00Z, 10:00Z): m06 (08:00) and m07 (09:00)
    assert body["since"] == "2026-11-23T08:00:00Z"
    assert body["totals"]["submitted"] == 2
    # The same with the '+' left unencoded in the URL (it arrives as a space).
    raw = reports_client.get(f"{URL}?since=2026-11-23T09:00:00+01:00&until=2026-11-23T10:00:00Z",
                             headers=auth)
    assert raw.json()["since"] == "2026-11-23T08:00:00Z"


def test_csv_parses_back_to_the_same_figures(reports_client: TestClient,
                                             auth: dict[str, str]) -> None:
    response = reports_client.get(URL, params={**RANGE, "group_by": "day,channel",
                                               "format": "csv"}, headers=auth)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))

    assert len(rows) == 4
    for row, expected in zip(rows, BY_DAY_AND_CHANNEL, strict=True):
        assert (row["day"], row["channel"]) == (expected["day"], expected["channel"])
        for name in ("submitted", *reports.STATUSES):
            assert int(row[name]) == expected[name]
        assert float(row["delivery_rate"]) == expected["delivery_rate"]
        timing = expected["accept_to_delivery_seconds"]
        assert float(row["accept_to_delivery_median_s"]) == timing["median"]
        assert float(row["accept_to_delivery_p95_s"]) == timing["p95"]
        for route, n in expected["routes"].items():
            assert int(row[f"route_{route}"]) == n
        for reason, n in expected["refused"].items():
            assert int(row[f"refused_{reason}"]) == n
        assert int(row["billable"]) == expected["billable"]["total"]
        for kind in ("service", "marketing"):
            assert int(row[f"billable_{kind}"]) == \
                expected["billable"]["by_conversation_type"].get(kind, 0)
        for currency in ("USD", "INR"):
            cost = expected["sms_cost"].get(currency)
            assert row[f"sms_cost_{currency}"] == (cost["amount"] if cost else "0")
    whatsapp_23 = rows[3]
    assert whatsapp_23["top_failure_code"] == "131026"
    assert whatsapp_23["top_failure_count"] == "1"
    assert whatsapp_23["failure_reasons"] == (
        "[131026] message undeliverable = 1; [opted_out] refused before sending = 1")
    assert rows[0]["top_failure_code"] == ""


@pytest.mark.parametrize(("params", "field"), [
    ({"group_by": "day,colour"}, "group_by"),
    ({"format": "xml"}, "format"),
    ({"since": "yesterday"}, "since"),
    ({"until": "2026-13-01"}, "until"),
    ({"since": "2026-11-23", "until": "2026-11-22"}, "since"),
    ({"since": "2020-01-01", "until": "2026-11-22"}, "since"),
    ({"channel": "fax"}, "channel"),
    ({"show_numbers": "maybe"}, "show_numbers"),
])
def test_bad_parameters_are_422_naming_the_field(reports_client: TestClient,
                                                 auth: dict[str, str], params: dict[str, str],
                                                 field: str) -> None:
    response = reports_client.get(URL, params=params, headers=auth)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["error"] == "invalid_parameter"


def test_no_key_is_401(reports_client: TestClient) -> None:
    assert reports_client.get(URL).status_code == 401
    # The API takes the key only as a header; ?key= is for the page.
    assert reports_client.get(URL, params={"key": "test-api-key"}).status_code == 401


def test_rows_are_read_in_chunks_without_gaps_or_repeats(seeded: Engine) -> None:
    since, until = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    with Session(seeded) as session:
        whole = [r.id for r in delivery_rows(session, since=since, until=until)]
        chunked = [r.id for r in delivery_rows(session, since=since, until=until, chunk=3)]
        none = list(delivery_rows(session, since=since, until=until, accounts=[]))
    assert len(whole) == 16
    assert chunked == whole
    assert none == []


# -- the pure parts ---------------------------------------------------------------------

@pytest.mark.parametrize(("values", "median", "p95"), [
    ([], None, None),
    ([7.0], 7.0, 7.0),
    ([1.0, 2.0], 1.5, 2.0),
    ([3.0, 1.0, 2.0], 2.0, 3.0),
    ([float(n) for n in range(1, 21)], 10.5, 19.0),  # ceil(0.95*20) = 19th
    ([float(n) for n in range(1, 22)], 11.0, 20.0),  # ceil(0.95*21) = 20th
])
def test_median_and_nearest_rank_p95(values: list[float], median: float | None,
                                     p95: float | None) -> None:
    assert reports.median(values) == median
    assert reports.percentile(values, 95) == p95


@pytest.mark.parametrize(("value", "masked"), [
    ("91856321412", "*******1412"), ("wxid_abcdef1234", "***********1234"), ("123", "***"),
    ("1234", "****"), ("12345", "*2345"),
])
def test_mask_keeps_the_last_four(value: str, masked: str) -> None:
    assert reports.mask(value) == masked


def test_group_by_parsing() -> None:
    assert reports.parse_group_by(None) == ("day",)
    assert reports.parse_group_by("") == ()
    assert reports.parse_group_by(" Channel , day,channel") == ("channel", "day")
    with pytest.raises(reports.BadGroupBy, match="colour"):
        reports.parse_group_by("day,colour")


def test_odd_costs_are_skipped_not_fatal() -> None:
    at = datetime(2026, 11, 22, tzinfo=UTC)
    rows = [DeliveryRow(id=f"m{i}", created_at=at, channel="sms", account=A, route="sms",
                        status="delivered", cost=cost)
            for i, cost in enumerate([
                {"pay": "abc", "currency": "USD"}, {"pay": "NaN"}, {"pay": True},
                {"currency": "USD"}, {"pay": 0.1, "currency": "USD"},
                {"pay": "0.2", "chargeCnt": "x"}])]
    report = reports.build_report(rows, since=at, until=at, group_by=())
    assert report.totals["sms_cost"] == {
        "USD": {"amount": "0.1", "messages": 1, "segments": 0},
        "unknown": {"amount": "0.2", "messages": 1, "segments": 0}}


def test_csv_cells_never_start_a_formula() -> None:
    at = datetime(2026, 11, 22, tzinfo=UTC)
    row = DeliveryRow(id="m1", created_at=at, channel="whatsapp", account="=cmd|calc", route=None,
                      status="failed", failed_at=at, failure_code="-68",
                      failure_reason="=HYPERLINK()")
    report = reports.build_report([row], since=at, until=at, group_by=("account",))
    parsed = next(csv.DictReader(io.StringIO(report.as_csv())))
    assert parsed["account"] == "'=cmd|calc"
    assert parsed["top_failure_code"] == "-68"  # a number stays a number
    assert parsed["top_failure_reason"] == "'=HYPERLINK()"
