"""replywindow's benchmark: `python -m bench` (see bench/cli.py and README.md).

Measurement only: the service's code is run as it is, in its own uvicorn process, against
a ceiling (a bare Starlette endpoint) and a naive way (one SQLModel row committed per request),
with one load generator and one set of payloads for every run.
"""

# Every scenario the table names, in the order it prints them (the smoke test checks them).
SCENARIOS = (
    "ceiling: bare Starlette",
    "naive: row+commit per request",
    "replywindow webhooks, SQLite",
    "replywindow webhooks, PostgreSQL",
    "webhooks, SQLite, paced 0.35x ceiling",  # sustained for --sustain seconds (default 60)
    "webhooks, SQLite, 云真机 only",
    "POST /v1/messages -> simulator",
    "POST /v1/messages at 1/2 rate",
    "window lookup, SQLite",
    "window lookup, SQLite, at 1/2 rate",
    # The bare endpoint under the row above's load: the latency of the framework and the
    # load generator alone at that pace.
    "floor at the SQLite lookups' pace",
    "window lookup, PostgreSQL",
    "window lookup, PostgreSQL, at 1/2 rate",
    "floor at the PostgreSQL lookups' pace",
)
