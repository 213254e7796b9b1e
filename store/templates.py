"""WhatsApp templates as the vendor reports them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from store._dialect import insert
from store.models import Template


def record_status(session: Session, *, vendor_template_id: str | None, name: str, language: str,
                  status: str, reason: str | None, at: datetime) -> None:
    """Apply a status change unless a newer one is already recorded (pushes can cross).
    One statement, so replicas creating the same template at once never collide."""
    table = Template.__table__  # type: ignore[attr-defined]
    stmt = insert(session, table).values(vendor_template_id=vendor_template_id, name=name,
                                         language=language, status=status, reason=reason,
                                         status_at=at, components=[])
    newer = table.c.status_at.is_(None) | (table.c.status_at <= stmt.excluded.status_at)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name", "language"],
        set_={
            "status": case((newer, stmt.excluded.status), else_=table.c.status),
            "reason": case((newer, stmt.excluded.reason), else_=table.c.reason),
            "status_at": case((newer, stmt.excluded.status_at), else_=table.c.status_at),
            "vendor_template_id": func.coalesce(table.c.vendor_template_id,
                                                stmt.excluded.vendor_template_id),
        },
    )
    session.exec(stmt)  # type: ignore[call-overload]


def all_templates(session: Session) -> list[Template]:
    return list(session.exec(
        select(Template).order_by(col(Template.name), col(Template.language))).all())
