"""Who is calling the bot API, and which accounts they may see."""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from sqlmodel import Session
from starlette.requests import Request

from receiver.errors import Forbidden, Unauthorized
from receiver.runtime import Runtime
from store import keys


@dataclass(frozen=True)
class Caller:
    key_id: str
    accounts: frozenset[str] | None  # None: every account

    def may_see(self, account: str) -> bool:
        return self.accounts is None or account in self.accounts

    def require(self, account: str) -> None:
        if not self.may_see(account):
            raise Forbidden("This API key is not scoped to that account.")


def _presented_key(request: Request) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Send your API key as 'Authorization: Bearer <key>'.")
    return key.strip()


def authenticate(request: Request, runtime: Runtime) -> Caller:
    """The caller behind the request's key. Sync: call it from a threadpool endpoint."""
    presented = _presented_key(request)
    # Every configured key is compared, in constant time, so timing reveals nothing.
    matched = False
    for index, configured in enumerate(runtime.settings.env_api_keys):
        if hmac.compare_digest(presented.encode(), configured.encode()):
            matched, key_id = True, f"env:{index}"
    if matched:
        return Caller(key_id=key_id, accounts=None)
    with Session(runtime.engine) as session:
        row = keys.find_active(session, presented)
    if row is None or not hmac.compare_digest(row.key_hash, keys.digest(presented)):
        raise Unauthorized("That API key is not valid.")
    accounts = frozenset(row.accounts) if row.accounts is not None else None
    return Caller(key_id=f"db:{row.id}", accounts=accounts)
