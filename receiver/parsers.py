"""Which parser reads which route's bodies (the webhooks and `inbox replay` share it)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from receiver import crypto, parse_itnio, parse_yzj
from receiver.events import Event, checked
from receiver.settings import Settings

Parser = Callable[[bytes], list[Event]]


def yzj_key(settings: Settings) -> bytes | None:
    key = settings.yzj_encoding_aes_key
    return crypto.decode_key(key.get_secret_value()) if key is not None else None


def _checked(parse: Parser) -> Parser:
    return lambda body: checked(parse(body))


def parsers(settings: Settings) -> dict[tuple[str, str], Parser]:
    return {
        ("itnio", "whatsapp"): _checked(parse_itnio.parse_whatsapp),
        ("itnio", "sms"): _checked(parse_itnio.parse_sms),
        ("yzj", "wecom"): _checked(partial(parse_yzj.parse, key=yzj_key(settings))),
    }
