"""The `replywindow` command, run as an operator would: against a real database, with the
keys it makes then used through the app."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, inspect, text
from starlette.testclient import TestClient

from receiver.app import create_app
from receiver.cli import main
from receiver.settings import Settings
from store import migrate
from tests.settling import SettlingClient

BUSINESS = "91856321412"
OTHER_BUSINESS = "91856321499"
CUSTOMER = "91856321432"
KEY = re.compile(r"^rwk_[A-Za-z0-9_-]{20,}$")
DATA = Path(__file__).parent.parent / "data" / "webhooks"

Run = Callable[..., Result]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Nothing from the developer's shell or .env reaches the command."""
    for name in list(os.environ):
        if name.startswith("REPLYWINDOW_"):
            monkeypatch.delenv(name)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)


@pytest.fixture
def run(db_url: str) -> Run:
    """`replywindow ARGS` on the test database; keyword arguments set REPLYWINDOW_* (None
    unsets)."""

    def invoke(*args: str, **env: str | None) -> Result:
        environment: dict[str, str | None] = {"REPLYWINDOW_DATABASE_URL": db_url,
                                              "REPLYWINDOW_WEBHOOK_TOKEN": None}
        environment.update({f"REPLYWINDOW_{name.upper()}": value for name, value in env.items()})
        return CliRunner().invoke(main, list(args), env=environment, catch_exceptions=False)

    return invoke


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def _add_key(run: Run, name: str, *options: str) -> str:
    result = _ok(run("keys", "add", name, *options))
    printed = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(printed) == 1, result.stdout
    assert KEY.match(printed[0]), printed[0]
    return printed[0]


@pytest.fixture
def api(db_url: str) -> Iterator[TestClient]:
    """The app with no configured keys: only keys made with the CLI authenticate."""
    settings = Settings(database_url=db_url, api_keys="", run_scheduler=False,
                        _env_file=None)  # type: ignore[call-arg]
    with SettlingClient(create_app(settings)) as client:
        yield client


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _rows(db_url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(sql))]
    finally:
        engine.dispose()


# --- db upgrade ---------------------------------------------------------------------------

def test_db_upgrade_builds_a_new_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = CliRunner().invoke(main, ["db", "upgrade"],
                                env={"REPLYWINDOW_DATABASE_URL": url}, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "up to date" in result.stdout
    migrate.check(url)
    engine = create_engine(url)
    assert "api_keys" in inspect(engine).get_table_names()
    engine.dispose()


def test_db_upgrade_on_a_migrated_database_is_harmless(run: Run, db_url: str) -> None:
    _ok(run("db", "upgrade"))
    _ok(run("db", "upgrade"))
    migrate.check(db_url)


def test_db_upgrade_uses_the_dotenv_of_the_working_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'from-dotenv.db'}"
    Path(".env").write_text(f"REPLYWINDOW_DATABASE_URL={url}\n")

    result = CliRunner().invoke(main, ["db", "upgrade"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    migrate.check(url)


# --- keys ---------------------------------------------------------------------------------

def test_keys_add_prints_a_key_that_authenticates(run: Run, api: TestClient) -> None:
    assert api.get("/v1/windows").status_code == 401

    key = _add_key(run, "support-bot")

    response = api.get("/v1/windows", headers=_bearer(key))
    assert response.status_code == 200, response.text
    assert response.json() == {"windows": [], "count": 0}
    assert api.get("/v1/windows", headers=_bearer(key + "x")).status_code == 401


def test_keys_add_says_once_that_the_key_is_not_shown_again(run: Run) -> None:
    result = _ok(run("keys", "add", "support-bot"))

    assert "not shown again" in result.stderr
    key = result.stdout.strip()
    assert key not in result.stderr


def test_each_key_is_new(run: Run) -> None:
    assert _add_key(run, "a") != _add_key(run, "a")


def test_a_key_is_stored_only_as_a_hash(run: Run, db_url: str) -> None:
    key = _add_key(run, "support-bot")

    rows = _rows(db_url, "SELECT * FROM api_keys")
    assert len(rows) == 1
    stored = " ".join(str(value) for value in rows[0])
    assert key not in stored
    assert key[10:] not in stored  # not even the secret part beyond the shown prefix
    assert "support-bot" in stored


def test_a_scoped_key_sees_only_its_own_account(run: Run, api: TestClient) -> None:
    key = _add_key(run, "shop-bot", "--account", BUSINESS)

    own = api.get(f"/v1/windows/whatsapp/{BUSINESS}/{CUSTOMER}", headers=_bearer(key))
    other = api.get(f"/v1/windows/whatsapp/{OTHER_BUSINESS}/{CUSTOMER}", headers=_bearer(key))

    assert own.status_code == 200, own.text
    assert own.json()["open"] is False
    assert other.status_code == 403, other.text
    assert other.json()["error"] == "forbidden"


def test_an_unscoped_key_sees_every_account(run: Run, api: TestClient) -> None:
    key = _add_key(run, "ops-bot")

    for business in (BUSINESS, OTHER_BUSINESS):
        response = api.get(f"/v1/windows/whatsapp/{business}/{CUSTOMER}", headers=_bearer(key))
        assert response.status_code == 200, response.text


def test_a_key_scoped_with_a_plus_matches_the_phone_as_the_api_reads_it(
        run: Run, api: TestClient) -> None:
    key = _add_key(run, "shop-bot", "--account", f"+{BUSINESS}")

    for business in (BUSINESS, f"+{BUSINESS}"):
        response = api.get(f"/v1/windows/whatsapp/{business}/{CUSTOMER}", headers=_bearer(key))
        assert response.status_code == 200, response.text


def test_keys_list_shows_name_prefix_and_scope_never_the_key(run: Run) -> None:
    everything = _add_key(run, "ops-bot")
    scoped = _add_key(run, "shop-bot", "--account", BUSINESS)

    listing = _ok(run("keys", "list")).output

    for key, name in ((everything, "ops-bot"), (scoped, "shop-bot")):
        assert name in listing
        assert key[:10] in listing
        assert key not in listing
        assert key[10:] not in listing
    assert BUSINESS in listing
    assert "all accounts" in listing
    assert "revoked" not in listing


def test_keys_list_with_no_keys_says_so(run: Run) -> None:
    assert "no keys" in _ok(run("keys", "list")).output


def test_keys_revoke_by_id(run: Run, api: TestClient, db_url: str) -> None:
    key = _add_key(run, "support-bot")
    (key_id,) = _rows(db_url, "SELECT id FROM api_keys")[0]

    result = _ok(run("keys", "revoke", str(key_id)))

    assert "revoked" in result.output
    assert key not in result.output
    assert api.get("/v1/windows", headers=_bearer(key)).status_code == 401
    assert "revoked" in _ok(run("keys", "list")).output


def test_keys_revoke_by_name(run: Run, api: TestClient) -> None:
    key = _add_key(run, "support-bot")
    kept = _add_key(run, "other-bot")

    result = _ok(run("keys", "revoke", "support-bot"))

    assert "support-bot" in result.output
    assert api.get("/v1/windows", headers=_bearer(key)).status_code == 401
    assert api.get("/v1/windows", headers=_bearer(kept)).status_code == 200


def test_keys_revoke_by_prefix(run: Run, api: TestClient) -> None:
    key = _add_key(run, "support-bot")

    _ok(run("keys", "revoke", key[:10]))

    assert api.get("/v1/windows", headers=_bearer(key)).status_code == 401


def test_revoking_an_unknown_key_fails_clearly(run: Run) -> None:
    _add_key(run, "support-bot")

    result = run("keys", "revoke", "no-such-bot")

    assert result.exit_code != 0
    assert "no key" in result.output and "no-such-bot" in result.output
    assert "Traceback" not in result.output


def test_revoking_twice_says_it_was_already_revoked(run: Run, api: TestClient) -> None:
    key = _add_key(run, "support-bot")
    _ok(run("keys", "revoke", "support-bot"))

    again = _ok(run("keys", "revoke", "support-bot"))

    assert "already revoked" in again.output
    assert api.get("/v1/windows", headers=_bearer(key)).status_code == 401


def test_a_name_reused_after_revoking_revokes_the_live_key(run: Run, api: TestClient) -> None:
    old = _add_key(run, "support-bot")
    _ok(run("keys", "revoke", "support-bot"))
    new = _add_key(run, "support-bot")
    assert api.get("/v1/windows", headers=_bearer(new)).status_code == 200

    result = _ok(run("keys", "revoke", "support-bot"))

    assert "already" not in result.output
    assert api.get("/v1/windows", headers=_bearer(new)).status_code == 401
    assert api.get("/v1/windows", headers=_bearer(old)).status_code == 401


def test_a_name_shared_by_two_live_keys_revokes_neither(run: Run, api: TestClient) -> None:
    first = _add_key(run, "support-bot")
    second = _add_key(run, "support-bot")

    result = run("keys", "revoke", "support-bot")

    assert result.exit_code != 0
    assert "more than one" in result.output
    for key in (first, second):
        assert api.get("/v1/windows", headers=_bearer(key)).status_code == 200


def test_keys_add_refuses_a_blank_name(run: Run, db_url: str) -> None:
    result = run("keys", "add", " ")

    assert result.exit_code != 0
    assert _rows(db_url, "SELECT id FROM api_keys") == []


# --- urls ---------------------------------------------------------------------------------

def _urls(output: str) -> dict[str, str]:
    found = re.findall(r"POST (https?://\S+)", output)
    assert len(found) == 3, output
    return {url.rsplit("/", 1)[0]: url.rsplit("/", 1)[1] for url in found}


def test_urls_prints_the_generated_token_and_keeps_it(run: Run, db_url: str) -> None:
    first = _urls(_ok(run("urls")).stdout)

    assert set(first) == {"http://localhost:8000/webhooks/itnio/whatsapp",
                          "http://localhost:8000/webhooks/itnio/sms",
                          "http://localhost:8000/webhooks/yzj"}
    tokens = set(first.values())
    assert len(tokens) == 1
    (token,) = tokens
    assert len(token) >= 16
    assert _rows(db_url, "SELECT value FROM app_secrets WHERE name = 'webhook_token'") == [
        (token,)]

    second = _urls(_ok(run("urls")).stdout)
    assert second == first


def test_urls_token_is_the_one_the_app_serves(run: Run, db_url: str) -> None:
    urls = _urls(_ok(run("urls")).stdout)
    (token,) = set(urls.values())
    settings = Settings(database_url=db_url, api_keys="", run_scheduler=False,
                        _env_file=None)  # type: ignore[call-arg]

    with SettlingClient(create_app(settings)) as client:
        body = (DATA / "itnio_sms_dlr.json").read_bytes()
        good = client.post(f"/webhooks/itnio/sms/{token}", content=body)
        wrong = client.post("/webhooks/itnio/sms/not-the-token", content=body)

    assert good.status_code == 200, good.text
    assert good.json() == {"status": "0", "reason": "success"}
    assert wrong.status_code == 404


def test_urls_with_a_configured_token_prints_it(run: Run, db_url: str) -> None:
    urls = _urls(_ok(run("urls", webhook_token="configured-token",
                         public_url="https://hooks.example.com/")).stdout)

    assert set(urls) == {"https://hooks.example.com/webhooks/itnio/whatsapp",
                         "https://hooks.example.com/webhooks/itnio/sms",
                         "https://hooks.example.com/webhooks/yzj"}
    assert set(urls.values()) == {"configured-token"}
    assert _rows(db_url, "SELECT value FROM app_secrets") == []


# --- configuration errors -----------------------------------------------------------------

def test_a_bad_setting_is_named_not_a_traceback(run: Run) -> None:
    result = run("keys", "list", window_margin_seconds="two minutes")

    assert result.exit_code != 0
    assert "REPLYWINDOW_WINDOW_MARGIN_SECONDS" in result.output
    assert "Traceback" not in result.output


def test_inbox_replay_refuses_a_malformed_yzj_key(run: Run) -> None:
    result = run("inbox", "replay", yzj_encoding_aes_key="too-short-secret")

    assert result.exit_code != 0
    assert "REPLYWINDOW_YZJ_ENCODING_AES_KEY" in result.output
    assert "too-short-secret" not in result.output


def test_inbox_replay_refuses_an_unknown_state(run: Run) -> None:
    result = run("inbox", "replay", "--state", "aplied")

    assert result.exit_code != 0
    assert "aplied" in result.output


# --- a fresh clone ------------------------------------------------------------------------

@pytest.mark.parametrize("command", [("keys", "add", "x"), ("keys", "list"), ("urls",),
                                     ("inbox", "replay"), ("keys", "revoke", "x")])
def test_a_command_on_a_brand_new_database_brings_it_up_to_date_first(
        tmp_path: Path, command: tuple[str, ...]) -> None:
    url = f"sqlite:///{tmp_path / 'brand-new.db'}"
    (tmp_path / "brand-new.db").touch()  # an empty file: no tables, no alembic_version

    result = CliRunner().invoke(main, list(command), env={"REPLYWINDOW_DATABASE_URL": url},
                                catch_exceptions=False)

    if command == ("keys", "revoke", "x"):
        assert result.exit_code != 0 and "no key" in result.output, result.output
    else:
        assert result.exit_code == 0, result.output
    assert "no such table" not in result.output
    migrate.check(url)


def test_keys_add_on_a_brand_new_database_makes_a_key_that_authenticates(tmp_path: Path) -> None:
    path = tmp_path / "brand-new.db"
    path.touch()
    url = f"sqlite:///{path}"

    result = CliRunner().invoke(main, ["keys", "add", "x"],
                                env={"REPLYWINDOW_DATABASE_URL": url}, catch_exceptions=False)

    assert result.exit_code == 0, result.output
    key = result.stdout.strip()
    assert KEY.match(key), result.stdout
    settings = Settings(database_url=url, api_keys="", run_scheduler=False,
                        _env_file=None)  # type: ignore[call-arg]
    with SettlingClient(create_app(settings)) as client:
        assert client.get("/v1/windows", headers=_bearer(key)).status_code == 200
