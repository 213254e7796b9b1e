"""WhatsApp templates as the vendor reports them."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from store.models import Template


def record_status(session: Session, *, vendor_template_id: str | None, name: str, language: str,
                  status: str, reason: str | None, at: datetime) -> Template:
    """Apply a status change unless a newer one is already recorded (pushes can cross)."""
    stmt = select(Template).where(Template.name == name, Template.language == language)
    row = session.exec(stmt.with_for_update()).first()
    if row is None:
        row = Template(vendor_template_id=vendor_template_id, name=name, language=language,
                       status=status, reason=reason, status_at=at)
        session.add(row)
        return row
    if row.status_at is None or at >= row.status_at:
        row.status, row.reason, row.status_at = status, reason, at
    row.vendor_template_id = row.vendor_template_id or vendor_template_id
    return row


def all_templates(session: Session) -> list[Template]:
    return list(session.exec(select(Template).order_by(col(Template.name), col(Template.language))).all())
