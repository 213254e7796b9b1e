"""Who is calling the bot API, and which accounts they may see."""

from __future__ import annotations

import hmac
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session
from starlette.requests import Request

from receiver.errors import Forbidden, Unauthorized
from receiver.runtime import Runtime, utcnow
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


# Keys from the database, once verified, are remembered by this process for KEY_CACHE_TTL,
# so that a hot endpoint (a window lookup) needs no database read to know its caller. The
# price: a key revoked by another process (`replywindow keys revoke` on another machine,
# another replica) keeps working here for up to KEY_CACHE_TTL (5 s); revoked in this process
# (store.keys.revoke) it stops at once. Only keys that verified are kept, so a wrong key
# always reads the database and cannot fill the cache; they are kept by their SHA-256 (as
# stored, never the key itself), at most KEY_CACHE_SIZE per database, the oldest dropped
# first. The TTL runs on the app's clock (runtime.clock), so tests can move it.
KEY_CACHE_TTL = timedelta(seconds=5)
KEY_CACHE_SIZE = 1024


class KeyCache:
    """Verified database keys: SHA-256 -> (cached at, revocation count then, Caller)."""

    def __init__(self, *, ttl: timedelta = KEY_CACHE_TTL, size: int = KEY_CACHE_SIZE) -> None:
        self.ttl, self.size = ttl, size
        self._entries: dict[str, tuple[datetime, int, Caller]] = {}
        self._lock = threading.Lock()  # authenticate runs in threadpool workers too

    def get(self, key_hash: str, now: datetime) -> Caller | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        cached_at, revocations, caller = entry
        # A clock gone backwards expires the entry too.
        if revocations == keys.revocations() and cached_at <= now < cached_at + self.ttl:
            return caller
        with self._lock:
            if self._entries.get(key_hash) is entry:
                del self._entries[key_hash]
        return None

    def put(self, key_hash: str, caller: Caller, *, now: datetime, revocations: int) -> None:
        """`revocations`: store.keys.revocations() read before the key was looked up."""
        with self._lock:
            self._entries.pop(key_hash, None)
            while len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
            self._entries[key_hash] = (now, revocations, caller)

    def __len__(self) -> int:
        return len(self._entries)


_caches: weakref.WeakKeyDictionary[Engine, KeyCache] = weakref.WeakKeyDictionary()


def key_cache(engine: Engine) -> KeyCache:
    """The cache for the keys stored in `engine`'s database."""
    cache = _caches.get(engine)
    if cache is None:
        cache = _caches.setdefault(engine, KeyCache())
    return cache


def _now(runtime: Runtime) -> datetime:
    # The app's clock; a stand-in runtime without one (a test of one route) gets the real time.
    clock = getattr(runtime, "clock", None) or utcnow
    return clock()


def _configured(presented: str, runtime: Runtime) -> Caller | None:
    # Every configured key is compared, in constant time, so timing reveals nothing.
    matched = False
    for index, configured in enumerate(runtime.settings.env_api_keys):
        if hmac.compare_digest(presented.encode(), configured.encode()):
            matched, key_id = True, f"env:{index}"
    return Caller(key_id=key_id, accounts=None) if matched else None


def authenticate(request: Request, runtime: Runtime, *, allow_query_key: bool = False) -> Caller:
    """The caller behind the request's key. Sync: call it from a threadpool endpoint.
    `allow_query_key`: a `?key=` parameter is accepted too (the report page, for browsers)."""
    presented = _presented_key(request, allow_query_key=allow_query_key)
    caller = _configured(presented, runtime)
    if caller is not None:
        return caller
    key_hash = keys.digest(presented)
    cache = key_cache(runtime.engine)
    now = _now(runtime)  # before the read: the entry's age counts from here
    caller = cache.get(key_hash, now)
    if caller is not None:
        return caller
    revocations = keys.revocations()  # before the read: a revocation meanwhile voids it
    with Session(runtime.engine) as session:
        row = keys.find_active_digest(session, key_hash)
    if row is None or not hmac.compare_digest(row.key_hash, key_hash):
        raise Unauthorized("That API key is not valid.")
    accounts = frozenset(row.accounts) if row.accounts is not None else None
    caller = Caller(key_id=f"db:{row.id}", accounts=accounts)
    cache.put(key_hash, caller, now=now, revocations=revocations)
    return caller


def known_caller(request: Request, runtime: Runtime) -> Caller | None:
    """The caller if no database read is needed to know it (a configured key, or a database
    key verified less than KEY_CACHE_TTL ago), else None: then `authenticate` (in the
    threadpool). Safe on the event loop. Raises Unauthorized when no key is sent at all."""
    presented = _presented_key(request, allow_query_key=False)
    caller = _configured(presented, runtime)
    if caller is None:
        caller = key_cache(runtime.engine).get(keys.digest(presented), _now(runtime))
    return caller
