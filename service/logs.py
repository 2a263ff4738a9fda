"""Logging for people or for machines: LOG_FORMAT=text (the default) or json.

With json every line is one JSON object, uvicorn's own lines (startup,
errors) included: {"ts", "level", "logger", "message", ...} plus the fields a
line carries (an access line: request_id, method, route, path, status,
duration_ms, db_ms, queries) and "exception" when there is one.
"""

from __future__ import annotations

import logging
import logging.config
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


class JsonFormatter(logging.Formatter):
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


class TextFormatter(logging.Formatter):
    """The readable format; a line's fields follow its message as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

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
