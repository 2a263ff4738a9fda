"""What can go wrong in a load, each with its exit code for `deals load`."""

from __future__ import annotations

from typing import Any

import msgspec


class LoadError(Exception):
    """An expected failure, with a one-line message and the exit code of `deals load`."""

    exit_code = 1
    code = "LOAD_FAILED"

    def __init_subclass__(cls, *, exit_code: int, code: str, **kwargs: Any) -> None:
        """Each kind of failure names its exit code and code in its class line."""
        super().__init_subclass__(**kwargs)
        cls.exit_code = exit_code
        cls.code = code

    def __init__(self, message: str, details: list[Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class UsageError(LoadError, exit_code=2, code="USAGE"):
    """A file that cannot be read, a rejects file that cannot be written."""


class MalformedFile(LoadError, exit_code=2, code="MALFORMED_FILE"):
    """Not a deals CSV: empty, header only, wrong columns, bad UTF-8, broken quoting."""


class TooLarge(LoadError, exit_code=2, code="PAYLOAD_TOO_LARGE"):
    """A request body larger than the import takes (IMPORT_MAX_BYTES)."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the body is larger than {max_bytes:,} bytes (IMPORT_MAX_BYTES)")
        self.max_bytes = max_bytes


class LoadBusy(LoadError, exit_code=3, code="LOAD_BUSY"):
    """Another load held the load lock for longer than this one may wait."""


class DatabaseUnavailable(LoadError, exit_code=3, code="DATABASE_UNAVAILABLE"):
    """The database failed or went away during the load."""


class DatabaseUnreachable(LoadError, exit_code=2, code="DATABASE_UNREACHABLE"):
    """The load could not connect at all: exit 2, as every `deals` command does."""


class ProblemLine(msgspec.Struct, frozen=True, kw_only=True):
    """A bad value where people look for it: the file line its record starts on."""

    line: int | None
    column: str
    value: str | None
    reason: str


class BadRows(LoadError, exit_code=1, code="BAD_ROWS"):
    """Strict mode found bad rows: nothing was written."""

    def __init__(
        self, message: str, problems: list[ProblemLine], problem_count: int, rows_rejected: int
    ) -> None:
        super().__init__(message, [msgspec.to_builtins(p) for p in problems])
        self.problems = problems
        self.problem_count = problem_count
        self.rows_rejected = rows_rejected
