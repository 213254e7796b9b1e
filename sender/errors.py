"""What a vendor call came to when it did not simply succeed.

    VendorError                 .vendor .code .meaning .reason .transient .http_status .completed
    ├── VendorRejected          the vendor said no (status != "0", errcode != 0, HTTP 4xx):
    │   │                       never retried
    │   ├── WindowClosed        131047: more than 24 hours since the recipient last replied
    │   └── RecipientOptedOut   131050: the recipient stopped marketing messages from us
    ├── VendorUnavailable       nothing reached the vendor (refused, connect/pool timeout) or it
    │                           asked us to come back later (429, 502, 503, 504): safe to retry
    └── OutcomeUnknown          the request went out but no usable answer came back: the vendor
                                may have acted, so reconcile before sending again

`.completed` holds the results of the earlier calls of a split request (SMS in thousands, WeCom
messages in fives) that went through before this one failed: record them, do not resend them.

The clients translate at the boundary (`raise transport_error(exc, vendor=...) from exc`), so a
caller catches VendorError and never sees an httpx exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any, ClassVar

import httpx

# The SMS/global table (vendor-formats §0, the vendor's own English), the WhatsApp send codes
# (seed 000, vendor-formats §1), and the WhatsApp Cloud API codes ITNIO passes through.
_GLOBAL = {
    "-1": "authentication error",
    "-2": "restricted IP access",
    "-3": "sensitive characters in SMS content",
    "-4": "SMS content is empty",
    "-5": "SMS content too long",
    "-6": "SMS that is not a template",
    "-7": "phone number exceeds limit",
    "-8": "phone number is empty",
    "-9": "abnormal phone number",
    "-10": "balance insufficient",
    "-11": "incorrect time format",
    "-12": "platform reason, submit fail",
    "-13": "user locked",
    "-14": "field empty or query ID abnormal",
    "-15": "frequent query",
    "-16": "timestamp expires",
    "-17": "SMS template empty",
    "-18": "port program unusual",
    "-19": "confirm SMS pricing with the business team",
    "-20": "data existing",
    "-21": "data validation exception",
    "-22": "parameter exception",
    "-23": "data caps",
    "-24": "data unexisting",
    "-25": "out of time range",
    "-26": "getting fee failed",
    "-27": "period total send limit",
    "-28": "period phone send limit",
    "-29": "workspace disabled",
    "-30": "API key disabled",
    "-31": "IP not in whitelist",
    "-32": "API key has no permission for the application",
}
_WHATSAPP = {
    "-44": "template send failed: template language not found",
    "-68": "insufficient balance",
    "-69": "rate (price) does not exist",
    "-70": "recipient number longer than 14 digits",
    "-71": "recipient number shorter than 7 digits",
    "-72": "recipient number must be digits only",
    "-93": "business number longer than 14 digits",
    "-94": "business number shorter than 7 digits",
    "-95": "business number must be digits only",
    "-96": "business number does not exist",
    "-97": "business number status is wrong",
    "-112": "channelType must be 0",
    "-114": "text message: text must not be empty",
    "-115": "text message: body must not be empty",
    "-116": "image message: image must not be empty",
    "-117": "image message: link must not be empty",
    "-118": "audio message: audio must not be empty",
    "-119": "audio message: link must not be empty",
    "-120": "video message: video must not be empty",
    "-121": "video message: link must not be empty",
    "-122": "sticker message: sticker must not be empty",
    "-123": "sticker message: link must not be empty",
    "-124": "document message: document must not be empty",
    "-125": "document message: link must not be empty",
    "-127": "location message: location must not be empty",
    "-128": "location message: longitude must not be empty",
    "-129": "location message: latitude must not be empty",
    "-132": "unknown message type",
    "-133": "malformed link URL",
    "-134": "wrong parameter type",
    "-135": "parameter value must not be empty",
    "-165": "interactive type must be list, button, location_request_message or carousel",
    "-304": "carousel: header and footer components are not supported",
    "-305": "carousel: 2 to 10 cards only",
    "-306": "carousel: card_index must be 0-9, from 0, unique and consecutive",
    "-307": 'carousel: card type must be "cta_url"',
    "-308": "carousel: card header must not be empty",
    "-309": "carousel: card header type must be image or video",
    "-310": "carousel: card header media link must not be empty",
    "-311": "carousel: card body text must not be empty or longer than 160 characters",
    "-312": "carousel: card action must not be empty",
    "-313": 'carousel: card URL button name must be "cta_url"',
    "-314": "carousel: card URL button parameters must not be empty",
    "-315": "carousel: card URL button display_text must be 1-20 characters",
    "-316": "carousel: card URL button url must not be empty",
    "-317": "carousel: a card has 1-2 quick reply buttons only",
    "-318": 'carousel: card quick reply button type must be "quick_reply"',
    "-319": "carousel: card quick_reply must not be empty",
    "-320": "carousel: card quick_reply id must be 1-20 characters",
    "-321": "carousel: card quick_reply title must be 1-20 characters",
    "-322": "carousel: card component parameters are wrong",
    "-329": "carousel: main message body must not be empty",
    "-330": "carousel: body text must be 1-1024 characters",
    "-331": "carousel: card buttons must be either URL or quick reply",
    "131047": "more than 24 hours since the recipient last replied",
    "131050": "the recipient chose to stop receiving marketing messages from this business",
}
# wa/template/add and wa/template/query (seeds 001, 003). Below -33 these reuse numbers the global
# table gives other meanings (-10 is "application does not exist" here, not the balance).
_TEMPLATE = {
    "-1": "authentication error",
    "-2": "template status is not correct",
    "-4": "timestamp expired",
    "-5": "system exception",
    "-6": "IP restricted",
    "-7": "parameter validation error",
    "-8": "parameter validation error",
    "-10": "application does not exist",
    "-11": "application name already exists",
    "-12": "network error, try again later",
    "-14": "account not verified",
    "-16": "a deleted template's name cannot be reused for a month: choose another name",
    "-18": "fileId must not be empty",
    "-19": "fileId must not be empty",
    "-21": "header too long",
    "-23": "button type must not be empty",
    "-24": "too many buttons",
    "-32": "this language already exists under the template name",
    "-33": "malformed template name",
    "-34": "two variables must not be adjacent",
    "-37": "template creation failed",
    "-38": "template does not exist",
    "-40": "example file too large",
    "-74": "malformed language code",
    "-75": "template type does not match the existing type",
    "-76": "wrong type",
    "-77": "phone number or area code is malformed",
    "-78": "wrong language",
    "-82": "body example too long",
    "-83": "wrong format parameter",
    "-84": "text must not be empty",
    "-86": "body type must not be empty",
    "-87": "footer type must not be empty",
    "-88": "footer text too long",
    "-89": "components must not be empty",
    "-90": "header must not have consecutive variables",
    "-91": "header variables do not match the examples, or more than one header variable",
    "-92": "text longer than 25 characters",
    "-99": "wrong channel type",
    "-100": "format is required when the header is text",
    "-101": "wrong format value",
    "-102": "wrong button type: only OTP (type 3) is supported",
    "-103": "an authentication template needs a body",
    "-104": "wrong add_security_recommendation in body",
    "-105": "footer longer than 60 characters",
    "-106": "expiry must be between 0 and 90",
    "-107": "the application has no alias",
    "-108": "button otp_type must not be empty",
    "-109": "an authentication template needs buttons",
}

# Every ITNIO code; where the template endpoints reuse a number, the global meaning stands here.
ITNIO_CODES: dict[str, str] = {**_TEMPLATE, **_GLOBAL, **_WHATSAPP}
# What the template endpoints mean by their codes.
ITNIO_TEMPLATE_CODES: dict[str, str] = {**ITNIO_CODES, **_TEMPLATE}
# 云真机 publishes no errcode table; these are the WeChat/WeCom token codes its API family uses.
YZJ_CODES: dict[str, str] = {
    "40001": "invalid credential: access_token invalid or not the latest",
    "40014": "invalid access_token",
    "42001": "access_token expired",
}


class VendorError(Exception):
    """The vendor call failed."""

    transient: ClassVar[bool] = False

    def __init__(self, *, vendor: str, code: str | None = None, meaning: str | None = None,
                 reason: str | None = None, http_status: int | None = None) -> None:
        self.vendor = vendor
        self.code = code
        # The class docstring is the default (procrastinate): every error says something.
        self.meaning = meaning or reason or (type(self).__doc__ or "").strip()
        self.reason = reason
        self.http_status = http_status
        self.completed: tuple[Any, ...] = ()
        parts = [f"{vendor}: {self.meaning}"]
        if code is not None:
            parts.append(f"(code {code})")
        if http_status is not None:
            parts.append(f"[HTTP {http_status}]")
        super().__init__(" ".join(parts))

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only __init__ breaks the default Exception pickling (process pools pickle errors).
        rebuild = partial(type(self), vendor=self.vendor, code=self.code, meaning=self.meaning,
                          reason=self.reason, http_status=self.http_status)
        return (rebuild, (), {"completed": self.completed})


class VendorRejected(VendorError):
    """The vendor refused the request."""

    transient = False


class WindowClosed(VendorRejected):
    """More than 24 hours since the recipient last replied."""


class RecipientOptedOut(VendorRejected):
    """The recipient stopped receiving these messages."""


class VendorUnavailable(VendorError):
    """The vendor could not be reached or asked us to come back later."""

    transient = True


class OutcomeUnknown(VendorError):
    """The request was sent but no usable answer came back; the vendor may have acted."""

    transient = True


_BY_CODE: dict[str, type[VendorRejected]] = {
    "131047": WindowClosed,
    "131050": RecipientOptedOut,
}


def vendor_error(vendor: str, code: str | None, reason: str | None, *,
                 http_status: int | None = None,
                 codes: Mapping[str, str] | None = None) -> VendorRejected:
    """The error for a business answer: the subclass by code, the documented meaning.

    `codes` picks the endpoint's table when it differs (ITNIO_TEMPLATE_CODES); by default the
    vendor's own.
    """
    table = codes if codes is not None else (YZJ_CODES if vendor == "yzj" else ITNIO_CODES)
    reason = reason.strip() if isinstance(reason, str) and reason.strip() else None
    meaning = table.get(code) if code is not None else None
    cls = _BY_CODE.get(code, VendorRejected) if code is not None else VendorRejected
    return cls(vendor=vendor, code=code, meaning=meaning, reason=reason, http_status=http_status)


_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError,
             httpx.UnsupportedProtocol, httpx.LocalProtocolError, httpx.InvalidURL)


def transport_error(exc: Exception, *, vendor: str) -> VendorError:
    """An httpx exception as a VendorError: unavailable if the request never left, else unknown."""
    reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, _NOT_SENT):
        return VendorUnavailable(vendor=vendor, reason=reason)
    # ReadTimeout, WriteTimeout, ReadError, WriteError, RemoteProtocolError, ...: the request
    # (or part of it) went out, so the vendor may have acted on it.
    return OutcomeUnknown(vendor=vendor, reason=reason)


# 504 can mean a gateway passed the request on and gave up waiting; the agreed mapping still
# calls it unavailable, so idempotency upstream (api_send_id, orderId) is what guards a resend.
_COME_BACK = frozenset({429, 502, 503, 504})


def status_error(status: int, *, vendor: str, code: str | None = None,
                 reason: str | None = None) -> VendorError:
    """An HTTP status other than 2xx as a VendorError."""
    reason = reason or f"HTTP {status}"
    if status in _COME_BACK:
        return VendorUnavailable(vendor=vendor, code=code, reason=reason, http_status=status)
    if 400 <= status < 500:
        return vendor_error(vendor, code, reason, http_status=status)
    # 500 and the rest: the vendor broke while handling it, or answered in a way we cannot read.
    return OutcomeUnknown(vendor=vendor, code=code, reason=reason, http_status=status)
