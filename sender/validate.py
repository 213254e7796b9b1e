"""Local validation of every documented vendor limit, run before a vendor call is spent.

Pure: no I/O and no framework imports. The input comes straight from untrusted JSON, so every
check raises ValidationFailed (never TypeError/KeyError/AttributeError) for the FIRST rule
broken, naming the field by its dotted path and, where the vendor documents one, the vendor's
own error code, so the bot API can answer 422 with the same code the vendor would have sent.

Sources (under /work/shared): seeds/000 (ITNIO custom send: types, limits, codes -68…-331),
seeds/001 (template add: name rule, 1 header / 20 body variables), seeds/002 and
vendor-formats.md §3a (SMS), vendor-formats.md §1 (template send, -44/-70/-71),
seeds/004 and vendor-formats.md §4c (云真机 sendMessage and its msg_type enum).
Unknown extra fields are ignored everywhere: the vendors add fields, and we pass them on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date
from typing import Any, NoReturn
from urllib.parse import urlsplit


class ValidationFailed(Exception):
    """One broken rule: the field (dotted path, e.g.
    'message.interactive.action.cards[2].body.text'), a human sentence, and the vendor's own
    code for it where the vendor documents one (e.g. '-70'), else None."""

    def __init__(self, field: str, detail: str, *, vendor_code: str | None = None) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.detail = detail
        self.vendor_code = vendor_code


# --- small building blocks -------------------------------------------------------------------

_KINDS = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
          int: "a number", float: "a number", type(None): "null"}


def _kind(value: object) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _show(value: object) -> str:
    # Bounded: the value may be a megabyte of text, or an int too long for str() (ValueError).
    try:
        text = repr(value)
    except ValueError:
        return "a very large number"
    return text if len(text) <= 40 else text[:37] + "..."


def _fail(field: str, detail: str, code: str | None = None) -> NoReturn:
    raise ValidationFailed(field, detail, vendor_code=code)


def _obj(value: object, field: str, *, code: str | None = None) -> dict[str, Any]:
    if value is None:
        _fail(field, "is required", code)
    if not isinstance(value, dict):
        _fail(field, f"must be an object, got {_kind(value)}", code)
    return value


def _bounds(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"at least {lo}"
    return f"exactly {lo}" if lo == hi else f"between {lo} and {hi}"


def _list(value: object, field: str, *, lo: int = 0, hi: int | None = None,
          code: str | None = None, count_code: str | None = None) -> list[Any]:
    if value is None:
        _fail(field, "is required", code)
    if not isinstance(value, list):
        _fail(field, f"must be a list, got {_kind(value)}", code)
    if len(value) < lo or (hi is not None and len(value) > hi):
        _fail(field, f"must have {_bounds(lo, hi)} items, got {len(value)}", count_code)
    return value


def _text(value: object, field: str, *, required: bool = True, max_len: int | None = None,
          code: str | None = None, len_code: str | None = None) -> str | None:
    """A string. Required ones must not be blank (the vendors' 'cannot be empty' rules)."""
    if value is None:
        if required:
            _fail(field, "is required", code)
        return None
    if not isinstance(value, str):
        _fail(field, f"must be a string, got {_kind(value)}", code)
    if required and not value.strip():
        _fail(field, "must not be empty", code)
    if max_len is not None and len(value) > max_len:
        _fail(field, f"must be at most {max_len} characters, got {len(value)}", len_code)
    return value


def _link(value: object, field: str, *, code: str | None = None,
          format_code: str | None = "-133") -> str:
    # seed 000 -133: "link链接地址格式错误"; the vendor fetches it, so it must be http(s).
    link = _text(value, field, code=code)
    try:
        parts = urlsplit(link)
    except ValueError:  # e.g. an unbalanced IPv6 bracket
        parts = None
    if (parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc
            or any(ch.isspace() for ch in link)):
        _fail(field, f"must be an http(s) URL, got {_show(link)}", format_code)
    return link


def _int(value: object, field: str, *, lo: int, hi: int | None = None,
         code: str | None = None) -> int:
    if value is None:
        _fail(field, "is required", code)
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(field, f"must be an integer, got {_kind(value)}", code)
    if value < lo or (hi is not None and value > hi):
        limit = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        _fail(field, f"must be {limit}, got {_show(value)}", code)
    return value


def _choice(value: object, field: str, allowed: tuple[str, ...], *,
            code: str | None = None) -> str:
    # isinstance first: an unhashable value (a list) must not reach the `in` test.
    if value is None:
        _fail(field, f"is required (one of {', '.join(allowed)})", code)
    if not isinstance(value, str) or value not in allowed:
        _fail(field, f"must be one of {', '.join(allowed)}, got {_show(value)}", code)
    return value


_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def _coordinate(value: object, field: str, *, limit: int, code: str | None) -> None:
    """Degrees, as a number or a decimal string (the seed sends strings)."""
    if value is None or value == "":
        _fail(field, "is required", code)
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        _fail(field, f"must be a decimal number, got {_kind(value)}", code)
    if isinstance(value, str):
        if not _DECIMAL.fullmatch(value.strip()):  # refuses nan, inf, 1e5, 1_0
            _fail(field, f"must be a decimal number, got {_show(value)}")
        value = float(value)
    # An int is compared as is: float() of a huge int raises OverflowError.
    if (isinstance(value, float) and not math.isfinite(value)) or not -limit <= value <= limit:
        _fail(field, f"must be between -{limit} and {limit}, got {_show(value)}")


def _optional(value: object, field: str, check: Callable[[object, str], object]) -> None:
    if value is not None:
        check(value, field)


# --- phones ----------------------------------------------------------------------------------

# (not digits, shorter than 7, longer than 14): seed 000 has both sets, the recipient's
# (-72/-71/-70, also vendor-formats §1) and the business phone's (-95/-94/-93).
_PHONE_CODES = {False: ("-72", "-71", "-70"), True: ("-95", "-94", "-93")}


def check_phone(value: object, *, field: str, business: bool = False) -> str:
    """7-14 digits, country code included; a leading '+' is allowed and stripped.

    Returns the digits. `business=True` gives the business-phone codes instead of the
    recipient's. A JSON number is accepted (the seed's own examples send businessPhone so).
    """
    not_digits, too_short, too_long = _PHONE_CODES[business]
    if value is None:
        _fail(field, "is required", too_short)
    if isinstance(value, int) and not isinstance(value, bool):
        if value >= 10**14:  # before str(): a huge int cannot be printed at all
            _fail(field, "must have at most 14 digits", too_long)
        value = str(value)
    if not isinstance(value, str):
        _fail(field, f"must be a phone number (digits), got {_kind(value)}", not_digits)
    text = value.strip()
    digits = text[1:] if text.startswith("+") else text
    if not digits:
        _fail(field, "must not be empty; a phone number has 7 to 14 digits", too_short)
    if not (digits.isascii() and digits.isdigit()):
        _fail(field, f"must be digits only (country code first), got {_show(value)}", not_digits)
    if len(digits) < 7:
        _fail(field, f"must have at least 7 digits, got {len(digits)}", too_short)
    if len(digits) > 14:
        _fail(field, f"must have at most 14 digits, got {len(digits)}", too_long)
    return digits


# --- WhatsApp custom message (seed 000) ------------------------------------------------------

WHATSAPP_TYPES = ("text", "image", "audio", "video", "document", "sticker", "location",
                  "interactive", "contacts")
INTERACTIVE_TYPES = ("list", "button", "location_request_message", "carousel")

# type -> (code when the object is missing, code when its link is missing)
_MEDIA_CODES = {"image": ("-116", "-117"), "audio": ("-118", "-119"),
                "video": ("-120", "-121"), "sticker": ("-122", "-123"),
                "document": ("-124", "-125")}
_CAPTIONED = ("image", "video", "document")  # the seed documents caption on these only


def check_whatsapp_message(message: object, *, field: str = "message") -> None:
    """The ITNIO custom-message shape: {"type": t, t: {...}} plus optional context."""
    msg = _obj(message, field)
    kind = _choice(msg.get("type"), f"{field}.type", WHATSAPP_TYPES, code="-132")
    path = f"{field}.{kind}"
    if kind in _MEDIA_CODES:
        _check_media(msg.get(kind), path, kind=kind)
    else:
        _WHATSAPP_CHECKS[kind](msg.get(kind), path)
    _optional(msg.get("context"), f"{field}.context", _check_context)


def _check_context(value: object, path: str) -> None:
    context = _obj(value, path)
    _text(context.get("refMessageId"), f"{path}.refMessageId")


def _check_text(value: object, path: str) -> None:
    text = _obj(value, path, code="-114")
    _text(text.get("body"), f"{path}.body", max_len=4096, code="-115")


def _check_media(value: object, path: str, *, kind: str) -> None:
    # File sizes (audio 16MB, document 100MB, image 5MB, video 16MB, sticker 100KB) are the
    # vendor's to check when it fetches the link: nothing local can see them.
    object_code, link_code = _MEDIA_CODES[kind]
    media = _obj(value, path, code=object_code)
    _link(media.get("link"), f"{path}.link", code=link_code)
    if kind in _CAPTIONED:
        _text(media.get("caption"), f"{path}.caption", required=False)
    if kind == "document":
        _text(media.get("filename"), f"{path}.filename")  # "发送文档消息时必填"


def _check_location(value: object, path: str) -> None:
    location = _obj(value, path, code="-127")
    _coordinate(location.get("longitude"), f"{path}.longitude", limit=180, code="-128")
    _coordinate(location.get("latitude"), f"{path}.latitude", limit=90, code="-129")
    _text(location.get("name"), f"{path}.name")  # seed 000 marks both required
    _text(location.get("address"), f"{path}.address")


def _check_interactive(value: object, path: str) -> None:
    interactive = _obj(value, path)
    kind = _choice(interactive.get("type"), f"{path}.type", INTERACTIVE_TYPES, code="-165")
    _INTERACTIVE_CHECKS[kind](interactive, path)


def _check_body(interactive: dict[str, Any], path: str) -> None:
    body = _obj(interactive.get("body"), f"{path}.body")
    _text(body.get("text"), f"{path}.body.text")


def _check_footer(interactive: dict[str, Any], path: str) -> None:
    footer = interactive.get("footer")
    if footer is not None:
        _text(_obj(footer, f"{path}.footer").get("text"), f"{path}.footer.text")


def _check_header(interactive: dict[str, Any], path: str, *, media: bool) -> None:
    # The seed documents a text header; reply buttons may also carry a media one (WhatsApp).
    value = interactive.get("header")
    if value is None:
        return
    hpath = f"{path}.header"
    header = _obj(value, hpath)
    kinds = ("text", "image", "video", "document") if media else ("text",)
    kind = _choice(header.get("type"), f"{hpath}.type", kinds)
    if kind == "text":
        _text(header.get("text"), f"{hpath}.text")
    else:
        _link(_obj(header.get(kind), f"{hpath}.{kind}").get("link"), f"{hpath}.{kind}.link")


def _check_list(interactive: dict[str, Any], path: str) -> None:
    _check_header(interactive, path, media=False)
    _check_body(interactive, path)
    _check_footer(interactive, path)
    apath = f"{path}.action"
    action = _obj(interactive.get("action"), apath)
    _text(action.get("button"), f"{apath}.button")
    sections = _list(action.get("sections"), f"{apath}.sections", lo=1, hi=10)
    total = 0
    for i, value in enumerate(sections):
        spath = f"{apath}.sections[{i}]"
        section = _obj(value, spath)
        _text(section.get("title"), f"{spath}.title", required=False, max_len=24)
        rows = _list(section.get("rows"), f"{spath}.rows", lo=1)
        total += len(rows)
        if total > 10:  # "您总共可以有10行": 10 rows across all sections together
            _fail(f"{spath}.rows", f"a list message has at most 10 rows in all; "
                  f"this section brings it to {total}")
        for j, row_value in enumerate(rows):
            rpath = f"{spath}.rows[{j}]"
            row = _obj(row_value, rpath)
            _text(row.get("id"), f"{rpath}.id", max_len=200)
            _text(row.get("title"), f"{rpath}.title", max_len=24)
            _text(row.get("description"), f"{rpath}.description", required=False, max_len=72)


def _check_reply_buttons(interactive: dict[str, Any], path: str) -> None:
    _check_header(interactive, path, media=True)
    _check_body(interactive, path)
    _check_footer(interactive, path)
    apath = f"{path}.action"
    action = _obj(interactive.get("action"), apath)
    buttons = _list(action.get("buttons"), f"{apath}.buttons", lo=1, hi=3)
    titles: set[str] = set()
    for i, value in enumerate(buttons):
        bpath = f"{apath}.buttons[{i}]"
        button = _obj(value, bpath)
        _choice(button.get("type"), f"{bpath}.type", ("reply",))
        reply = _obj(button.get("reply"), f"{bpath}.reply")
        _text(reply.get("id"), f"{bpath}.reply.id", max_len=256)
        title = _text(reply.get("title"), f"{bpath}.reply.title", max_len=20)
        if title in titles:  # "在消息中必须是唯一的"
            _fail(f"{bpath}.reply.title", f"must be unique in the message; {_show(title)} repeats")
        titles.add(title)


def _check_location_request(interactive: dict[str, Any], path: str) -> None:
    _check_body(interactive, path)
    action = _obj(interactive.get("action"), f"{path}.action")
    _choice(action.get("name"), f"{path}.action.name", ("send_location",))


def _check_carousel(interactive: dict[str, Any], path: str) -> None:
    for part in ("header", "footer"):
        if interactive.get(part) is not None:
            _fail(f"{path}.{part}", "a carousel message has no header or footer", "-304")
    body = _obj(interactive.get("body"), f"{path}.body", code="-329")
    _text(body.get("text"), f"{path}.body.text", max_len=1024, code="-330", len_code="-330")
    action = _obj(interactive.get("action"), f"{path}.action", code="-322")
    cards = _list(action.get("cards"), f"{path}.action.cards", lo=2, hi=10,
                  code="-305", count_code="-305")
    for i, card in enumerate(cards):
        _check_card(card, f"{path}.action.cards[{i}]", index=i)


def _check_card(value: object, path: str, *, index: int) -> None:
    card = _obj(value, path, code="-322")
    card_index = _int(card.get("card_index"), f"{path}.card_index", lo=0, hi=9, code="-306")
    if card_index != index:  # "从0开始不重复且连续", read as: the array's own order
        _fail(f"{path}.card_index", f"must be {index}: card indexes start at 0 and follow "
              f"the order of the cards, got {card_index}", "-306")
    _choice(card.get("type"), f"{path}.type", ("cta_url",), code="-307")
    header = _obj(card.get("header"), f"{path}.header", code="-308")
    kind = _choice(header.get("type"), f"{path}.header.type", ("image", "video"), code="-309")
    media = _obj(header.get(kind), f"{path}.header.{kind}", code="-310")
    _link(media.get("link"), f"{path}.header.{kind}.link", code="-310")
    body = _obj(card.get("body"), f"{path}.body", code="-311")
    _text(body.get("text"), f"{path}.body.text", max_len=160, code="-311", len_code="-311")
    _check_card_action(card.get("action"), f"{path}.action")


def _check_card_action(value: object, path: str) -> None:
    action = _obj(value, path, code="-312")
    if not action:
        _fail(path, "is required", "-312")
    has_buttons = "buttons" in action
    has_url = "name" in action or "parameters" in action
    if has_buttons == has_url:  # both, or neither
        _fail(path, "must hold either one URL button (name, parameters) or 1-2 quick reply "
              "buttons (buttons), and only one of the two", "-331")
    if has_url:
        _choice(action.get("name"), f"{path}.name", ("cta_url",), code="-313")
        params = _obj(action.get("parameters"), f"{path}.parameters", code="-314")
        _text(params.get("display_text"), f"{path}.parameters.display_text", max_len=20,
              code="-315", len_code="-315")
        _link(params.get("url"), f"{path}.parameters.url", code="-316")
        return
    buttons = _list(action.get("buttons"), f"{path}.buttons", lo=1, hi=2,
                    code="-317", count_code="-317")
    titles: set[str] = set()
    for i, value in enumerate(buttons):
        bpath = f"{path}.buttons[{i}]"
        button = _obj(value, bpath, code="-322")
        _choice(button.get("type"), f"{bpath}.type", ("quick_reply",), code="-318")
        reply = _obj(button.get("quick_reply"), f"{bpath}.quick_reply", code="-319")
        _text(reply.get("id"), f"{bpath}.quick_reply.id", max_len=20,
              code="-320", len_code="-320")
        title = _text(reply.get("title"), f"{bpath}.quick_reply.title", max_len=20,
                      code="-321", len_code="-321")
        if title in titles:  # unique per card: the seed's own example repeats across cards
            _fail(f"{bpath}.quick_reply.title", f"must be unique; {_show(title)} repeats")
        titles.add(title)


# list key -> (its required field, its optional fields, the documented `type` values)
_CONTACT_LISTS: dict[str, tuple[str | None, tuple[str, ...], tuple[str, ...]]] = {
    "addresses": (None, ("street", "city", "state", "zip", "country", "country_code"),
                  ("HOME", "WORK")),
    "emails": ("email", (), ("HOME", "WORK")),
    "phones": ("phone", ("wa_id",), ("CELL", "MAIN", "IPHONE", "HOME", "WORK")),
    "urls": ("url", (), ("HOME", "WORK")),
}
_NAME_PARTS = ("first_name", "last_name", "middle_name", "suffix", "prefix")
_ORG_PARTS = ("company", "department", "title")
_BIRTHDAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _check_contacts(value: object, path: str) -> None:
    for i, item in enumerate(_list(value, path, lo=1)):
        _check_contact(item, f"{path}[{i}]")


def _check_contact(value: object, path: str) -> None:
    contact = _obj(value, path)
    name = _obj(contact.get("name"), f"{path}.name")
    _text(name.get("formatted_name"), f"{path}.name.formatted_name")
    for part in _NAME_PARTS:
        _text(name.get(part), f"{path}.name.{part}", required=False)
    birthday = _text(contact.get("birthday"), f"{path}.birthday", required=False)
    if birthday is not None and not _is_date(birthday):
        _fail(f"{path}.birthday", f"must be a date YYYY-MM-DD, got {_show(birthday)}")
    org = contact.get("org")
    if org is not None:
        org = _obj(org, f"{path}.org")
        for part in _ORG_PARTS:
            _text(org.get(part), f"{path}.org.{part}", required=False)
    for key, (main, extras, kinds) in _CONTACT_LISTS.items():
        entries = contact.get(key)
        if entries is None:
            continue
        for j, entry_value in enumerate(_list(entries, f"{path}.{key}")):
            epath = f"{path}.{key}[{j}]"
            entry = _obj(entry_value, epath)
            if main is not None:
                _text(entry.get(main), f"{epath}.{main}")
            for extra in extras:
                _text(entry.get(extra), f"{epath}.{extra}", required=False)
            if entry.get("type") is not None:
                _choice(entry["type"], f"{epath}.type", kinds)


def _is_date(text: str) -> bool:
    if not _BIRTHDAY.fullmatch(text):
        return False
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


_WHATSAPP_CHECKS: dict[str, Callable[[object, str], None]] = {
    "text": _check_text,
    "location": _check_location,
    "interactive": _check_interactive,
    "contacts": _check_contacts,
}
_INTERACTIVE_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "list": _check_list,
    "button": _check_reply_buttons,
    "location_request_message": _check_location_request,
    "carousel": _check_carousel,
}


# --- WhatsApp template send (vendor-formats §1) ----------------------------------------------

_TEMPLATE_NAME = re.compile(r"[a-z0-9_]{1,512}")  # seed 001: lowercase, digits, _, 512
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}(?:_[A-Z]{2})?")  # en, zh_CN, en_US, fil
_BUTTON_INDEXES = tuple(str(n) for n in range(10))
_PARAMETER_TYPES = {
    "header": ("text", "image", "video", "document", "location"),
    "body": ("text", "currency", "date_time"),
    "url": ("text",),
    "quick_reply": ("payload",),
}
_MAX_PARAMETERS = {"header": 1, "body": 20}  # seed 001: 1 header variable, 20 body ones
_NUMBERED = re.compile(r"\{\{\s*(\d+)\s*\}\}")
_HASHED = re.compile(r"\{\{\s*#\s*\}\}")


def count_variables(text: str | None) -> int:
    """Distinct {{n}} placeholders, plus every ITNIO-style {{#}} (each one is its own
    positional variable: that is how wa/template/query returns stored templates)."""
    if not isinstance(text, str):
        return 0
    return len({int(n) for n in _NUMBERED.findall(text)}) + len(_HASHED.findall(text))


def check_template_send(template: object, *, field: str = "template",
                        body_variables: int | None = None,
                        header_variables: int | None = None) -> None:
    """The template object of wa/template/sendMsg; with the stored template's variable
    counts, the parameters given must match them exactly."""
    tpl = _obj(template, field)
    name = _text(tpl.get("name"), f"{field}.name")
    if not _TEMPLATE_NAME.fullmatch(name):
        _fail(f"{field}.name", "must be lowercase letters, digits and underscores, at most 512 "
              f"characters, got {_show(name)}")
    _check_language(tpl.get("language"), f"{field}.language")
    cpath = f"{field}.components"
    components = [] if tpl.get("components") is None else _list(tpl["components"], cpath)
    given = {"header": 0, "body": 0}  # header: text parameters only; media ones aren't variables
    where = {"header": cpath, "body": cpath}
    buttons: set[str] = set()
    for i, value in enumerate(components):
        path = f"{cpath}[{i}]"
        component = _obj(value, path)
        kind = _choice(component.get("type"), f"{path}.type", ("header", "body", "button"))
        if kind == "button":
            _check_button_component(component, path, seen=buttons)
            continue
        if where[kind] != cpath:
            _fail(f"{path}.type", f"only one {kind} component is allowed")
        where[kind] = f"{path}.parameters"
        params = _list(component.get("parameters"), f"{path}.parameters",
                       hi=_MAX_PARAMETERS[kind])
        for j, param in enumerate(params):
            ptype = _check_parameter(param, f"{path}.parameters[{j}]", _PARAMETER_TYPES[kind])
            if kind == "body" or ptype == "text":
                given[kind] += 1
    for kind, expected in (("header", header_variables), ("body", body_variables)):
        if expected is not None and given[kind] != expected:
            what = "text parameters" if kind == "header" else "parameters"
            _fail(where[kind], f"the template's {kind} has {expected} variables; "
                  f"{given[kind]} {what} given")


def _check_language(value: object, path: str) -> None:
    # -44 "template language not found": what the vendor answers for a missing or bad code.
    if isinstance(value, dict):
        value, path = value.get("code"), f"{path}.code"
    code = _text(value, path, code="-44")
    if not _LANGUAGE_CODE.fullmatch(code):
        _fail(path, f"must be a language code like en or zh_CN, got {_show(code)}", "-44")


def _check_button_component(component: dict[str, Any], path: str, *, seen: set[str]) -> None:
    sub_type = _choice(component.get("sub_type"), f"{path}.sub_type", ("url", "quick_reply"))
    index = component.get("index")
    if not isinstance(index, str) or index not in _BUTTON_INDEXES:
        _fail(f"{path}.index", f"must be a string \"0\" to \"9\", got {_show(index)}")
    if index in seen:
        _fail(f"{path}.index", f"button index {index} is given twice")
    seen.add(index)
    params = _list(component.get("parameters"), f"{path}.parameters", lo=1, hi=1)
    _check_parameter(params[0], f"{path}.parameters[0]", _PARAMETER_TYPES[sub_type])


def _check_parameter(value: object, path: str, allowed: tuple[str, ...]) -> str:
    # seed 000's parameter codes: -134 wrong type, -135 empty value.
    param = _obj(value, path, code="-134")
    kind = _choice(param.get("type"), f"{path}.type", allowed, code="-134")
    vpath = f"{path}.{kind}"
    if kind in ("text", "payload"):
        _text(param.get(kind), vpath, code="-135")
        return kind
    inner = _obj(param.get(kind), vpath, code="-135")
    if kind in ("image", "video", "document"):
        _link(inner.get("link"), f"{vpath}.link", code="-135")
        if kind == "document":
            _text(inner.get("filename"), f"{vpath}.filename", required=False)
    elif kind == "location":
        _coordinate(inner.get("latitude"), f"{vpath}.latitude", limit=90, code="-135")
        _coordinate(inner.get("longitude"), f"{vpath}.longitude", limit=180, code="-135")
        for part in ("name", "address"):
            _text(inner.get(part), f"{vpath}.{part}", required=False)
    else:  # currency, date_time: WhatsApp's shape; the text shown on old clients is required
        _text(inner.get("fallback_value"), f"{vpath}.fallback_value", code="-135")
    return kind


# --- SMS (seed 002, vendor-formats §3a) ------------------------------------------------------

def check_sms(*, content: object, sender_id: object = None,
              numbers: list[object] | None = None) -> None:
    """One SMS: content (-4 empty, -5 over 1024 characters), senderId (<= 32), numbers.
    Splitting numbers into calls of at most 1000 is the client's job."""
    _text(content, "content", max_len=1024, code="-4", len_code="-5")
    _text(sender_id, "sender_id", required=False, max_len=32)
    if numbers is None:
        return
    for i, number in enumerate(_list(numbers, "numbers", lo=1, code="-8", count_code="-8")):
        try:
            check_phone(number, field=f"numbers[{i}]")
        except ValidationFailed as exc:  # -70/-71/-72 are WhatsApp's; SMS says -9
            raise ValidationFailed(exc.field, exc.detail, vendor_code="-9") from None


# --- 云真机 / WeCom (seed 004, vendor-formats §4c) -------------------------------------------

WECOM_MSG_TYPES = ("text", "picture", "voice", "link", "video", "file", "program", "card",
                   "system", "channel", "announcement", "revoke", "location", "redpacket",
                   "emotionpic", "imgtext", "merge")


def check_wecom_messages(messages: object, *, field: str = "message") -> None:
    """A non-empty list of 云真机 message objects, any number (the client sends 5 per call)."""
    for i, value in enumerate(_list(messages, field, lo=1)):
        path = f"{field}[{i}]"
        message = _obj(value, path)
        kind = _choice(message.get("msg_type"), f"{path}.msg_type", WECOM_MSG_TYPES)
        content = _obj(message.get("content"), f"{path}.content")
        _WECOM_CHECKS.get(kind, _check_wecom_other)(content, f"{path}.content")
        delayed = message.get("delayed_time")
        if delayed is not None:
            _int(delayed, f"{path}.delayed_time", lo=0)
        send_id = message.get("api_send_id")
        if send_id is not None and (isinstance(send_id, bool)
                                    or not isinstance(send_id, (str, int))):
            _fail(f"{path}.api_send_id", f"must be a string or an integer, got {_kind(send_id)}")


def _check_wecom_text(content: dict[str, Any], path: str) -> None:
    items = _list(content.get("items"), f"{path}.items", lo=1)
    for i, value in enumerate(items):
        ipath = f"{path}.items[{i}]"
        item = _obj(value, ipath)
        kind = _text(item.get("type"), f"{ipath}.type")
        if kind == "text":  # other item kinds (emoji) are undocumented: passed on as given
            _text(item.get("text"), f"{ipath}.text")


def _wecom_fields(*required: str, optional: tuple[str, ...] = ()) -> Callable[..., None]:
    def check(content: dict[str, Any], path: str) -> None:
        for key in required:
            _text(content.get(key), f"{path}.{key}")
        for key in optional:
            _text(content.get(key), f"{path}.{key}", required=False)
    return check


def _check_wecom_voice(content: dict[str, Any], path: str) -> None:
    _text(content.get("url"), f"{path}.url")
    _int(content.get("duration"), f"{path}.duration", lo=1, hi=60)  # "语音时长,1-60整数"
    _text(content.get("org_content"), f"{path}.org_content", required=False)


def _check_wecom_other(content: dict[str, Any], path: str) -> None:
    # The page with these types' layouts was cut off: only insist there is something.
    if not content:
        _fail(path, "must not be empty")


_WECOM_CHECKS: dict[str, Callable[[dict[str, Any], str], None]] = {
    "text": _check_wecom_text,
    "announcement": _wecom_fields("text"),
    "picture": _wecom_fields("url"),
    "link": _wecom_fields("title", "url", optional=("cover", "desc")),
    "file": _wecom_fields("title", "url"),
    "voice": _check_wecom_voice,
    "video": _wecom_fields("url"),
}
