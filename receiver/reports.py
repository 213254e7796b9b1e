"""The delivery report's figures, made from plain rows. Pure: no session, no clock, no request.

A message belongs to the group (day, channel, route, account, status) it was asked for in;
`day` is the UTC date of its `created_at`. It counts once for every status it reached (its
time column is set), so `delivered` includes the messages later `read`.

    submitted        every message asked for (refused ones too)
    accepted … expired   messages that reached that status
    delivery_rate    (delivered or read) / accepted
    accept_to_delivery_seconds   median and p95 (nearest rank: always a time that occurred)
    failure_reasons  failure_code + failure_reason, most frequent first, top 10
    routes           custom / template / sms (none: refused before a route was taken)
    refused          rejected by us for a closed window or an opt-out
    billable         billable messages by the vendor's conversation type
    sms_cost         `pricedetail.pay` summed per currency, with messages and segments
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from store.reports import DeliveryRow
from store.utc_text import iso_z

GROUP_FIELDS = ("day", "channel", "route", "account", "status")
STATUSES = ("accepted", "sent", "delivered", "read", "failed", "rejected", "expired")
ROUTES = ("custom", "template", "sms")
REFUSALS = ("window_closed", "opted_out")
TOP_FAILURES = 10
NO_ROUTE = "none"


class BadGroupBy(ValueError):
    """`group_by` names something a report can't be grouped by."""


def parse_group_by(raw: str | None, *, default: tuple[str, ...] = ("day",)) -> tuple[str, ...]:
    """'day,channel' -> ('day', 'channel'); None -> the default; '' -> () (one group)."""
    if raw is None:
        return default
    fields: list[str] = []
    for part in raw.split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in GROUP_FIELDS:
            raise BadGroupBy(f"group_by: {name[:40]!r} is not one of {', '.join(GROUP_FIELDS)}.")
        if name not in fields:
            fields.append(name)
    return tuple(fields)


def mask(value: str) -> str:
    """A phone number or wxid with all but its last 4 characters hidden: '*******1412'."""
    if len(value) <= 4:
        return "*" * len(value)
    return "*" * (len(value) - 4) + value[-4:]


def median(values: list[float]) -> float | None:
    """The middle value (the mean of the two middle ones for an even count)."""
    ordered = sorted(values)
    if not ordered:
        return None
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least p% of values at or below."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def _whole(value: Any) -> int:
    amount = _decimal(value)
    return int(amount) if amount is not None else 0


def day_of(at: datetime) -> str:
    return at.astimezone(UTC).date().isoformat()


def group_value(row: DeliveryRow, name: str) -> str:
    if name == "day":
        return day_of(row.created_at)
    if name == "route":
        return row.route or NO_ROUTE
    value: str = getattr(row, name)
    return value


@dataclass
class Tally:
    """The running figures of one group."""

    submitted: int = 0
    reached: Counter[str] = field(default_factory=Counter)
    delivered_or_read: int = 0
    durations: list[float] = field(default_factory=list)
    routes: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    failures: Counter[tuple[str, str]] = field(default_factory=Counter)
    billable: Counter[str] = field(default_factory=Counter)
    cost: dict[str, list[Any]] = field(default_factory=dict)  # currency -> [amount, n, segments]

    def add(self, row: DeliveryRow) -> None:
        self.submitted += 1
        for status in STATUSES:
            if getattr(row, f"{status}_at") is not None:
                self.reached[status] += 1
        delivered = row.delivered_at or row.read_at
        if delivered is not None:
            self.delivered_or_read += 1
            if row.accepted_at is not None:
                self.durations.append(max(0.0, (delivered - row.accepted_at).total_seconds()))
        self.routes[row.route or NO_ROUTE] += 1
        if row.rejected_at is not None and row.failure_code in REFUSALS:
            self.refused[row.failure_code] += 1
        if row.failure_code or row.failure_reason:
            self.failures[(row.failure_code or "", row.failure_reason or "")] += 1
        if row.billable:
            self.billable[row.conversation_type or "unknown"] += 1
        if row.cost and "sms" in (row.channel, row.route):
            amount = _decimal(row.cost.get("pay"))
            if amount is not None:
                currency = str(row.cost.get("currency") or "unknown")[:8]
                entry = self.cost.setdefault(currency, [Decimal(0), 0, 0])
                entry[0] += amount
                entry[1] += 1
                entry[2] += _whole(row.cost.get("chargeCnt"))

    def figures(self) -> dict[str, Any]:
        accepted = self.reached["accepted"]
        ranked = sorted(self.failures.items(), key=lambda item: (-item[1], item[0]))
        p50, p95 = median(self.durations), percentile(self.durations, 95)
        return {
            "submitted": self.submitted,
            **{status: self.reached[status] for status in STATUSES},
            "delivery_rate": round(self.delivered_or_read / accepted, 4) if accepted else None,
            "accept_to_delivery_seconds": {
                "count": len(self.durations),
                "median": round(p50, 3) if p50 is not None else None,
                "p95": round(p95, 3) if p95 is not None else None,
            },
            "failure_reasons": [{"code": code or None, "reason": reason or None, "count": n}
                                for (code, reason), n in ranked[:TOP_FAILURES]],
            "routes": {route: self.routes[route] for route in (*ROUTES, NO_ROUTE)},
            "refused": {reason: self.refused[reason] for reason in REFUSALS},
            "billable": {"total": sum(self.billable.values()),
                         "by_conversation_type": dict(sorted(self.billable.items()))},
            "sms_cost": {currency: {"amount": str(amount), "messages": n, "segments": segments}
                         for currency, (amount, n, segments) in sorted(self.cost.items())},
        }


@dataclass(frozen=True)
class Group:
    key: dict[str, str]
    figures: dict[str, Any]


@dataclass(frozen=True)
class DeliveryReport:
    since: datetime
    until: datetime
    group_by: tuple[str, ...]
    groups: list[Group]
    totals: dict[str, Any]

    def masked(self) -> DeliveryReport:
        """The same report with accounts (business phones, staff wxids) masked."""
        groups = [Group({k: mask(v) if k == "account" else v for k, v in g.key.items()},
                        g.figures) for g in self.groups]
        return DeliveryReport(self.since, self.until, self.group_by, groups, self.totals)

    def as_json(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since), "until": _iso(self.until),
            "group_by": list(self.group_by),
            "groups": [{**g.key, **g.figures} for g in self.groups],
            "totals": self.totals,
        }

    def csv_columns(self) -> list[str]:
        types = sorted({t for g in self.groups
                        for t in g.figures["billable"]["by_conversation_type"]})
        currencies = sorted({c for g in self.groups for c in g.figures["sms_cost"]})
        return [
            *self.group_by, "submitted", *STATUSES, "delivery_rate",
            "accept_to_delivery_median_s", "accept_to_delivery_p95_s",
            *(f"route_{r}" for r in (*ROUTES, NO_ROUTE)),
            *(f"refused_{r}" for r in REFUSALS),
            "billable", *(f"billable_{t}" for t in types),
            *(f"sms_cost_{c}" for c in currencies), *(f"sms_segments_{c}" for c in currencies),
            "top_failure_code", "top_failure_reason", "top_failure_count", "failure_reasons",
        ]

    def csv_rows(self) -> list[dict[str, Any]]:
        rows = []
        for group in self.groups:
            f = group.figures
            top = f["failure_reasons"][0] if f["failure_reasons"] else {}
            timing = f["accept_to_delivery_seconds"]
            row: dict[str, Any] = {
                **group.key, "submitted": f["submitted"], **{s: f[s] for s in STATUSES},
                "delivery_rate": f["delivery_rate"],
                "accept_to_delivery_median_s": timing["median"],
                "accept_to_delivery_p95_s": timing["p95"],
                **{f"route_{r}": n for r, n in f["routes"].items()},
                **{f"refused_{r}": n for r, n in f["refused"].items()},
                "billable": f["billable"]["total"],
                **{f"billable_{t}": n for t, n in f["billable"]["by_conversation_type"].items()},
                **{f"sms_cost_{c}": v["amount"] for c, v in f["sms_cost"].items()},
                **{f"sms_segments_{c}": v["segments"] for c, v in f["sms_cost"].items()},
                "top_failure_code": top.get("code"), "top_failure_reason": top.get("reason"),
                "top_failure_count": top.get("count"),
                "failure_reasons": "; ".join(
                    f"[{r['code'] or ''}] {r['reason'] or ''} = {r['count']}"
                    for r in f["failure_reasons"]),
            }
            rows.append(row)
        return rows

    def as_csv(self) -> str:
        out = io.StringIO()
        columns = self.csv_columns()
        writer = csv.DictWriter(out, fieldnames=columns, restval=0, lineterminator="\r\n")
        writer.writeheader()
        for row in self.csv_rows():
            writer.writerow({k: ("" if v is None else _cell(v)) for k, v in row.items()})
        return out.getvalue()


_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _cell(value: Any) -> Any:
    # A spreadsheet runs a cell that starts with = + - @ as a formula: vendor reasons are text.
    if (isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r")
            and not _NUMBER.fullmatch(value)):
        return "'" + value
    return value


def _iso(value: datetime) -> str:
    return iso_z(value.astimezone(UTC))


def build_report(rows: Iterable[DeliveryRow], *, since: datetime, until: datetime,
                 group_by: tuple[str, ...]) -> DeliveryReport:
    """The report over `rows` (any iterable: a chunked query streams through)."""
    groups: dict[tuple[str, ...], Tally] = {}
    totals = Tally()
    for row in rows:
        key = tuple(group_value(row, name) for name in group_by)
        groups.setdefault(key, Tally()).add(row)
        totals.add(row)
    return DeliveryReport(
        since=since, until=until, group_by=group_by,
        groups=[Group(dict(zip(group_by, key, strict=True)), tally.figures())
                for key, tally in sorted(groups.items())],
        totals=totals.figures(),
    )
