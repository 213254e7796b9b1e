"""Alembic, driven from code: `upgrade(url)` brings any database to the models' shape."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    """Undo migrations down to `revision` ("base": no tables left)."""
    command.downgrade(config(url), revision)


def check(url: str) -> None:
    """Raise if the models have drifted from the migrations."""
    command.check(config(url))
