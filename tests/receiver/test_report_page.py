"""GET /reports: the delivery report as a page. Its charts carry their numbers as data
attributes; the hand-worked scenario (report_scenario.py) says what they must be. The last
test loads the page over HTTP in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uvicorn
from sqlalchemy import Engine
from sqlmodel import Session
from starlette.testclient import TestClient

from receiver.app import create_app
from receiver.settings import Settings
from store import keys
from tests.conftest import API_KEY, FakeClock
from tests.receiver.report_scenario import CUSTOMER, NOW, SINCE, UNTIL, A, B, seed, seed_windows
from tests.settling import SettlingClient

RANGE = {"since": SINCE, "until": UNTIL}
ROOT = Path(__file__).parent.parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"

# What the charts must show for the scenario over 22-23 Nov.
DAY_OUTCOMES = {
    ("2026-11-22", "delivered"): 3, ("2026-11-22", "read"): 1, ("2026-11-22", "failed"): 1,
    ("2026-11-22", "rejected"): 1, ("2026-11-22", "expired"): 0,
    ("2026-11-23", "delivered"): 4, ("2026-11-23", "read"): 1, ("2026-11-23", "failed"): 2,
    ("2026-11-23", "rejected"): 1, ("2026-11-23", "expired"): 1,
}
ROUTE_MIX = {"custom": 6, "template": 2, "sms": 4, "none": 2}
FAILURES = [("131026", 2), ("UNDELIV", 1), ("opted_out", 1), ("window_closed", 1)]
CARDS = {"submitted": "14", "accepted": "11", "delivered": "7", "read": "2",
         "delivery_rate": "0.6364", "median": "30.0", "p95": "300.0", "failed": "3",
         "rejected": "2", "expired": "1", "billable": "5"}
# 21 h and 19 h after the last inbound message, less the 120 s margin.
WINDOWS_LEFT = [2 * 3600 + 58 * 60, 4 * 3600 + 58 * 60]


class Elements(HTMLParser):
    """Every start tag with its attributes, in document order."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def having(self, attr: str) -> list[dict[str, str]]:
        return [a for _, a in self.tags if attr in a]


def check_charts(html: str) -> None:
    """The numbers drawn are the scenario's."""
    found = Elements(html)
    bars = {(a["data-day"], a["data-status"]): int(a["data-count"])
            for a in found.having("data-status") if "data-day" in a}
    assert bars == DAY_OUTCOMES
    assert {a["data-route"]: int(a["data-count"]) for a in found.having("data-route")} == ROUTE_MIX
    assert [(a["data-code"], int(a["data-count"])) for a in found.having("data-code")] == FAILURES
    assert {a["data-figure"]: a["data-value"] for a in found.having("data-figure")
            if a["data-figure"] in CARDS} == CARDS
    assert {a["data-refused"]: int(a["data-count"]) for a in found.having("data-refused")} == \
        {"window_closed": 1, "opted_out": 1}
    assert [int(a["data-seconds-left"]) for a in found.having("data-seconds-left")] == \
        WINDOWS_LEFT


def check_self_contained(html: str) -> None:
    found = Elements(html)
    for tag, attrs in found.tags:
        assert "src" not in attrs, tag
        assert attrs.get("href", "/reports").startswith("/reports"), tag
        assert tag not in ("link", "script", "iframe", "img"), tag
    assert "url(" not in html
    assert "@import" not in html


@pytest.fixture
def page_client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    seed(engine)
    seed_windows(engine)
    with SettlingClient(create_app(settings, clock=FakeClock(NOW))) as client:
        yield client


def _db_key(engine: Engine, accounts: list[str] | None) -> str:
    with Session(engine) as session, session.begin():
        _, key = keys.create(session, name="viewer", accounts=accounts, now=NOW)
    return key


def test_the_page_draws_the_scenarios_numbers(page_client: TestClient) -> None:
    response = page_client.get("/reports", params={**RANGE, "key": API_KEY})

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    check_charts(response.text)


def test_the_page_is_one_self_contained_document_for_phones(page_client: TestClient) -> None:
    response = page_client.get("/reports", params={**RANGE, "key": API_KEY})
    html = response.text
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "@media (max-width:640px)" in html
    check_self_contained(html)
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["referrer-policy"] == "no-referrer"


def test_a_bearer_header_works_and_the_key_is_not_put_in_the_form(
        page_client: TestClient) -> None:
    response = page_client.get("/reports", params=RANGE,
                               headers={"Authorization": f"Bearer {API_KEY}"})
    assert response.status_code == 200
    assert API_KEY not in response.text
    check_charts(response.text)


def test_a_query_key_is_carried_by_the_filter_form(page_client: TestClient) -> None:
    html = page_client.get("/reports", params={**RANGE, "key": API_KEY}).text
    hidden = [a for tag, a in Elements(html).tags if tag == "input" and a.get("name") == "key"]
    assert hidden == [{"type": "hidden", "name": "key", "value": API_KEY}]


@pytest.mark.parametrize("params", [{}, {"key": "wrong"}, {"key": ""}])
def test_no_or_a_wrong_key_is_a_401_page_asking_for_one(page_client: TestClient,
                                                        params: dict[str, str]) -> None:
    response = page_client.get("/reports", params=params)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/html")
    assert 'name="key"' in response.text
    assert "data-figure" not in response.text


def test_a_bad_parameter_is_a_422_page(page_client: TestClient) -> None:
    response = page_client.get("/reports", params={"key": API_KEY, "since": "soon"})
    assert response.status_code == 422
    assert "since must be" in response.text


def test_the_channel_filter(page_client: TestClient) -> None:
    html = page_client.get("/reports", params={**RANGE, "key": API_KEY, "channel": "sms"}).text
    found = Elements(html)
    cards = {a["data-figure"]: a["data-value"] for a in found.having("data-figure")}
    assert cards["submitted"] == "3"
    assert [a for tag, a in found.tags if tag == "option" and "selected" in a] == \
        [{"value": "sms", "selected": ""}]
    assert found.having("data-seconds-left") == []  # windows are WhatsApp's
    assert "Reply windows are a WhatsApp matter" in html


def test_numbers_are_masked_unless_an_env_key_asks(page_client: TestClient) -> None:
    masked = page_client.get("/reports", params={**RANGE, "key": API_KEY}).text
    assert A not in masked and "91856321441" not in masked
    assert "*******1412 → *******1441" in masked

    shown = page_client.get("/reports", params={**RANGE, "key": API_KEY,
                                                "show_numbers": "true"}).text
    assert f"{A} → 91856321441" in shown
    assert '<input type="hidden" name="show_numbers" value="true">' in shown


def test_a_scoped_key_sees_its_accounts_only(page_client: TestClient, engine: Engine) -> None:
    key = _db_key(engine, [B])
    html = page_client.get("/reports", params={**RANGE, "key": key}).text
    cards = {a["data-figure"]: a["data-value"] for a in Elements(html).having("data-figure")}
    assert cards["submitted"] == "4"
    assert Elements(html).having("data-seconds-left") == []  # the windows are A's
    assert CUSTOMER not in html

    refused = page_client.get("/reports", params={**RANGE, "key": key, "show_numbers": "true"})
    assert refused.status_code == 403


# -- in a real browser ------------------------------------------------------------------

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def served(settings: Settings, engine: Engine) -> Iterator[str]:
    """The app on a loopback port (uvicorn in a thread), the scenario in its database."""
    seed(engine)
    seed_windows(engine)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings, clock=FakeClock(NOW)),
                                           host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=20)


def _chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_in_headless_chromium(served: str, tmp_path: Path) -> None:
    binary = shutil.which("chromium")
    if binary is None:
        if os.environ.get("CI_REQUIRE_CHROMIUM"):  # set by .ci/run
            pytest.fail("chromium is required here but not installed")
        pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")
    url = f"{served}/reports?key={API_KEY}&since={SINCE}&until={UNTIL}"

    dumped = _chromium(binary, tmp_path / "profile-dom", "--dump-dom", url)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert "Delivery report" in dumped.stdout
    check_charts(dumped.stdout)
    check_self_contained(dumped.stdout)

    shot = tmp_path / "report-page-phone.png"
    taken = _chromium(binary, tmp_path / "profile-shot", f"--screenshot={shot}",
                      "--window-size=414,900", url)
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # drawn, not blank
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(shot, ARTIFACTS / shot.name)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT"):
        # The README's picture: the whole page at phone width.
        (ROOT / "docs").mkdir(exist_ok=True)
        week = f"{served}/reports?key={API_KEY}&since=2026-11-18&until=2026-11-24"
        docs = _chromium(binary, tmp_path / "profile-docs",
                         f"--screenshot={ROOT / 'docs' / 'report-page.png'}",
                         "--window-size=414,1900", week)
        assert docs.returncode == 0, docs.stderr[-2000:]


def test_the_access_log_never_shows_a_query_key() -> None:
    from receiver.logging_setup import mask_path

    assert mask_path(f"/reports?key={API_KEY}&since=2026-11-22") == \
        "/reports?key=***&since=2026-11-22"
    assert mask_path(f"/reports?channel=sms&KEY={API_KEY}") == "/reports?channel=sms&KEY=***"
    assert mask_path("/reports?monkey=1") == "/reports?monkey=1"
