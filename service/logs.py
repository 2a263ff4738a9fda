"""Logging for people or for machines: LOG_FORMAT=text (the default) or json.

With json every line is one JSON object, uvicorn's own lines (startup,
errors) included: {"ts", "level", "logger", "message", ...} plus the fields a
line carries (an access line: request_id, method, route, path, status,
duration_ms, db_ms, queries) and "exception" when there is one.

The access line, written on every request, skips logging's per-record machinery
(a LogRecord, the handler chain, the generic formatter) when the logging set-up
is the one `configure` made: `emit` writes the same line straight to its stream.
Any other set-up (a handler or filter added, as pytest's caplog does) gets the
line through logging as usual.
"""

from __future__ import annotations

import contextlib
import logging
import logging.config
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from service.settings import Settings

# The attributes every LogRecord has; anything else was passed as `extra` and is a field.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "color_message"}
_encode = msgspec.json.Encoder(decimal_format="number").encode


def fields(record: logging.LogRecord) -> dict[str, Any]:
    """What the line carries beyond its message (logging's `extra`), in the order given."""
    attributes = record.__dict__
    if attributes.keys() <= _STANDARD:  # most lines carry none: one set operation in C
        return {}
    return {
        key: value
        for key, value in attributes.items()
        if key not in _STANDARD and not key.startswith("_")
    }


# An access line's time (its request's end), then its fields in ACCESS_FIELDS' order.
AccessFields = tuple[float, str, str, str, str, int, float, float, int]
ACCESS_FIELDS = (
    "request_id", "method", "route", "path", "status", "duration_ms", "db_ms", "queries",
)  # fmt: skip


class LineFormatter(logging.Formatter):
    """A formatter that can also write a plain line (no exception) without a LogRecord."""

    def line(self, created: float, level: str, logger: str, message: str, extra: Any) -> str:
        raise NotImplementedError

    def access_line(self, logger: str, fields: AccessFields) -> str:
        """line() of an access line (INFO at its time, the message `method path status`,
        its fields in ACCESS_FIELDS' order), written without building its fields' dict."""
        raise NotImplementedError

    def access_lines(self, logger: str, lines: list[AccessFields], terminator: str) -> str:
        """Access lines written together, each followed by the terminator."""
        line = self.access_line
        return "".join([line(logger, fields) + terminator for fields in lines])


class AccessLine(msgspec.Struct):
    """A JSON access line: the keys, in this order, that JsonFormatter.format writes."""

    ts: str
    level: str
    logger: str
    message: str
    request_id: str
    method: str
    route: str
    path: str
    status: int
    duration_ms: float
    db_ms: float
    queries: int


_encode_lines = msgspec.json.Encoder(decimal_format="number").encode_lines


class JsonFormatter(LineFormatter):
    def line(
        self, created: float, level: str, logger: str, message: str, extra: Mapping[str, Any]
    ) -> str:
        """What format() writes for a record with these attributes and no exception."""
        return _encode(
            {
                "ts": _json_time(created),
                "level": level.lower(),
                "logger": logger,
                "message": message,
                **extra,
            }
        ).decode()

    def access_line(self, logger: str, fields: AccessFields) -> str:
        created, request_id, method, route, path, status, duration_ms, db_ms, queries = fields
        return _encode(
            AccessLine(
                _json_time(created), "info", logger, f"{method} {path} {status}",
                request_id, method, route, path, status, duration_ms, db_ms, queries,
            )
        ).decode()  # fmt: skip

    def access_lines(self, logger: str, lines: list[AccessFields], terminator: str) -> str:
        if terminator != "\n":
            return super().access_lines(logger, lines, terminator)
        ts = _json_time
        return _encode_lines(
            [
                AccessLine(
                    ts(created), "info", logger, f"{method} {path} {status}",
                    request_id, method, route, path, status, duration_ms, db_ms, queries,
                )
                for created, request_id, method, route, path, status, duration_ms, db_ms, queries
                in lines
            ]
        ).decode()  # fmt: skip

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **fields(record),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return _encode(line).decode()


class TextFormatter(LineFormatter):
    """The readable format; a line's fields follow its message as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def line(
        self, created: float, level: str, logger: str, message: str, extra: Mapping[str, Any]
    ) -> str:
        """What format() writes for a record with these attributes and no exception."""
        text = f"{_text_time(created)} {level} {logger} {message}"
        if not extra:
            return text
        return text + " " + " ".join([f"{key}={value}" for key, value in extra.items()])

    def access_line(self, logger: str, fields: AccessFields) -> str:
        return self.access_lines(logger, [fields], "")

    def access_lines(self, logger: str, lines: list[AccessFields], terminator: str) -> str:
        # one f-string per line (cheaper than a % of 11 values); a float's text is
        # str()'s, remembered
        at = _text_time
        shown = _float_text.get  # the text of a float seen lately
        return "".join(
            [
                f"{at(created)} INFO {logger} {method} {path} {status} request_id={rid}"
                f" method={method} route={route} path={path} status={status}"
                f" duration_ms={shown(duration) or float_text(duration)}"
                f" db_ms={shown(db) or float_text(db)} queries={n}{terminator}"
                for created, rid, method, route, path, status, duration, db, n in lines
            ]
        )

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            text = super().format(record)
        else:  # the same line as super().format, without its generic steps (every access line)
            text = (
                f"{self.formatTime(record)} {record.levelname} {record.name} {record.getMessage()}"
            )
        extra = fields(record)
        if not extra:
            return text
        return text + " " + " ".join([f"{key}={value}" for key, value in extra.items()])


# The text of the access lines' milliseconds, for the values seen lately: a float's
# shortest repr is a tenth of a line's cost, and times to two decimals come again and again.
# The cache starts over when full.
FLOATS_KEPT = 4096
_float_text: dict[float, str] = {}


def float_text(value: float) -> str:
    """str(value), remembered (_float_text)."""
    text = _float_text[value] = str(value)
    if len(_float_text) > FLOATS_KEPT:
        _float_text.clear()
    return text


# The second of the last line written and its text: the date and time change once a second.
_text_second: list[Any] = [None, ""]
_json_second: list[Any] = [None, ""]
_TEXT_TIME = "%s,%03d"  # % of an int is a third cheaper than an f-string's :03d


def _text_time(created: float) -> str:
    """logging.Formatter.formatTime's default: local time, then a comma and milliseconds."""
    second = int(created)
    if _text_second[0] != second:
        _text_second[:] = second, time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
    return _TEXT_TIME % (_text_second[1], int((created - second) * 1000))


def _json_time(created: float) -> str:
    """JsonFormatter's "ts": UTC, ISO 8601 with milliseconds."""
    second = int(created)
    if _json_second[0] != second:
        _json_second[:] = (
            second,
            datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6],
        )
    return f"{_json_second[1]}.{int((created - second) * 1000):03d}+00:00"


def _direct_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The one handler a line of `logger` reaches when the set-up is `configure`'s own:
    no filter on the way, one StreamHandler with one of our formatters, at the root."""
    handler: logging.StreamHandler[Any] | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters:
            return None
        for found in current.handlers:
            if handler is not None or type(found) is not logging.StreamHandler:
                return None
            handler = found
        current = current.parent if current.propagate else None
    if handler is None or handler.filters or not isinstance(handler.formatter, LineFormatter):
        return None
    return handler


def _info_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The handler an INFO line of `logger` is written to directly (configure's set-up),
    or None when it must go through logging: another set-up, or a handler above INFO."""
    handler = _direct_handler(logger)
    if handler is None or handler.level > logging.INFO:
        return None
    return handler


_unlocked = contextlib.nullcontext()


def _write(handler: logging.StreamHandler[Any], text: str, logger: str) -> None:
    """Write `text` as the handler writes a line (its lock, its stream, its flush)."""
    with handler.lock or _unlocked:  # what handler.acquire() and release() do, without
        try:  # their two calls
            stream = handler.stream
            stream.write(text)
            stream.flush()
        except Exception:
            handler.handleError(logging.makeLogRecord({"name": logger, "msg": text}))


def emit(
    logger: logging.Logger, message: str, args: tuple[Any, ...], extra: dict[str, Any]
) -> None:
    """logger.info(message, *args, extra=extra), for a line written on every request.

    With `configure`'s set-up the line is formatted and written here, as its
    handler would; otherwise through logging.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    handler = _info_handler(logger)
    if handler is None:
        # makeRecord + handle is what logger.info() does, less findCaller's walk up
        # the stack for a file and line that no log line prints
        record = logger.makeRecord(
            logger.name, logging.INFO, __file__, 0, message, args, None, extra=extra
        )
        logger.handle(record)
        return
    formatter: LineFormatter = handler.formatter  # type: ignore[assignment]
    line = formatter.line(time.time(), "INFO", logger.name, message % args, extra)
    _write(handler, line + handler.terminator, logger.name)


def access_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The handler access lines of `logger` are written to directly (write_access_lines),
    or None when they must go through logging (emit): another set-up, or INFO disabled."""
    return _info_handler(logger) if logger.isEnabledFor(logging.INFO) else None


def write_access_lines(
    handler: logging.StreamHandler[Any], logger: str, lines: list[AccessFields]
) -> None:
    """Access lines (their times and fields) formatted and written in one write."""
    formatter: LineFormatter = handler.formatter  # type: ignore[assignment]
    _write(handler, formatter.access_lines(logger, lines, handler.terminator), logger)


def emit_access(logger: logging.Logger, fields: AccessFields) -> None:
    """The access line of a request: what emit() writes for it (message `method path
    status`, the fields as `extra`), formatted in one step when the set-up is
    configure()'s, through emit() otherwise (whose record has the time of the call)."""
    handler = access_handler(logger)
    if handler is not None:
        write_access_lines(handler, logger.name, [fields])
        return
    _created, *named = fields
    _request_id, method, _route, path, status, *_timing = named
    emit(logger, "%s %s %s", (method, path, status), dict(zip(ACCESS_FIELDS, named, strict=True)))


def config(settings: Settings) -> dict[str, Any]:
    """A logging dictConfig for these settings: the root logger and uvicorn's."""
    formatter = "json" if settings.log_format == "json" else "text"
    level = settings.log_level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "json": {"()": JsonFormatter},
            "text": {"()": TextFormatter},
        },
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": formatter,
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            # uvicorn's loggers write through the root handler, so they get the format too
            "uvicorn": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.error": {"handlers": [], "level": level, "propagate": True},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            "yoyo": {"level": "WARNING"},
        },
    }


def configure(settings: Settings) -> None:
    logging.config.dictConfig(config(settings))
    # No line prints the pid, thread or process name that logging records by default:
    # skip them (os.getpid() is a system call on every record, every access line).
    logging.logProcesses = False
    logging.logThreads = False
    logging.logMultiprocessing = False
