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

    @property
    def may_see_numbers(self) -> bool:
        """Whole phone numbers in reports: keys from REPLYWINDOW_API_KEYS (the operator's)
        only; keys made with `replywindow keys add` see them masked."""
        return self.key_id.startswith("env:")


def _presented_key(request: Request, *, allow_query_key: bool) -> str:
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    query_key = request.query_params.get("key", "").strip() if allow_query_key else ""
    if query_key:
        return query_key
    raise Unauthorized("Send your API key as 'Authorization: Bearer <key>'.")


def authenticate(request: Request, runtime: Runtime, *, allow_query_key: bool = False) -> Caller:
    """The caller behind the request's key. Sync: call it from a threadpool endpoint.
    `allow_query_key`: a `?key=` parameter is accepted too (the report page, for browsers)."""
    presented = _presented_key(request, allow_query_key=allow_query_key)
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
