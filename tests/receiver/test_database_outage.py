"""While the database refuses connections, the API answers 503 `unavailable` (retry), never a
500: PostgreSQL told to refuse every new connection, and the ones open ended."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from sqlalchemy import Engine, func
from sqlalchemy.engine import make_url
from sqlmodel import Session, select
from starlette.testclient import TestClient

from store.models import InboxBody
from tests.conftest import DATA, TOKEN, postgres_only


@pytest.fixture
def db_url(pg_url: str | None) -> str:
    return postgres_only(pg_url)


@contextmanager
def refusing(db_url: str) -> Iterator[None]:
    """The database refuses new connections, and the open ones are ended, until the end."""
    url = make_url(db_url)
    admin_url = url.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS false')
        try:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE datname = %s AND pid <> pg_backend_pid()", (url.database,))
            yield
        finally:
            admin.execute(f'ALTER DATABASE "{url.database}" ALLOW_CONNECTIONS true')


@pytest.fixture
def outage(client: TestClient, db_url: str) -> Iterator[None]:
    with refusing(db_url):
        yield


@pytest.mark.parametrize(("method", "path", "body"), [
    ("GET", "/v1/windows/whatsapp/91856321412/91856321432", None),
    ("GET", "/v1/messages", None),
    ("POST", "/v1/messages", {"channel": "whatsapp", "from": "91856321412",
                              "to": "91856321432",
                              "message": {"type": "text", "text": {"body": "hello"}}}),
])
def test_a_request_while_the_database_is_unreachable_is_a_503(
        client: TestClient, auth: dict[str, str], outage: None, method: str, path: str,
        body: dict[str, object] | None) -> None:
    answer = client.request(method, path, headers=auth, json=body)

    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "unavailable"


def test_a_webhook_while_the_database_is_unreachable_is_a_503_and_the_next_one_is_kept(
        client: TestClient, engine: Engine) -> None:
    """The webhook writer's own connection is ended with the others: the body it could not
    store is answered 503 (the vendor retries), and once the database takes connections
    again the next body is stored and acknowledged on a new connection."""
    path = f"/webhooks/itnio/whatsapp/{TOKEN}"
    body = (DATA / "webhooks" / "itnio_wa_uplink_text.json").read_bytes()
    assert client.post(path, content=body).status_code == 200  # the connection is made
    with refusing(engine.url.render_as_string(hide_password=False)):
        # Not settled (nothing is stored to apply, and the applier could not reach it).
        answer = TestClient.request(client, "POST", path,
                                    content=body.replace(b"wamid", b"wamid-2"))
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"] == "unavailable"

    answer = client.post(path, content=body.replace(b"wamid", b"wamid-3"))

    assert answer.status_code == 200, answer.text
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(InboxBody)).one() == 2
