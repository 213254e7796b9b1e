"""The report page's HTML: one document, inline CSS, charts drawn here as inline SVG, so it
works with no internet. Pure: a PageView in, a string out.

Every chart element carries its numbers as data attributes (`data-day`, `data-status`,
`data-route`, `data-code`, `data-count`, `data-figure`/`data-value`), for people reading the
source and for tests reading the DOM.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape
from typing import Any

from receiver.reports import NO_ROUTE, ROUTES, DeliveryReport

OUTCOMES = ("delivered", "read", "failed", "rejected", "expired")
COLOURS = {
    "delivered": "#2f9e5b", "read": "#2b6cb0", "failed": "#d64545", "rejected": "#e08a1e",
    "expired": "#8a8f98", "custom": "#2b6cb0", "template": "#7b5cc4", "sms": "#2f9e5b",
    NO_ROUTE: "#b9bec6",
}
CHANNELS = ("whatsapp", "wecom", "sms")
NONE = "\u2013"  # an en dash: no figure


@dataclass(frozen=True)
class PageView:
    report: DeliveryReport  # grouped by day
    channel: str | None
    windows: list[dict[str, Any]] | None  # None: not a WhatsApp view
    closing_within: timedelta
    key: str | None  # the ?key= the page was opened with, carried by the form
    show_numbers: bool
    now: datetime


def _e(value: Any) -> str:
    return escape(str(value), quote=True)


def _days(since: datetime, until: datetime) -> list[date]:
    first = since.astimezone(UTC).date()
    last = (until - timedelta(microseconds=1)).astimezone(UTC).date()
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def _nice_step(largest: int, ticks: int = 4) -> int:
    """A step of 1, 2 or 5 x 10^k with `ticks` steps reaching `largest`."""
    rough = max(1, math.ceil(largest / ticks))
    power = 10 ** int(math.log10(rough))
    return next(int(m * power) for m in (1, 2, 5, 10) if m * power >= rough)


def outcomes_chart(report: DeliveryReport) -> str:
    """Grouped bars per day: delivered, read, failed, rejected, expired."""
    by_day = {g.key["day"]: g.figures for g in report.groups}
    days = _days(report.since, report.until)
    largest = max([by_day.get(d.isoformat(), {}).get(s, 0) for d in days for s in OUTCOMES] + [1])
    step = _nice_step(largest)
    top_value = step * 4
    left, top, plot_h, bar = 34, 12, 170, 10
    group = max(66.0, (360 - left - 8) / len(days))  # a short range spreads out
    width, height = left + group * len(days) + 8, top + plot_h + 30
    out = [f'<svg class="chart" role="img" aria-label="Outcomes per day" '
           f'viewBox="0 0 {width:.0f} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
           f'data-chart="outcomes">']
    for tick in range(5):
        y = top + plot_h - plot_h * tick / 4
        out.append(f'<line x1="{left}" x2="{width - 4:.0f}" y1="{y:.1f}" y2="{y:.1f}" '
                   f'class="grid"/><text x="{left - 5}" y="{y + 4:.1f}" class="axis" '
                   f'text-anchor="end">{step * tick}</text>')
    label_every = max(1, math.ceil(len(days) / 14))
    for i, day in enumerate(days):
        figures = by_day.get(day.isoformat(), {})
        x0 = left + i * group + (group - 5 * (bar + 1)) / 2
        for j, status in enumerate(OUTCOMES):
            count = int(figures.get(status, 0))
            h = plot_h * count / top_value
            x, y = x0 + j * (bar + 1), top + plot_h - h
            out.append(
                f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar}" height="{h:.1f}" '
                f'fill="{COLOURS[status]}" data-day="{day.isoformat()}" data-status="{status}" '
                f'data-count="{count}"><title>{day:%d %b} {status}: {count}</title></rect>')
            if count:
                out.append(f'<text x="{x + bar / 2:.1f}" y="{y - 2:.1f}" class="value" '
                           f'text-anchor="middle">{count}</text>')
        if i % label_every == 0:
            out.append(f'<text x="{x0 + 2.5 * (bar + 1):.1f}" y="{top + plot_h + 16}" '
                       f'class="axis" text-anchor="middle">{day:%d %b}</text>')
    out.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{COLOURS[s]}"></i>{s}</span>'
                     for s in OUTCOMES)
    return "".join(out) + f'<div class="legend">{legend}</div>'


def route_mix(totals: dict[str, Any]) -> str:
    routes = totals["routes"]
    total = sum(routes.values())
    parts, x = [], 0.0
    names = [*ROUTES, NO_ROUTE]
    for route in names:
        count = routes.get(route, 0)
        w = 100 * count / total if total else 0
        parts.append(f'<rect x="{x:.3f}" y="0" width="{w:.3f}" height="10" '
                     f'fill="{COLOURS[route]}" data-route="{route}" data-count="{count}">'
                     f'<title>{route}: {count}</title></rect>')
        x += w
    legend = "".join(
        f'<span class="key"><i style="background:{COLOURS[r]}"></i>{_e(_route_name(r))} '
        f'<b>{routes.get(r, 0)}</b>{_share(routes.get(r, 0), total)}</span>' for r in names)
    refused = totals["refused"]
    return (f'<svg class="mix" viewBox="0 0 100 10" preserveAspectRatio="none" width="100%" '
            f'height="22" role="img" aria-label="Route mix" '
            f'data-chart="routes"><rect width="100" height="10" fill="#eef0f3"/>'
            f'{"".join(parts)}</svg><div class="legend">{legend}</div>'
            f'<p class="muted">Refused before sending: '
            f'<span data-refused="window_closed" data-count="{refused["window_closed"]}">'
            f'{refused["window_closed"]} for a closed window</span>, '
            f'<span data-refused="opted_out" data-count="{refused["opted_out"]}">'
            f'{refused["opted_out"]} for an opt-out</span>.</p>')


def _route_name(route: str) -> str:
    return "not sent (no route)" if route == NO_ROUTE else route


def _share(count: int, total: int) -> str:
    return f" ({100 * count / total:.0f}%)" if total else ""


def failure_list(totals: dict[str, Any]) -> str:
    reasons = totals["failure_reasons"]
    if not reasons:
        return '<p class="muted">No failures in this range.</p>'
    largest = reasons[0]["count"]
    items = []
    for r in reasons:
        items.append(
            f'<li data-code="{_e(r["code"] or "")}" data-count="{r["count"]}">'
            f'<div class="reason"><code>{_e(r["code"] or NONE)}</code> '
            f'{_e(r["reason"] or "no reason given")}<b>{r["count"]}</b></div>'
            f'<div class="track"><div class="fill" style="width:{100 * r["count"] / largest:.1f}%">'
            f'</div></div></li>')
    return f'<ol class="failures" data-chart="failures">{"".join(items)}</ol>'


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return NONE
    if seconds < 60:
        return f"{seconds:g} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _card(name: str, label: str, value: Any, shown: str | None = None) -> str:
    data = "" if value is None else _e(value)
    return (f'<div class="card" data-figure="{name}" data-value="{data}"><span>{_e(label)}</span>'
            f'<b>{_e(shown if shown is not None else value)}</b></div>')


def summary(totals: dict[str, Any]) -> str:
    rate = totals["delivery_rate"]
    timing = totals["accept_to_delivery_seconds"]
    cost = ", ".join(f'{v["amount"]} {c}' for c, v in totals["sms_cost"].items()) or NONE
    cards = [
        _card("submitted", "Submitted", totals["submitted"]),
        _card("accepted", "Accepted", totals["accepted"]),
        _card("delivered", "Delivered", totals["delivered"]),
        _card("read", "Read", totals["read"]),
        _card("delivery_rate", "Delivery rate", rate,
              NONE if rate is None else f"{100 * rate:.1f}%"),
        _card("median", "Accept → delivery, median", timing["median"],
              _duration(timing["median"])),
        _card("p95", "Accept → delivery, p95", timing["p95"], _duration(timing["p95"])),
        _card("failed", "Failed", totals["failed"]),
        _card("rejected", "Rejected", totals["rejected"]),
        _card("expired", "Expired", totals["expired"]),
        _card("billable", "Billable", totals["billable"]["total"]),
        _card("sms_cost", "SMS cost", cost),
    ]
    return f'<div class="cards">{"".join(cards)}</div>'


def day_table(report: DeliveryReport) -> str:
    head = "".join(f"<th>{h.capitalize()}</th>"
                   for h in ("day", "submitted", "accepted", *OUTCOMES, "rate"))
    rows = []
    for group in report.groups:
        f = group.figures
        rate = NONE if f["delivery_rate"] is None else f"{100 * f['delivery_rate']:.1f}%"
        cells = "".join(f"<td>{f[s]}</td>" for s in ("submitted", "accepted", *OUTCOMES))
        rows.append(f'<tr data-day="{group.key["day"]}"><th>{group.key["day"]}</th>{cells}'
                    f"<td>{rate}</td></tr>")
    body = "".join(rows) or '<tr><td colspan="9" class="muted">No messages.</td></tr>'
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            f"</table></div>")


def windows_list(view: PageView) -> str:
    if view.windows is None:
        return ('<p class="muted">Reply windows are a WhatsApp matter: pick WhatsApp or all '
                "channels.</p>")
    if not view.windows:
        return (f'<p class="muted">No open window closes in the next '
                f'{view.closing_within.total_seconds() / 3600:g} h.</p>')
    items = []
    for w in view.windows:
        left = w["seconds_left"]
        badge = '<span class="badge">unanswered</span>' if w["unanswered"] else ""
        items.append(
            f'<li data-seconds-left="{left}"><span>{_e(w["business_phone"])} → '
            f'{_e(w["recipient"])}</span>{badge}<b>{left // 3600} h {left % 3600 // 60:02d} min'
            f'</b><small>closes {w["expires_at"]:%d %b %H:%M} UTC</small></li>')
    return f'<ul class="windows" data-chart="windows">{"".join(items)}</ul>'


def _form(view: PageView) -> str:
    since = view.report.since.astimezone(UTC).date().isoformat()
    until = (view.report.until - timedelta(microseconds=1)).date().isoformat()
    options = "".join(
        f'<option value="{c}"{" selected" if view.channel == c else ""}>{c}</option>'
        for c in CHANNELS)
    hidden = f'<input type="hidden" name="key" value="{_e(view.key)}">' if view.key else ""
    if view.show_numbers:
        hidden += '<input type="hidden" name="show_numbers" value="true">'
    return (f'<form method="get" action="/reports">{hidden}'
            f'<label>From<input type="date" name="since" value="{since}"></label>'
            f'<label>To<input type="date" name="until" value="{until}"></label>'
            f'<label>Channel<select name="channel"><option value="">all</option>{options}'
            f'</select></label><button type="submit">Show</button></form>')


def render_page(view: PageView) -> str:
    report, totals = view.report, view.report.totals
    channel = view.channel or "all channels"
    body = (
        f'<header><h1>Delivery report</h1><p class="muted">{report.since:%d %b %Y %H:%M} to '
        f'{report.until:%d %b %Y %H:%M} UTC · {_e(channel)} · as of {view.now:%d %b %H:%M} UTC'
        f'</p>{_form(view)}</header>'
        f'<section>{summary(totals)}</section>'
        f'<section><h2>Outcomes per day</h2>{outcomes_chart(report)}{day_table(report)}</section>'
        f'<div class="two"><section><h2>Route mix</h2>{route_mix(totals)}</section>'
        f'<section><h2>Top failure reasons</h2>{failure_list(totals)}</section></div>'
        f'<section><h2>Windows closing soon</h2>{windows_list(view)}</section>'
        f'<footer class="muted">Days are UTC; a message counts on the day it was asked for, '
        f'once for every status it reached.'
        f'{"" if view.show_numbers else " Phone numbers show their last 4 digits only."}'
        f'</footer>'
    )
    return _document("Delivery report", body)


def render_error(status: int, detail: str, *, ask_key: bool) -> str:
    form = ('<form method="get" action="/reports"><label>API key<input type="password" '
            'name="key" autocomplete="off" required></label><button type="submit">Open</button>'
            '</form>') if ask_key else '<p><a href="/reports">Back to the report</a></p>'
    body = (f'<header><h1>Delivery report</h1></header><section><p class="error" '
            f'data-status-code="{status}">{_e(detail)}</p>{form}</section>')
    return _document(f"{status} · Delivery report", body)


_CSS = """
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,
sans-serif;color:#1d2430;background:#f5f6f8}main{max-width:1000px;margin:0 auto;padding:12px}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.05em;margin:0 0 .6em}
section{background:#fff;border-radius:10px;padding:14px;margin:12px 0;
box-shadow:0 1px 2px rgba(0,0,0,.06)}.muted{color:#677084;font-size:.9em}
form{display:flex;flex-wrap:wrap;gap:8px;align-items:flex-end;margin:.6em 0}
label{display:flex;flex-direction:column;font-size:.8em;color:#677084;flex:1 1 120px}
input,select,button{font:inherit;padding:6px 8px;border:1px solid #c9ced6;border-radius:6px;
background:#fff;min-height:38px}button{background:#2b6cb0;color:#fff;border:0;
padding:6px 18px;flex:0 0 auto}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:8px}
.card{border:1px solid #e4e7ec;border-radius:8px;padding:8px 10px}.card span{display:block;
font-size:.78em;color:#677084}.card b{font-size:1.3em}
.chart{display:block;max-height:320px}.chart .grid{stroke:#e4e7ec}
.chart .axis{font-size:13px;fill:#677084}.chart .value{font-size:11px;fill:#1d2430}
.legend{display:flex;flex-wrap:wrap;gap:6px 14px;margin:8px 0;font-size:.85em}
.key i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:5px}
.key b{margin-left:4px}.mix{display:block;border-radius:4px}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%;font-size:.85em;
margin-top:10px}th,td{padding:4px 6px;border-bottom:1px solid #eef0f3;text-align:right}
thead th,tbody th{text-align:left;white-space:nowrap}
.two{display:grid;grid-template-columns:1fr 1fr;gap:0 12px}
.failures{margin:0;padding-left:1.3em}.failures li{margin:0 0 8px}
.reason{display:flex;gap:6px;align-items:baseline}.reason b{margin-left:auto}
.track{background:#eef0f3;border-radius:3px;height:6px}.fill{background:#d64545;height:6px;
border-radius:3px}.windows{list-style:none;margin:0;padding:0}.windows li{display:flex;
flex-wrap:wrap;gap:4px 10px;align-items:baseline;padding:6px 0;border-bottom:1px solid #eef0f3}
.windows b{margin-left:auto}.windows small{flex-basis:100%;color:#677084}
.badge{background:#fdecd2;color:#8a4b00;border-radius:10px;padding:0 8px;font-size:.78em}
.error{color:#a32121;font-weight:600}footer{padding:4px 2px 20px}
@media (max-width:640px){.two{grid-template-columns:1fr}main{padding:8px}
section{padding:10px}}
"""


def _document(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="referrer" content="no-referrer"><title>{_e(title)}</title>'
            f'<style>{_CSS}</style></head><body><main>{body}</main></body></html>')
