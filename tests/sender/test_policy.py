"""The route policy: every branch of SPEC "Route" and "Opt-out", with the clock passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sender.policy import (
    SendDecision,
    SendRequest,
    Situation,
    TemplateView,
    choose_route,
    is_start_word,
    is_stop_word,
)

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
MARGIN = timedelta(seconds=120)
TEXT = {"type": "text", "text": {"body": "Your order has shipped"}}
ORDER_UPDATE = {"name": "order_update", "language": "en",
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "A-1"}]}]}
APPROVED = TemplateView("order_update", "en", "APPROVED", "UTILITY", body_variables=1,
                        header_variables=0)
OPEN = NOW - timedelta(hours=1)
CLOSED = NOW - timedelta(hours=24)


def situation(last_inbound: datetime | None, *, opted_out: bool = False,
              templates: tuple[TemplateView, ...] = (APPROVED,),
              fallback_template: tuple[str, str] | None = None) -> Situation:
    return Situation(last_inbound_at=last_inbound, opted_out=opted_out,
                     templates={(t.name, t.language): t for t in templates},
                     fallback_template=fallback_template)


def decide(request: SendRequest, where: Situation, **kw: object) -> SendDecision:
    return choose_route(request, where, now=NOW, margin=MARGIN, **kw)  # type: ignore[arg-type]


def wa(**kw: object) -> SendRequest:
    return SendRequest(channel="whatsapp", message=kw.pop("message", TEXT), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("last_inbound", "route"),
    [
        # 1 s before the edge
        (NOW - timedelta(hours=24) + MARGIN + timedelta(seconds=1), "custom"),
        (NOW - timedelta(hours=24) + MARGIN, None),  # exactly at the edge: closed
        (NOW - timedelta(hours=24) + MARGIN - timedelta(seconds=1), None),
        (None, None),  # never wrote
    ],
)
def test_custom_only_while_the_window_is_open(last_inbound: datetime | None,
                                              route: str | None) -> None:
    assert decide(wa(), situation(last_inbound)).route == route


def test_closed_window_and_no_fallback_is_refused_as_window_closed() -> None:
    decision = decide(wa(template=ORDER_UPDATE), situation(CLOSED))
    assert (decision.route, decision.reason) == (None, "window_closed")


def test_closed_window_takes_the_requests_template_when_allowed() -> None:
    decision = decide(wa(template=ORDER_UPDATE, fallback=("template",)), situation(CLOSED))
    assert (decision.route, decision.template, decision.reason) == (
        "template", ORDER_UPDATE, "window_closed")


def test_then_the_configured_fallback_template() -> None:
    welcome = TemplateView("welcome_back", "en", "APPROVED", "UTILITY", 0, 0)
    decision = decide(wa(fallback=("template",)),
                      situation(CLOSED, templates=(welcome,),
                                fallback_template=("welcome_back", "en")))
    assert decision.route == "template"
    assert decision.template == {"name": "welcome_back", "language": "en", "components": []}


@pytest.mark.parametrize("status", ["PENDING", "PAUSED", "REJECTED", "DISABLED"])
def test_only_approved_templates_are_used(status: str) -> None:
    paused = TemplateView("order_update", "en", status, "UTILITY", 1, 0)
    decision = decide(wa(template=ORDER_UPDATE, fallback=("template",)),
                      situation(CLOSED, templates=(paused,)))
    assert decision.route is None


def test_variable_counts_are_checked_against_the_template() -> None:
    two = TemplateView("order_update", "en", "APPROVED", "UTILITY", body_variables=2)
    assert decide(wa(template=ORDER_UPDATE, fallback=("template",)),
                  situation(CLOSED, templates=(two,))).route is None


def test_unknown_variable_counts_are_not_checked() -> None:
    pushed_only = TemplateView("order_update", "en", "APPROVED")
    assert decide(wa(template=ORDER_UPDATE, fallback=("template",)),
                  situation(CLOSED, templates=(pushed_only,))).route == "template"


def test_language_as_an_object_is_understood() -> None:
    template = ORDER_UPDATE | {"language": {"code": "en"}}
    decision = decide(wa(template=template, fallback=("template",)), situation(CLOSED))
    assert decision.route == "template"


def test_sms_is_the_last_resort_with_the_text_body() -> None:
    decision = decide(wa(fallback=("template", "sms")), situation(CLOSED, templates=()))
    assert (decision.route, decision.sms_text, decision.reason) == (
        "sms", "Your order has shipped", "window_closed")


def test_sms_text_wins_over_the_message_body() -> None:
    decision = decide(wa(fallback=("sms",), sms_text="Shipped!"), situation(CLOSED))
    assert decision.sms_text == "Shipped!"


def test_a_non_text_message_with_no_sms_text_cannot_fall_back_to_sms() -> None:
    image = {"type": "image", "image": {"link": "https://x/y.jpg"}}
    assert decide(wa(message=image, fallback=("sms",)), situation(CLOSED)).route is None


def test_a_template_only_request_needs_no_fallback() -> None:
    decision = decide(wa(message=None, template=ORDER_UPDATE), situation(None))
    assert (decision.route, decision.reason) == ("template", None)


def test_a_template_only_request_with_an_unusable_template() -> None:
    decision = decide(wa(message=None, template=ORDER_UPDATE), situation(None, templates=()))
    assert (decision.route, decision.reason) == (None, "template_not_usable")


def test_after_131047_the_window_counts_as_closed_whatever_our_clock_says() -> None:
    decision = decide(wa(template=ORDER_UPDATE, fallback=("template",)), situation(OPEN),
                      after_custom_failed=True)
    assert decision.route == "template"


# -- opt-out -------------------------------------------------------------------------------


def test_replies_inside_the_window_still_go_to_an_opted_out_contact() -> None:
    assert decide(wa(), situation(OPEN, opted_out=True)).route == "custom"


def test_no_marketing_template_to_an_opted_out_contact() -> None:
    promo = TemplateView("order_update", "en", "APPROVED", "MARKETING", 1, 0)
    decision = decide(wa(template=ORDER_UPDATE, fallback=("template",)),
                      situation(CLOSED, opted_out=True, templates=(promo,)))
    assert (decision.route, decision.reason) == (None, "opted_out")


def test_utility_templates_still_go_to_an_opted_out_contact() -> None:
    decision = decide(wa(template=ORDER_UPDATE, fallback=("template",)),
                      situation(CLOSED, opted_out=True))
    assert decision.route == "template"


def test_no_sms_fallback_to_an_opted_out_contact() -> None:
    decision = decide(wa(fallback=("sms",)), situation(CLOSED, opted_out=True))
    assert (decision.route, decision.reason) == (None, "opted_out")


def test_no_sms_channel_send_to_an_opted_out_contact() -> None:
    decision = decide(SendRequest(channel="sms", sms_text="hi"), situation(None, opted_out=True))
    assert (decision.route, decision.reason) == (None, "opted_out")


def test_wecom_and_sms_have_no_window() -> None:
    assert decide(SendRequest(channel="wecom", message=[{}]), situation(None)).route == "custom"
    decision = decide(SendRequest(channel="sms", message=TEXT), situation(None))
    assert (decision.route, decision.sms_text) == ("sms", "Your order has shipped")


@pytest.mark.parametrize("text", ["STOP", " stop ", "Unsubscribe", "退订", "td"])
def test_stop_words(text: str) -> None:
    assert is_stop_word(text) and not is_start_word(text)


@pytest.mark.parametrize("text", ["START", "start", "订阅"])
def test_start_words(text: str) -> None:
    assert is_start_word(text) and not is_stop_word(text)


@pytest.mark.parametrize("text", [None, "", "please stop sending", "STOPP"])
def test_other_text_is_neither(text: str | None) -> None:
    assert not is_stop_word(text) and not is_start_word(text)
