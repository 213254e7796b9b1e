"""The engine's URL as asyncpg's connections take it (store/asyncpg_url.py); what the server
then sees is tested with the lookups' connections (tests/store/test_pg_reads.py) and the
webhook writer's (tests/store/test_pg_append.py)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from store.asyncpg_url import asyncpg_params


@pytest.mark.parametrize("setting", ["channel_binding=require", "require_auth=scram-sha-256",
                                     "gssencmode=require", "sslcertmode=require",
                                     "requirepeer=postgres"])
def test_a_url_demanding_what_asyncpg_cannot_do_is_refused(setting: str) -> None:
    url = make_url(f"postgresql+psycopg://rw@db/replywindow?{setting}")
    with pytest.raises(ValueError, match=f"{setting} in the database URL is not supported"):
        asyncpg_params(url)
    # The same settings asking for nothing are left out like the others.
    lenient = make_url("postgresql+psycopg://rw@db/replywindow?channel_binding=prefer"
                       "&gssencmode=disable&sslcertmode=allow")
    assert dict(make_url(asyncpg_params(lenient)[0]).query) == {}


def test_hostaddr_is_the_host_when_the_url_names_none() -> None:
    url = make_url("postgresql+psycopg://rw@/replywindow?hostaddr=127.0.0.1&keepalives=1")
    dsn, _ = asyncpg_params(url)
    assert make_url(dsn).host == "127.0.0.1"
    assert dict(make_url(dsn).query) == {}
