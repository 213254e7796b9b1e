"""Which route a reply takes (SPEC "Route", "Opt-out"). Pure: no I/O, the clock passed in.

WhatsApp with a message: custom while the window is open; else the request's template, else
the configured fallback template, when `template` is in `fallback`; else SMS when `sms` is in
`fallback`; else refused. Only APPROVED templates with the right variable counts are used;
an opted-out contact gets no marketing template and no SMS, but replies inside the window
are service messages and still go.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sender.window import window_state

Route = Literal["custom", "template", "sms"]
STOP_WORDS = frozenset({"STOP", "UNSUBSCRIBE", "退订", "TD"})
START_WORDS = frozenset({"START", "订阅"})


@dataclass(frozen=True)
class TemplateView:
    name: str
    language: str
    status: str
    category: str | None = None
    # Counted from the synced template text; None when only a status push told us of it.
    body_variables: int | None = None
    header_variables: int | None = None


@dataclass(frozen=True)
class SendRequest:
    channel: str  # whatsapp | wecom | sms
    message: Any = None
    template: dict[str, Any] | None = None
    fallback: tuple[str, ...] = ()
    sms_text: str | None = None


@dataclass(frozen=True)
class Situation:
    """What the store knows at decision time."""

    last_inbound_at: datetime | None
    opted_out: bool = False
    templates: dict[tuple[str, str], TemplateView] = field(default_factory=dict)
    fallback_template: tuple[str, str] | None = None  # (name, language) from settings


@dataclass(frozen=True)
class SendDecision:
    route: Route | None
    template: dict[str, Any] | None = None  # {"name", "language", "components"} to send
    sms_text: str | None = None
    # Why not the first choice ("window_closed"), or why refused ("window_closed", "opted_out").
    reason: str | None = None

    @property
    def refused(self) -> bool:
        return self.route is None


def is_stop_word(text: str | None) -> bool:
    return text is not None and text.strip().upper() in STOP_WORDS


def is_start_word(text: str | None) -> bool:
    return text is not None and text.strip().upper() in START_WORDS


def template_language(template: dict[str, Any]) -> str:
    language = template.get("language")
    if isinstance(language, dict):
        language = language.get("code")
    return language if isinstance(language, str) else ""


def message_text(message: Any) -> str | None:
    """The plain text of a custom message, for an SMS fallback."""
    if isinstance(message, dict) and message.get("type") == "text":
        body = (message.get("text") or {}).get("body")
        return body if isinstance(body, str) else None
    return None


def _components_count(template: dict[str, Any], kind: str) -> int:
    for component in template.get("components") or []:
        if isinstance(component, dict) and component.get("type") == kind:
            return len(component.get("parameters") or [])
    return 0


def usable_template(template: dict[str, Any], situation: Situation) -> bool:
    known = situation.templates.get((str(template.get("name", "")), template_language(template)))
    if known is None or known.status != "APPROVED":
        return False
    if situation.opted_out and (known.category or "").upper() == "MARKETING":
        return False
    return all(
        expected is None or _components_count(template, kind) == expected
        for kind, expected in (("body", known.body_variables), ("header", known.header_variables))
    )


def _template_candidates(request: SendRequest, situation: Situation) -> list[dict[str, Any]]:
    candidates = [request.template] if request.template else []
    if situation.fallback_template is not None:
        name, language = situation.fallback_template
        candidates.append({"name": name, "language": language, "components": []})
    return candidates


def choose_route(request: SendRequest, situation: Situation, *, now: datetime,
                 margin: timedelta, after_custom_failed: bool = False) -> SendDecision:
    """The route for `request` now. `after_custom_failed`: the vendor refused the custom
    message (131047), so the window is closed whatever our clock says."""
    if request.channel == "wecom":
        return SendDecision(route="custom")
    if request.channel == "sms":
        if situation.opted_out:
            return SendDecision(route=None, reason="opted_out")
        return SendDecision(route="sms", sms_text=request.sms_text or message_text(request.message))
    window_open = window_state(situation.last_inbound_at, now=now, margin=margin).open
    if request.message is not None and window_open and not after_custom_failed:
        return SendDecision(route="custom")
    # A template-only request asks for a template; otherwise it must be an allowed fallback.
    reason = "window_closed" if request.message is not None else None
    if request.message is None or "template" in request.fallback:
        for template in _template_candidates(request, situation):
            if usable_template(template, situation):
                return SendDecision(route="template", template=template, reason=reason)
    text = request.sms_text or message_text(request.message)
    if "sms" in request.fallback and text:
        if situation.opted_out:
            return SendDecision(route=None, reason="opted_out")
        return SendDecision(route="sms", sms_text=text, reason=reason)
    if request.message is None:
        return SendDecision(route=None, reason="template_not_usable")
    return SendDecision(route=None, reason="opted_out" if situation.opted_out
                        and request.fallback else "window_closed")
