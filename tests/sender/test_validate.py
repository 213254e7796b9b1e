"""Local validation (SPEC "Bot API": "Local validation mirrors the vendors' rules and codes").

The seeds' own request examples must pass; every limit is tested one step inside and one step
outside, with the field path and the vendor's code; garbage anywhere gives ValidationFailed.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sender.validate import (
    ValidationFailed,
    check_phone,
    check_sms,
    check_template_send,
    check_wecom_messages,
    check_whatsapp_message,
    count_variables,
)

ANY = object()  # "don't check the vendor code"


def fails(call: Callable[[], object], field: str, code: object = ANY) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as info:
        call()
    exc = info.value
    assert exc.field == field, exc
    if code is not ANY:
        assert exc.vendor_code == code, exc
    assert exc.detail and str(exc) == f"{field}: {exc.detail}"
    return exc


# --- the seeds' own request examples (seed 000), copied as given -----------------------------

LINK = "https://abc.com/log.png"
S3 = ("https://test-itnio-im.s3.us-west-2.amazonaws.com/im-img-file/4be035c4c37b4a6c8d40690ce2"
      "7e5660.png?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20260310T034655Z&X-Amz-SignedHe"
      "aders=host&X-Amz-Credential=AKIAUTJFJ2APHYZXEONS%2F20260310%2Fus-west-2%2Fs3%2Faws4_req"
      "uest&X-Amz-Expires=86400&X-Amz-Signature=51eaa3dbcc3034fedea5e99e1c88b6410e9158615cf26b"
      "016fe3e022da175e60")
OUTER = {"appId": "DGziZf5u", "businessPhone": "91856321321", "recipient": "91856321322",
         "channelType": 0}


def seed(**message: Any) -> dict[str, Any]:
    return {**OUTER, **message}


def _row(s: int, r: int) -> dict[str, str]:
    return {"id": f"SECTION_{s}_ROW_{r}_ID", "title": f"SECTION_{s}_ROW_{r}_TITLE",
            "description": f"SECTION_{s}_ROW_{r}_DESCRIPTION"}


def _seed_card(i: int, text: str, link: str, action: dict[str, Any]) -> dict[str, Any]:
    return {"card_index": i, "type": "cta_url",
            "header": {"type": "image", "image": {"link": link}},
            "body": {"text": text}, "action": action}


ECHEVERIA = ("*Blue Echeveria*nnA rosette-shaped succulent with powdery blue leaves, perfect "
             "for brightening up any space.")
HAWORTHIA = ("*Zebra Haworthia*nnStriking white stripes on deep green leaves give this compact "
             "succulent a bold, modern look.")
LEARN_MORE = {"buttons": [{"type": "quick_reply",
                           "quick_reply": {"id": "learn-blue-echeveria", "title": "Learn more"}}]}

SEED_CONTACT = json.loads("""{
  "addresses": [
    {"street": "STREET", "city": "CITY", "state": "STATE", "zip": "ZIP", "country": "COUNTRY",
     "country_code": "COUNTRY_CODE", "type": "HOME"},
    {"street": "STREET", "city": "CITY", "state": "STATE", "zip": "ZIP", "country": "COUNTRY",
     "country_code": "COUNTRY_CODE", "type": "WORK"}],
  "birthday": "1995-01-11",
  "emails": [{"email": "EMAIL", "type": "WORK"}, {"email": "EMAIL", "type": "HOME"}],
  "name": {"formatted_name": "NAME", "first_name": "FIRST_NAME", "last_name": "LAST_NAME",
           "middle_name": "MIDDLE_NAME", "suffix": "SUFFIX", "prefix": "PREFIX"},
  "org": {"company": "COMPANY", "department": "DEPARTMENT", "title": "TITLE"},
  "phones": [{"phone": "PHONE_NUMBER", "type": "HOME"},
             {"phone": "PHONE_NUMBER", "type": "WORK", "wa_id": "PHONE_OR_WA_ID"}],
  "urls": [{"url": "URL", "type": "WORK"}, {"url": "URL", "type": "HOME"}]
}""")

SEED_MESSAGES = {
    "text": seed(type="text", text={"body": "this is body content"}),
    "context": seed(type="text", text={"body": "this is body content"},
                    context={"refMessageId": "1"}),
    "image": seed(type="image", image={"link": LINK, "caption": "title"}),
    "document": seed(type="document",
                     document={"link": LINK, "filename": "123", "caption": "title"}),
    "audio": seed(type="audio", audio={"link": LINK}),
    "video": seed(type="video", video={"link": LINK, "caption": "title"}),
    "sticker": seed(type="sticker", sticker={"link": "https://abc.com/log.webp"}),
    # The seed's location example has no "type"; every other example has one, so it is added.
    "location": seed(type="location", location={
        "address": "深圳市龙岗区", "latitude": "62.636152267456", "link": "https://123",
        "name": "深圳", "longitude": "104.056640625"}),
    "list": {**OUTER, "businessPhone": 6282299953162, "type": "interactive", "interactive": {
        "type": "list", "header": {"type": "text", "text": "HEADER_TEXT"},
        "body": {"text": "BODY_TEXT"}, "footer": {"text": "FOOTER_TEXT"},
        "action": {"button": "BUTTON_TEXT", "sections": [
            {"title": "SECTION_1_TITLE", "rows": [_row(1, 1), _row(1, 2)]},
            {"title": "SECTION_2_TITLE", "rows": [_row(2, 1), _row(2, 2)]}]}}},
    "button": seed(type="interactive", interactive={
        "type": "button", "body": {"text": "BUTTON_TEXT"},
        "action": {"buttons": [{"type": "reply", "reply": {"id": "22", "title": "one"}},
                               {"type": "reply", "reply": {"id": "33", "title": "two"}}]}}),
    "location_request": seed(type="interactive", interactive={
        "type": "location_request_message", "body": {"text": "广东省深圳市龙岗区"},
        "action": {"name": "send_location"}}),
    "contacts": seed(type="contacts", contacts=[SEED_CONTACT]),
    "carousel_url": seed(type="interactive", interactive={
        "type": "carousel", "body": {"text": "good for you"}, "action": {"cards": [
            _seed_card(0, ECHEVERIA, S3, {"name": "cta_url", "parameters": {
                "display_text": "Buy now",
                "url": "https://shop.luckyshrub.com/latest/blue-echeveria"}}),
            _seed_card(1, HAWORTHIA, S3, {"name": "cta_url", "parameters": {
                "display_text": "Buy now",
                "url": "https://shop.luckyshrub.com/latest/zebra-haworthia"}})]}}),
    # The seed's JSON has trailing commas; same content. Both cards repeat one button id and
    # title, so "unique in the message" can only mean unique within a card.
    "carousel_quick_reply": seed(type="interactive", interactive={
        "type": "carousel",
        "body": {"text": "Of course! Here are three of our latest arrivals, each under $25:"},
        "action": {"cards": [
            _seed_card(0, ECHEVERIA, "https://www.luckyshrub.com/assets/blue-echeveria.jpeg",
                       LEARN_MORE),
            _seed_card(1, ECHEVERIA, "https://www.luckyshrub.com/assets/blue-echeveria.jpeg",
                       LEARN_MORE)]}}),
}


@pytest.mark.parametrize("message", SEED_MESSAGES.values(), ids=SEED_MESSAGES.keys())
def test_seed_examples_pass(message: dict[str, Any]) -> None:
    check_whatsapp_message(message)
    # and the bare message shape the bot API takes (no appId, recipient, ...)
    check_whatsapp_message({k: v for k, v in message.items() if k not in OUTER})


# --- builders --------------------------------------------------------------------------------

def text(body: Any) -> dict[str, Any]:
    return {"type": "text", "text": {"body": body}}


def interactive(**inner: Any) -> dict[str, Any]:
    return {"type": "interactive", "interactive": inner}


def rows(n: int, *, start: int = 0, **row: Any) -> list[dict[str, Any]]:
    return [{"id": f"r{start + i}", "title": f"Row {start + i}", **row} for i in range(n)]


def list_msg(*sections: dict[str, Any], button: Any = "Choose") -> dict[str, Any]:
    return interactive(type="list", body={"text": "Pick one"},
                       action={"button": button, "sections": list(sections)})


def one_row_sections(n: int) -> list[dict[str, Any]]:
    return [{"title": f"S{i}", "rows": rows(1, start=i)} for i in range(n)]


def buttons_msg(*titles: str, **reply: Any) -> dict[str, Any]:
    return interactive(type="button", body={"text": "Sure?"}, action={"buttons": [
        {"type": "reply", "reply": {"id": f"b{i}", "title": t, **reply}}
        for i, t in enumerate(titles)]})


def card(i: int, **over: Any) -> dict[str, Any]:
    base = {"card_index": i, "type": "cta_url",
            "header": {"type": "image", "image": {"link": "https://x.test/a.png"}},
            "body": {"text": f"card {i}"},
            "action": {"name": "cta_url",
                       "parameters": {"display_text": "Buy", "url": "https://x.test/buy"}}}
    return {**base, **over}


def carousel(cards: list[Any] | int, **inner: Any) -> dict[str, Any]:
    if isinstance(cards, int):
        cards = [card(i) for i in range(cards)]
    body = inner.pop("body", {"text": "Our picks"})
    return interactive(type="carousel", body=body, action={"cards": cards}, **inner)


def carousel_card(**over: Any) -> dict[str, Any]:
    """Two cards; the second one given `over`."""
    return carousel([card(0), card(1, **over)])


def qr_action(*titles: str, ids: tuple[str, ...] | None = None) -> dict[str, Any]:
    ids = ids or tuple(f"q{i}" for i in range(len(titles)))
    return {"buttons": [{"type": "quick_reply", "quick_reply": {"id": i, "title": t}}
                        for i, t in zip(ids, titles, strict=True)]}


def location(**over: Any) -> dict[str, Any]:
    return {"type": "location", "location": {
        "latitude": "22.54", "longitude": "114.05", "name": "深圳", "address": "龙岗区", **over}}


def contact(**over: Any) -> dict[str, Any]:
    return {"type": "contacts", "contacts": [{"name": {"formatted_name": "Ann Lee"}, **over}]}


CARD = "message.interactive.action.cards[1]"
SECTIONS = "message.interactive.action.sections"
BUTTONS = "message.interactive.action.buttons"

VALID_WHATSAPP = {
    "text 4096": text("x" * 4096),
    "text 4096 CJK": text("字" * 4096),
    "image without caption": {"type": "image", "image": {"link": "http://a.test/x.jpg"}},
    "context null": {**text("hi"), "context": None},
    "location lat 90 lon 180": location(latitude="90", longitude="180"),
    "location lat -90 lon -180": location(latitude="-90.0", longitude="-180"),
    "location as numbers": location(latitude=22.54, longitude=114),
    "list 1 section": list_msg({"rows": rows(1)}),
    "list 10 sections": list_msg(*one_row_sections(10)),
    "list 10 rows in one section": list_msg({"rows": rows(10)}),
    "list 10 rows over 2 sections": list_msg({"title": "A", "rows": rows(5)},
                                             {"title": "B", "rows": rows(5, start=5)}),
    "list section title 24": list_msg({"title": "t" * 24, "rows": rows(1)}),
    "list row id 200": list_msg({"rows": [{"id": "i" * 200, "title": "x"}]}),
    "list row title 24": list_msg({"rows": [{"id": "i", "title": "t" * 24}]}),
    "list row description 72": list_msg({"rows": rows(1, description="d" * 72)}),
    "buttons 1": buttons_msg("Yes"),
    "buttons 3": buttons_msg("Yes", "No", "Maybe"),
    "button title 20": buttons_msg("t" * 20),
    "button id 256": buttons_msg("Yes", id="i" * 256),
    "buttons image header": {**buttons_msg("Yes"), "interactive": {
        **buttons_msg("Yes")["interactive"],
        "header": {"type": "image", "image": {"link": "https://x.test/h.png"}}}},
    "carousel 2 cards": carousel(2),
    "carousel 10 cards": carousel(10),
    "carousel body 1024": carousel(2, body={"text": "b" * 1024}),
    "card body 160": carousel_card(body={"text": "b" * 160}),
    "card video header": carousel_card(
        header={"type": "video", "video": {"link": "https://x.test/v.mp4"}}),
    "card display_text 20": carousel_card(action={"name": "cta_url", "parameters": {
        "display_text": "d" * 20, "url": "https://x.test"}}),
    "card 1 quick reply": carousel_card(action=qr_action("A")),
    "card 2 quick replies": carousel_card(action=qr_action("A", "B")),
    "card quick reply id and title 20": carousel_card(
        action=qr_action("t" * 20, ids=("i" * 20,))),
    "contacts minimal": contact(),
    "contacts birthday leap day": contact(birthday="2000-02-29"),
}


@pytest.mark.parametrize("message", VALID_WHATSAPP.values(), ids=VALID_WHATSAPP.keys())
def test_whatsapp_limits_inside(message: dict[str, Any]) -> None:
    check_whatsapp_message(message)


W = pytest.param
INVALID_WHATSAPP = [
    # garbage
    W(None, "message", None, id="None"),
    W(5, "message", None, id="int"),
    W("x", "message", None, id="str"),
    W([], "message", None, id="list"),
    W({}, "message.type", "-132", id="no type"),
    W({"type": 5}, "message.type", "-132", id="type int"),
    W({"type": ["text"]}, "message.type", "-132", id="type list"),
    W({"type": "context", "text": {"body": "x"}}, "message.type", "-132", id="type context"),
    W({"type": "template"}, "message.type", "-132", id="type template"),
    # text
    W(text("x" * 4097), "message.text.body", None, id="text 4097"),
    W({"type": "text"}, "message.text", "-114", id="text missing"),
    W({"type": "text", "text": "hi"}, "message.text", "-114", id="text not object"),
    W({"type": "text", "text": {}}, "message.text.body", "-115", id="body missing"),
    W(text(""), "message.text.body", "-115", id="body empty"),
    W(text("  \n"), "message.text.body", "-115", id="body blank"),
    W(text(5), "message.text.body", "-115", id="body int"),
    W(text({"a": 1}), "message.text.body", "-115", id="body object"),
    # media: object and link codes per type
    W({"type": "image"}, "message.image", "-116", id="image missing"),
    W({"type": "image", "image": {}}, "message.image.link", "-117", id="image link missing"),
    W({"type": "audio"}, "message.audio", "-118", id="audio missing"),
    W({"type": "audio", "audio": {"link": ""}}, "message.audio.link", "-119", id="audio link"),
    W({"type": "video", "video": []}, "message.video", "-120", id="video list"),
    W({"type": "video", "video": {}}, "message.video.link", "-121", id="video link missing"),
    W({"type": "sticker"}, "message.sticker", "-122", id="sticker missing"),
    W({"type": "sticker", "sticker": {"link": 1}}, "message.sticker.link", "-123",
      id="sticker link int"),
    W({"type": "document"}, "message.document", "-124", id="document missing"),
    W({"type": "document", "document": {"filename": "a"}}, "message.document.link", "-125",
      id="document link missing"),
    W({"type": "document", "document": {"link": LINK}}, "message.document.filename", None,
      id="document filename missing"),
    W({"type": "image", "image": {"link": "ftp://a.test/x"}}, "message.image.link", "-133",
      id="link ftp"),
    W({"type": "image", "image": {"link": "abc.com/x.png"}}, "message.image.link", "-133",
      id="link no scheme"),
    W({"type": "image", "image": {"link": "https://a b.test/x"}}, "message.image.link", "-133",
      id="link space"),
    W({"type": "image", "image": {"link": "http://[::1/x"}}, "message.image.link", "-133",
      id="link bad ipv6"),
    W({"type": "image", "image": {"link": LINK, "caption": 5}}, "message.image.caption", None,
      id="caption int"),
    # location
    W({"type": "location"}, "message.location", "-127", id="location missing"),
    W(location(longitude=None), "message.location.longitude", "-128", id="longitude missing"),
    W(location(latitude=""), "message.location.latitude", "-129", id="latitude empty"),
    W(location(latitude=True), "message.location.latitude", "-129", id="latitude bool"),
    W(location(latitude=[1]), "message.location.latitude", "-129", id="latitude list"),
    W(location(latitude="90.0001"), "message.location.latitude", None, id="latitude 90.0001"),
    W(location(latitude=-91), "message.location.latitude", None, id="latitude -91"),
    W(location(longitude="180.5"), "message.location.longitude", None, id="longitude 180.5"),
    W(location(longitude=10**400), "message.location.longitude", None, id="longitude huge"),
    W(location(latitude="nan"), "message.location.latitude", None, id="latitude nan"),
    W(location(latitude=float("inf")), "message.location.latitude", None, id="latitude inf"),
    W(location(latitude="1e1"), "message.location.latitude", None, id="latitude exponent"),
    W(location(name=None), "message.location.name", None, id="location name missing"),
    W(location(address=""), "message.location.address", None, id="location address empty"),
    # context
    W({**text("hi"), "context": "1"}, "message.context", None, id="context str"),
    W({**text("hi"), "context": {}}, "message.context.refMessageId", None, id="ref missing"),
    W({**text("hi"), "context": {"refMessageId": ""}}, "message.context.refMessageId", None,
      id="ref empty"),
    # interactive
    W({"type": "interactive"}, "message.interactive", None, id="interactive missing"),
    W(interactive(type="product"), "message.interactive.type", "-165", id="interactive type"),
    W(interactive(), "message.interactive.type", "-165", id="interactive no type"),
    # list
    W(list_msg(), SECTIONS, None, id="list 0 sections"),
    W(list_msg(*one_row_sections(11)), SECTIONS, None, id="list 11 sections"),
    W(list_msg({"rows": rows(11)}), f"{SECTIONS}[0].rows", None, id="list 11 rows"),
    W(list_msg({"title": "A", "rows": rows(5)}, {"title": "B", "rows": rows(6, start=5)}),
      f"{SECTIONS}[1].rows", None, id="list 11 rows over 2 sections"),
    W(list_msg({"rows": []}), f"{SECTIONS}[0].rows", None, id="list section no rows"),
    W(list_msg({"title": "t" * 25, "rows": rows(1)}), f"{SECTIONS}[0].title", None,
      id="list section title 25"),
    W(list_msg({"rows": [{"id": "i" * 201, "title": "x"}]}), f"{SECTIONS}[0].rows[0].id", None,
      id="list row id 201"),
    W(list_msg({"rows": [{"id": "i", "title": "t" * 25}]}), f"{SECTIONS}[0].rows[0].title",
      None, id="list row title 25"),
    W(list_msg({"rows": rows(1, description="d" * 73)}), f"{SECTIONS}[0].rows[0].description",
      None, id="list row description 73"),
    W(list_msg({"rows": [{"id": "i"}]}), f"{SECTIONS}[0].rows[0].title", None,
      id="list row no title"),
    W(list_msg({"rows": ["r"]}), f"{SECTIONS}[0].rows[0]", None, id="list row str"),
    W(list_msg({"rows": rows(1)}, button=None), "message.interactive.action.button", None,
      id="list no button"),
    W(list_msg({"rows": rows(1)}, button=""), "message.interactive.action.button", None,
      id="list empty button"),
    W(interactive(type="list", body={"text": "x"}), "message.interactive.action", None,
      id="list no action"),
    W(interactive(type="list", action={"button": "b", "sections": [{"rows": rows(1)}]}),
      "message.interactive.body", None, id="list no body"),
    W({**list_msg({"rows": rows(1)}), "interactive": {
        **list_msg({"rows": rows(1)})["interactive"],
        "header": {"type": "image", "image": {"link": LINK}}}},
      "message.interactive.header.type", None, id="list media header"),
    # reply buttons
    W(buttons_msg(), BUTTONS, None, id="buttons 0"),
    W(buttons_msg("a", "b", "c", "d"), BUTTONS, None, id="buttons 4"),
    W(buttons_msg("t" * 21), f"{BUTTONS}[0].reply.title", None, id="button title 21"),
    W(buttons_msg(""), f"{BUTTONS}[0].reply.title", None, id="button title empty"),
    W(buttons_msg("Yes", id="i" * 257), f"{BUTTONS}[0].reply.id", None, id="button id 257"),
    W(buttons_msg("Yes", "No", "Yes"), f"{BUTTONS}[2].reply.title", None,
      id="button titles repeat"),
    W(interactive(type="button", body={"text": "x"}, action={"buttons": [
        {"type": "url", "reply": {"id": "1", "title": "a"}}]}), f"{BUTTONS}[0].type", None,
      id="button type url"),
    W(interactive(type="button", body={"text": "x"}, action={"buttons": [{"type": "reply"}]}),
      f"{BUTTONS}[0].reply", None, id="button no reply"),
    W(interactive(type="button", action={"buttons": [
        {"type": "reply", "reply": {"id": "1", "title": "a"}}]}), "message.interactive.body",
      None, id="button no body"),
    # location request
    W(interactive(type="location_request_message", body={"text": "where?"},
                  action={"name": "send"}), "message.interactive.action.name", None,
      id="location request name"),
    W(interactive(type="location_request_message", action={"name": "send_location"}),
      "message.interactive.body", None, id="location request no body"),
    # carousel
    W(carousel(1), "message.interactive.action.cards", "-305", id="carousel 1 card"),
    W(carousel(11), "message.interactive.action.cards", "-305", id="carousel 11 cards"),
    W(carousel([]), "message.interactive.action.cards", "-305", id="carousel 0 cards"),
    W(interactive(type="carousel", body={"text": "x"}, action={}),
      "message.interactive.action.cards", "-305", id="carousel no cards"),
    W(interactive(type="carousel", body={"text": "x"}), "message.interactive.action", "-322",
      id="carousel no action"),
    W(carousel([card(1), card(0)]), "message.interactive.action.cards[0].card_index", "-306",
      id="card indexes out of order"),
    W(carousel([card(0), card(0)]), f"{CARD}.card_index", "-306", id="card indexes repeat"),
    W(carousel([card(0), card(2)]), f"{CARD}.card_index", "-306", id="card indexes gap"),
    W(carousel_card(card_index=-1), f"{CARD}.card_index", "-306", id="card index -1"),
    W(carousel_card(card_index="1"), f"{CARD}.card_index", "-306", id="card index str"),
    W(carousel_card(card_index=True), f"{CARD}.card_index", "-306", id="card index bool"),
    W(carousel_card(card_index=None), f"{CARD}.card_index", "-306", id="card index missing"),
    W(carousel([card(0), "card"]), CARD, "-322", id="card str"),
    W(carousel_card(type="quick_reply"), f"{CARD}.type", "-307", id="card type"),
    W(carousel_card(header=None), f"{CARD}.header", "-308", id="card header missing"),
    W(carousel_card(header={"type": "document"}), f"{CARD}.header.type", "-309",
      id="card header document"),
    W(carousel_card(header={"type": "image"}), f"{CARD}.header.image", "-310",
      id="card header image missing"),
    W(carousel_card(header={"type": "video", "video": {}}), f"{CARD}.header.video.link",
      "-310", id="card header link missing"),
    W(carousel_card(header={"type": "image", "image": {"link": "x.png"}}),
      f"{CARD}.header.image.link", "-133", id="card header link bad"),
    W(carousel_card(body={"text": "b" * 161}), f"{CARD}.body.text", "-311", id="card body 161"),
    W(carousel_card(body={"text": ""}), f"{CARD}.body.text", "-311", id="card body empty"),
    W(carousel_card(body=None), f"{CARD}.body", "-311", id="card body missing"),
    W(carousel(2, header={"type": "text", "text": "h"}), "message.interactive.header", "-304",
      id="carousel header"),
    W(carousel(2, footer={"text": "f"}), "message.interactive.footer", "-304",
      id="carousel footer"),
    W(carousel(2, body=None), "message.interactive.body", "-329", id="carousel body missing"),
    W(carousel(2, body={"text": "b" * 1025}), "message.interactive.body.text", "-330",
      id="carousel body 1025"),
    W(carousel(2, body={}), "message.interactive.body.text", "-330", id="carousel body empty"),
    W(carousel_card(action=None), f"{CARD}.action", "-312", id="card action missing"),
    W(carousel_card(action={}), f"{CARD}.action", "-312", id="card action empty"),
    W(carousel_card(action={**qr_action("A"), "name": "cta_url"}), f"{CARD}.action", "-331",
      id="card action both kinds"),
    W(carousel_card(action={"foo": 1}), f"{CARD}.action", "-331", id="card action neither"),
    W(carousel_card(action={"name": "url", "parameters": {}}), f"{CARD}.action.name", "-313",
      id="card url name"),
    W(carousel_card(action={"name": "cta_url"}), f"{CARD}.action.parameters", "-314",
      id="card url parameters missing"),
    W(carousel_card(action={"name": "cta_url", "parameters": [{}]}),
      f"{CARD}.action.parameters", "-314", id="card url parameters list"),
    W(carousel_card(action={"name": "cta_url", "parameters": {
        "display_text": "d" * 21, "url": "https://x.test"}}),
      f"{CARD}.action.parameters.display_text", "-315", id="card display_text 21"),
    W(carousel_card(action={"name": "cta_url", "parameters": {"url": "https://x.test"}}),
      f"{CARD}.action.parameters.display_text", "-315", id="card display_text missing"),
    W(carousel_card(action={"name": "cta_url", "parameters": {"display_text": "Go"}}),
      f"{CARD}.action.parameters.url", "-316", id="card url missing"),
    W(carousel_card(action={"name": "cta_url", "parameters": {
        "display_text": "Go", "url": "www.x.test"}}),
      f"{CARD}.action.parameters.url", "-133", id="card url not http"),
    W(carousel_card(action=qr_action("A", "B", "C")), f"{CARD}.action.buttons", "-317",
      id="card 3 quick replies"),
    W(carousel_card(action=qr_action()), f"{CARD}.action.buttons", "-317",
      id="card 0 quick replies"),
    W(carousel_card(action={"buttons": {"type": "quick_reply"}}), f"{CARD}.action.buttons",
      "-317", id="card buttons object"),
    W(carousel_card(action={"buttons": [{"type": "reply", "quick_reply": {}}]}),
      f"{CARD}.action.buttons[0].type", "-318", id="card button type"),
    W(carousel_card(action={"buttons": [{"type": "quick_reply"}]}),
      f"{CARD}.action.buttons[0].quick_reply", "-319", id="card quick_reply missing"),
    W(carousel_card(action=qr_action("A", ids=("i" * 21,))),
      f"{CARD}.action.buttons[0].quick_reply.id", "-320", id="card quick reply id 21"),
    W(carousel_card(action=qr_action("t" * 21)),
      f"{CARD}.action.buttons[0].quick_reply.title", "-321", id="card quick reply title 21"),
    W(carousel_card(action=qr_action("")),
      f"{CARD}.action.buttons[0].quick_reply.title", "-321", id="card quick reply title empty"),
    W(carousel_card(action=qr_action("A", "A")),
      f"{CARD}.action.buttons[1].quick_reply.title", None, id="card quick reply titles repeat"),
    # contacts
    W({"type": "contacts"}, "message.contacts", None, id="contacts missing"),
    W({"type": "contacts", "contacts": []}, "message.contacts", None, id="contacts empty"),
    W({"type": "contacts", "contacts": SEED_CONTACT}, "message.contacts", None,
      id="contacts object"),
    W({"type": "contacts", "contacts": [5]}, "message.contacts[0]", None, id="contact int"),
    W({"type": "contacts", "contacts": [{}]}, "message.contacts[0].name", None,
      id="contact no name"),
    W({"type": "contacts", "contacts": [{"name": {"first_name": "A"}}]},
      "message.contacts[0].name.formatted_name", None, id="contact no formatted_name"),
    W(contact(birthday="1995-13-01"), "message.contacts[0].birthday", None,
      id="birthday month 13"),
    W(contact(birthday="1995-1-11"), "message.contacts[0].birthday", None,
      id="birthday not padded"),
    W(contact(birthday=19950111), "message.contacts[0].birthday", None, id="birthday int"),
    W(contact(phones=[{"phone": "1", "type": "MOBILE"}]), "message.contacts[0].phones[0].type",
      None, id="phone type"),
    W(contact(emails=[{"type": "WORK"}]), "message.contacts[0].emails[0].email", None,
      id="email missing"),
    W(contact(urls={"url": "x"}), "message.contacts[0].urls", None, id="urls object"),
    W(contact(addresses=[{"type": "OFFICE"}]), "message.contacts[0].addresses[0].type", None,
      id="address type"),
    W(contact(org="ACME"), "message.contacts[0].org", None, id="org str"),
]


@pytest.mark.parametrize(("message", "field", "code"), INVALID_WHATSAPP)
def test_whatsapp_rules_outside(message: Any, field: str, code: str | None) -> None:
    fails(lambda: check_whatsapp_message(message), field, code)


def test_whatsapp_field_prefix() -> None:
    fails(lambda: check_whatsapp_message(text(""), field="reply.message"),
          "reply.message.text.body", "-115")


# --- robustness: garbage at every position of every valid example ----------------------------

GARBAGE = [None, 5, -1, 1.5, True, "", "x", [], [None], {}, {"a": None}, 10**400, "\x00"]


def _positions(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield (*path, key)
            yield from _positions(inner, (*path, key))
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            yield (*path, i)
            yield from _positions(inner, (*path, i))


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    out = copy.deepcopy(value)
    target = out
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = new
    return out


def _mutants(value: Any) -> Iterator[Any]:
    for path in _positions(value):
        for garbage in GARBAGE:
            yield _replaced(value, path, garbage)


def _only_validation_failed(check: Callable[[Any], object], value: Any) -> None:
    try:
        check(value)
    except ValidationFailed:
        pass


@pytest.mark.parametrize("message", [*SEED_MESSAGES.values(), *VALID_WHATSAPP.values()])
def test_whatsapp_garbage_anywhere_is_validation_failed(message: dict[str, Any]) -> None:
    for mutant in _mutants(message):
        _only_validation_failed(check_whatsapp_message, mutant)


# --- phones (vendor-formats §1 -70/-71, seed 000 -72 and the business phone's -93/-94/-95) --

@pytest.mark.parametrize(("value", "digits"), [
    ("1234567", "1234567"),
    ("12345678901234", "12345678901234"),
    ("+12345678901234", "12345678901234"),
    (" 91856321322 ", "91856321322"),
    (6282299953162, "6282299953162"),
])
def test_phone_valid(value: object, digits: str) -> None:
    assert check_phone(value, field="to") == digits


@pytest.mark.parametrize(("value", "code"), [
    ("123456", "-71"),
    ("+123456", "-71"),
    ("123456789012345", "-70"),
    ("+123456789012345", "-70"),
    ("", "-71"),
    ("+", "-71"),
    (None, "-71"),
    (123456, "-71"),
    (10**14, "-70"),
    (10**400, "-70"),
    ("12345a7", "-72"),
    ("123 4567", "-72"),
    ("++1234567", "-72"),
    ("١٢٣٤٥٦٧٨", "-72"),  # Arabic-Indic digits are digits to str.isdigit, not to the vendor
    ("¹²³⁴⁵⁶⁷", "-72"),
    (-1234567, "-72"),
    (True, "-72"),
    (1234567.0, "-72"),
    (["1234567"], "-72"),
    ({}, "-72"),
])
def test_phone_invalid(value: object, code: str) -> None:
    fails(lambda: check_phone(value, field="to"), "to", code)


@pytest.mark.parametrize(("value", "code"), [
    ("123456", "-94"), ("123456789012345", "-93"), ("abcdefg", "-95")])
def test_business_phone_codes(value: str, code: str) -> None:
    fails(lambda: check_phone(value, field="from", business=True), "from", code)


# --- template send (vendor-formats §1, seed 001) ---------------------------------------------

SEED_TEMPLATE = {"components": [{"type": "body", "parameters": [
    {"type": "text", "text": "9.1日开业大吉"}]}], "language": {"code": "zh_TW"}, "name": "new_shop"}
FULL_TEMPLATE = {"name": "order_update", "language": {"code": "en"}, "components": [
    {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://x/y.jpg"}}]},
    {"type": "body", "parameters": [{"type": "text", "text": "Alice"},
                                    {"type": "text", "text": "A-1001"}]},
    {"type": "button", "sub_type": "url", "index": "0",
     "parameters": [{"type": "text", "text": "A-1001"}]},
    {"type": "button", "sub_type": "quick_reply", "index": "1",
     "parameters": [{"type": "payload", "payload": "STOP"}]}]}


def tpl(*components: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {"name": "order_update", "language": "en", "components": list(components), **over}


def body(*params: dict[str, Any]) -> dict[str, Any]:
    return {"type": "body", "parameters": list(params)}


def header(*params: dict[str, Any]) -> dict[str, Any]:
    return {"type": "header", "parameters": list(params)}


def button(sub_type: Any = "url", index: Any = "0", *params: dict[str, Any]) -> dict[str, Any]:
    return {"type": "button", "sub_type": sub_type, "index": index,
            "parameters": list(params) or [{"type": "text", "text": "x"}]}


def txt(value: Any = "v") -> dict[str, Any]:
    return {"type": "text", "text": value}


VALID_TEMPLATES = [
    W(SEED_TEMPLATE, {}, id="seed example"),
    W(SEED_TEMPLATE, {"body_variables": 1, "header_variables": 0}, id="seed example counted"),
    W(FULL_TEMPLATE, {}, id="full example"),
    W(FULL_TEMPLATE, {"body_variables": 2, "header_variables": 0}, id="full example counted"),
    W({"name": "order_update", "language": "en", "components": []}, {}, id="spec example"),
    W({"name": "hello_world", "language": "en_US"}, {"body_variables": 0}, id="no components"),
    W({"name": "x", "language": "fil", "components": None}, {}, id="components null"),
    W({"name": "n" * 512, "language": "en"}, {}, id="name 512"),
    W(tpl(header(txt()), body(txt(), txt())), {"header_variables": 1, "body_variables": 2},
      id="text header counted"),
    W(tpl(body(*[txt()] * 20)), {"body_variables": 20}, id="body 20 parameters"),
    W(tpl(body({"type": "currency", "currency": {
        "fallback_value": "$10", "code": "USD", "amount_1000": 10000}},
        {"type": "date_time", "date_time": {"fallback_value": "May 1"}})),
      {"body_variables": 2}, id="currency and date_time"),
    W(tpl(header({"type": "location", "location": {
        "latitude": "22.5", "longitude": "114.1", "name": "Shop", "address": "Main St"}})),
      {"header_variables": 0}, id="location header"),
    W(tpl(header({"type": "document", "document": {
        "link": "https://x.test/a.pdf", "filename": "a.pdf"}})), {}, id="document header"),
    W(tpl(button("url", "9"), button("quick_reply", "0", {"type": "payload", "payload": "p"})),
      {}, id="button indexes 9 and 0"),
]


@pytest.mark.parametrize(("template", "counts"), VALID_TEMPLATES)
def test_template_valid(template: dict[str, Any], counts: dict[str, int]) -> None:
    check_template_send(template, **counts)


C0 = "template.components[0]"
INVALID_TEMPLATES = [
    W(None, {}, "template", None, id="None"),
    W("order_update", {}, "template", None, id="str"),
    W([], {}, "template", None, id="list"),
    W({}, {}, "template.name", None, id="no name"),
    W({"name": 5, "language": "en"}, {}, "template.name", None, id="name int"),
    W({"name": "Order-Update", "language": "en"}, {}, "template.name", None, id="name case"),
    W({"name": "n" * 513, "language": "en"}, {}, "template.name", None, id="name 513"),
    W({"name": "x"}, {}, "template.language", "-44", id="no language"),
    W({"name": "x", "language": ""}, {}, "template.language", "-44", id="language empty"),
    W({"name": "x", "language": 5}, {}, "template.language", "-44", id="language int"),
    W({"name": "x", "language": {}}, {}, "template.language.code", "-44", id="no code"),
    W({"name": "x", "language": {"code": ["en"]}}, {}, "template.language.code", "-44",
      id="code list"),
    W({"name": "x", "language": "english"}, {}, "template.language", "-44", id="language word"),
    W({"name": "x", "language": "en-US"}, {}, "template.language", "-44", id="language dash"),
    W(tpl(components="body"), {}, "template.components", None, id="components str"),
    W({"name": "x", "language": "en", "components": [5]}, {}, C0, None, id="component int"),
    W(tpl({"type": "footer"}), {}, f"{C0}.type", None, id="component footer"),
    W(tpl({"parameters": []}), {}, f"{C0}.type", None, id="component no type"),
    W(tpl(body(txt()), body(txt())), {}, "template.components[1].type", None, id="two bodies"),
    W(tpl(header(txt(), txt())), {}, f"{C0}.parameters", None, id="header 2 parameters"),
    W(tpl(body(*[txt()] * 21)), {}, f"{C0}.parameters", None, id="body 21 parameters"),
    W(tpl({"type": "body"}), {}, f"{C0}.parameters", None, id="body no parameters"),
    W(tpl({"type": "body", "parameters": {"type": "text"}}), {}, f"{C0}.parameters", None,
      id="parameters object"),
    W(tpl(button(None)), {}, f"{C0}.sub_type", None, id="button no sub_type"),
    W(tpl(button("call")), {}, f"{C0}.sub_type", None, id="button sub_type call"),
    W(tpl(button("url", None)), {}, f"{C0}.index", None, id="button no index"),
    W(tpl(button("url", 0)), {}, f"{C0}.index", None, id="button index int"),
    W(tpl(button("url", "10")), {}, f"{C0}.index", None, id="button index 10"),
    W(tpl(button("url", "-1")), {}, f"{C0}.index", None, id="button index -1"),
    W(tpl(button("url", ["0"])), {}, f"{C0}.index", None, id="button index list"),
    W(tpl(button("url", "1"), button("url", "1")), {}, "template.components[1].index", None,
      id="button index twice"),
    W(tpl({"type": "button", "sub_type": "url", "index": "0", "parameters": []}), {},
      f"{C0}.parameters", None, id="button 0 parameters"),
    W(tpl(button("url", "0", txt(), txt())), {}, f"{C0}.parameters", None,
      id="button 2 parameters"),
    W(tpl(button("url", "0", {"type": "payload", "payload": "p"})), {},
      f"{C0}.parameters[0].type", "-134", id="url button payload"),
    W(tpl(button("quick_reply", "0", txt())), {}, f"{C0}.parameters[0].type", "-134",
      id="quick_reply button text"),
    W(tpl(button("quick_reply", "0", {"type": "payload", "payload": ""})), {},
      f"{C0}.parameters[0].payload", "-135", id="payload empty"),
    W(tpl(body({"type": "image", "image": {"link": "https://x.test"}})), {},
      f"{C0}.parameters[0].type", "-134", id="body image"),
    W(tpl(header({"type": "currency", "currency": {"fallback_value": "1"}})), {},
      f"{C0}.parameters[0].type", "-134", id="header currency"),
    W(tpl(body("text")), {}, f"{C0}.parameters[0]", "-134", id="parameter str"),
    W(tpl(body({"text": "x"})), {}, f"{C0}.parameters[0].type", "-134", id="parameter no type"),
    W(tpl(body(txt(""))), {}, f"{C0}.parameters[0].text", "-135", id="text empty"),
    W(tpl(body(txt(None))), {}, f"{C0}.parameters[0].text", "-135", id="text missing"),
    W(tpl(body(txt(5))), {}, f"{C0}.parameters[0].text", "-135", id="text int"),
    W(tpl(header({"type": "image"})), {}, f"{C0}.parameters[0].image", "-135",
      id="image missing"),
    W(tpl(header({"type": "video", "video": {}})), {}, f"{C0}.parameters[0].video.link", "-135",
      id="video link missing"),
    W(tpl(header({"type": "image", "image": {"link": "y.jpg"}})), {},
      f"{C0}.parameters[0].image.link", "-133", id="image link bad"),
    W(tpl(header({"type": "location", "location": {"longitude": "1"}})), {},
      f"{C0}.parameters[0].location.latitude", "-135", id="location no latitude"),
    W(tpl(header({"type": "location", "location": {"latitude": "91", "longitude": "1"}})), {},
      f"{C0}.parameters[0].location.latitude", None, id="location latitude 91"),
    W(tpl(body({"type": "currency", "currency": {"code": "USD"}})), {},
      f"{C0}.parameters[0].currency.fallback_value", "-135", id="currency no fallback"),
    W(tpl(body({"type": "date_time"})), {}, f"{C0}.parameters[0].date_time", "-135",
      id="date_time missing"),
    # counts against the stored template
    W(tpl(body(txt())), {"body_variables": 2}, f"{C0}.parameters", None, id="body 1 of 2"),
    W(tpl(body(txt(), txt(), txt())), {"body_variables": 2}, f"{C0}.parameters", None,
      id="body 3 of 2"),
    W(tpl(), {"body_variables": 1}, "template.components", None, id="body missing of 1"),
    W({"name": "x", "language": "en"}, {"body_variables": 1}, "template.components", None,
      id="no components of 1"),
    W(tpl(body(txt())), {"body_variables": 0}, f"{C0}.parameters", None, id="body 1 of 0"),
    W(tpl(header({"type": "image", "image": {"link": "https://x.test/a.png"}})),
      {"header_variables": 1}, f"{C0}.parameters", None, id="image header for a text variable"),
    W(tpl(header(txt())), {"header_variables": 0}, f"{C0}.parameters", None,
      id="header 1 of 0"),
    W(tpl(body(txt())), {"header_variables": 1}, "template.components", None,
      id="header missing of 1"),
]


@pytest.mark.parametrize(("template", "counts", "field", "code"), INVALID_TEMPLATES)
def test_template_invalid(template: Any, counts: dict[str, int], field: str,
                          code: str | None) -> None:
    fails(lambda: check_template_send(template, **counts), field, code)


def test_template_field_prefix() -> None:
    fails(lambda: check_template_send({"name": "x"}, field="body.template"),
          "body.template.language", "-44")


@pytest.mark.parametrize("template", [SEED_TEMPLATE, FULL_TEMPLATE])
def test_template_garbage_anywhere_is_validation_failed(template: dict[str, Any]) -> None:
    for mutant in _mutants(template):
        _only_validation_failed(lambda t: check_template_send(t, body_variables=1), mutant)


@pytest.mark.parametrize(("text", "count"), [
    ("Hi {{1}}, order {{2}}", 2),
    ("{{1}} and {{1}} again", 1),
    ("{{2}} before {{1}}", 2),
    ("{{ 1 }}", 1),
    ("{{01}} {{1}}", 1),
    ("公司新开业, {{#}}活动火热进行中....", 1),  # ITNIO's stored form (seed 003)
    ("You have successfully checked in! {{#}} {{#}}k {{#}} whe", 3),  # seed 001
    ("no variables {1} {{a}} {{}}", 0),
    ("", 0),
    (None, 0),
])
def test_count_variables(text: str | None, count: int) -> None:
    assert count_variables(text) == count


def test_count_variables_not_a_string() -> None:
    assert count_variables(5) == 0  # type: ignore[arg-type]


# --- SMS (seed 002, vendor-formats §3a) ------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    # the seed's two array entries, numbers split on the comma
    W({"content": "test message", "sender_id": "",
       "numbers": ["91856321412", "91856321413"]}, id="seed entry 1"),
    W({"content": "test message1", "sender_id": "", "numbers": ["91856321414"]},
      id="seed entry 2"),
    W({"content": "hello world", "sender_id": "123"}, id="vendor-formats example"),
    W({"content": "c" * 1024}, id="content 1024"),
    W({"content": "字" * 1024}, id="content 1024 CJK"),
    W({"content": "x", "sender_id": "s" * 32}, id="sender id 32"),
    W({"content": "x", "sender_id": None, "numbers": None}, id="optional None"),
    W({"content": "x", "numbers": ["1234567", "+12345678901234"]}, id="phones 7 and 14"),
])
def test_sms_valid(kwargs: dict[str, Any]) -> None:
    check_sms(**kwargs)


@pytest.mark.parametrize(("kwargs", "field", "code"), [
    W({"content": None}, "content", "-4", id="content None"),
    W({"content": ""}, "content", "-4", id="content empty"),
    W({"content": " "}, "content", "-4", id="content blank"),
    W({"content": 5}, "content", "-4", id="content int"),
    W({"content": ["x"]}, "content", "-4", id="content list"),
    W({"content": "c" * 1025}, "content", "-5", id="content 1025"),
    W({"content": "x", "sender_id": "s" * 33}, "sender_id", None, id="sender id 33"),
    W({"content": "x", "sender_id": 123}, "sender_id", None, id="sender id int"),
    W({"content": "x", "numbers": []}, "numbers", "-8", id="numbers empty"),
    W({"content": "x", "numbers": "91856321412"}, "numbers", "-8", id="numbers str"),
    W({"content": "x", "numbers": ["91856321412", "123456"]}, "numbers[1]", "-9",
      id="number 6 digits"),
    W({"content": "x", "numbers": ["123456789012345"]}, "numbers[0]", "-9",
      id="number 15 digits"),
    W({"content": "x", "numbers": ["91856321412,91856321413"]}, "numbers[0]", "-9",
      id="number with comma"),
    W({"content": "x", "numbers": [None]}, "numbers[0]", "-9", id="number None"),
])
def test_sms_invalid(kwargs: dict[str, Any], field: str, code: str | None) -> None:
    fails(lambda: check_sms(**kwargs), field, code)


# --- 云真机 / WeCom (seed 004, vendor-formats §4c) -------------------------------------------

SEED_WECOM = [
    {"msg_type": "text", "content": {"items": [{"type": "text", "text": "test"}]},
     "delayed_time": 1641280299},
    {"msg_type": "announcement", "content": {"text": "xxx"}, "delayed_time": 1641280299},
    {"msg_type": "picture", "content": {"url": "xxxxxxxxx"}, "delayed_time": 1641280299},
    {"msg_type": "link", "content": {"cover": "xx", "desc": "xxx", "title": "xx", "url": "xxxx"},
     "delayed_time": 1641280299},
    {"msg_type": "file", "content": {"title": "xx", "url": "xxxx"}, "delayed_time": 1641280299},
    {"msg_type": "voice", "content": {"url": "xxxxx.mp3", "duration": 60, "org_content": ""},
     "delayed_time": 1641280299},
]


def wecom(msg_type: str, content: Any, **extra: Any) -> list[dict[str, Any]]:
    return [{"msg_type": msg_type, "content": content, **extra}]


def voice(duration: Any) -> list[dict[str, Any]]:
    return wecom("voice", {"url": "https://x.test/a.mp3", "duration": duration})


@pytest.mark.parametrize("messages", [
    W(SEED_WECOM, id="seed example"),
    W(SEED_WECOM + SEED_WECOM[:1], id="7 messages: any number"),
    W([SEED_WECOM[0]] * 23, id="23 messages"),
    W(voice(1), id="voice 1 s"),
    W(voice(60), id="voice 60 s"),
    W(wecom("link", {"title": "t", "url": "https://x.test"}), id="link without cover, desc"),
    W(wecom("video", {"url": "https://x.test/v.mp4"}), id="video"),
    W(wecom("text", {"items": [{"type": "text", "text": "hi"}, {"type": "emoji", "id": 1}]}),
      id="text with another item kind"),
    W(wecom("program", {"appid": "wx1", "title": "mini"}), id="program"),
    W(wecom("card", {"wxid": "7881"}), id="card"),
    W(wecom("text", {"items": [{"type": "text", "text": "x"}]}, api_send_id=116,
            delayed_time=0), id="api_send_id int"),
    W(wecom("text", {"items": [{"type": "text", "text": "x"}]}, api_send_id="a1"),
      id="api_send_id str"),
])
def test_wecom_valid(messages: list[dict[str, Any]]) -> None:
    check_wecom_messages(messages)


TEXT = {"items": [{"type": "text", "text": "x"}]}


@pytest.mark.parametrize(("messages", "field"), [
    W(None, "message", id="None"),
    W(5, "message", id="int"),
    W("x", "message", id="str"),
    W([], "message", id="empty"),
    W(SEED_WECOM[0], "message", id="one object, not a list"),
    W([5], "message[0]", id="item int"),
    W([{}], "message[0].msg_type", id="no msg_type"),
    W(wecom("sms", TEXT), "message[0].msg_type", id="unknown msg_type"),
    W(wecom("TEXT", TEXT), "message[0].msg_type", id="msg_type case"),
    W([{"msg_type": 5, "content": TEXT}], "message[0].msg_type", id="msg_type int"),
    W([{"msg_type": ["text"], "content": TEXT}], "message[0].msg_type", id="msg_type list"),
    W([{"msg_type": "text"}], "message[0].content", id="no content"),
    W(wecom("text", "hello"), "message[0].content", id="content str"),
    W(wecom("text", {}), "message[0].content.items", id="text no items"),
    W(wecom("text", {"items": []}), "message[0].content.items", id="text items empty"),
    W(wecom("text", {"items": "hi"}), "message[0].content.items", id="text items str"),
    W(wecom("text", {"items": [5]}), "message[0].content.items[0]", id="text item int"),
    W(wecom("text", {"items": [{"text": "x"}]}), "message[0].content.items[0].type",
      id="text item no type"),
    W(wecom("text", {"items": [{"type": "text", "text": ""}]}),
      "message[0].content.items[0].text", id="text item empty"),
    W(wecom("text", {"items": [{"type": "text"}]}), "message[0].content.items[0].text",
      id="text item no text"),
    W(wecom("announcement", {}), "message[0].content.text", id="announcement no text"),
    W(wecom("picture", {"url": ""}), "message[0].content.url", id="picture url empty"),
    W(wecom("link", {"url": "u"}), "message[0].content.title", id="link no title"),
    W(wecom("link", {"title": "t"}), "message[0].content.url", id="link no url"),
    W(wecom("link", {"title": "t", "url": "u", "cover": 5}), "message[0].content.cover",
      id="link cover int"),
    W(wecom("file", {"url": "u"}), "message[0].content.title", id="file no title"),
    W(wecom("video", {}), "message[0].content.url", id="video no url"),
    W(voice(0), "message[0].content.duration", id="voice 0 s"),
    W(voice(61), "message[0].content.duration", id="voice 61 s"),
    W(voice(None), "message[0].content.duration", id="voice no duration"),
    W(voice("30"), "message[0].content.duration", id="voice duration str"),
    W(voice(30.5), "message[0].content.duration", id="voice duration float"),
    W(voice(True), "message[0].content.duration", id="voice duration bool"),
    W(voice(10**400), "message[0].content.duration", id="voice duration huge"),
    W(wecom("voice", {"duration": 5}), "message[0].content.url", id="voice no url"),
    W(wecom("program", {}), "message[0].content", id="program empty content"),
    W(wecom("text", TEXT, delayed_time=-1), "message[0].delayed_time", id="delayed_time -1"),
    W(wecom("text", TEXT, delayed_time="1641280299"), "message[0].delayed_time",
      id="delayed_time str"),
    W(wecom("text", TEXT, api_send_id=[1]), "message[0].api_send_id", id="api_send_id list"),
    W(wecom("text", TEXT, api_send_id=False), "message[0].api_send_id", id="api_send_id bool"),
    W([*SEED_WECOM, {"msg_type": "voice", "content": {"url": "u", "duration": 0}}],
      "message[6].content.duration", id="7th message bad"),
])
def test_wecom_invalid(messages: Any, field: str) -> None:
    fails(lambda: check_wecom_messages(messages), field, None)


def test_wecom_garbage_anywhere_is_validation_failed() -> None:
    for mutant in _mutants(SEED_WECOM):
        _only_validation_failed(check_wecom_messages, mutant)


def test_sms_garbage_is_validation_failed() -> None:
    for garbage in GARBAGE:
        _only_validation_failed(lambda g: check_sms(content=g), garbage)
        _only_validation_failed(lambda g: check_sms(content="x", sender_id=g), garbage)
        _only_validation_failed(lambda g: check_sms(content="x", numbers=g), garbage)
        _only_validation_failed(lambda g: check_sms(content="x", numbers=[g]), garbage)
        _only_validation_failed(lambda g: check_phone(g, field="to"), garbage)


# --- the exception itself --------------------------------------------------------------------

def test_validation_failed_carries_field_detail_code() -> None:
    exc = ValidationFailed("message.text.body", "must not be empty", vendor_code="-115")
    assert (exc.field, exc.detail, exc.vendor_code) == ("message.text.body",
                                                        "must not be empty", "-115")
    assert str(exc) == "message.text.body: must not be empty"
    assert ValidationFailed("a", "b").vendor_code is None


def test_long_values_are_not_echoed_whole() -> None:
    exc = fails(lambda: check_whatsapp_message({"type": "x" * 100_000}), "message.type", "-132")
    assert len(exc.detail) < 300


def test_no_framework_imports() -> None:
    import ast
    from pathlib import Path

    import sender.validate as module

    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    names = {alias.name.split(".")[0] for node in ast.walk(tree)
             if isinstance(node, ast.Import) for alias in node.names}
    names |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom)}
    assert not names & {"httpx", "starlette", "sqlmodel", "sqlalchemy", "receiver", "store"}
