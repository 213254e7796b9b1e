"""The service's own secrets and addresses: the webhook token and the URLs built from it,
the bot webhook secret. Made once, stored, shared by every replica."""

from __future__ import annotations

import secrets
import sys

from sqlalchemy import Engine
from sqlmodel import Session

from receiver.runtime import Clock
from receiver.settings import Settings
from sender.push import new_secret
from store import db
from store import secrets as stored_secrets

WEBHOOK_PATHS = {
    "ITNIO WhatsApp": "/webhooks/itnio/whatsapp/{token}",
    "ITNIO SMS": "/webhooks/itnio/sms/{token}",
    "云真机 WeCom": "/webhooks/yzj/{token}",
}


def webhook_urls(public_url: str, token: str) -> dict[str, str]:
    base = public_url.rstrip("/")
    return {name: base + path.format(token=token) for name, path in WEBHOOK_PATHS.items()}


def resolve_webhook_token(settings: Settings, engine: Engine, clock: Clock) -> tuple[str, bool]:
    """The configured token, else the stored one (made on first start); and whether it was
    made just now."""
    if settings.webhook_token is not None:
        return settings.webhook_token.get_secret_value(), False
    with Session(db.writer(engine)) as session, session.begin():
        return stored_secrets.get_or_create(
            session, name="webhook_token", make=lambda: secrets.token_urlsafe(24), now=clock()
        )


def resolve_bot_secret(settings: Settings, engine: Engine, clock: Clock) -> tuple[str, bool]:
    """The Standard Webhooks secret that signs pushes to the bot: configured, else stored."""
    if settings.bot_webhook_secret is not None:
        return settings.bot_webhook_secret.get_secret_value(), False
    with Session(db.writer(engine)) as session, session.begin():
        return stored_secrets.get_or_create(session, name="bot_webhook_secret",
                                            make=new_secret, now=clock())


def announce(settings: Settings, token: str, *, generated: bool, bot_secret: str,
             secret_generated: bool) -> None:
    shown = token if generated else token[:4] + "…"
    lines = ["replywindow: vendor webhook URLs" + ("" if generated else
             " (token hidden; `replywindow urls` prints it)") + ":"]
    lines += [f"  POST {url}   ({name})" for name, url in
              webhook_urls(settings.public_url, shown).items()]
    if generated:
        lines.append("  (REPLYWINDOW_WEBHOOK_TOKEN was unset: this token was generated and "
                     "stored; it stays the same on later starts)")
    if settings.bot_webhook_url and secret_generated:
        lines.append(f"replywindow: pushes to {settings.bot_webhook_url} are signed with "
                     f"{bot_secret} (generated and stored; give it to the bot)")
    print("\n".join(lines), file=sys.stderr, flush=True)


