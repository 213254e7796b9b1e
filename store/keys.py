"""Bot API keys, stored as SHA-256 digests; the key itself is shown once, at creation."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlmodel import Session, col, or_, select

from store.models import ApiKey

KEY_PREFIX = "rwk_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create(session: Session, *, name: str, accounts: list[str] | None,
           now: datetime) -> tuple[ApiKey, str]:
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(name=name, prefix=key[:10], key_hash=digest(key), accounts=accounts,
                 created_at=now)
    session.add(row)
    session.flush()
    return row, key


def find_active(session: Session, key: str) -> ApiKey | None:
    stmt = select(ApiKey).where(ApiKey.key_hash == digest(key),
                                col(ApiKey.revoked_at).is_(None))
    return session.exec(stmt).first()


def all_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))).all())


def revoke(session: Session, *, ref: str, now: datetime) -> ApiKey | None:
    """Revoke the key whose id, name or prefix is `ref`."""
    matches = [ApiKey.name == ref, ApiKey.prefix == ref]
    if ref.isdigit():
        matches.append(ApiKey.id == int(ref))
    row = session.exec(select(ApiKey).where(or_(*matches))).first()
    if row is not None and row.revoked_at is None:
        row.revoked_at = now
        session.add(row)
    return row
