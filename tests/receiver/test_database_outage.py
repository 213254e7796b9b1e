"""While the database refuses connections, the API answers 503 `unavailable` (retry), never a
500: PostgreSQL told to refuse every new connection, and the ones open ended."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url
from starlette.testclient import TestClient

from tests.conftest import postgres_only


@pytest.fixture
def db_url(pg_url: str | None) -> str:
    return postgres_only(pg_url)


@pytest.fixture
def outage(client: TestClient, db_url: str) -> Iterator[None]:
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
