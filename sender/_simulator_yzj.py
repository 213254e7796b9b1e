"""云真机's side of the vendor simulator: /oauth/token, /wechat/sendMessage (seed 004) and the
chatMsg / chatMsgSendFail callbacks that follow (vendor-formats §4, PROPOSED shapes).

The docs give no error codes; these follow WeChat's, which the vendor family mirrors:
40013 bad app_id, 40001 bad app_secret, 40002 bad grand_type, 40014 unknown access_token,
42001 expired access_token, 40035 invalid parameter, 47001 body not JSON. Errors answer
{"errcode": n, "message": "..."}: seed 004 says the text is in `message`.
"""

from __future__ import annotations

import hmac
import itertools
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

YZJ_HOOK = "/webhooks/yzj"
TOKEN_SECONDS = 7200
MAX_MESSAGES = 5
MSG_TYPES = {"text", "announcement", "picture", "link", "file", "program", "voice", "video",
             "card", "channel", "location", "emotionpic"}


class _Refuse(Exception):
    def __init__(self, errcode: int, message: str) -> None:
        self.errcode, self.message = errcode, message


def _need(ok: Any, errcode: int, message: str) -> None:
    if not ok:
        raise _Refuse(errcode, message)


class YzjMixin:
    yzj_app_id: str
    yzj_app_secret: str
    yzj_corp_wxid: str
    clock: Callable[[], datetime]
    _sent: dict[str, list[dict[str, Any]]]
    _now_s: Callable[[], int]
    _queue: Callable[[str, Any], None]
    _outcome: Callable[[str], str]

    def _init_yzj(self) -> None:
        self.yzj_corp_wxid = "1970325032041886"  # the enterprise of every simulated account
        self._tokens: dict[str, datetime] = {}
        self._svrids = itertools.count(10_820_000)

    def _yzj_routes(self) -> list[tuple[str, str, str, Callable[[Request, Any], Response]]]:
        return [
            ("yzj", "POST", "/oauth/token", self._yzj_token),
            ("yzj", "POST", "/wechat/sendMessage", self._yzj_send),
        ]

    @staticmethod
    def _yzj_answer(payload: dict[str, Any]) -> Response:
        return JSONResponse(payload, media_type="application/json; charset=UTF-8")

    def _yzj_guarded(self, body: Any, handle: Callable[[dict[str, Any]], dict[str, Any]],
                     *, token: bool = True) -> Response:
        try:
            _need(isinstance(body, dict), 47001, "data format error: the body is not JSON")
            _need(str(body.get("app_id", "")) == self.yzj_app_id, 40013, "invalid app_id")
            if token:
                expires = self._tokens.get(str(body.get("access_token", "")))
                _need(expires is not None, 40014, "invalid access_token")
                _need(self.clock() < expires, 42001, "access_token expired")
            return self._yzj_answer({"errcode": 0, **handle(body)})
        except _Refuse as refuse:
            return self._yzj_answer({"errcode": refuse.errcode, "message": refuse.message})

    def expire_tokens(self) -> None:
        """Make every issued access_token expired (as if 7200 s had passed)."""
        past = self.clock() - timedelta(seconds=1)
        self._tokens = dict.fromkeys(self._tokens, past)

    # ---- /oauth/token ---------------------------------------------------------------------

    def _yzj_token(self, request: Request, body: Any) -> Response:
        return self._yzj_guarded(body, self._yzj_token_ok, token=False)

    def _yzj_token_ok(self, body: dict[str, Any]) -> dict[str, Any]:
        given = str(body.get("app_secret", "")).encode(errors="replace")
        _need(hmac.compare_digest(given, self.yzj_app_secret.encode()),
              40001, "invalid app_secret")
        # The vendor spells it grand_type; a client that "fixes" the typo fails here too.
        _need(body.get("grand_type") == "client_credentials", 40002, "invalid grand_type")
        token = uuid.uuid4().hex
        # An earlier token stays good until its own expiry, so a refresh never strands a call.
        self._tokens[token] = self.clock() + timedelta(seconds=TOKEN_SECONDS)
        return {"data": {"access_token": token, "expires_in": TOKEN_SECONDS}}

    # ---- /wechat/sendMessage --------------------------------------------------------------

    def _yzj_send(self, request: Request, body: Any) -> Response:
        return self._yzj_guarded(body, self._yzj_send_ok)

    def _yzj_send_ok(self, body: dict[str, Any]) -> dict[str, Any]:
        wxid, target = str(body.get("wxid") or ""), str(body.get("target_wxid") or "")
        _need(wxid and target, 40035, "invalid parameter: wxid and target_wxid are required")
        messages = body.get("messages")
        _need(isinstance(messages, list) and messages, 40035,
              "invalid parameter: messages must be a non-empty array")
        _need(len(messages) <= MAX_MESSAGES, 40035,
              f"invalid parameter: at most {MAX_MESSAGES} messages per call")
        for i, message in enumerate(messages):
            _need(isinstance(message, dict) and message.get("msg_type") in MSG_TYPES, 40035,
                  f"invalid parameter: messages[{i}].msg_type")
            content = message.get("content")
            _need(isinstance(content, dict) and content, 40035,
                  f"invalid parameter: messages[{i}].content")
            _need(message["msg_type"] != "text" or _item_text(content), 40035,
                  f"invalid parameter: messages[{i}].content.items has no text")
        # Checked as a whole first: the vendor answers all or nothing (idx count == messages).
        return {"data": [self._yzj_accept(i, wxid, target, m) for i, m in enumerate(messages)]}

    def _yzj_accept(self, idx: int, wxid: str, target: str,
                    message: dict[str, Any]) -> dict[str, Any]:
        now_ms = int(self.clock().timestamp() * 1000)
        svrid = str(next(self._svrids))
        api_send_svrid = f"{wxid},{target},{now_ms}{svrid[-6:]}"
        api_send_id = message.get("api_send_id")
        api_send_id = None if api_send_id in (None, "") else str(api_send_id)
        delayed = message.get("delayed_time")
        msg_time = max(self._now_s(), delayed if isinstance(delayed, int) else 0)
        outcome = self._outcome(target)
        content = message["content"]
        self._sent["wecom"].append({
            "wxid": wxid, "recipient": target, "vendor_message_id": api_send_svrid,
            "api_send_svrid": api_send_svrid, "api_send_id": api_send_id, "svrid": svrid,
            "msg_type": message["msg_type"], "content": content, "text": _item_text(content),
            "delayed_time": delayed, "outcome": outcome, "at": self.clock()})
        if outcome not in ("silent", "pending"):
            # Seed 004: every message handed to the client is echoed as a chatMsg, failed or
            # not; only a chatMsgSendFail says it failed.
            self._queue(YZJ_HOOK, [self._envelope("chatMsg", wxid, {
                "wxid": wxid, "chat_wxid": target, "chat_type": _chat_type(target),
                "from_wxid": wxid, "to_wxid": target, "svrid": svrid, "wx_svrid": svrid,
                "msg_time": msg_time, "msg_type": message["msg_type"], "content": content,
                "api_send_id": api_send_id or "", "api_send_svrid": api_send_svrid,
                "extra": {"task_id": "", "sender_wxid": wxid, "target_wxid": target}})])
        if outcome == "failed" or outcome.startswith("failed:"):
            self._queue(YZJ_HOOK, [self._envelope("chatMsgSendFail", wxid, {
                "wxid": wxid, "target_wxid": target, "api_send_id": api_send_id or "",
                "api_send_svrid": api_send_svrid, "msg_type": message["msg_type"],
                "content": content, "errcode": 1,
                "errmsg": outcome.partition(":")[2] or "发送失败", "fail_time": msg_time + 1})])
        answer: dict[str, Any] = {"idx": idx, "api_send_svrid": api_send_svrid}
        return answer | ({"api_send_id": api_send_id} if api_send_id is not None else {})

    def _envelope(self, kind: str, rel_wxid: str, item: dict[str, Any]) -> dict[str, Any]:
        return {"type": kind, "corp_wxid": self.yzj_corp_wxid, "rel_wxid": rel_wxid,
                "data": [item]}

    # ---- customers writing in -------------------------------------------------------------

    def customer_writes_wecom(self, staff_wxid: str, customer_wxid: str, text: str, *,
                              at: datetime | None = None) -> str:
        """Queue an inbound chatMsg (from_wxid is the customer); returns its svrid."""
        svrid = str(next(self._svrids))
        self._queue(YZJ_HOOK, [self._envelope("chatMsg", staff_wxid, {
            "wxid": staff_wxid, "chat_wxid": customer_wxid, "chat_type": _chat_type(customer_wxid),
            "from_wxid": customer_wxid, "to_wxid": staff_wxid, "svrid": svrid, "wx_svrid": svrid,
            "msg_time": int((at or self.clock()).timestamp()), "msg_type": "text",
            "content": {"items": [{"type": "text", "text": text}]}})])
        return svrid


def _chat_type(wxid: str) -> int:
    # WeCom group ids look like "R:10696051737614800"; 1 = single chat, 2 = group (assumed).
    return 2 if wxid.startswith("R:") or wxid.endswith("@chatroom") else 1


def _item_text(content: dict[str, Any]) -> str:
    items = content.get("items")
    if isinstance(items, list):
        return "".join(str(i.get("text", "")) for i in items if isinstance(i, dict))
    return str(content.get("text") or "")
