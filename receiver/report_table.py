"""The delivery report as terminal tables (rich), for `replywindow report`."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from receiver.reports import NO_ROUTE, ROUTES, STATUSES, DeliveryReport

NONE = "\u2013"  # an en dash: no figure


def _rate(value: float | None) -> str:
    return NONE if value is None else f"{100 * value:.1f}%"


def _seconds(value: float | None) -> str:
    return NONE if value is None else f"{value:g}"


def _cost(figures: dict[str, Any]) -> str:
    return ", ".join(f'{v["amount"]} {c}' for c, v in figures["sms_cost"].items()) or NONE


def _key_cells(report: DeliveryReport, key: dict[str, str] | None) -> list[str]:
    if key is None:
        return ["total", *[""] * (len(report.group_by) - 1)] if report.group_by else []
    return [key[name] for name in report.group_by]


def _rows(report: DeliveryReport) -> list[tuple[dict[str, str] | None, dict[str, Any]]]:
    """Each group, then the total (None); with no grouping, the total alone."""
    if not report.group_by:
        return [(None, report.totals)]
    return [*((g.key, g.figures) for g in report.groups), (None, report.totals)]


def _add(table: Table, report: DeliveryReport, key: dict[str, str] | None,
         cells: list[str]) -> None:
    total = key is None and bool(report.group_by)
    if total:
        table.add_section()
    table.add_row(*_key_cells(report, key), *cells, style="bold" if total else None)


def outcomes_table(report: DeliveryReport) -> Table:
    table = Table(title="Outcomes", title_justify="left")
    for name in report.group_by:
        table.add_column(name)
    for name in ("submitted", *STATUSES):
        table.add_column(name, justify="right")
    table.add_column("delivery rate", justify="right")
    for key, f in _rows(report):
        _add(table, report, key, [str(f["submitted"]), *(str(f[s]) for s in STATUSES),
                                  _rate(f["delivery_rate"])])
    return table


def routes_table(report: DeliveryReport) -> Table:
    table = Table(title="Timing, routes, refusals, cost", title_justify="left")
    for name in report.group_by:
        table.add_column(name)
    for name in ("accept→delivery median s", "p95 s", *ROUTES, "no route",
                 "refused: window", "refused: opt-out", "billable", "SMS cost"):
        table.add_column(name, justify="right")
    for key, f in _rows(report):
        timing = f["accept_to_delivery_seconds"]
        _add(table, report, key, [
            _seconds(timing["median"]), _seconds(timing["p95"]),
            *(str(f["routes"][r]) for r in ROUTES), str(f["routes"][NO_ROUTE]),
            str(f["refused"]["window_closed"]), str(f["refused"]["opted_out"]),
            str(f["billable"]["total"]), _cost(f)])
    return table


def failures_table(report: DeliveryReport) -> Table:
    table = Table(title="Top failure reasons", title_justify="left")
    table.add_column("code")
    table.add_column("reason")
    table.add_column("messages", justify="right")
    for r in report.totals["failure_reasons"]:
        table.add_row(r["code"] or NONE, r["reason"] or NONE, str(r["count"]))
    return table


def print_report(report: DeliveryReport, console: Console) -> None:
    since = report.since.strftime("%Y-%m-%d %H:%M")
    until = report.until.strftime("%Y-%m-%d %H:%M")
    console.print(f"Delivery report, {since} to {until} UTC")
    console.print(outcomes_table(report))
    console.print(routes_table(report))
    if report.totals["failure_reasons"]:
        console.print(failures_table(report))
    billable = report.totals["billable"]["by_conversation_type"]
    if billable:
        console.print("Billable by conversation type: "
                      + ", ".join(f"{kind} {n}" for kind, n in billable.items()))
