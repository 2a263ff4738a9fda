"""The access line's direct path (service.logs.emit) writes what logging would write."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from service import logs
from service.settings import Settings

EXTRA = {
    "request_id": "r-1",
    "method": "GET",
    "route": "/deals/{id}",
    "path": "/deals/7?x=1",
    "status": 200,
    "duration_ms": 1.25,
    "db_ms": 0.5,
    "queries": 1,
}
# a whole second, just before and after one, and an ordinary instant
INSTANTS = [1_700_000_000.0, 1_700_000_000.9996, 1_700_000_001.0004, 1_764_000_123.456789]


def milliseconds(created: float) -> int:
    """A time as an access line holds it: milliseconds since the epoch, as logging counts
    a record's (its second, and the milliseconds of its fraction)."""
    second = int(created)
    return second * 1000 + int((created - second) * 1000)


def access_at(created: float) -> logs.AccessFields:
    """EXTRA as an access line's time and fields (durations in hundredths of ms)."""
    hundredths = {"duration_ms": 125, "db_ms": 50}  # EXTRA's 1.25 and 0.5
    values = [hundredths.get(k, EXTRA[k]) for k in logs.ACCESS_FIELDS]
    assert [v / 100 for v in hundredths.values()] == [EXTRA["duration_ms"], EXTRA["db_ms"]]
    return (milliseconds(created), *values)  # type: ignore[return-value]


ACCESS = access_at(INSTANTS[-1])


def record(created: float, extra: dict[str, Any]) -> logging.LogRecord:
    line = logging.makeLogRecord(
        {"name": "service.access", "msg": "%s %s %s", "args": ("GET", "/deals/7?x=1", 200)}
    )
    line.levelno, line.levelname = logging.INFO, "INFO"
    line.created = created
    line.msecs = int((created - int(created)) * 1000) + 0.0
    line.__dict__.update(extra)
    return line


@pytest.mark.parametrize("formatter", [logs.TextFormatter(), logs.JsonFormatter()])
@pytest.mark.parametrize("created", INSTANTS)
@pytest.mark.parametrize("extra", [EXTRA, {}])
def test_a_line_is_what_format_writes(
    formatter: logs.LineFormatter, created: float, extra: dict[str, Any]
) -> None:
    message = "GET /deals/7?x=1 200"
    expected = formatter.format(record(created, extra))
    assert formatter.line(created, "INFO", "service.access", message, extra) == expected


@pytest.mark.parametrize("formatter", [logs.TextFormatter(), logs.JsonFormatter()])
@pytest.mark.parametrize("created", INSTANTS)
def test_an_access_line_is_what_format_writes(
    formatter: logs.LineFormatter, created: float
) -> None:
    expected = formatter.format(record(created, EXTRA))
    line = formatter.access_line("service.access", access_at(created))
    assert line == expected


@pytest.fixture(params=["text", "json"])
def configured(request: pytest.FixtureRequest) -> Iterator[tuple[str, io.StringIO]]:
    """configure()'s set-up, its handler writing to a StringIO."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    logs.configure(Settings(database_url="postgresql://x@127.0.0.1:1/x", log_format=request.param))
    (handler,) = root.handlers
    assert isinstance(handler, logging.StreamHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    try:
        yield request.param, stream
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


@contextlib.contextmanager
def alone() -> Iterator[logging.Handler]:
    """configure()'s handler alone at the root: without the ones pytest adds for a test."""
    root = logging.getLogger()
    during_test = root.handlers[:]
    (handler,) = [h for h in during_test if isinstance(h.formatter, logs.LineFormatter)]
    root.handlers[:] = [handler]
    try:
        yield handler
    finally:
        root.handlers[:] = during_test


@contextlib.contextmanager
def caught_on(logger: logging.Logger) -> Iterator[list[logging.LogRecord]]:
    """Another handler on `logger` while the block runs: the records it gets."""
    caught: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            caught.append(record)

    catch = Catch()
    logger.addHandler(catch)
    try:
        yield caught
    finally:
        logger.removeHandler(catch)


def test_emit_writes_the_line_logging_would(configured: tuple[str, io.StringIO]) -> None:
    log_format, stream = configured
    access = logging.getLogger("service.access")
    with alone() as handler:
        assert logs._direct_handler(access) is handler  # the direct path is taken
        logs.emit(access, "%s %s %s", ("GET", "/deals/7?x=1", 200), EXTRA)
        access.info("%s %s %s", "GET", "/deals/7?x=1", 200, extra=EXTRA)  # through logging
    direct, through_logging = stream.getvalue().splitlines()
    if log_format == "json":
        first, second = json.loads(direct), json.loads(through_logging)
        assert first.keys() == second.keys()
        assert {k: v for k, v in first.items() if k != "ts"} == {
            k: v for k, v in second.items() if k != "ts"
        }
        assert (first["status"], first["request_id"]) == (200, "r-1")
    else:  # the same after the date and time
        assert direct.split(" ", 2)[2] == through_logging.split(" ", 2)[2]
        assert direct.endswith("INFO service.access GET /deals/7?x=1 200 request_id=r-1 "
                               "method=GET route=/deals/{id} path=/deals/7?x=1 status=200 "
                               "duration_ms=1.25 db_ms=0.5 queries=1")  # fmt: skip


def test_emit_access_writes_the_line_emit_would(configured: tuple[str, io.StringIO]) -> None:
    log_format, stream = configured
    access = logging.getLogger("service.access")
    with alone():
        logs.emit_access(access, ACCESS)
        logs.emit(access, "%s %s %s", ("GET", "/deals/7?x=1", 200), EXTRA)
    direct, through_emit = stream.getvalue().splitlines()
    if log_format == "json":
        first, second = json.loads(direct), json.loads(through_emit)
        assert list(first) == list(second)
        assert {k: v for k, v in first.items() if k != "ts"} == {
            k: v for k, v in second.items() if k != "ts"
        }
    else:
        assert direct.split(" ", 2)[2] == through_emit.split(" ", 2)[2]


def test_emit_access_goes_through_logging_to_another_handler(
    configured: tuple[str, io.StringIO],
) -> None:
    access = logging.getLogger("service.access")
    with alone(), caught_on(access) as caught:
        logs.emit_access(
            access,
            (milliseconds(INSTANTS[0]), "r-2", "GET", "/deals", "/deals?limit=3", 200, 150, 50, 2),
        )
    [line] = caught
    assert line.getMessage() == "GET /deals?limit=3 200"
    assert {k: getattr(line, k) for k in EXTRA} == {
        "request_id": "r-2",
        "method": "GET",
        "route": "/deals",
        "path": "/deals?limit=3",
        "status": 200,
        "duration_ms": 1.5,
        "db_ms": 0.5,
        "queries": 2,
    }


def test_another_handler_or_a_filter_gets_the_line_through_logging(
    configured: tuple[str, io.StringIO],
) -> None:
    _format, stream = configured
    access = logging.getLogger("service.access")
    with alone():
        with caught_on(access) as caught:
            assert logs._direct_handler(access) is None
            logs.emit(access, "%s %s %s", ("GET", "/x", 404), {"status": 404})
        [line] = caught
        assert (line.getMessage(), line.status) == ("GET /x 404", 404)  # type: ignore[attr-defined]
        assert len(stream.getvalue().splitlines()) == 1  # and the root handler still wrote it

        access.addFilter(lambda r: r.getMessage() != "GET /hidden 200")
        try:
            assert logs._direct_handler(access) is None
            logs.emit(access, "%s %s %s", ("GET", "/hidden", 200), {})
        finally:
            access.filters.clear()
        assert len(stream.getvalue().splitlines()) == 1  # the filter dropped it
        logs.emit(access, "%s %s %s", ("GET", "/shown", 200), {})
        assert logs._direct_handler(access) is not None
        assert "GET /shown 200" in stream.getvalue().splitlines()[1]


def test_nothing_is_written_below_the_level(configured: tuple[str, io.StringIO]) -> None:
    _format, stream = configured
    logging.getLogger().setLevel(logging.WARNING)
    with alone():
        logs.emit(logging.getLogger("service.access"), "%s", ("x",), {})
    assert stream.getvalue() == ""


def test_the_text_of_a_duration_is_str_of_it_whether_remembered_or_not() -> None:
    """The text access line writes a duration (hundredths of a millisecond) as str() writes
    it in milliseconds, from its cache of the values seen lately or not, and the cache
    starts over when full; the JSON line as a float."""
    text, json_lines = logs.TextFormatter(), logs.JsonFormatter()
    values = [50, 125, 50, 1200, 10001, 125, 0, 7, 100, 123_456_789]
    for value in [*values, *range(logs.DURATIONS_KEPT + 2)]:
        fields = (*ACCESS[:6], value, value, 1)
        line = text.access_line("service.access", fields)
        assert line.endswith(f" duration_ms={value / 100} db_ms={value / 100} queries=1")
        parsed = json.loads(json_lines.access_line("service.access", fields))
        assert (parsed["duration_ms"], parsed["db_ms"]) == (value / 100, value / 100)
    assert len(logs._hundredths_text) <= logs.DURATIONS_KEPT


@pytest.mark.parametrize("formatter", [logs.TextFormatter(), logs.JsonFormatter()])
def test_an_access_line_has_the_time_of_its_millisecond(formatter: logs.LineFormatter) -> None:
    """Access lines of the same second and of the next are each written with their own
    millisecond (the second's text is remembered), as logging writes a record of it."""
    ends = [1_764_000_123_000, 1_764_000_123_001, 1_764_000_123_999, 1_764_000_124_000]
    for ended in ends:
        line = formatter.access_line("service.access", (ended, *ACCESS[1:]))
        assert line == formatter.format(record(ended / 1000 + 0.0004, EXTRA))
