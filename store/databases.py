"""Databases of their own on a PostgreSQL server, for one test session or one benchmark run:
concurrent runs never touch each other's data."""

from __future__ import annotations

import os
import uuid

from sqlalchemy import create_engine, make_url, text


def _admin(url: str):  # type: ignore[no-untyped-def]
    return create_engine(make_url(url), isolation_level="AUTOCOMMIT",
                         connect_args={"connect_timeout": 5})


def create_database(server_url: str, *, prefix: str) -> str:
    """A new, empty database on `server_url`'s server; its URL."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    admin = _admin(server_url)
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    """Drop the database `url` names, closing whatever is still connected to it."""
    name = make_url(url).database
    admin = _admin(make_url(url).set(database="postgres").render_as_string(hide_password=False))
    try:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
