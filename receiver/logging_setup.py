"""Logging for the entrypoint: handlers, levels, and the masks.

The access log keeps one line per request, but never the webhook token (the last segment of
/webhooks/.../{token}), an API key given as `?key=` (the report page), or a whole phone number
(any run of 7+ digits keeps its last 4: …1432).

Every other line goes through the same mask, its traceback included (LogMask, on the
handlers): the service logs ids and types, but an exception's own text can carry values, e.g.
PostgreSQL's `DETAIL:  Key (account, customer)=(91856321412, 91856321432) already exists.`,
which SQLAlchemy's hide_parameters does not hide. API keys (rwk_…) and Standard Webhooks
secrets (whsec_…) are masked wherever they appear.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

ACCESS_LOGGER = "uvicorn.access"
APP_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
WEBHOOK_ROUTES = ("itnio/whatsapp", "itnio/sms", "yzj")

_WEBHOOK = re.compile(r"/webhooks/([^?#\s\"]*)")
_LONG_NUMBER = re.compile(r"[0-9]{7,}")
_QUERY_KEY = re.compile(r"([?&]key=)[^&#\s\"]*", re.IGNORECASE)
_SECRET = re.compile(r"\b(whsec_|rwk_)[A-Za-z0-9+/=_-]+")


def _mask_webhook(match: re.Match[str]) -> str:
    rest = match.group(1)
    if rest in ("", *WEBHOOK_ROUTES):
        return match.group(0)
    for route in WEBHOOK_ROUTES:
        if rest.startswith(route + "/"):
            return f"/webhooks/{route}/***"
    return "/webhooks/***"  # not a route we serve: whatever follows may still be the token


def mask_path(text: str) -> str:
    """'/webhooks/yzj/s3cret' -> '/webhooks/yzj/***'; '/reports?key=rwk_…' -> '/reports?key=***';
    '/v1/windows/whatsapp/91856321412/…' -> '/v1/windows/whatsapp/…1412/…'."""
    text = _WEBHOOK.sub(_mask_webhook, text)
    text = _QUERY_KEY.sub(r"\1***", text)
    return _LONG_NUMBER.sub(lambda m: "…" + m.group(0)[-4:], text)


def mask_text(text: str) -> str:
    """mask_path, and API keys and webhook secrets anywhere: 'rwk_…' -> 'rwk_***'."""
    return mask_path(_SECRET.sub(r"\1***", text))


def _masked(value: Any) -> Any:
    return mask_path(value) if isinstance(value, str) else value


class AccessLogMask(logging.Filter):
    """Masks tokens and phone numbers in a record's message and arguments; drops nothing.

    uvicorn's AccessFormatter unpacks `record.args` (client, method, path, version, status),
    so the arguments keep their shape and only strings change.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _masked(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _masked(arg) for key, arg in record.args.items()}
        return True


class LogMask(logging.Filter):
    """For a handler: the record's message, traceback and stack masked (mask_text). The
    exception itself stays on the record; formatters print the masked `exc_text` instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_replywindow_masked", False):
            return True  # a record goes through every handler: mask it once
        try:
            message = record.getMessage()
        except Exception:  # arguments that don't fit the message: logging reports that itself
            return True
        if record.name == ACCESS_LOGGER and isinstance(record.args, tuple):
            record.args = tuple(_masked(arg) for arg in record.args)  # AccessFormatter's shape
        else:
            record.msg, record.args = mask_text(message), None
            record.__dict__.pop("color_message", None)  # uvicorn's unmasked coloured copy
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        record._replywindow_masked = True
        return True


def install(logger_name: str = ACCESS_LOGGER) -> None:
    """Put the mask on `logger_name` in this process (once)."""
    logger = logging.getLogger(logger_name)
    if not any(isinstance(existing, AccessLogMask) for existing in logger.filters):
        logger.addFilter(AccessLogMask())


def uvicorn_log_config() -> dict[str, Any]:
    """uvicorn's own logging config plus the mask, for `uvicorn.run(log_config=...)`: applied
    in every worker process, and after uvicorn has configured its loggers."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    filters = config.setdefault("filters", {})
    filters["access_mask"] = {"()": f"{__name__}.{AccessLogMask.__name__}"}
    filters["log_mask"] = {"()": f"{__name__}.{LogMask.__name__}"}
    access = config["loggers"].setdefault(ACCESS_LOGGER, {})
    access["filters"] = [*access.get("filters", []), "access_mask"]
    # The app's own records, in every worker process too (configure() runs in the parent).
    config["formatters"]["app"] = {"format": APP_FORMAT}
    config["handlers"]["app"] = {"formatter": "app", "class": "logging.StreamHandler",
                                 "stream": "ext://sys.stderr"}
    config["root"] = {"handlers": ["app"], "level": "INFO"}
    config["loggers"]["httpx"] = {"level": "WARNING"}
    config["loggers"]["apscheduler"] = {"level": "WARNING"}  # a line per job run is noise
    for handler in config["handlers"].values():  # uvicorn's errors and their tracebacks too
        handler["filters"] = [*handler.get("filters", []), "log_mask"]
    return config


def configure() -> None:
    """The command's logging: INFO to stderr, vendor-call noise off, the access log masked."""
    logging.basicConfig(level=logging.INFO, format=APP_FORMAT)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, LogMask) for f in handler.filters):
            handler.addFilter(LogMask())
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per vendor call is noise
    # The outbox and push jobs run every second: one INFO line per run would drown the log.
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    install()
