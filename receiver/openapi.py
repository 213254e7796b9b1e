"""GET /openapi.json: the bot API described in OpenAPI 3.1 (the vendor webhooks are not in it).

A plain dict, checked by tests against the served API (schemathesis): every documented answer
has its schema, every error is {"error", "detail", …}, nothing undocumented comes back.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from receiver.events_api import MAX_LIMIT as EVENTS_MAX_LIMIT
from receiver.events_api import MAX_WAIT
from receiver.messages_api import CHANNELS, FALLBACKS
from receiver.messages_api import STATUSES as MESSAGE_STATUSES
from receiver.windows_api import MAX_LIMIT as WINDOWS_MAX_LIMIT

JSON = "application/json"
DAY = 24 * 3600
STATUSES = list(MESSAGE_STATUSES)


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


TIME = {"type": "string", "format": "date-time"}
OPT_TIME = _nullable(TIME)
OPT_STRING = {"type": ["string", "null"]}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "Every error. More members may follow: `field` (the request part at "
                       "fault), `vendor_code`, and for a refused send the message itself.",
        "required": ["error", "detail"],
        "properties": {
            "error": {"type": "string", "description": "A stable code, e.g. invalid_request."},
            "detail": {"type": "string", "description": "A sentence for people."},
            "field": {"type": "string"},
            "vendor_code": {"type": "string"},
        },
    },
    "Failure": _nullable({
        "type": "object",
        "required": ["code", "reason"],
        "properties": {"code": OPT_STRING, "reason": OPT_STRING},
    }),
    "WindowSummary": {
        "type": "object",
        "required": ["open", "last_inbound_at", "expires_at", "seconds_left"],
        "properties": {
            "open": {"type": "boolean"},
            "last_inbound_at": OPT_TIME,
            "expires_at": OPT_TIME,
            "seconds_left": {"type": "integer", "minimum": 0},
        },
    },
    "Window": {
        "type": "object",
        "required": ["channel", "business_phone", "recipient", "open", "last_inbound_at",
                     "expires_at", "closes_at", "seconds_left", "unanswered"],
        "properties": {
            "channel": {"const": "whatsapp"},
            "business_phone": {"type": "string"},
            "recipient": {"type": "string"},
            "open": {"type": "boolean"},
            "last_inbound_at": OPT_TIME,
            "expires_at": {**OPT_TIME, "description": "When free-form replies stop (the "
                                                      "margin applied)."},
            "closes_at": {**OPT_TIME, "description": "When the vendor would refuse them."},
            "seconds_left": {"type": "integer", "minimum": 0},
            "unanswered": {"type": "boolean"},
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "channel", "from", "to", "route", "status", "vendor_message_id",
                     "window", "fallback_reason", "fallback_of", "failure", "flagged",
                     "send_at", "created_at", "times"],
        "properties": {
            "id": {"type": "string", "examples": ["msg_b438b2a5562e5a8744eb0937"]},
            "channel": {"enum": list(CHANNELS)},
            "from": {"type": "string"},
            "to": {"type": "string"},
            "route": {"enum": ["custom", "template", "sms", None]},
            "status": {"enum": STATUSES},
            "vendor_message_id": OPT_STRING,
            "window": _nullable(_ref("WindowSummary")),
            "fallback_reason": OPT_STRING,
            "fallback_of": OPT_STRING,
            "failure": _ref("Failure"),
            "flagged": {"type": "boolean"},
            "send_at": OPT_TIME,
            "created_at": TIME,
            "times": {"type": "object", "additionalProperties": TIME,
                      "description": "When each status was reached."},
        },
    },
    "MessageWithEvents": {
        "allOf": [_ref("Message"), {
            "type": "object",
            "required": ["events"],
            "properties": {"events": {"type": "array", "items": {
                "type": "object",
                "required": ["status", "at", "received_at", "failure"],
                "properties": {"status": {"type": "string"}, "at": OPT_TIME,
                               "received_at": OPT_TIME, "failure": _ref("Failure")},
            }}},
        }],
    },
    "Refusal": {
        "allOf": [_ref("Error"), {
            "type": "object",
            "description": "A 409. A refused send (window_closed, opted_out, "
                           "template_not_usable) carries the stored message too; an "
                           "idempotency_conflict only the error.",
            "properties": {
                "error": {"type": "string", "examples": ["window_closed", "opted_out",
                                                         "template_not_usable",
                                                         "idempotency_conflict"]},
                "id": {"type": "string"},
                "status": {"enum": STATUSES},
                "window": _nullable(_ref("WindowSummary")),
            },
        }],
    },
    "SendRequest": {
        "type": "object",
        "required": ["channel", "from", "to"],
        "properties": {
            "channel": {"enum": list(CHANNELS)},
            "from": {"type": "string", "minLength": 1,
                     "description": "The business phone (7 to 14 digits), or the serving "
                                    "WeCom wxid.", "examples": ["91856321412"]},
            "to": {"type": "string", "minLength": 1,
                   "description": "The customer's phone, or the customer / group wxid.",
                   "examples": ["91856321432"]},
            "message": {
                "type": ["object", "array", "null"],
                "description": "WhatsApp: the ITNIO custom-message object. WeCom: a list of "
                               "云真机 message objects. SMS: {type: text, text: {body}}.",
                "examples": [{"type": "text", "text": {"body": "Your order has shipped"}}],
            },
            "template": {
                "type": ["object", "null"],
                "properties": {"name": {"type": "string"}, "language": {"type": "string"},
                               "components": {"type": "array"}},
            },
            "fallback": {"type": ["array", "null"], "items": {"enum": list(FALLBACKS)}},
            "sms_text": OPT_STRING,
            "sender_id": OPT_STRING,
            "reply_to": OPT_STRING,
            "send_at": {**OPT_STRING, "description": "An ISO-8601 time with its zone."},
        },
    },
    "MessagePage": {
        "type": "object",
        "required": ["messages", "next_cursor"],
        "properties": {"messages": {"type": "array", "items": _ref("Message")},
                       "next_cursor": OPT_STRING},
    },
    "WindowList": {
        "type": "object",
        "required": ["windows", "count"],
        "properties": {"windows": {"type": "array", "items": _ref("Window")},
                       "count": {"type": "integer", "minimum": 0}},
    },
    "Event": {
        "type": "object",
        "required": ["id", "cursor", "type", "created_at", "data"],
        "properties": {
            "id": {"type": "string", "examples": ["evt_42"]},
            "cursor": {"type": "string"},
            "type": {"type": "string", "examples": ["message.inbound", "message.status"]},
            "created_at": TIME,
            "data": {"type": "object"},
        },
    },
    "EventPage": {
        "type": "object",
        "required": ["events", "next_cursor"],
        "properties": {"events": {"type": "array", "items": _ref("Event")},
                       "next_cursor": {"type": "string"}},
    },
    "Template": {
        "type": "object",
        "required": ["name", "language", "status", "category", "vendor_template_id",
                     "components", "reason", "status_at", "synced_at"],
        "properties": {
            "name": {"type": "string"}, "language": {"type": "string"},
            "status": {"type": "string", "examples": ["APPROVED", "REJECTED", "PENDING"]},
            "category": OPT_STRING, "vendor_template_id": OPT_STRING,
            "components": {"type": "array"}, "reason": OPT_STRING,
            "status_at": OPT_TIME, "synced_at": OPT_TIME,
        },
    },
    "TemplateList": {
        "type": "object",
        "required": ["templates"],
        "properties": {"templates": {"type": "array", "items": _ref("Template")}},
    },
    "DeliveryReport": {
        "type": "object",
        "required": ["since", "until", "group_by", "groups", "totals"],
        "properties": {
            "since": TIME, "until": TIME,
            "group_by": {"type": "array", "items": {"type": "string"}},
            "groups": {"type": "array", "items": {
                "type": "object",
                "description": "The group's key (day, channel, route, account, status as "
                               "asked) and its figures, as in `totals`."}},
            "totals": {"type": "object", "required": ["submitted", "delivery_rate"],
                       "properties": {"submitted": {"type": "integer"},
                                      "delivery_rate": {"type": ["number", "null"]}}},
        },
    },
    "Status": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"}}},
}


def _error(description: str, *, headers: dict[str, Any] | None = None,
           schema: str = "Error") -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description,
                              "content": {JSON: {"schema": _ref(schema)}}}
    if headers:
        answer["headers"] = headers
    return answer


RESPONSES: dict[str, Any] = {
    "BadRequest": _error("The body is not JSON (`invalid_json`)."),
    "Unauthorized": _error("No API key, or a wrong one (`unauthorized`).", headers={
        "WWW-Authenticate": {"schema": {"type": "string"}}}),
    "Forbidden": _error("The key is not scoped to that account (`forbidden`)."),
    "NotFound": _error("No such thing, or not one this key may see (`not_found`)."),
    "MethodNotAllowed": _error("The path exists, not with that method."),
    "Conflict": _error("Refused (`window_closed`, `opted_out`, `template_not_usable`) or "
                       "an Idempotency-Key used with another body (`idempotency_conflict`).",
                       schema="Refusal"),
    "PayloadTooLarge": _error("The body is over 1 MiB (`payload_too_large`)."),
    "Invalid": _error("A parameter or field breaks a documented rule; `field` names it, "
                      "`vendor_code` gives the vendor's own code where it has one."),
    "Unavailable": _error("The database is not reachable (`unavailable`)."),
}


def _responses(ok: dict[str, Any], *errors: int) -> dict[str, Any]:
    names = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
             405: "MethodNotAllowed", 409: "Conflict", 413: "PayloadTooLarge",
             422: "Invalid", 503: "Unavailable"}
    answers = dict(ok)
    # Every authenticated call can meet a missing key; any path can be unknown.
    for status in sorted({401, 404, *errors}):
        answers[str(status)] = {"$ref": f"#/components/responses/{names[status]}"}
    return answers


def _json_ok(schema: str, description: str, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {JSON: {"schema": _ref(schema)}}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    # `name=` with no value is taken as not given (a bot's `?after=$cursor` on its first call).
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "allowEmptyValue": True, "description": description}


def _path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema,
            "description": description}


PHONE = {"type": "string", "pattern": r"^\+?[0-9]{7,14}$"}
CHANNEL = {"enum": list(CHANNELS)}

PATHS: dict[str, Any] = {
    "/v1/messages": {
        "post": {
            "operationId": "sendMessage",
            "summary": "Send a reply: custom while the window is open, else the fallback.",
            "parameters": [{
                "name": "Idempotency-Key", "in": "header", "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": "The same key with the same body returns the first answer and "
                               "sends nothing again; with another body, 409."}],
            "requestBody": {"required": True,
                            "content": {JSON: {"schema": _ref("SendRequest")}}},
            "responses": _responses(
                _json_ok("Message", "Accepted: stored, and sent or being sent.", "202"),
                400, 403, 409, 413, 422),
        },
        "get": {
            "operationId": "listMessages",
            "summary": "A page of messages, newest first (100 a page).",
            "parameters": [
                _query("channel", CHANNEL, "Only this channel."),
                _query("to", {"type": "string", "pattern": "^[^\\x00]*$"},
                       "Only to this recipient."),
                _query("status", {"enum": STATUSES}, "Only in this status."),
                _query("since", {"type": "string", "format": "date-time"},
                       "Only created at or after this time."),
                _query("cursor", {"type": "string"}, "next_cursor of the previous page."),
            ],
            "responses": _responses(_json_ok("MessagePage", "A page."), 422),
        },
    },
    "/v1/messages/{id}": {
        "get": {
            "operationId": "getMessage",
            "summary": "A message, its route, status and the timeline of its events.",
            "parameters": [_path("id", {"type": "string"}, "The id POST answered.")],
            "responses": _responses(_json_ok("MessageWithEvents", "The message.")),
        },
    },
    "/v1/windows": {
        "get": {
            "operationId": "listWindows",
            "summary": "Open WhatsApp windows, soonest to close first.",
            "parameters": [
                _query("expiring_within", {"type": "integer", "minimum": 0, "maximum": DAY},
                       "Only those closing within this many seconds (default: all open)."),
                _query("unanswered", {"type": "boolean"},
                       "Only those whose last inbound message has no reply after it."),
                _query("limit", {"type": "integer", "minimum": 1,
                                 "maximum": WINDOWS_MAX_LIMIT}, "At most this many (100)."),
            ],
            "responses": _responses(_json_ok("WindowList", "The windows."), 422),
        },
    },
    "/v1/windows/whatsapp/{business_phone}/{recipient}": {
        "get": {
            "operationId": "getWindow",
            "summary": "One WhatsApp reply window (never opened: open is false, not 404).",
            "parameters": [_path("business_phone", PHONE, "The business phone."),
                           _path("recipient", PHONE, "The customer's phone.")],
            "responses": _responses(_json_ok("Window", "The window."), 403, 422),
        },
    },
    "/v1/events": {
        "get": {
            "operationId": "listEvents",
            "summary": "The feed of inbound messages and status changes (long-poll).",
            "parameters": [
                _query("after", {"type": "string", "pattern": r"^(0|[0-9]{1,19}\.[0-9]{1,19})$",
                                  "description": "Each number at most 2^63 - 1."},
                       "next_cursor of the previous call; none to start."),
                _query("wait", {"type": "integer", "minimum": 0, "maximum": MAX_WAIT},
                       "Seconds to wait for an event when there is none yet."),
                _query("limit", {"type": "integer", "minimum": 0,
                                 "maximum": EVENTS_MAX_LIMIT}, "At most this many (100)."),
            ],
            "responses": _responses(_json_ok("EventPage", "Events, maybe none."), 422),
        },
    },
    "/v1/templates": {
        "get": {
            "operationId": "listTemplates",
            "summary": "The WhatsApp templates known from ITNIO.",
            "responses": _responses(_json_ok("TemplateList", "The templates.")),
        },
    },
    "/v1/reports/delivery": {
        "get": {
            "operationId": "deliveryReport",
            "summary": "Delivery figures for a period, grouped.",
            "parameters": [
                _query("since", {"type": "string"}, "An ISO-8601 time or a date (default: "
                                                    "7 days before until)."),
                _query("until", {"type": "string"}, "An ISO-8601 time or a date (its end)."),
                _query("group_by", {"type": "string"},
                       "Comma-separated: day, channel, route, account, status (empty: one "
                       "group; absent: day)."),
                _query("format", {"enum": ["json", "csv"]}, "json (default) or csv."),
                _query("channel", {"enum": [*CHANNELS, ""]},
                       "Only this channel (empty, as the report page's form sends for all: "
                       "every channel)."),
                _query("show_numbers", {"type": "boolean"},
                       "Whole account numbers (keys from REPLYWINDOW_API_KEYS only)."),
            ],
            "responses": _responses({"200": {"description": "The report.", "content": {
                JSON: {"schema": _ref("DeliveryReport")},
                "text/csv": {"schema": {"type": "string"}}}}}, 403, 422),
        },
    },
    "/healthz": {
        "get": {
            "operationId": "healthz", "summary": "The process runs.", "security": [],
            "responses": {"200": {"description": "ok",
                                  "content": {JSON: {"schema": _ref("Status")}}},
                          "404": {"$ref": "#/components/responses/NotFound"}},
        },
    },
    "/readyz": {
        "get": {
            "operationId": "readyz", "summary": "The database is reachable.", "security": [],
            "responses": {"200": {"description": "ready",
                                  "content": {JSON: {"schema": _ref("Status")}}},
                          "404": {"$ref": "#/components/responses/NotFound"},
                          "503": {"$ref": "#/components/responses/Unavailable"}},
        },
    },
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "replywindow bot API",
        "version": "1",
        "description": "Send replies by the cheapest route the WhatsApp window allows, follow "
                       "them, read windows, events and delivery reports. Every error is "
                       '{"error": "<code>", "detail": "<sentence>", …}.',
    },
    "security": [{"bearer": []}],
    "paths": PATHS,
    "components": {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                       "description": "An API key: REPLYWINDOW_API_KEYS, or "
                                                      "`replywindow keys add`."}},
        "schemas": SCHEMAS,
        "responses": RESPONSES,
    },
}


async def openapi_json(_request: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)


route = Route("/openapi.json", openapi_json, methods=["GET"])
