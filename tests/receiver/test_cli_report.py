"""`replywindow report` on the hand-worked scenario, and the progress bars of the long
commands (`inbox replay`, `templates sync`)."""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine
from sqlmodel import Session

from receiver.cli import main
from receiver.replay import replay
from receiver.settings import Settings
from sender.simulator import VendorSimulator
from store import inbox
from tests.receiver.report_scenario import SINCE, UNTIL, A, seed
from tests.receiver.test_cli_templates import env as sim_env
from tests.receiver.test_cli_templates import sim_url  # noqa: F401 (a fixture)

RANGE = ["--since", SINCE, "--until", UNTIL]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing from the developer's shell or .env reaches the command."""
    for name in list(os.environ):
        if name.startswith("REPLYWINDOW_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def _run(db_url: str, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"REPLYWINDOW_DATABASE_URL": db_url},
                              catch_exceptions=False)


def test_report_as_csv_has_the_scenarios_figures(engine: Engine, db_url: str) -> None:
    seed(engine)
    result = _run(db_url, "report", *RANGE, "--group-by", "day,channel", "--format", "csv")

    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["day"], r["channel"], r["submitted"], r["delivered"], r["delivery_rate"])
            for r in rows] == [
        ("2026-11-22", "sms", "1", "1", "1.0"),
        ("2026-11-22", "whatsapp", "4", "2", "0.6667"),
        ("2026-11-23", "sms", "2", "1", "0.5"),
        ("2026-11-23", "whatsapp", "7", "3", "0.6"),
    ]
    assert rows[3]["accept_to_delivery_median_s"] == "20.0"
    assert rows[3]["accept_to_delivery_p95_s"] == "300.0"


def test_report_as_a_table(engine: Engine, db_url: str) -> None:
    seed(engine)
    result = _run(db_url, "report", *RANGE, "--group-by", "channel")

    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Delivery report, 2026-11-22 00:00 to 2026-11-24 00:00 UTC" in out
    outcomes = out.split("Timing, routes")[0]
    lines = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
             for line in outcomes.splitlines() if line.count("│") > 3}
    # channel | submitted, accepted, sent, delivered, read, failed, rejected, expired, rate
    assert lines["sms"][:9] == ["3", "3", "2", "2", "0", "1", "0", "0", "66.7%"]
    assert lines["whatsapp"][:9] == ["11", "8", "8", "5", "2", "2", "2", "1", "62.5%"]
    assert lines["total"][:9] == ["14", "11", "10", "7", "2", "3", "2", "1", "63.6%"]
    assert "Top failure reasons" in out
    assert "131026" in out and "message undeliverable" in out
    assert "0.5 INR, 0.03 USD" in out


def test_report_masks_accounts_unless_asked(engine: Engine, db_url: str) -> None:
    seed(engine)
    masked = _run(db_url, "report", *RANGE, "--group-by", "account", "--format", "json")
    assert [g["account"] for g in json.loads(masked.stdout)["groups"]] == [
        "*******1412", "*******1499"]
    assert A not in masked.stdout

    shown = _run(db_url, "report", *RANGE, "--group-by", "account", "--format", "csv",
                 "--show-numbers")
    assert [r["account"] for r in csv.DictReader(io.StringIO(shown.stdout))] == [
        A, "91856321499"]


@pytest.mark.parametrize(("args", "named"), [
    (["--group-by", "day,colour"], "--group-by"),
    (["--since", "last tuesday"], "--since"),
    (["--since", "2026-11-23", "--until", "2026-11-22"], "--since"),
])
def test_report_refuses_bad_options(db_url: str, args: list[str], named: str) -> None:
    result = _run(db_url, "report", *args)
    assert result.exit_code == 2
    assert named in result.output


def test_replay_reports_its_progress(engine: Engine, db_url: str) -> None:
    settings = Settings(database_url=db_url, _env_file=None)  # type: ignore[call-arg]
    with Session(engine) as session, session.begin():
        for n in range(3):
            inbox.add_body(session, vendor="itnio", route="whatsapp",
                           received_at=datetime(2026, 11, 24, tzinfo=UTC), headers={},
                           body=b'{"eventType": "something-new", "n": %d}' % n,
                           dedup_key=None, event_count=0)
        inbox.add_quarantined(session, vendor="itnio", route="whatsapp",
                              received_at=datetime(2026, 11, 24, tzinfo=UTC), headers={},
                              body=b"{not json", error="invalid_json", detail="bad")
    seen: list[tuple[int, int]] = []

    replay(engine, settings=settings, states=None, quarantined=True,
           now=datetime(2026, 11, 24, 1, tzinfo=UTC), progress=lambda *a: seen.append(a))

    assert seen == [(3, 4), (4, 4)]


def test_inbox_replay_shows_a_progress_bar(db_url: str) -> None:
    result = _run(db_url, "inbox", "replay")
    assert result.exit_code == 0, result.output
    assert "replaying bodies" in result.stderr
    assert "replayed 0 stored bodies" in result.stdout


def test_templates_sync_shows_a_progress_bar(
        db_url: str, sim_url: tuple[VendorSimulator, str]) -> None:  # noqa: F811
    _, base = sim_url
    result = CliRunner().invoke(main, ["templates", "sync"], env=sim_env(db_url, base))
    assert result.exit_code == 0, result.output
    assert "syncing templates from ITNIO" in result.stderr
    assert "1/1" in result.stderr
    assert result.stdout == "1 templates synced\n"
