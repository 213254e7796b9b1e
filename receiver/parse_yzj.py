"""云真机 callbacks (vendor-formats.md §4) -> events. Pure.

The decrypted body is an array of envelopes {type, corp_wxid, rel_wxid, data}; `data` is an
array (or, as on the vendor's crypto page, an object) and `type` may carry stray spaces.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from receiver import _lenient as L
from receiver import crypto
from receiver.errors import BadPayload
from receiver.events import ChatSeen, Event, Owner, StatusReported, Unhandled


def parse(body: bytes, *, key: bytes | None) -> list[Event]:
    plaintext = crypto.decrypt(body, key) if key is not None else body
    envelopes = L.objects(L.load_json(plaintext), what="a 云真机 callback envelope")
    events: list[Event] = []
    for envelope in envelopes:
        kind = (L.text(envelope.get("type")) or "unknown").strip()
        rel_wxid = L.text(envelope.get("rel_wxid"))
        owner = Owner("yzj", rel_wxid)
        data = envelope.get("data")
        items = [data] if isinstance(data, dict) else data if isinstance(data, list) else []
        items = [item for item in items if isinstance(item, dict) and item]  # {}: a placeholder
        if kind == "chatMsg":
            events.extend(_chat_msg(item, _owner(item, rel_wxid), rel_wxid) for item in items)
        elif kind == "chatMsgSendFail":
            events.extend(_send_fail(item, _owner(item, rel_wxid)) for item in items)
        else:
            events.append(Unhandled(kind=kind, owner=owner))
    return events


def _owner(item: dict[str, Any], rel_wxid: str | None) -> Owner:
    # The vendor's own sample envelope has no rel_wxid; the item's wxid is the same account.
    return Owner("yzj", rel_wxid or L.text(item.get("wxid")))


def _digest(item: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(item, sort_keys=True).encode()).hexdigest()[:32]


def _item_text(content: dict[str, Any]) -> str | None:
    items = content.get("items")
    if isinstance(items, list):
        parts = [L.text(i.get("text")) for i in items if isinstance(i, dict)]
        joined = "".join(p for p in parts if p)
        return joined or None
    return L.text(content.get("text"))


def _chat_msg(item: dict[str, Any], owner: Owner, rel_wxid: str | None) -> Event:
    account = L.text(item.get("wxid")) or rel_wxid or ""
    sender = L.text(item.get("from_wxid"))
    outbound = sender is not None and sender in {account, rel_wxid}
    extra = L.mapping(item.get("extra"))
    api_send_id = L.text(item.get("api_send_id")) or L.text(extra.get("api_send_id"))
    api_send_svrid = L.text(item.get("api_send_svrid"))
    message_id = (
        L.text(item.get("svrid")) or L.text(item.get("wx_svrid")) or L.text(item.get("msg_hash"))
        or L.text(item.get("wx_msgid")) or _digest(item)
    )
    key = f"wecom:msg:{account}:{message_id}"
    sent_at = L.epoch(item.get("msg_time"))
    if outbound and (api_send_id or api_send_svrid):
        # The echo of a message we sent through /wechat/sendMessage.
        return StatusReported(
            key=key, owner=owner, channel="wecom", status="sent", occurred_at=sent_at,
            vendor_message_id=api_send_svrid, client_ref=api_send_id,
            detail={"svrid": message_id, "account": account},
        )
    if outbound:
        customer = L.text(item.get("chat_wxid")) or L.text(item.get("to_wxid")) or ""
    else:
        customer = L.text(item.get("chat_wxid")) or sender or ""
    if not account or not customer:
        # Applied, it would open a conversation between nobody and nobody.
        raise BadPayload("A chatMsg item names no account or no chat partner.",
                         code="wrong_shape")
    content = L.mapping(item.get("content"))
    return ChatSeen(
        key=key, owner=owner, channel="wecom", direction="out" if outbound else "in",
        account=account, customer=customer, vendor_message_id=message_id,
        msg_type=L.text(item.get("msg_type")) or "unknown", text=_item_text(content),
        content=item, sent_at=sent_at,
    )


def _send_fail(item: dict[str, Any], owner: Owner) -> StatusReported:
    api_send_id = L.text(item.get("api_send_id"))
    api_send_svrid = L.text(item.get("api_send_svrid"))
    ref = api_send_id or api_send_svrid or _digest(item)
    return StatusReported(
        key=f"wecom:fail:{ref}",
        owner=owner,
        channel="wecom",
        status="failed",
        occurred_at=L.epoch(item.get("fail_time")) or L.epoch(item.get("msg_time")),
        vendor_message_id=api_send_svrid,
        client_ref=api_send_id,
        failure_code=L.text(item.get("errcode")),
        failure_reason=L.text(item.get("errmsg")) or L.text(item.get("reason")),
        detail={"account": L.text(item.get("wxid")), "target": L.text(item.get("target_wxid"))},
    )
