"""The VendorError tree: classes, transience, the code tables and the translations."""

from __future__ import annotations

import pickle

import httpx
import pytest

from sender.errors import (
    ITNIO_CODES,
    ITNIO_TEMPLATE_CODES,
    YZJ_CODES,
    OutcomeUnknown,
    RecipientOptedOut,
    VendorError,
    VendorRejected,
    VendorUnavailable,
    WindowClosed,
    status_error,
    transport_error,
    vendor_error,
)

REQUEST = httpx.Request("POST", "https://api.itniotech.com/wa/custom/sendMsg")

# The status tables as the seeds and vendor-formats §0/§1 print them.
GLOBAL_CODES = [str(-n) for n in range(1, 33)]  # vendor-formats §0: -1 … -32
SEED_000_CODES = (
    "-68 -69 -70 -71 -72 -93 -94 -95 -96 -97 -112 -114 -115 -116 -117 -118 -119 -120 -121 "
    "-122 -123 -124 -125 -127 -128 -129 -132 -133 -134 -135 -165 -304 -305 -306 -307 -308 "
    "-309 -310 -311 -312 -313 -314 -315 -316 -317 -318 -319 -320 -321 -322 -329 -330 -331"
).split()
SEED_001_CODES = (
    "-1 -2 -4 -5 -6 -7 -8 -10 -11 -12 -14 -16 -18 -19 -21 -23 -24 -32 -33 -34 -37 -38 -40 "
    "-74 -75 -76 -77 -78 -82 -83 -84 -86 -87 -88 -89 -90 -91 -92 -99 -100 -101 -102 -103 "
    "-104 -105 -106 -107 -108 -109"
).split()
SEED_002_CODES = "-1 -2 -3 -4 -5 -6 -7 -8 -9 -10 -16 -18 -19".split()
SEED_003_CODES = "-1 -2 -4 -5 -6 -7 -8 -10 -11 -12 -14".split()
FORMATS_1_CODES = "-44 -68 -69 -70 -71".split()


def test_the_tree() -> None:
    assert issubclass(VendorRejected, VendorError)
    assert issubclass(WindowClosed, VendorRejected)
    assert issubclass(RecipientOptedOut, VendorRejected)
    assert issubclass(VendorUnavailable, VendorError)
    assert issubclass(OutcomeUnknown, VendorError)
    assert not issubclass(VendorUnavailable, VendorRejected)
    assert not issubclass(OutcomeUnknown, VendorRejected | VendorUnavailable)


@pytest.mark.parametrize(
    ("cls", "transient"),
    [(VendorRejected, False), (WindowClosed, False), (RecipientOptedOut, False),
     (VendorUnavailable, True), (OutcomeUnknown, True)],
)
def test_transient(cls: type[VendorError], transient: bool) -> None:
    assert cls.transient is transient
    assert cls(vendor="itnio").transient is transient


def test_docstring_is_the_default_meaning() -> None:
    error = OutcomeUnknown(vendor="yzj")
    assert error.meaning == "The request was sent but no usable answer came back; " \
                            "the vendor may have acted."
    assert error.code is None and error.http_status is None and error.completed == ()
    assert str(error).startswith("yzj: The request was sent")


@pytest.mark.parametrize(
    "codes",
    [GLOBAL_CODES, SEED_000_CODES, SEED_001_CODES, SEED_002_CODES, SEED_003_CODES,
     FORMATS_1_CODES],
    ids=["formats-0", "seed-000", "seed-001", "seed-002", "seed-003", "formats-1"],
)
def test_every_documented_code_has_a_meaning(codes: list[str]) -> None:
    missing = [code for code in codes if not ITNIO_CODES.get(code)]
    assert missing == []


def test_meanings_are_english() -> None:
    for table in (ITNIO_CODES, ITNIO_TEMPLATE_CODES, YZJ_CODES):
        assert all(meaning.isascii() for meaning in table.values())


def test_insufficient_balance() -> None:
    error = vendor_error("itnio", "-68", "余额不足")

    assert type(error) is VendorRejected
    assert (error.vendor, error.code, error.meaning) == ("itnio", "-68", "insufficient balance")
    assert error.reason == "余额不足"
    assert error.transient is False
    assert str(error) == "itnio: insufficient balance (code -68)"


@pytest.mark.parametrize(
    ("code", "cls"),
    [("131047", WindowClosed), ("131050", RecipientOptedOut), ("-9", VendorRejected)],
)
def test_subclass_by_code(code: str, cls: type[VendorRejected]) -> None:
    error = vendor_error("itnio", code, "whatever")
    assert type(error) is cls
    assert error.code == code


def test_window_closed_meaning() -> None:
    error = vendor_error("itnio", "131047", None)
    assert error.meaning == "more than 24 hours since the recipient last replied"


def test_unknown_code_keeps_the_vendors_reason() -> None:
    error = vendor_error("itnio", "-999", "  DST_MCCMNC_LIMIT ")
    assert error.meaning == "DST_MCCMNC_LIMIT"


def test_unknown_code_without_reason_still_says_something() -> None:
    assert vendor_error("itnio", "-999", "  ").meaning == "The vendor refused the request."


def test_template_endpoints_have_their_own_table() -> None:
    # The same number means different things on the SMS and the template pages.
    assert vendor_error("itnio", "-10", None).meaning == "balance insufficient"
    templated = vendor_error("itnio", "-10", None, codes=ITNIO_TEMPLATE_CODES)
    assert templated.meaning == "application does not exist"
    # Codes only the WhatsApp table has stay the same under it.
    assert vendor_error("itnio", "-68", None, codes=ITNIO_TEMPLATE_CODES).meaning == \
        "insufficient balance"


def test_yzj_codes() -> None:
    error = vendor_error("yzj", "42001", "access_token expired rid: x")
    assert error.meaning == "access_token expired"
    assert vendor_error("yzj", "10001", "wxid不存在").meaning == "wxid不存在"
    # ITNIO's table does not leak into 云真机's
    assert vendor_error("yzj", "-68", None).meaning == "The vendor refused the request."


def test_http_status_is_kept() -> None:
    error = vendor_error("itnio", None, "Not Found", http_status=404)
    assert (error.code, error.meaning, error.http_status) == (None, "Not Found", 404)
    assert str(error) == "itnio: Not Found [HTTP 404]"


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectError("refused", request=REQUEST), VendorUnavailable),
        (httpx.ConnectTimeout("slow", request=REQUEST), VendorUnavailable),
        (httpx.PoolTimeout("busy", request=REQUEST), VendorUnavailable),
        (httpx.UnsupportedProtocol("ftp", request=REQUEST), VendorUnavailable),
        (httpx.ProxyError("proxy", request=REQUEST), VendorUnavailable),
        (httpx.LocalProtocolError("bad", request=REQUEST), VendorUnavailable),
        (httpx.ReadTimeout("slow", request=REQUEST), OutcomeUnknown),
        (httpx.WriteTimeout("slow", request=REQUEST), OutcomeUnknown),
        (httpx.RemoteProtocolError("gone", request=REQUEST), OutcomeUnknown),
        (httpx.ReadError("reset", request=REQUEST), OutcomeUnknown),
        (httpx.WriteError("reset", request=REQUEST), OutcomeUnknown),
        (httpx.DecodingError("gzip", request=REQUEST), OutcomeUnknown),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value.__name__,
)
def test_transport_error(exc: Exception, cls: type[VendorError]) -> None:
    error = transport_error(exc, vendor="itnio")
    assert type(error) is cls
    assert error.reason == f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize(
    ("status", "cls"),
    [(429, VendorUnavailable), (502, VendorUnavailable), (503, VendorUnavailable),
     (504, VendorUnavailable), (400, VendorRejected), (401, VendorRejected),
     (403, VendorRejected), (404, VendorRejected), (413, VendorRejected),
     (500, OutcomeUnknown), (501, OutcomeUnknown), (302, OutcomeUnknown)],
)
def test_status_error(status: int, cls: type[VendorError]) -> None:
    error = status_error(status, vendor="yzj")
    assert type(error) is cls
    assert error.http_status == status
    assert error.meaning == f"HTTP {status}"


def test_status_error_with_a_vendor_code() -> None:
    error = status_error(400, vendor="itnio", code="-68", reason="余额不足")
    assert type(error) is VendorRejected
    assert (error.code, error.meaning, error.http_status) == ("-68", "insufficient balance", 400)


def test_pickles() -> None:
    error = vendor_error("itnio", "131047", "window", http_status=200)
    error.completed = ("earlier",)

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is WindowClosed
    assert (copy.vendor, copy.code, copy.meaning, copy.reason, copy.http_status, copy.completed) \
        == ("itnio", "131047", error.meaning, "window", 200, ("earlier",))
    assert str(copy) == str(error)
