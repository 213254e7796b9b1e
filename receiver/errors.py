"""Errors a client can cause, and the one place that turns them into HTTP answers.

    ApiError                 status, error code, a sentence
    ├── BadPayload           400  a webhook body that can't be read (quarantined)
    ├── Unauthorized         401  no API key, or a wrong one
    ├── Forbidden            403  an account the key is not scoped to
    ├── NotFound             404  also a wrong webhook token
    ├── MethodNotAllowed     405  (webhooks; elsewhere Starlette's router answers it)
    ├── PayloadTooLarge      413  over 1 MiB
    ├── Invalid              422  a request that breaks a documented rule
    └── Unavailable          503  the store can't be reached; retry (also any OperationalError)
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from store.db import Unreachable

logger = logging.getLogger(__name__)


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        if code:
            self.code = code
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class BadPayload(ApiError):
    status = 400
    code = "unreadable_body"


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class MethodNotAllowed(ApiError):
    status = 405
    code = "method_not_allowed"


class PayloadTooLarge(ApiError):
    status = 413
    code = "payload_too_large"


class Invalid(ApiError):
    status = 422
    code = "invalid"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"


def _api_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(exc.body(), status_code=exc.status, headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


def _http_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return JSONResponse(
        {"error": code, "detail": str(exc.detail)}, status_code=exc.status_code,
        headers=exc.headers,
    )


def _unexpected(_request: Request, exc: Exception) -> Response:
    # Called by Starlette after the except block has ended: the exception is passed, not read
    # from sys.exc_info() (which would log "NoneType: None").
    logger.error("unexpected error", exc_info=exc, extra={"action": "unexpected_error"})
    return JSONResponse(
        {"error": "internal", "detail": "Something went wrong on our side; it was logged."},
        status_code=500,
    )


def _database_unavailable(request: Request, exc: Exception) -> Response:
    # Connection refused or lost, a lock waited on past its timeout: the client can retry,
    # nothing was half done (its transaction rolled back). Logged in full all the same: a
    # driver says "operational" of a few mistakes of ours too (SQLite's "no such table").
    logger.error("the database could not serve a request", exc_info=exc,
                 extra={"action": "database_unavailable"})
    return _api_error(request, Unavailable("The database cannot be reached just now; retry."))


exception_handlers = {ApiError: _api_error, HTTPException: _http_error,
                      OperationalError: _database_unavailable,
                      Unreachable: _database_unavailable, Exception: _unexpected}


def handler_for(exc: Exception) -> Any:
    """The handler Starlette's ExceptionMiddleware would pick for `exc` (its nearest class);
    `_unexpected` (a 500, and the error re-raised) is ServerErrorMiddleware's."""
    for kind in type(exc).__mro__:
        if kind in exception_handlers:
            return exception_handlers[kind]
    return _unexpected


def is_unexpected(handler: Any) -> bool:
    return handler is _unexpected
