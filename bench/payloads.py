"""The payloads every run sends, prepared before any server starts.

Webhooks: a mix of ITNIO WhatsApp uplinks, ITNIO WhatsApp status pushes, ITNIO SMS delivery
reports and encrypted 云真机 chatMsg callbacks, shaped like the vendors' own examples
(tests/data/webhooks/). A few thousand distinct bodies ("slots") are cycled through; each
ITNIO body carries a placeholder where its id goes, filled per request by the load generator
with an id unique to the run, so every callback is new to the service (a benchmark of
duplicates would measure the cheap path). A 云真机 body is encrypted, so it cannot be filled
in: those come from a pool of distinct pre-encrypted bodies, big enough for the run.

The entries file the load generators read (UTF-8, one record per line, tab-separated):
    H  name  value                         a header on every request
    T  method  path  content-type  before  after   body = before + unique id + after
    F  method  path  content-type  body    a fixed request (body may be empty)
    Y  method  path  content-type          the next body from the pool
    P  body                                a pool body
"""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from receiver.crypto import decode_key, encrypt

PLACEHOLDER = "@@UID@@"
TOKEN = "bench-webhook-token-0123456789abcdef"
API_KEY = "bench-api-key-0123456789abcdef"
AES_KEY = "replywindowBenchAesKey32bytes!!!"  # 32 characters, as the vendor issues them

MIX = (("wa_uplink", 0.35), ("wa_status", 0.25), ("sms_dlr", 0.20), ("yzj_chat", 0.20))
YZJ_SHARE = dict(MIX)["yzj_chat"]

BUSINESS_PHONES = ("91856321412", "91856321413", "6591234567")
SMS_APP, WA_APP = "4luaKsL2", "DGziZf5u"
CORP_WXID = "1970325032041886"
STAFF_WXIDS = ("1688851873049028", "1688851873049029", "1688851873049030")
NAMES = ("Alice", "Bob", "Chen Wei", "Priya", "Maria", "Juan", "Aisha", "Li Na", "Tom", "Ravi")
TEXTS = (
    "hi, is my order shipped?",
    "Where is my parcel? It was supposed to arrive yesterday.",
    "ok thanks",
    "Can I change the delivery address to 221B Baker Street, London?",
    "STOP",
    "I need an invoice for order A-1001 please, with our VAT number on it.",
    "你好，我的订单什么时候发货？",  # noqa: RUF001 (Chinese punctuation is full-width)
    "ありがとうございます",
    "¿Puedo pagar en efectivo?",
    "👍",
    "The product arrived damaged, the box was open and one item is missing. What now?",
    "yes",
)
WA_STATUSES = ("sent", "delivered", "read", "delivered", "sent", "failed")


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _customer(rng: random.Random) -> str:
    return f"9198{rng.randrange(10_000_000):07d}"


def _wa_uplink(rng: random.Random, now: int) -> dict[str, Any]:
    kind = rng.choices(("text", "image", "interactive"), (0.8, 0.12, 0.08))[0]
    if kind == "text":
        message: dict[str, Any] = {"type": "text", "text": {"body": rng.choice(TEXTS)}}
    elif kind == "image":
        message = {"type": "image", "image": {
            "filePath": f"https://media.example/{uuid.UUID(int=rng.getrandbits(128)).hex}.jpg",
            "mimeType": "image/jpeg", "id": str(rng.randrange(10**12)),
            "sha256": f"{rng.getrandbits(64):016x}", "caption": rng.choice(TEXTS)}}
    else:
        message = {"type": "interactive", "interactive": {
            "type": "button_reply", "button_reply": {"id": "yes", "title": "Yes, ship it"}}}
    return {"appId": WA_APP, "channelType": 0, "messageId": "wamid.HBgM" + PLACEHOLDER,
            "timestamp": now - rng.randrange(600), "eventType": "up-message-event",
            "businessPhone": rng.choice(BUSINESS_PHONES),
            "from": {"phone": _customer(rng), "name": rng.choice(NAMES)}, "message": message}


def _wa_status(rng: random.Random, now: int) -> dict[str, Any]:
    status = rng.choice(WA_STATUSES)
    body: dict[str, Any] = {
        "appId": WA_APP, "channelType": 0, "messageId": "178" + PLACEHOLDER,
        "eventType": "message-status-event", "billable": "true" if status != "failed" else "false",
        "form": rng.choice(BUSINESS_PHONES), "recipient": _customer(rng), "status": status,
        "timestamp": now - rng.randrange(600)}
    if status == "failed":
        body["failure"] = "131047: Re-engagement message"
    elif status != "read":
        body.update(conversationId=f"{rng.getrandbits(128):032x}", expiresAt=now + 86400,
                    conversationType=rng.choice(("service", "utility", "marketing")))
    return body


def _sms_dlr(rng: random.Random, now: int) -> dict[str, Any]:
    ok = rng.random() < 0.9
    return {"appId": SMS_APP, "msgid": "21" + PLACEHOLDER, "mobile": _customer(rng),
            "status": 0 if ok else 1, "reason": "0" if ok else "UNDELIV",
            "timestamp": (now - rng.randrange(600)) * 1000,
            "orderId": f"{rng.getrandbits(40):010x}",
            "pricedetail": {"pay": "0.02", "currency": "USD", "chargeCnt": 2, "price": "0.01"}}


def yzj_plain(index: int, now: int) -> bytes:
    """The `index`-th 云真机 callback: an inbound chatMsg (or one typed by staff), its svrid
    unique to the index."""
    rng = random.Random(index)
    staff = rng.choice(STAFF_WXIDS)
    customer = f"78813028{rng.randrange(10**8):08d}"
    inbound = rng.random() < 0.85
    svrid = str(3_000_000_000 + index)
    item = {"wxid": staff, "chat_wxid": customer, "chat_type": 1,
            "from_wxid": customer if inbound else staff, "to_wxid": staff if inbound else customer,
            "svrid": svrid, "wx_svrid": svrid, "msg_time": now - rng.randrange(600),
            "msg_type": "text", "content": {"items": [{"type": "text", "text": rng.choice(TEXTS)}]},
            "api_send_id": "", "api_send_svrid": "",
            "extra": {"task_id": "", "sender_wxid": "", "target_wxid": ""}}
    return _dumps([{"type": "chatMsg", "corp_wxid": CORP_WXID, "rel_wxid": staff,
                    "data": [item]}]).encode()


def yzj_pool(start: int, count: int, now: int) -> list[str]:
    key = decode_key(AES_KEY)
    return [encrypt(yzj_plain(i, now), key).decode() for i in range(start, start + count)]


@dataclass(frozen=True)
class Slot:
    kind: str  # T (templated), F (fixed), Y (from the pool)
    method: str
    path: str
    content_type: str
    before: str = ""
    after: str = ""


def webhook_path(route: str) -> str:
    return {"whatsapp": f"/webhooks/itnio/whatsapp/{TOKEN}", "sms": f"/webhooks/itnio/sms/{TOKEN}",
            "wecom": f"/webhooks/yzj/{TOKEN}"}[route]


ITNIO_TYPE = "application/json;charset=UTF-8"
YZJ_TYPE = "application/json; charset=utf-8"


def webhook_slots(count: int, *, seed: int = 5, now: int | None = None) -> list[Slot]:
    """`count` distinct webhook bodies in the mix's proportions, in a shuffled order."""
    rng = random.Random(seed)
    stamp = int(now if now is not None else datetime.now(UTC).timestamp())
    kinds = [name for name, share in MIX for _ in range(round(share * count))]
    rng.shuffle(kinds)
    slots = []
    for kind in kinds:
        if kind == "yzj_chat":
            slots.append(Slot("Y", "POST", webhook_path("wecom"), YZJ_TYPE))
            continue
        maker = {"wa_uplink": _wa_uplink, "wa_status": _wa_status, "sms_dlr": _sms_dlr}[kind]
        route = "sms" if kind == "sms_dlr" else "whatsapp"
        before, _, after = _dumps(maker(rng, stamp)).partition(PLACEHOLDER)
        slots.append(Slot("T", "POST", webhook_path(route), ITNIO_TYPE, before, after))
    return slots


def send_slots(business: str, recipients: list[str], *, seed: int = 7) -> list[Slot]:
    """POST /v1/messages bodies: free-form WhatsApp replies inside open windows."""
    rng = random.Random(seed)
    slots = []
    for recipient in recipients:
        body = {"channel": "whatsapp", "from": business, "to": recipient,
                "message": {"type": "text", "text": {"body": rng.choice(TEXTS)}}}
        slots.append(Slot("F", "POST", "/v1/messages", "application/json", _dumps(body)))
    return slots


# ---- the window table ---------------------------------------------------------------------

LOOKUP_ACCOUNTS = tuple(f"9180000000{k:02d}" for k in range(10))


def conversation_key(index: int) -> tuple[str, str]:
    return LOOKUP_ACCOUNTS[index % len(LOOKUP_ACCOUNTS)], f"9170{index:08d}"


def conversation_rows(count: int, *, seed: int = 11) -> Iterator[tuple[Any, ...]]:
    """(channel, account, customer, customer_name, last_inbound_at, last_inbound_message_id,
    last_outbound_at, created_at, updated_at), the times as whole seconds before now (the
    loader turns them into times): windows spread over the last 48 hours, so about half are
    open; half of them answered."""
    rnd = random.Random(seed).random
    names = len(NAMES)
    for i in range(count):
        account, customer = conversation_key(i)
        ago_in = int(rnd() * 48 * 3600)
        ago_out = ago_in - 1 - int(rnd() * 600) if i % 2 else None
        yield ("whatsapp", account, customer, NAMES[i % names], ago_in, f"wamid.BENCH{i:010d}",
               ago_out, ago_in + 7 * 86400, ago_in if ago_out is None else ago_out)


def lookup_slots(count: int, table_size: int, *, seed: int = 13) -> list[Slot]:
    """GET /v1/windows/whatsapp/{b}/{r}: 95% for customers in the table, 5% never seen."""
    rng = random.Random(seed)
    slots = []
    for _ in range(count):
        if rng.random() < 0.95:
            account, customer = conversation_key(rng.randrange(table_size))
        else:
            account, customer = rng.choice(LOOKUP_ACCOUNTS), f"9160{rng.randrange(10**8):08d}"
        slots.append(Slot("F", "GET", f"/v1/windows/whatsapp/{account}/{customer}", ""))
    return slots


# ---- the file -----------------------------------------------------------------------------

def _field(value: str) -> str:
    if "\t" in value or "\n" in value or "\r" in value:
        raise ValueError("a payload holds a tab or a line break; the entries file can't")
    return value


def write_entries(path: Path, slots: list[Slot], *, pool: list[str] | None = None,
                  headers: dict[str, str] | None = None) -> Path:
    lines = [f"H\t{_field(name)}\t{_field(value)}" for name, value in (headers or {}).items()]
    for s in slots:
        head = f"{s.kind}\t{s.method}\t{_field(s.path)}\t{_field(s.content_type)}"
        if s.kind == "T":
            lines.append(f"{head}\t{_field(s.before)}\t{_field(s.after)}")
        elif s.kind == "F":
            lines.append(f"{head}\t{_field(s.before)}")
        else:
            lines.append(head)
    if any(s.kind == "Y" for s in slots):
        if not pool:
            raise ValueError("slots draw from a pool, and there is none")
        lines.extend(f"P\t{_field(body)}" for body in pool)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
