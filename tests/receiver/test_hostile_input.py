"""Hostile input, property-based (hypothesis), on SQLite and PostgreSQL: every webhook and every
bot endpoint gets arbitrary bytes, arbitrary JSON (deep nesting, huge numbers, NaN, invalid
UTF-8), mutated vendor payloads, broken 云真机 encryption, wrong content types, bodies over the
limit, arbitrary query strings and path segments, arbitrary keys.

What must hold for every request:
- never a 5xx (and no exception escapes the app: the client re-raises them);
- every 4xx is a JSON object with a string `error` and `detail`;
- every webhook body answered 200, 400 or 413 left exactly one row, holding exactly the bytes
  sent (the first MiB for 413), in inbox_bodies or quarantined_bodies; no parser broke on it
  (an inbox row `failed`) and the database refused none of it (quarantined `unstorable`).

Counts are bounded (about a minute for the file); HYPOTHESIS_PROFILE=long for a soak run, see
hostile_support.py.
"""

from __future__ import annotations

import base64
import copy
import itertools
import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import event, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from sqlalchemy import Engine
from starlette.testclient import TestClient

from receiver import crypto
from receiver.app import create_app
from receiver.settings import MAX_BODY_BYTES, Settings
from store.models import InboxBody, QuarantinedBody
from tests.conftest import API_KEY, DATA, TOKEN, FakeClock
from tests.receiver.hostile_support import Archive, check_error_shape, examples, with_openapi
from tests.settling import SettlingClient

YZJ_KEY = "replywindowTestVectorKey32bytes!"
KEY_BYTES = crypto.decode_key(YZJ_KEY)
WA = f"/webhooks/itnio/whatsapp/{TOKEN}"
SMS = f"/webhooks/itnio/sms/{TOKEN}"
YZJ = f"/webhooks/yzj/{TOKEN}"
WEBHOOKS = (WA, SMS, YZJ)
EXAMPLES = DATA / "webhooks"
ITNIO_SAMPLES = {
    WA: [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("itnio_wa_*.json"))],
    SMS: [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("itnio_sms_*.json"))],
}
YZJ_SAMPLES = [json.loads(p.read_text()) for p in sorted(EXAMPLES.glob("yzj_*.json"))]
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def hostile(db_url: str, clock: FakeClock) -> Iterator[TestClient]:
    """The app with a 云真机 key configured (its callbacks must decrypt)."""
    settings = Settings(database_url=db_url, webhook_token=TOKEN, api_keys=API_KEY,
                        yzj_encoding_aes_key=YZJ_KEY, run_scheduler=False,
                        _env_file=None)  # type: ignore[call-arg]
    with SettlingClient(with_openapi(create_app(settings, clock=clock))) as client:
        yield client


# -- strategies ------------------------------------------------------------------------------

FULLWIDTH = "".join(chr(0xFF11 + i) for i in range(8))  # digits, not ASCII ones
HUGE_NUMBERS = [10**30, -(10**30), 2**63, 2**63 - 1, -(2**63) - 1, 2**64, 10**4000, 1e308,
                -1e308, 5e-324, 1.5, -0.0, 0, -1, 99999999999999999999]
ODD_STRINGS = ["", " ", "\x00", "\ud800", "\udfff", "9" * 300, FULLWIDTH[:7], "٣٤٥",
               "NaN", "Infinity", "-1", "1e309", "0x1f", "2026-13-45T99:99:99",
               "9999-12-31T23:59:59",
               "0001-01-01T00:00:00", "24:00", "null", "true", "'", '"', "\\", "é" * 70000,
               "91856321432\n", "+91856321432", "<script>", "\u202e", "\ufeff"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.sampled_from(HUGE_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(ODD_STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.text(max_size=12), children, max_size=5)),
    max_leaves=25,
)


def encode(draw: st.DrawFn, value: Any) -> bytes:
    """JSON text of `value` (NaN and Infinity written as such), as UTF-8, or with lone
    surrogates passed through (invalid UTF-8)."""
    text = json.dumps(value, ensure_ascii=draw(st.booleans()), allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.sampled_from([50, 1000, 5000, 100_000]))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    inner = draw(st.sampled_from([b"1", b"null", b'"x"', b"[]"]))
    closed = draw(st.booleans())
    return opener * depth + inner + (closer * depth if closed else b"")


@st.composite
def json_bodies(draw: st.DrawFn) -> bytes:
    body = encode(draw, draw(json_values))
    if draw(st.integers(0, 4)) == 0 and body:  # an invalid UTF-8 byte, anywhere
        at = draw(st.integers(0, len(body)))
        body = body[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"])) \
            + body[at:]
    return body


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*prefix, index))


FRESH = itertools.count(1)
ID_FIELDS = ("messageId", "msgid", "msgId", "svrid", "wx_svrid", "msg_hash", "api_send_id")


def _retyped(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return [value]
    return json.dumps(value)  # a container as a JSON string


@st.composite
def mutated(draw: st.DrawFn, samples: list[Any], least: int = 1) -> Any:
    """A sample with `least` to four mutations: a value replaced (by anything, a huge
    number, an odd string), a key dropped or added, a value's type changed, the lot wrapped
    in an array."""
    doc = copy.deepcopy(draw(st.sampled_from(samples)))
    if draw(st.integers(0, 3)):  # mostly a new event, applied, not a duplicate of the sample's
        fresh = f"-{next(FRESH)}"  # not drawn: hypothesis would draw the same few again
        for path in list(_paths(doc)):
            if path and path[-1] in ID_FIELDS:
                parent = doc
                for step in path[:-1]:
                    parent = parent[step]
                parent[path[-1]] = f"{parent[path[-1]]}{fresh}"
    for _ in range(draw(st.integers(least, 4))):
        path = draw(st.sampled_from(list(_paths(doc))))
        parent: Any = None
        target: Any = doc
        for step in path:
            parent, target = target, target[step]
        op = draw(st.sampled_from(["replace", "huge", "odd", "drop", "add", "retype", "wrap"]))
        if op == "add" and isinstance(target, dict):
            target[draw(st.text(max_size=10))] = draw(json_values)
            continue
        if op == "drop" and parent is not None:
            del parent[path[-1]]
            continue
        new = {"replace": lambda: draw(json_values),
               "huge": lambda: draw(st.sampled_from(HUGE_NUMBERS)),
               "odd": lambda: draw(st.sampled_from(ODD_STRINGS)),
               "retype": lambda: _retyped(target),
               "wrap": lambda: [target, draw(json_values)],
               }.get(op, lambda: target)()
        if parent is None:
            doc = new
        else:
            parent[path[-1]] = new
    return doc


CONTENT_TYPES = st.one_of(
    st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain",
                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                     "application/octet-stream", "text/html; charset=utf-16", "", "*/*",
                     "application/json; charset=latin-1"]),
    # what a real server lets through in a header value: visible ASCII, space, obs-text
    st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=60).map(
        lambda t: t.encode("latin-1")),
)


def _wrap_ciphertext(draw: st.DrawFn, ciphertext: bytes) -> bytes:
    form = draw(st.sampled_from(["raw", "json_string", "encrypt_field", "wrapped_lines"]))
    text = ciphertext.decode("latin-1")
    if form == "json_string":
        return json.dumps(text).encode()
    if form == "encrypt_field":
        return json.dumps({"encrypt": text}).encode()
    if form == "wrapped_lines":
        return "\r\n".join(text[i:i + 76] for i in range(0, len(text), 76)).encode()
    return ciphertext


@st.composite
def yzj_bodies(draw: st.DrawFn) -> bytes:
    """Encrypted 云真机 callbacks: mutated samples, encrypted well; or malformed encryption."""
    plain = encode(draw, draw(mutated(YZJ_SAMPLES)))
    kind = draw(st.sampled_from(["good", "good", "flipped", "truncated", "bad_base64",
                                 "wrong_key", "bad_padding", "not_json", "odd_wrapper"]))
    if kind == "not_json":
        plain = draw(st.binary(max_size=200))
    if kind == "wrong_key":
        return _wrap_ciphertext(draw, crypto.encrypt(plain, b"k" * 32))
    if kind == "bad_padding":
        raw = plain + bytes([draw(st.integers(0, 255))]) * draw(st.integers(0, 40))
        raw += b"\0" * (-len(raw) % 16)
        enc = Cipher(algorithms.AES(KEY_BYTES), modes.CBC(KEY_BYTES[:16])).encryptor()
        return _wrap_ciphertext(draw, base64.b64encode(enc.update(raw) + enc.finalize()))
    ciphertext = crypto.encrypt(plain, KEY_BYTES)
    if kind == "flipped":
        at = draw(st.integers(0, len(ciphertext) - 1))
        ciphertext = ciphertext[:at] + bytes([draw(st.sampled_from(b"AZaz09+/="))]) \
            + ciphertext[at + 1:]
    elif kind == "truncated":
        ciphertext = ciphertext[:draw(st.integers(0, len(ciphertext) - 1))]
    elif kind == "bad_base64":
        at = draw(st.integers(0, len(ciphertext)))
        junk = draw(st.sampled_from([b"!", b"\xff", b"-_", b"\x00", b"=="]))
        ciphertext = ciphertext[:at] + junk + ciphertext[at:]
    elif kind == "odd_wrapper":
        return encode(draw, draw(st.sampled_from([
            {"encrypt": 12}, {"encrypt": None}, {"encrypt": ["x"]},
            {"Encrypt": ciphertext.decode()}, ciphertext.decode() + "\ud800",
            [ciphertext.decode()], {"encrypt": "\ud800"},
        ])))
    return _wrap_ciphertext(draw, ciphertext)


# -- checks ----------------------------------------------------------------------------------

def post_webhook(client: TestClient, archive: Archive, route: str, body: bytes,
                 content_type: bytes | None = None) -> int:
    headers = {"content-type": content_type} if content_type is not None else {}
    response = client.post(route, content=body, headers=headers)  # type: ignore[arg-type]
    status = response.status_code
    check_error_shape(status, response.headers.get("content-type", ""), response.content, route)
    rows = archive.new_rows()
    if currently_in_test_context():  # --hypothesis-show-statistics: what the bodies reached
        state = getattr(rows[0], "state", None) or getattr(rows[0], "error", "") if rows else ""
        event(f"{route.split('/')[-2]} {status} {state}")
    if status == 404:
        assert rows == []
        return status
    assert status in (200, 400, 413), (status, response.text)
    assert len(rows) == 1, (status, rows)
    [row] = rows
    if status == 413:
        assert isinstance(row, QuarantinedBody) and row.error == "payload_too_large"
        assert bytes(row.body) == body[:MAX_BODY_BYTES]
        return status
    assert bytes(row.body) == body
    if status == 400:
        assert isinstance(row, QuarantinedBody), row
        assert row.error != "unstorable", (row.error, row.detail, body[:300])
        assert response.json()["error"] == row.error
    else:
        assert isinstance(row, InboxBody), row
        assert row.state != "failed", (row.detail, body[:300])  # a parser broke on it
    return status


def _runtime(client: TestClient) -> Engine:
    """The app's engine, from the lifespan state the TestClient keeps."""
    return client.app_state["runtime"].engine  # type: ignore[no-any-return]


def fuzz(client: TestClient, strategy: st.SearchStrategy[Any], n: int,
         check: Callable[[Any], None]) -> None:
    @examples(n)
    @given(strategy)
    def run(value: Any) -> None:
        check(value)

    run()


# -- webhooks --------------------------------------------------------------------------------

def test_webhooks_keep_and_answer_arbitrary_bytes(hostile: TestClient) -> None:
    archive = Archive(_runtime(hostile))
    fuzz(hostile, st.tuples(st.sampled_from(WEBHOOKS), st.binary(max_size=600), CONTENT_TYPES),
         60, lambda v: post_webhook(hostile, archive, *v))


def test_webhooks_keep_and_answer_arbitrary_json(hostile: TestClient) -> None:
    archive = Archive(_runtime(hostile))
    bodies = st.one_of(json_bodies(), deep_nesting())
    fuzz(hostile, st.tuples(st.sampled_from(WEBHOOKS), bodies, CONTENT_TYPES), 60,
         lambda v: post_webhook(hostile, archive, *v))


def test_itnio_webhooks_keep_and_answer_mutated_vendor_payloads(hostile: TestClient) -> None:
    archive = Archive(_runtime(hostile))
    cases = st.sampled_from([WA, SMS]).flatmap(
        lambda route: st.tuples(st.just(route), mutated(ITNIO_SAMPLES[route])))

    @examples(120)
    @given(cases, st.booleans())
    def run(case: tuple[str, Any], ascii_only: bool) -> None:
        route, doc = case
        body = json.dumps(doc, ensure_ascii=ascii_only, allow_nan=True)
        post_webhook(hostile, archive, route, body.encode("utf-8", "surrogatepass"),
                     b"application/json")

    run()


def test_yzj_webhook_keeps_and_answers_mutated_and_malformed_encryption(
        hostile: TestClient) -> None:
    archive = Archive(_runtime(hostile))
    fuzz(hostile, yzj_bodies(), 120,
         lambda body: post_webhook(hostile, archive, YZJ, body, b"application/json"))


@pytest.mark.parametrize("route", WEBHOOKS)
def test_webhook_bodies_over_the_limit_are_413_and_their_first_mib_kept(
        hostile: TestClient, route: str) -> None:
    archive = Archive(_runtime(hostile))
    at_limit = b"[" + b" " * (MAX_BODY_BYTES - 2) + b"]"
    assert post_webhook(hostile, archive, route, at_limit) == 400  # read, and not an event
    over = b'{"a":"' + b"x" * MAX_BODY_BYTES + b'"}'
    assert post_webhook(hostile, archive, route, over) == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is counted as it streams
        for _ in range(5):
            yield b"y" * (MAX_BODY_BYTES // 3)

    response = hostile.post(route, content=chunks())
    assert response.status_code == 413
    check_error_shape(413, response.headers["content-type"], response.content, route)
    [row] = archive.new_rows()
    assert bytes(row.body) == b"y" * MAX_BODY_BYTES


def test_a_wrong_token_is_404_with_nothing_kept(hostile: TestClient) -> None:
    archive = Archive(_runtime(hostile))
    tokens = st.text(max_size=40).filter(lambda t: t != TOKEN)

    @examples(30)
    @given(st.sampled_from(["itnio/whatsapp", "itnio/sms", "yzj"]), tokens)
    def run(route: str, token: str) -> None:
        response = hostile.post(f"/webhooks/{route}/{q(token)}", content=b"{}")
        assert response.status_code in (404, 405), response.text
        check_error_shape(response.status_code, response.headers["content-type"],
                          response.content, route)
        assert archive.new_rows() == []

    run()


# -- bot API ---------------------------------------------------------------------------------

SEND_SAMPLES = [
    {"channel": "whatsapp", "from": "91856321412", "to": "91856321432",
     "message": {"type": "text", "text": {"body": "Your order has shipped"}},
     "template": {"name": "order_update", "language": "en", "components": []},
     "fallback": ["template", "sms"], "sms_text": "Your order has shipped",
     "reply_to": "wamid.x", "send_at": "2026-11-22T10:00:00Z"},
    {"channel": "wecom", "from": "1688851873049028", "to": "7881302848173300",
     "message": [{"msg_type": "text", "content": {"items": [{"type": "text", "text": "您好"}]}}]},
    {"channel": "sms", "from": "91856321412", "to": "91856321432", "sms_text": "Code 1234"},
    {"channel": "whatsapp", "from": "91856321412", "to": "91856321432",
     "message": {"type": "interactive", "interactive": {"type": "button", "body": {"text": "x"},
                 "action": {"buttons": [{"type": "reply", "reply": {"id": "a", "title": "A"}}]}}}},
]

AUTHS = st.one_of(
    st.just(AUTH), st.just(AUTH), st.just(AUTH), st.just({}), st.just({"Authorization": "Bearer"}),
    st.just({"Authorization": f"bearer  {API_KEY}  "}),
    st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=80).map(
        lambda t: {"Authorization": ("Bearer " + t).encode("latin-1")}),
)


def check_bot(response: Any, where: str) -> None:
    check_error_shape(response.status_code, response.headers.get("content-type", ""),
                      response.content, where)


def test_post_messages_answers_arbitrary_bodies_with_a_clear_4xx(
        hostile: TestClient, clock: FakeClock) -> None:
    # The window of the samples' customer is open: custom sends get as far as the vendor.
    uplink = {**ITNIO_SAMPLES[WA][-1], "timestamp": int(clock().timestamp())}
    assert uplink["eventType"] == "up-message-event"
    assert hostile.post(WA, json=uplink).status_code == 200
    sends = mutated(SEND_SAMPLES, least=0).map(
        lambda doc: json.dumps(doc, allow_nan=True).encode("utf-8", "surrogatepass"))
    bodies = st.one_of(st.binary(max_size=300), json_bodies(), deep_nesting(), sends, sends,
                       sends)
    keys = st.one_of(st.none(), st.text(st.characters(codec="ascii", exclude_categories=["Cc"]),
                                        max_size=300))

    @examples(150)
    @given(bodies, CONTENT_TYPES, AUTHS, keys)
    def run(body: bytes, content_type: bytes, auth: dict[str, Any], key: str | None) -> None:
        headers = {**auth, "content-type": content_type}
        if key is not None:
            headers["Idempotency-Key"] = key
        response = hostile.post("/v1/messages", content=body, headers=headers)
        check_bot(response, "POST /v1/messages")

    run()
    too_big = b'{"channel":"sms","sms_text":"' + b"x" * MAX_BODY_BYTES + b'"}'
    response = hostile.post("/v1/messages", content=too_big, headers=AUTH)
    assert response.status_code == 413
    check_bot(response, "POST /v1/messages")


# Each route with the parameters it reads (drawn most often), then any others.
ROUTES = {
    "/v1/messages": ("channel", "to", "status", "since", "cursor"),
    "/v1/messages/{x}": (),
    "/v1/windows": ("expiring_within", "unanswered", "limit"),
    "/v1/windows/whatsapp/{x}/{y}": (),
    "/v1/windows/whatsapp/91856321412/{y}": (),
    "/v1/events": ("after", "wait", "limit"),
    "/v1/templates": (),
    "/v1/reports/delivery": ("since", "until", "group_by", "format", "channel", "show_numbers"),
    "/healthz": (), "/readyz": (), "/openapi.json": (), "/metrics": (),
    "/v1/{x}": (), "/{x}": (), "/v1/messages/{x}/{y}": (),
}
PARAMS = sorted({name for names in ROUTES.values() for name in names} | {"key"})
BIG = st.one_of(st.integers(-(10**25), 10**25), st.sampled_from(
    [2**63 - 1, 2**63, 2**64, 10**19, 10**20 - 1, 86400, 86401, 1000, 1001, 500, 501, 30, 31]))
TIMES = st.one_of(
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(lambda t: t.isoformat()),
    st.dates().map(str),
    st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-10:00", "2026-11-24",
                     "2026-11-24T10:00:00Z", "2026-11-24T10:00:00 01:00", "2026-02-30",
                     "2026-11-24T25:00", "1718000000", "1718000000000", "now"]),
)
CURSORS = st.one_of(
    st.tuples(TIMES, st.one_of(st.text(max_size=10), st.just("msg_x\x00"))).map(
        lambda p: base64.urlsafe_b64encode(f"{p[0]}|{p[1]}".encode("utf-8", "surrogatepass"))
        .decode()),
    st.binary(max_size=30).map(lambda b: base64.urlsafe_b64encode(b).decode()),
)
EVENT_CURSORS = st.tuples(BIG, BIG).map(lambda p: f"{p[0]}.{p[1]}")
PARAM_VALUES = st.one_of(
    st.text(max_size=30), st.sampled_from(ODD_STRINGS[:-6]), BIG.map(str), TIMES, CURSORS,
    EVENT_CURSORS,
    st.sampled_from(["whatsapp", "sms", "wecom", "true", "TRUE", "1", "0", "-1", "csv", "json",
                     "day,channel,route,account,status", ",,", "day,day", "delivered", "1e3",
                     "१२३", "+", "  1 ", "0x10"]),
)
# Percent-escapes a client may send raw (invalid UTF-8 and NUL included).
RAW_ESCAPES = st.sampled_from(["%00", "%ff", "%c3", "%ed%a0%80", "%", "%zz", "%2F", "%0a", "+",
                               "%e2%80%ae", "%25", ".."])


def q(text: str) -> str:
    """Percent-encoded, lone surrogates too (as invalid UTF-8)."""
    return quote(text, safe="", errors="surrogatepass")


VALUES = {
    "channel": st.sampled_from(["whatsapp", "sms", "wecom", "WhatsApp", "fax"]),
    "to": st.one_of(st.sampled_from(["91856321432", "+91856321432", "7881302848173300"]),
                    st.text(max_size=20)),
    "status": st.sampled_from(["delivered", "read", "failed", "queued", "sending", "bogus"]),
    "since": TIMES, "until": TIMES, "cursor": CURSORS, "after": EVENT_CURSORS,
    "limit": BIG.map(str), "expiring_within": BIG.map(str), "wait": BIG.map(str),
    "unanswered": st.sampled_from(["true", "false", "1", "0", "TRUE", "yes", ""]),
    "show_numbers": st.sampled_from(["true", "false", "1", "0", "TRUE", "yes", ""]),
    "group_by": st.lists(st.sampled_from(["day", "channel", "route", "account", "status",
                                          "week", "", " "]), max_size=6).map(",".join),
    "format": st.sampled_from(["json", "csv", "CSV", "xml", ""]),
    "key": st.text(max_size=20),
}


@st.composite
def query_strings(draw: st.DrawFn, names: tuple[str, ...]) -> str:
    """The route's own parameters (each maybe given, with a value of its kind or not), then
    maybe others; a value may carry raw escapes (NUL, invalid UTF-8) anywhere."""
    pairs = [(name, draw(st.one_of(VALUES[name], VALUES[name], PARAM_VALUES)))
             for name in names if draw(st.booleans())]
    pairs += draw(st.lists(st.tuples(st.one_of(st.sampled_from(PARAMS), st.text(max_size=8)),
                                     PARAM_VALUES), max_size=2))
    parts = []
    for name, value in draw(st.permutations(pairs)):
        if name == "wait":  # a long poll would only make the run slow
            value = "0" if value.strip().isdigit() else value
        encoded = q(value)
        if draw(st.integers(0, 3)) == 0:
            at = draw(st.integers(0, len(encoded)))
            encoded = encoded[:at] + draw(RAW_ESCAPES) + encoded[at:]
        parts.append(f"{q(name)}={encoded}")
    return "&".join(parts)


segments = st.one_of(st.text(min_size=1, max_size=30).map(q),
                     st.sampled_from(["91856321432", "+91856321432", "9" * 15, "msg_x", "%00",
                                      "msg_x%00", "%ff", "%2F", "..", FULLWIDTH, "%20",
                                      "0" * 7, "9185632143%00"]),
                     RAW_ESCAPES)


@st.composite
def urls(draw: st.DrawFn) -> str:
    route = draw(st.sampled_from(sorted(ROUTES)))
    query = draw(query_strings(ROUTES[route]))
    path = route.format(x=draw(segments), y=draw(segments))
    return path + ("?" + query if query else "")


def test_get_endpoints_answer_arbitrary_queries_and_paths_with_a_clear_4xx(
        hostile: TestClient) -> None:
    @examples(300)
    @given(urls(), AUTHS, st.sampled_from(["GET"] * 6 + ["POST", "PUT", "DELETE", "PATCH"]))
    def run(url: str, auth: dict[str, Any], method: str) -> None:
        response = hostile.request(method, url, headers=auth)
        check_bot(response, f"{method} {url}")

    run()


def test_the_report_page_never_fails_on_arbitrary_queries(hostile: TestClient) -> None:
    """/reports answers people: its errors are pages, not JSON; but never a 5xx."""
    @examples(60)
    @given(query_strings(("since", "until", "channel", "show_numbers", "key")), AUTHS)
    def run(query: str, auth: dict[str, Any]) -> None:
        response = hostile.get("/reports?" + query, headers=auth)
        assert response.status_code < 500, (query, response.text[:300])

    run()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(("url", "status"), [
    # event cursors past a bigint: 500 (SQLite OverflowError, PostgreSQL "bigint out of range")
    ("/v1/events?after=9223372036854775808.1", 422),
    ("/v1/events?after=1.99999999999999999999", 422),
    # forged message cursors: zone-less time, NUL in the id, no id (500 before)
    (f"/v1/messages?cursor={_b64('2026-01-01T00:00:00|msg_x')}", 422),
    (f"/v1/messages?cursor={_b64('2026-01-01T00:00:00+00:00|msg_x' + chr(0))}", 422),
    (f"/v1/messages?cursor={_b64('2026-01-01T00:00:00+00:00|')}", 422),
    # NUL, which PostgreSQL refuses in text (500 there before)
    ("/v1/messages/msg_x%00", 404),
    ("/v1/messages?to=9185632143%00", 422),
    ("/v1/messages?status=deliv%00ered", 422),
])
def test_what_fuzzing_found_stays_fixed(hostile: TestClient, url: str, status: int) -> None:
    response = hostile.get(url, headers=AUTH)

    assert response.status_code == status, response.text
    check_bot(response, url)
