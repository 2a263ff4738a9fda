"""The one error shape, and the one table that maps every failure to HTTP.

    {"error": {"code": "NOT_FOUND", "message": "...", "details": [...], "request_id": "..."}}

details is always a list (empty when there is nothing to add); request_id is
the request's X-Request-ID, so a client's report leads to the log line.

As PostgREST does, database errors map by SQLSTATE class; anything
unexpected becomes a 500 whose detail goes only to the log.
"""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

import asyncpg
import msgspec
from litestar import MediaType, Request, Response, get
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec

from service.api.request_id import request_id
from service.db.pool import Overloaded
from service.load import errors as load_errors
from service.types import MONEY_PATTERN, NOT_BLANK_PATTERN, PERCENT_PATTERN

log = logging.getLogger("service.errors")

RETRY_AFTER = {"Retry-After": "1"}


class ErrorBody(msgspec.Struct, frozen=True):
    code: Annotated[str, msgspec.Meta(description="A stable UPPER_SNAKE word.")]
    message: Annotated[str, msgspec.Meta(description="For people.")]
    details: Annotated[
        list[Any],
        msgspec.Meta(description="What failed, e.g. each failing field; empty when nothing."),
    ]
    request_id: Annotated[str, msgspec.Meta(description="The request's X-Request-ID.")]


class ErrorResponse(msgspec.Struct, frozen=True):
    """The body of every error response."""

    error: ErrorBody


class ApiError(Exception):
    """An error the API reports as is: status, stable code, message, details."""

    status_code = 500
    code = "INTERNAL_ERROR"

    def __init__(
        self,
        message: str,
        *,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        self.headers = headers or {}
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    status_code, code = 400, "BAD_REQUEST"


class Unauthenticated(ApiError):
    status_code, code = 401, "UNAUTHENTICATED"


class Forbidden(ApiError):
    status_code, code = 403, "FORBIDDEN"


class NotFound(ApiError):
    status_code, code = 404, "NOT_FOUND"


class Conflict(ApiError):
    status_code, code = 409, "CONFLICT"


class Gone(ApiError):
    status_code, code = 410, "CURSOR_EXPIRED"


class PreconditionFailed(ApiError):
    status_code, code = 412, "PRECONDITION_FAILED"


class PreconditionRequired(ApiError):
    status_code, code = 428, "PRECONDITION_REQUIRED"


class TooManyRequests(ApiError):
    status_code, code = 429, "TOO_MANY_REQUESTS"


class UnsupportedMediaType(ApiError):
    status_code, code = 415, "UNSUPPORTED_MEDIA_TYPE"


class Unprocessable(ApiError):
    status_code, code = 422, "VALIDATION_ERROR"


class ServiceUnavailable(ApiError):
    status_code, code = 503, "DATABASE_UNAVAILABLE"


class GatewayTimeout(ApiError):
    status_code, code = 504, "STATEMENT_TIMEOUT"


# Litestar's own HTTP errors (routing, body limits, media types) by status.
HTTP_CODES = {
    400: "BAD_REQUEST",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION_ERROR",
    429: "TOO_MANY_REQUESTS",
    503: "SERVICE_UNAVAILABLE",
}

# SQLSTATE (exact, then class) -> the error the client sees.
SQLSTATE_ERRORS: dict[str, tuple[type[ApiError], str, str]] = {
    "23505": (Conflict, "CONFLICT", "the change conflicts with an existing row"),
    "23503": (Conflict, "CONFLICT", "the change refers to a row that does not exist"),
    "23514": (Unprocessable, "CONSTRAINT_VIOLATION", "the change breaks a rule of the data"),
    "23502": (Unprocessable, "CONSTRAINT_VIOLATION", "a required value is missing"),
    "22003": (Unprocessable, "CONSTRAINT_VIOLATION", "a number is out of range"),
    "22021": (Unprocessable, "INVALID_VALUE", "a text holds a character PostgreSQL refuses (NUL)"),
    "22": (Unprocessable, "INVALID_VALUE", "a value cannot be used as given"),
    "57014": (GatewayTimeout, "STATEMENT_TIMEOUT", "the query ran past the statement timeout"),
    "08": (ServiceUnavailable, "DATABASE_UNAVAILABLE", "the database is unreachable"),
    # refused at connect time: the pool opens on demand, so serving waits for them to be fixed
    "28": (ServiceUnavailable, "DATABASE_UNAVAILABLE", "the database refuses the login"),
    "3D000": (ServiceUnavailable, "DATABASE_UNAVAILABLE", "the database does not exist"),
    "53": (ServiceUnavailable, "DATABASE_UNAVAILABLE", "the database is out of resources"),
    "57P01": (ServiceUnavailable, "DATABASE_UNAVAILABLE", "the database is shutting down"),
    "57P02": (ServiceUnavailable, "DATABASE_UNAVAILABLE", "the database is shutting down"),
    "57P03": (ServiceUnavailable, "DATABASE_UNAVAILABLE", "the database is starting up"),
    "40001": (Conflict, "SERIALIZATION_FAILURE", "a concurrent change won; retry"),
    "40P01": (Conflict, "DEADLOCK", "a concurrent change won; retry"),
}

CONNECTION_ERRORS = (
    OSError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
)


# A failed load (POST /deals/import), by its class: the status and code the client sees.
# Its message is the loader's own, as `deals load` prints it; a plain LoadError is a
# conflict with the data (two hotels sharing a name, a deal_id created meanwhile).
LOAD_ERRORS: dict[type[load_errors.LoadError], tuple[type[ApiError], str]] = {
    load_errors.BadRows: (Unprocessable, "BAD_ROWS"),
    load_errors.MalformedFile: (Unprocessable, "MALFORMED_FILE"),
    load_errors.LoadBusy: (ServiceUnavailable, "LOAD_BUSY"),
    load_errors.DatabaseUnavailable: (ServiceUnavailable, "DATABASE_UNAVAILABLE"),
    load_errors.DatabaseUnreachable: (ServiceUnavailable, "DATABASE_UNAVAILABLE"),
    load_errors.LoadError: (Conflict, "LOAD_FAILED"),
}


def translate(exc: BaseException) -> ApiError:
    """The client-facing error for any exception."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, load_errors.LoadError) and type(exc) in LOAD_ERRORS:
        cls, code = LOAD_ERRORS[type(exc)]
        headers = RETRY_AFTER if cls is ServiceUnavailable else None
        return cls(exc.message, code=code, details=exc.details, headers=headers)
    if isinstance(exc, Overloaded):
        return ServiceUnavailable(
            "the service is overloaded; retry shortly", code="OVERLOADED", headers=RETRY_AFTER
        )
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        entry = SQLSTATE_ERRORS.get(state) or SQLSTATE_ERRORS.get(state[:2])
        if entry is not None:
            cls, code, message = entry
            headers = RETRY_AFTER if cls is ServiceUnavailable else None
            return cls(message, code=code, headers=headers)
    elif isinstance(exc, TimeoutError):  # before OSError, its base class
        return ServiceUnavailable(
            "no database connection became free in time",
            code="POOL_TIMEOUT",
            headers=RETRY_AFTER,
        )
    elif isinstance(exc, CONNECTION_ERRORS):
        return ServiceUnavailable("the database is unreachable", headers=RETRY_AFTER)
    return ApiError("an unexpected error happened; it has been logged")


# What a pattern asks for, in words: messages speak of the field, not of regular expressions.
PATTERN_WORDS = {
    MONEY_PATTERN: "must be a decimal such as 129.99: up to 8 digits, at most 2 decimal places",
    PERCENT_PATTERN: "must be a decimal from 0 to 100 with at most 2 decimal places",
    NOT_BLANK_PATTERN: "must not be blank",
}
REGEX_MESSAGE = re.compile(r"Expected `str` matching regex '(?P<pattern>.*)'$")


def humane(message: str) -> str:
    """A validation message in the field's terms: a pattern becomes what it asks for."""
    found = REGEX_MESSAGE.match(message)
    if found is None:
        return message
    pattern = found["pattern"].encode().decode("unicode_escape")
    return PATTERN_WORDS.get(pattern, "is not in the expected format")


def _validation_details(exc: ValidationException) -> list[Any]:
    extra = exc.extra if isinstance(exc.extra, list) else []
    details = []
    for item in extra:
        if isinstance(item, dict):
            details.append(
                {
                    "field": item.get("key"),
                    "source": item.get("source"),
                    "message": humane(str(item.get("message"))),
                }
            )
    return details


def error_response(
    request: Request[Any, Any, Any],
    status: int,
    code: str,
    message: str,
    details: list[Any] | None,
    headers: dict[str, str],
) -> Response[ErrorResponse]:
    body = ErrorBody(
        code=code, message=message, details=details or [], request_id=request_id(request.scope)
    )
    return Response(
        ErrorResponse(body), status_code=status, media_type=MediaType.JSON, headers=headers
    )


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorResponse]:
    """The single exception handler of the app."""
    if isinstance(exc, ValidationException):
        return error_response(
            request,
            422,
            "VALIDATION_ERROR",
            "the request is not valid",
            _validation_details(exc),
            {},
        )
    if isinstance(exc, HTTPException) and not isinstance(exc, ApiError):
        status = exc.status_code
        code = HTTP_CODES.get(status, "HTTP_ERROR")
        if status >= 500:
            log.error("HTTP %s on %s %s: %s", status, request.method, request.url.path, exc.detail)
        return error_response(request, status, code, exc.detail, None, dict(exc.headers or {}))
    error = translate(exc)
    if error.status_code >= 500:
        if type(error) is ApiError:
            log.exception("unexpected error on %s %s", request.method, request.url.path)
        else:
            log.warning("%s on %s %s: %r", error.code, request.method, request.url.path, exc)
    return error_response(
        request, error.status_code, error.code, error.message, error.details, error.headers
    )


ERROR_DESCRIPTIONS = {
    400: "Malformed request",
    401: "No bearer token, or one that is not valid (WWW-Authenticate says why)",
    403: "The token lacks the scope this operation needs",
    404: "Not found",
    409: "Conflict",
    410: "The cursor is older than the retention (CURSOR_EXPIRED): start again without it",
    412: "If-Match does not match the current version",
    413: "Body too large",
    415: "Unsupported content type",
    428: "Neither If-Match nor a body version: a write must name the version it changes",
    422: "Validation failed; details name each failing field (a CSV import: BAD_ROWS, "
    "each problem's line, column, value and reason; MALFORMED_FILE)",
    429: "Over RATE_LIMIT: Retry-After says when to try again",
    503: "Database unavailable or no connection free in time (Retry-After set)",
    504: "Statement timeout",
}


def read(path: str, summary: str, operation_id: str, *errors: int, **options: Any) -> get:
    """`@get(path)` as every documented read route declares it: its OpenAPI summary and
    operation id, and the error responses it can give (error_responses)."""
    return get(
        path,
        summary=summary,
        operation_id=operation_id,
        responses=error_responses(*errors),
        **options,
    )


def error_responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI documentation of the error responses a handler can give."""
    return {
        status: ResponseSpec(
            data_container=ErrorResponse,
            description=ERROR_DESCRIPTIONS.get(status, "Error"),
            generate_examples=False,
        )
        for status in statuses
    }
