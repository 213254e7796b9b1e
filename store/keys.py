"""Bot API keys, stored as SHA-256 digests; the key itself is shown once, at creation."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import event
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


def find_active_digest(session: Session, key_hash: str) -> ApiKey | None:
    stmt = select(ApiKey).where(ApiKey.key_hash == key_hash, col(ApiKey.revoked_at).is_(None))
    return session.exec(stmt).first()


# Revocations made by this process, counted: a cache of valid keys (receiver/auth.py) drops
# what it holds when the count moves, so a key revoked here stops working at once. Revoked
# elsewhere (another process, another replica) it stops when the cache entry expires.
# (Two threads bumping at once may count one, but the count moves either way.)
_revocation_count = 0


def revocations() -> int:
    """How many times this process has revoked (or tried to revoke) a key."""
    return _revocation_count


def _revoked(*_args: object) -> None:
    global _revocation_count
    _revocation_count += 1


def all_keys(session: Session) -> list[ApiKey]:
    return list(session.exec(select(ApiKey).order_by(col(ApiKey.id))).all())


class AmbiguousKeyRef(ValueError):
    """`ref` names more than one active key; nothing was revoked."""

    def __init__(self, ref: str, ids: list[int]) -> None:
        super().__init__(f"{ref!r} matches more than one active key (ids "
                         f"{', '.join(map(str, ids))}); revoke one by its id")
        self.ids = ids


def revoke(session: Session, *, ref: str, now: datetime) -> ApiKey | None:
    """Revoke the key whose id, name or prefix is `ref`; None if there is none.

    Names need not be unique: an active key is preferred over revoked ones with the same
    name, and a ref that matches several active keys revokes none (AmbiguousKeyRef). A key
    that was already revoked is returned as it is (its `revoked_at` unchanged).
    """
    matches = [ApiKey.name == ref, ApiKey.prefix == ref]
    if ref.isdigit():
        matches.append(ApiKey.id == int(ref))
    rows = list(session.exec(select(ApiKey).where(or_(*matches)).order_by(col(ApiKey.id))).all())
    active = [row for row in rows if row.revoked_at is None]
    if len(active) > 1:
        raise AmbiguousKeyRef(ref, [row.id for row in active if row.id is not None])
    if active:
        row = active[0]
        row.revoked_at = now
        session.add(row)
        session.flush()
        # Now, and again once committed: a lookup between the two may have cached the key.
        _revoked()
        event.listen(session, "after_commit", _revoked, once=True)
        return row
    return rows[-1] if rows else None
