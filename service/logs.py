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


# An access line's time (its request's end, in milliseconds since the epoch), then its
# fields in ACCESS_FIELDS' order, its two durations in hundredths of a millisecond: integers,
# so that writing them takes no float formatting (a float's shortest text is found with
# big-number arithmetic), and the line shows str(duration / 100), as a float would.
AccessFields = tuple[int, str, str, str, str, int, int, int, int]
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
        return self.access_lines(logger, [fields], "\n")[:-1]

    def access_lines(self, logger: str, lines: list[AccessFields], terminator: str) -> str:
        if terminator != "\n":
            return super().access_lines(logger, lines, terminator)
        # as the text lines: a second's text and a millisecond's remembered, no call but on a miss
        second = _json_seconds.get
        milliseconds = _MILLISECONDS
        return _encode_lines(
            [
                AccessLine(
                    f"{second(ended // 1000) or json_second(ended // 1000)}."
                    f"{milliseconds[ended % 1000]}+00:00",
                    "info", logger, f"{method} {path} {status}",
                    request_id, method, route, path, status, duration / 100, db / 100, queries,
                )
                for ended, request_id, method, route, path, status, duration, db, queries
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
        # one f-string per line (cheaper than a % of 11 values), no call on the way but on
        # a miss of the texts remembered: a second's date and time, a duration's text
        second = _text_seconds.get
        milliseconds = _MILLISECONDS
        shown = _hundredths_text.get
        return "".join(
            [
                f"{second(ended // 1000) or text_second(ended // 1000)},"
                f"{milliseconds[ended % 1000]} INFO {logger} {method} {path} {status}"
                f" request_id={rid} method={method} route={route} path={path} status={status}"
                f" duration_ms={shown(duration) or hundredths_text(duration)}"
                f" db_ms={shown(db) or hundredths_text(db)} queries={n}{terminator}"
                for ended, rid, method, route, path, status, duration, db, n in lines
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


# Texts made once and remembered for the keys seen lately: a duration's (access lines), a
# second's date and time (text and JSON lines). Lines look one up with .get and make it
# only on a miss; each cache starts over when full.
DURATIONS_KEPT = 4096  # the same few hundred durations come again and again
SECONDS_KEPT = 64
_hundredths_text: dict[int, str] = {}
_text_seconds: dict[int, str] = {}
_json_seconds: dict[int, str] = {}
_MILLISECONDS = tuple(f"{n:03d}" for n in range(1000))  # each millisecond of a second


def _remember(texts: dict[int, str], key: int, text: str, most: int) -> str:
    """`text` kept in `texts` under `key`, the cache emptied first when it holds `most`."""
    if len(texts) >= most:
        texts.clear()
    texts[key] = text
    return text


def hundredths_text(value: int) -> str:
    """str(value / 100) for a duration in hundredths (>= 0), found in integers, remembered:
    125 -> 1.25, 120 -> 1.2, 100 -> 1.0, 5 -> 0.05."""
    whole, part = divmod(value, 100)
    text = f"{whole}.{part // 10}" if part % 10 == 0 else f"{whole}.{part:02d}"
    return _remember(_hundredths_text, value, text, DURATIONS_KEPT)


def text_second(second: int) -> str:
    """A second since the epoch as the text lines write it (local time, as
    logging.Formatter.formatTime does), remembered."""
    text = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
    return _remember(_text_seconds, second, text, SECONDS_KEPT)


def json_second(second: int) -> str:
    """A second since the epoch as the JSON lines' "ts" starts (UTC, ISO 8601), remembered."""
    text = datetime.fromtimestamp(second, UTC).isoformat(timespec="seconds")[:-6]
    return _remember(_json_seconds, second, text, SECONDS_KEPT)


def _text_time(created: float) -> str:
    """logging.Formatter.formatTime's default: local time, then a comma and milliseconds."""
    second = int(created)
    text = _text_seconds.get(second) or text_second(second)
    return f"{text},{_MILLISECONDS[int((created - second) * 1000)]}"


def _json_time(created: float) -> str:
    """JsonFormatter's "ts": UTC, ISO 8601 with milliseconds."""
    second = int(created)
    text = _json_seconds.get(second) or json_second(second)
    return f"{text}.{_MILLISECONDS[int((created - second) * 1000)]}+00:00"


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
    _ended, request_id, method, route, path, status, duration, db, queries = fields
    named = (request_id, method, route, path, status, duration / 100, db / 100, queries)
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
