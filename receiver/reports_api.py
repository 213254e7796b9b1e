"""GET /v1/reports/delivery (JSON or CSV) and GET /reports (the same figures as a page)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlmodel import Session
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from receiver import report_page, reports
from receiver.auth import Caller, authenticate
from receiver.errors import ApiError, Forbidden, Invalid
from receiver.runtime import Runtime
from sender.window import open_since, window_state
from store import conversations
from store.reports import delivery_rows

CHANNELS = ("whatsapp", "wecom", "sms")
DEFAULT_RANGE = timedelta(days=7)
MAX_RANGE = timedelta(days=400)
# The page lists open WhatsApp windows that close within this long.
CLOSING_SOON = timedelta(hours=6)
CLOSING_SOON_LIMIT = 20
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_SPACED_OFFSET = re.compile(r"(T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")
_TIME = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9:.]+(Z|[+-][0-9]{2}:?[0-9]{2})?")


@dataclass(frozen=True)
class ReportParams:
    since: datetime
    until: datetime
    channel: str | None
    show_numbers: bool


def _instant(raw: str, name: str, *, end_of_day: bool) -> datetime:
    """An ISO-8601 time (zone-less: UTC), or a date: its start, or for `until` its end."""
    # An unencoded '+' in a query string arrives as a space: "10:00:00 01:00" meant "+01:00".
    raw = _SPACED_OFFSET.sub(r"\1+\2", raw.strip())
    try:
        if _DATE.fullmatch(raw):
            day = date.fromisoformat(raw)
            return datetime.combine(day + timedelta(days=1) if end_of_day else day, time(),
                                    tzinfo=UTC)
        if _TIME.fullmatch(raw):
            parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        pass
    raise Invalid(f"{name} must be an ISO-8601 time (2026-11-24T10:00:00Z) or a date "
                  "(2026-11-24).", code="invalid_parameter", field=name)


def parse_params(query: Any, *, now: datetime) -> ReportParams:
    """since/until/channel/show_numbers from a query string; 422 naming the field."""
    since_raw, until_raw = query.get("since") or "", query.get("until") or ""
    until = _instant(until_raw, "until", end_of_day=True) if until_raw else now
    since = _instant(since_raw, "since", end_of_day=False) if since_raw else until - DEFAULT_RANGE
    if since >= until:
        raise Invalid("since must be before until.", code="invalid_parameter", field="since")
    if until - since > MAX_RANGE:
        raise Invalid(f"A report covers at most {MAX_RANGE.days} days.",
                      code="invalid_parameter", field="since")
    channel = query.get("channel") or None
    if channel is not None and channel not in CHANNELS:
        raise Invalid("channel must be one of whatsapp, wecom, sms.", code="invalid_parameter",
                      field="channel")
    show = (query.get("show_numbers") or "false").lower()
    if show not in ("true", "false", "1", "0"):
        raise Invalid("show_numbers must be true or false.", code="invalid_parameter",
                      field="show_numbers")
    return ReportParams(since=since, until=until, channel=channel,
                        show_numbers=show in ("true", "1"))


def _scope(caller: Caller) -> list[str] | None:
    return sorted(caller.accounts) if caller.accounts is not None else None


def build(runtime: Runtime, caller: Caller, params: ReportParams,
          group_by: tuple[str, ...]) -> reports.DeliveryReport:
    """The report the caller may see: their accounts, numbers masked unless allowed."""
    if params.show_numbers and not caller.may_see_numbers:
        raise Forbidden("This API key may not see whole phone numbers; only keys from "
                        "REPLYWINDOW_API_KEYS may.", code="numbers_not_allowed")
    with Session(runtime.engine) as session:
        report = reports.build_report(
            delivery_rows(session, since=params.since, until=params.until,
                          channel=params.channel, accounts=_scope(caller)),
            since=params.since, until=params.until, group_by=group_by)
    return report if params.show_numbers else report.masked()


def delivery_report(request: Request) -> Response:
    runtime: Runtime = request.state.runtime
    caller = authenticate(request, runtime)
    query = request.query_params
    params = parse_params(query, now=runtime.clock())
    try:
        group_by = reports.parse_group_by(query.get("group_by"))
    except reports.BadGroupBy as exc:
        raise Invalid(str(exc), code="invalid_parameter", field="group_by") from None
    fmt = (query.get("format") or "json").lower()
    if fmt not in ("json", "csv"):
        raise Invalid("format must be json or csv.", code="invalid_parameter", field="format")
    report = build(runtime, caller, params, group_by)
    if fmt == "csv":
        name = f"delivery-{params.since:%Y%m%d}-{params.until:%Y%m%d}.csv"
        return Response(report.as_csv(), media_type="text/csv; charset=utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})
    return JSONResponse(report.as_json())


def closing_windows(runtime: Runtime, caller: Caller, *, show_numbers: bool,
                    now: datetime) -> list[dict[str, Any]]:
    """Open WhatsApp windows that close within CLOSING_SOON, soonest first."""
    after = open_since(now=now, margin=runtime.margin)
    with Session(runtime.engine) as session:
        rows = conversations.by_last_inbound(
            session, after=after, until=after + CLOSING_SOON, unanswered=False,
            accounts=_scope(caller), limit=CLOSING_SOON_LIMIT)
    shown = (lambda v: v) if show_numbers else reports.mask
    windows = []
    for row in rows:
        state = window_state(row.last_inbound_at, now=now, margin=runtime.margin)
        unanswered = row.last_inbound_at is not None and (
            row.last_outbound_at is None or row.last_outbound_at < row.last_inbound_at)
        windows.append({"business_phone": shown(row.account), "recipient": shown(row.customer),
                        "expires_at": state.expires_at, "seconds_left": state.seconds_left,
                        "unanswered": unanswered})
    return windows


_PAGE_HEADERS = {
    # Nothing may come from elsewhere: the page is one document, styles and charts inline.
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
                               "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


def report_page_view(request: Request) -> Response:
    runtime: Runtime = request.state.runtime
    query = request.query_params
    key = query.get("key") if "authorization" not in request.headers else None
    try:
        caller = authenticate(request, runtime, allow_query_key=True)
    except ApiError as exc:
        return HTMLResponse(report_page.render_error(exc.status, exc.detail, ask_key=True),
                            status_code=exc.status, headers=_PAGE_HEADERS)
    now = runtime.clock()
    page_query = dict(query)
    today = now.date()
    page_query.setdefault("since", (today - timedelta(days=6)).isoformat())
    page_query.setdefault("until", today.isoformat())
    try:
        params = parse_params({k: v for k, v in page_query.items() if v}, now=now)
        report = build(runtime, caller, params, ("day",))
    except ApiError as exc:
        return HTMLResponse(report_page.render_error(exc.status, exc.detail, ask_key=False),
                            status_code=exc.status, headers=_PAGE_HEADERS)
    windows = (closing_windows(runtime, caller, show_numbers=params.show_numbers, now=now)
               if params.channel in (None, "whatsapp") else None)
    html = report_page.render_page(report_page.PageView(
        report=report, channel=params.channel, windows=windows, closing_within=CLOSING_SOON,
        key=key, show_numbers=params.show_numbers, now=now))
    return HTMLResponse(html, headers=_PAGE_HEADERS)


routes = [
    Route("/v1/reports/delivery", delivery_report, methods=["GET"]),
    Route("/reports", report_page_view, methods=["GET"]),
]
