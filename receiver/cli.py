"""The `replywindow` command."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session

from receiver import logging_setup
from receiver.settings import Settings
from store import db, keys, migrate


def _now() -> datetime:
    return datetime.now(UTC)


def _settings() -> Settings:
    """The configuration, or a clear error naming the variable that is wrong."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"REPLYWINDOW_{'_'.join(map(str, error['loc'])).upper()}: {error['msg']}"
            for error in exc.errors(include_input=False)
        )
        raise click.ClickException(f"invalid configuration: {problems}") from None


@contextlib.contextmanager
def _engine(settings: Settings) -> Iterator[Engine]:
    """An engine for one command, on a database brought up to date first (a fresh clone has
    no tables before its first `serve`), its connections closed when the command ends."""
    alembic_log = logging.getLogger("alembic")
    level = alembic_log.level
    alembic_log.setLevel(logging.WARNING)  # "Context impl …" on every command is noise
    try:
        _upgrade(settings)  # idempotent: nothing to do on an up-to-date database
    finally:
        alembic_log.setLevel(level)
    engine = db.make_engine(settings.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextlib.contextmanager
def _progress(description: str) -> Iterator[Callable[[int, int | None], None]]:
    """A progress bar on stderr (stdout stays for the command's answer); yields
    `update(done, total)`, total None while it is not known."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=Console(stderr=True),
                  transient=False) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        yield update


@click.group()
def main() -> None:
    """replywindow: reply windows, routes and delivery outcomes between bots and vendors."""
    logging_setup.configure()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--migrate/--no-migrate", default=True, show_default=True,
              help="Bring the database up to date before serving.")
def serve(host: str, port: int, workers: int, migrate: bool) -> None:
    """Run the service."""
    import uvicorn

    from receiver import http_protocol

    settings = _settings()
    if migrate:
        _upgrade(settings)
    if "REPLYWINDOW_PUBLIC_URL" not in os.environ:
        shown_host = "localhost" if host in ("0.0.0.0", "::", "127.0.0.1") else host
        os.environ["REPLYWINDOW_PUBLIC_URL"] = f"http://{shown_host}:{port}"
    # The access log stays, masked: no webhook token, no whole phone number (logging_setup).
    uvicorn.run("receiver.app:app_from_env", factory=True, host=host, port=port,
                workers=workers, proxy_headers=True, server_header=False,
                http=http_protocol.UVICORN_HTTP,
                log_config=logging_setup.uvicorn_log_config())


def _upgrade(settings: Settings) -> None:
    migrate.upgrade(settings.database_url)


@main.group("db")
def db_group() -> None:
    """The database."""


@db_group.command("upgrade")
def db_upgrade() -> None:
    """Apply every migration not yet applied."""
    _upgrade(_settings())
    click.echo("database is up to date")


@main.command()
def urls() -> None:
    """Print the webhook URLs to give each vendor (with the secret token)."""
    from receiver.identity import resolve_webhook_token, webhook_urls

    settings = _settings()
    with _engine(settings) as engine:
        token, _ = resolve_webhook_token(settings, engine, _now)
    for name, url in webhook_urls(settings.public_url, token).items():
        click.echo(f"POST {url}   ({name})")


@main.group("keys")
def keys_group() -> None:
    """Bot API keys."""


@keys_group.command("add")
@click.argument("name")
@click.option("--account", "accounts", multiple=True,
              help="Limit the key to this business phone or staff wxid (repeatable).")
def keys_add(name: str, accounts: tuple[str, ...]) -> None:
    """Create a key; it is printed once and stored only as a hash."""
    name = name.strip()
    if not name:
        raise click.BadParameter("the name must not be blank", param_hint="NAME")
    # Business phones as the API sees them: the windows API takes "+91..." as "91...".
    scope = [account.strip().lstrip("+") for account in accounts]
    if any(not account for account in scope):
        raise click.BadParameter("an account must not be blank", param_hint="--account")
    with _engine(_settings()) as engine, Session(db.writer(engine)) as session, \
            session.begin():
        row, key = keys.create(session, name=name, accounts=scope or None, now=_now())
        key_id = row.id
    click.echo(key)
    click.echo(f"(key {key_id} '{name}': keep it now, it is not shown again)", err=True)


@keys_group.command("list")
def keys_list() -> None:
    """List keys (never the keys themselves)."""
    with _engine(_settings()) as engine, Session(engine) as session:
        rows = keys.all_keys(session)
    for row in rows:
        scope = ",".join(row.accounts) if row.accounts is not None else "all accounts"
        state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
        click.echo(f"{row.id:>4}  {row.prefix}…  {row.name:<20} {scope:<30} {state}")
    if not rows:
        click.echo("no keys (keys in REPLYWINDOW_API_KEYS are not listed)")


@keys_group.command("revoke")
@click.argument("ref")
def keys_revoke(ref: str) -> None:
    """Revoke a key by id, name or prefix."""
    now = _now()
    with _engine(_settings()) as engine, Session(db.writer(engine)) as session, \
            session.begin():
        try:
            row = keys.revoke(session, ref=ref, now=now)
        except keys.AmbiguousKeyRef as exc:
            raise click.ClickException(str(exc)) from None
        if row is None:
            raise click.ClickException(f"no key with id, name or prefix {ref!r}")
        # Read before the session ends: its objects expire at commit.
        key_id, key_name, revoked_at = row.id, row.name, row.revoked_at
    if revoked_at is not None and revoked_at != now:
        click.echo(f"key {key_id} '{key_name}' was already revoked on {revoked_at:%Y-%m-%d}")
    else:
        click.echo(f"key {key_id} '{key_name}' is revoked")


BODY_STATES = ("pending", "applied", "duplicate", "flagged", "stored", "failed")


@main.group("inbox")
def inbox_group() -> None:
    """The archive of every webhook body received."""


@inbox_group.command("replay")
@click.option("--state", "states", multiple=True,
              type=click.Choice(BODY_STATES),
              help="Only bodies in this state (repeatable; default: all).")
@click.option("--quarantined/--no-quarantined", default=True, show_default=True,
              help="Also retry the quarantined bodies.")
def inbox_replay(states: tuple[str, ...], quarantined: bool) -> None:
    """Re-read stored bodies with the current parsers and apply what is new (idempotent)."""
    from receiver.parsers import parsers
    from receiver.replay import replay

    settings = _settings()
    try:
        parsers(settings)  # a malformed 云真机 key is a configuration error, said plainly
    except ValueError as exc:
        raise click.ClickException(f"REPLYWINDOW_YZJ_ENCODING_AES_KEY: {exc}") from None
    with _engine(settings) as engine, _progress("replaying bodies") as update:
        report = replay(engine, settings=settings, states=list(states) or None,
                        quarantined=quarantined, now=_now(), progress=update)
    click.echo(report.summary())


@main.command()
def demo() -> None:
    """Play a day in the life against the vendor simulator (SQLite, loopback only)."""
    from receiver import demo as demo_module

    logging.getLogger().setLevel(logging.WARNING)  # the story, not the request log
    demo_module.run(click.echo)


@main.command("report")
@click.option("--since", help="ISO-8601 time or date (UTC); default: 7 days before --until.")
@click.option("--until", help="ISO-8601 time, or a date meaning its end (UTC); default: now.")
@click.option("--group-by", "group_by", default="day", show_default=True,
              help="Comma-separated: day, channel, route, account, status ('' for totals).")
@click.option("--channel", type=click.Choice(["whatsapp", "wecom", "sms"]))
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--show-numbers", is_flag=True, help="Whole account numbers, not the last 4.")
def report_command(since: str | None, until: str | None, group_by: str, channel: str | None,
                   fmt: str, show_numbers: bool) -> None:
    """The delivery report: what was sent, delivered, read, failed, refused, and what it cost."""
    from rich.console import Console

    from receiver import report_table, reports
    from receiver.errors import Invalid
    from receiver.reports_api import parse_params
    from store.reports import delivery_rows

    try:
        params = parse_params({"since": since, "until": until, "channel": channel}, now=_now())
    except Invalid as exc:
        raise click.BadParameter(exc.detail, param_hint=f"--{exc.extra.get('field')}") from None
    try:
        grouping = reports.parse_group_by(group_by)
    except reports.BadGroupBy as exc:
        raise click.BadParameter(str(exc), param_hint="--group-by") from None
    with _engine(_settings()) as engine, Session(engine) as session:
        built = reports.build_report(
            delivery_rows(session, since=params.since, until=params.until,
                          channel=params.channel),
            since=params.since, until=params.until, group_by=grouping)
    if not show_numbers:
        built = built.masked()
    if fmt == "csv":
        click.echo(built.as_csv(), nl=False)
    elif fmt == "json":
        click.echo(json.dumps(built.as_json(), ensure_ascii=False, indent=2))
    else:
        # Piped or captured output gets room for every column; a terminal its own width.
        console = Console(width=None if sys.stdout.isatty() else 200)
        report_table.print_report(built, console)


@main.group("templates")
def templates_group() -> None:
    """WhatsApp templates at ITNIO."""


async def _with_sender(settings: Settings, engine: Engine, work: Any) -> Any:
    import httpx

    from receiver.app import itnio_client
    from sender.service import Sender

    async with httpx.AsyncClient(timeout=settings.vendor_timeout_seconds) as http:
        itnio = itnio_client(settings, http, _now)
        if itnio is None:
            raise click.ClickException(
                "set REPLYWINDOW_ITNIO_API_KEY and REPLYWINDOW_ITNIO_API_SECRET first")
        sender = Sender(engine, itnio=itnio, yzj=None, config=settings.send_config(), clock=_now)
        return await work(sender)


@templates_group.command("sync")
def templates_sync() -> None:
    """Fetch every template from ITNIO (wa/template/query) into the store now."""
    from sender import sweeps

    settings = _settings()
    with _engine(settings) as engine, _progress("syncing templates from ITNIO") as update:
        count = asyncio.run(_with_sender(settings, engine, sweeps.sync_templates))
        update(count, count)
    click.echo(f"{count} templates synced")


@templates_group.command("add")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
def templates_add(path: str) -> None:
    """Submit a template for review (wa/template/add); PATH is its JSON, as in ITNIO's docs."""
    from sender.errors import VendorError

    try:
        template = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{path}: not a JSON template ({exc})") from None
    settings = _settings()

    async def add(sender: Any) -> Any:
        return await sender.itnio.add_template(template)

    with _engine(settings) as engine:
        try:
            answer = asyncio.run(_with_sender(settings, engine, add))
        except VendorError as exc:
            raise click.ClickException(f"ITNIO refused it: {exc.code} {exc.meaning}") from None
    click.echo(json.dumps(answer, ensure_ascii=False))
    click.echo("submitted; its status arrives by template-status-event and `templates sync`",
               err=True)


@main.group("events")
def events_group() -> None:
    """Events for the bot."""


@events_group.command("revive")
def events_revive() -> None:
    """Give dead-lettered pushes to the bot another day of retries."""
    from store import events as store_events

    settings = _settings()
    with _engine(settings) as engine:
        with Session(db.writer(engine)) as session, session.begin():
            count = store_events.revive_dead(session, now=_now())
    click.echo(f"{count} dead events queued for the bot again")
