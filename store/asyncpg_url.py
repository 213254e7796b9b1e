"""The engine's PostgreSQL URL as asyncpg's connections take it (the window lookups',
store/pg_reads.py, and the webhook writer's, store/pg_append.py).

The engine speaks libpq (psycopg); asyncpg reads the same URL but does not know libpq's own
client settings, and would send them to the server as settings, which the server refuses: with
such a URL every lookup and every webhook's store would fail while the rest of the service ran.
"""

from __future__ import annotations

from sqlalchemy.engine import URL

CONNECT_TIMEOUT = 5.0


# libpq's own connection settings, which the engine's psycopg takes and asyncpg does not
# know. They tune libpq's socket (keepalives), its authentication and encryption choices, or
# name fallbacks; asyncpg's connections go without them.
_LIBPQ_ONLY = frozenset({
    "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
    "tcp_user_timeout", "gssencmode", "gssdelegation", "channel_binding", "require_auth",
    "requirepeer", "sslcompression", "sslsni", "sslcertmode", "load_balance_hosts",
    "fallback_application_name", "hostaddr", "connect_timeout",
})
# Of those, the values that demand something of the connection (an authentication method,
# channel binding, GSS encryption, a client certificate, the server's user): left out,
# asyncpg's connections would quietly do without it, so such a URL is refused at start-up.
_DEMANDS = {"channel_binding": {"require"}, "gssencmode": {"require"},
            "sslcertmode": {"require"}, "require_auth": None, "requirepeer": None}


def asyncpg_params(url: URL) -> tuple[str, float]:
    """asyncpg's DSN for the engine's URL (its driver name dropped), and the connect timeout:
    libpq's `connect_timeout` if the URL gives one. libpq's other settings are left out
    (`_LIBPQ_ONLY`), but `hostaddr` is the host when no host is named, and
    `fallback_application_name` the application name when none is given, as in libpq; one
    that demands what asyncpg cannot do (`_DEMANDS`) raises ValueError."""
    query = dict(url.query)
    for key, demanding in _DEMANDS.items():
        if key in query and (demanding is None or query[key] in demanding):
            raise ValueError(
                f"{key}={query[key]} in the database URL is not supported: the window "
                "lookups' and the webhook writer's connections (asyncpg) cannot honour it; "
                "remove it from the URL")
    timeout = query.get("connect_timeout")
    if query.get("fallback_application_name") and "application_name" not in query:
        query["application_name"] = query["fallback_application_name"]
    hostaddr = query.get("hostaddr")
    host = url.host or (hostaddr if isinstance(hostaddr, str) and hostaddr else None)
    query = {key: value for key, value in query.items() if key not in _LIBPQ_ONLY}
    dsn = url.set(drivername="postgresql", host=host,  # type: ignore[arg-type]
                  query=query).render_as_string(hide_password=False)
    if not timeout:
        return dsn, CONNECT_TIMEOUT
    try:
        seconds = float(timeout)  # type: ignore[arg-type]  # a tuple: the key given twice
    except (TypeError, ValueError):
        raise ValueError("connect_timeout in the database URL must be a number of seconds, "
                         f"not {timeout!r}") from None
    return dsn, seconds if seconds > 0 else CONNECT_TIMEOUT  # libpq: 0 is no limit; ours instead
