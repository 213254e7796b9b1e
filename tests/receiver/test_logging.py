"""No secret and no whole phone number reaches a log: not the app's own records (even at DEBUG,
SQLAlchemy's included), not an SQL error, not uvicorn's access log."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

from receiver import logging_setup
from receiver.app import create_app
from receiver.errors import exception_handlers
from receiver.settings import Settings
from tests.conftest import API_KEY, DATA, TOKEN, FakeClock
from tests.settling import SettlingClient

PHONES = ("91856321412", "91856321432")
SECRETS = (TOKEN, API_KEY, *PHONES)
WA = f"/webhooks/itnio/whatsapp/{TOKEN}"
SMS = f"/webhooks/itnio/sms/{TOKEN}"
YZJ = f"/webhooks/yzj/{TOKEN}"
EXAMPLES = DATA / "webhooks"


def _texts(record: logging.LogRecord) -> Iterator[str]:
    yield record.getMessage()
    if record.exc_info:
        yield logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        yield record.exc_text
    if record.stack_info:
        yield record.stack_info


def _leaks(records: list[logging.LogRecord]) -> list[tuple[str, str, str]]:
    return [(record.name, secret, text_[:300]) for record in records
            if record.name != "httpx2"  # the test's own client (starlette's TestClient)
            for text_ in _texts(record) for secret in SECRETS if secret in text_]


@pytest.fixture
def session_client(db_url: str, clock: FakeClock) -> Iterator[TestClient]:
    """The app, with an SMS appId the examples don't carry: their events are flagged (and
    that is logged)."""
    settings = Settings(database_url=db_url, webhook_token=TOKEN, api_keys=API_KEY,
                        itnio_sms_app_id="another-app", run_scheduler=False,
                        _env_file=None)  # type: ignore[call-arg]
    with SettlingClient(create_app(settings, clock=clock)) as client:
        yield client


def test_a_session_logs_no_token_no_key_and_no_phone_number(
        session_client: TestClient, auth: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    client = session_client
    caplog.set_level(logging.DEBUG)
    # SQLAlchemy keeps its own loggers at WARNING; at INFO they log every statement and,
    # unless hidden, its bound values. (At DEBUG they log result rows: data, by design.)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    posts = [(WA, path) for path in sorted(EXAMPLES.glob("itnio_wa_*.json"))]
    posts += [(SMS, path) for path in sorted(EXAMPLES.glob("itnio_sms_*"))]
    posts += [(YZJ, path) for path in sorted(EXAMPLES.glob("yzj_chatmsg_*.json"))]
    for route, path in posts:
        response = client.post(route, content=path.read_bytes())
        assert response.status_code == 200, (path.name, response.text)
    unreadable = [
        b'{"eventType": "up-message-event", "businessPhone": "91856321412"}',  # wrong shape
        b'{"appId": "x", "businessPhone": "91856321412", "from": {"phone": "9185632143',
        b"\xff\xfe91856321432",
    ]
    for body in unreadable:
        assert client.post(WA, content=body).status_code == 400
    assert client.post(WA + "-typo", content=unreadable[0]).status_code == 404
    lookups = [
        "/v1/windows/whatsapp/91856321412/91856321432",
        "/v1/windows/whatsapp/+91856321412/91856321432",
        "/v1/windows/whatsapp/91856321412/91856321499",
        "/v1/windows?unanswered=true",
        "/v1/windows?limit=2&expiring_within=3600",
    ]
    for url in lookups:
        assert client.get(url, headers=auth).status_code == 200, url
    assert client.get("/v1/windows/whatsapp/91856321412/9185632143x",
                      headers=auth).status_code == 422
    bad = {"Authorization": "Bearer rwk_not_a_key_91856321432"}
    assert client.get("/v1/windows", headers=bad).status_code == 401
    assert client.get(lookups[0], headers=bad).status_code == 401
    assert client.get(lookups[0]).status_code == 401

    logged = {record.name for record in caplog.records}
    assert {"sqlalchemy.engine.Engine", "receiver.apply"} <= logged, logged
    assert _leaks(caplog.records) == []


# -- SQL errors ----------------------------------------------------------------------------

def test_an_sql_error_never_shows_its_bound_values(engine: Engine) -> None:
    with pytest.raises(DBAPIError) as caught, engine.connect() as conn:
        conn.execute(text("SELECT :phone FROM no_such_table"), {"phone": PHONES[0]})

    assert PHONES[0] not in str(caught.value)
    assert "hidden" in str(caught.value)


@pytest.mark.postgres
def test_postgres_connections_give_up_after_5_seconds(db_url: str, engine: Engine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a PostgreSQL connection setting")
    with engine.connect() as conn:
        info = conn.connection.dbapi_connection.info  # type: ignore[union-attr]
        assert info.get_parameters().get("connect_timeout") == "5"


# -- the unexpected error ------------------------------------------------------------------

def test_an_unexpected_error_logs_its_own_traceback(caplog: pytest.LogCaptureFixture) -> None:
    def boom(_request: Request) -> None:
        raise RuntimeError("the real cause")

    app = Starlette(routes=[Route("/boom", boom)],
                    exception_handlers=exception_handlers)  # type: ignore[arg-type]
    with SettlingClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")

    assert response.status_code == 500
    assert response.json()["error"] == "internal"
    [record] = [r for r in caplog.records if getattr(r, "action", None) == "unexpected_error"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
    formatted = logging.Formatter().format(record)
    assert "the real cause" in formatted
    assert "NoneType: None" not in formatted


# -- the access log ------------------------------------------------------------------------

def _access(path: str) -> logging.LogRecord:
    """A record as uvicorn's access logger makes it."""
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                             '%s - "%s %s HTTP/%s" %d',
                             ("127.0.0.1:50000", "POST", path, "1.1", 200), None)


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        (f"/webhooks/itnio/whatsapp/{TOKEN}", "/webhooks/itnio/whatsapp/***"),
        (f"/webhooks/itnio/sms/{TOKEN}", "/webhooks/itnio/sms/***"),
        (f"/webhooks/yzj/{TOKEN}", "/webhooks/yzj/***"),
        (f"/webhooks/yzj/{TOKEN}/", "/webhooks/yzj/***"),
        (f"/webhooks/yzj/{TOKEN}?x=1", "/webhooks/yzj/***?x=1"),
        (f"/webhooks/{TOKEN}", "/webhooks/***"),
        (f"/webhooks/itnio/{TOKEN}", "/webhooks/***"),
        ("/webhooks/yzj", "/webhooks/yzj"),
        ("/v1/windows/whatsapp/91856321412/91856321432",
         "/v1/windows/whatsapp/…1412/…1432"),
        ("/v1/windows/whatsapp/%2B91856321412/91856321432",
         "/v1/windows/whatsapp/%2B…1412/…1432"),
        ("/v1/messages?recipient=91856321432&limit=100", "/v1/messages?recipient=…1432&limit=100"),
        ("/v1/windows?limit=100&expiring_within=86400",
         "/v1/windows?limit=100&expiring_within=86400"),
        ("/healthz", "/healthz"),
    ],
)
def test_the_access_log_filter_masks_tokens_and_phone_numbers(path: str, shown: str) -> None:
    record = _access(path)

    assert logging_setup.AccessLogMask().filter(record) is True

    assert record.getMessage() == f'127.0.0.1:50000 - "POST {shown} HTTP/1.1" 200'


def test_the_masked_record_still_formats_as_uvicorn_formats_it() -> None:
    from uvicorn.logging import AccessFormatter

    record = _access("/v1/windows/whatsapp/91856321412/91856321432")
    logging_setup.AccessLogMask().filter(record)

    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s',
                           use_colors=False).format(record)
    assert line == '127.0.0.1:50000 - "POST /v1/windows/whatsapp/…1412/…1432 HTTP/1.1" 200 OK'


def test_uvicorns_access_log_is_masked_with_the_config_serve_gives_it(tmp_path: Path) -> None:
    # In a process of its own: dictConfig rewires uvicorn's loggers for the whole process.
    script = (
        "import logging, logging.config\n"
        "from receiver.logging_setup import uvicorn_log_config\n"
        "logging.config.dictConfig(uvicorn_log_config())\n"
        "log = logging.getLogger('uvicorn.access')\n"
        f"log.info('%s - \"%s %s HTTP/%s\" %d', '1.2.3.4:5', 'POST', {WA!r}, '1.1', 200)\n"
        "log.info('%s - \"%s %s HTTP/%s\" %d', '1.2.3.4:5', 'GET', "
        "'/v1/windows/whatsapp/91856321412/91856321432', '1.1', 200)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=60, check=True)

    lines = done.stdout.splitlines()
    assert len(lines) == 2, done
    assert '"POST /webhooks/itnio/whatsapp/*** HTTP/1.1" 200' in lines[0]
    assert '"GET /v1/windows/whatsapp/…1412/…1432 HTTP/1.1" 200' in lines[1]
    assert TOKEN not in done.stdout + done.stderr
    assert not any(phone in done.stdout for phone in PHONES)


def test_serve_hands_uvicorn_the_masked_log_config(monkeypatch: pytest.MonkeyPatch,
                                                   tmp_path: Path) -> None:
    import uvicorn

    from receiver.cli import main

    seen: dict[str, object] = {}
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: seen.update(kwargs))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REPLYWINDOW_PUBLIC_URL", "http://localhost:8000")
    result = CliRunner().invoke(
        main, ["serve", "--no-migrate"],
        env={"REPLYWINDOW_DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"},
        catch_exceptions=False)

    assert result.exit_code == 0, result.output
    config = seen["log_config"]
    assert isinstance(config, dict)
    assert "access_mask" in config["loggers"]["uvicorn.access"]["filters"]
    assert any(isinstance(f, logging_setup.AccessLogMask)
               for f in logging.getLogger("uvicorn.access").filters)


def test_installing_the_mask_twice_puts_it_on_once() -> None:
    logging_setup.install()
    logging_setup.install()

    masks = [f for f in logging.getLogger("uvicorn.access").filters
             if isinstance(f, logging_setup.AccessLogMask)]
    assert len(masks) == 1
