"""The CSV file as COPY gets it: opened, header checked by name, BOM gone, bytes streamed.

Also what to say when COPY refuses the file, as a file line.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO

import asyncpg

from service.load.errors import MalformedFile, UsageError
from service.load.report import Progress, first_bad_byte, unclosed_quote_line

# The deals CSV's columns (shared/spec/deals-csv.md), in the order upstream writes them;
# the loader finds them by name, in any order.
COLUMNS = (
    "deal_id",
    "hotel_name",
    "hotel_city",
    "hotel_country",
    "hotel_phone",
    "hotel_star_rating",
    "room_type",
    "price_per_night",
    "original_price",
    "discount_percent",
    "checkin_date",
    "checkout_date",
    "is_available",
    "categories",
    "created_at",
)
CHUNK = 1 << 20  # bytes per COPY message
BOM = b"\xef\xbb\xbf"
STAGING_TABLE = "load_staging"


class Source:
    """The CSV file opened for streaming: header parsed, BOM stripped, data bytes to follow."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.file: IO[bytes] = path.open("rb")
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{path}: is a directory") from None
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            self.header, self.first = self._read_header()
        except BaseException:
            self.file.close()
            raise

    def _read_header(self) -> tuple[list[str], bytes]:
        head = self.file.read(CHUNK)
        if head.startswith(BOM):
            head = head[len(BOM) :]
        end = head.find(b"\n")
        if end < 0 and len(head) == CHUNK:
            raise MalformedFile(f"{self.path}: line 1: no end of line in the first MiB: not a CSV")
        raw, rest = (head, b"") if end < 0 else (head[:end], head[end + 1 :])
        if not raw.strip() and not rest.strip():
            raise MalformedFile(f"{self.path}: the file is empty (no header, no rows)")
        try:
            text = raw.rstrip(b"\r").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedFile(
                f"{self.path}: line 1: invalid UTF-8 (byte 0x{raw[exc.start]:02x}) in the header"
            ) from None
        names = [name.strip().lower() for name in next(csv.reader([text]), [])]
        check_columns(self.path, names)
        if not rest.strip():
            more = self.file.read(CHUNK)
            if not more.strip():
                raise MalformedFile(f"{self.path}: no data rows after the header")
            rest += more
        return names, rest

    async def chunks(self, progress: Progress) -> AsyncIterator[bytes]:
        data = self.first
        while data:
            progress.advance(len(data), data.count(b"\n"))
            yield data
            data = self.file.read(CHUNK)

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_columns(path: Path, names: list[str]) -> None:
    """Columns match by name: every spec column once, nothing else."""
    seen = Counter(names)
    twice = sorted(n for n, count in seen.items() if count > 1)
    missing = [c for c in COLUMNS if c not in seen]
    unknown = [n or "(empty name)" for n in names if n not in COLUMNS]
    problems = []
    if missing:
        problems.append(f"missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    if unknown:
        problems.append(f"unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    if twice:
        problems.append(f"column{'s' if len(twice) > 1 else ''} named twice: {', '.join(twice)}")
    if problems:
        raise MalformedFile(f"{path}: header: {'; '.join(problems)}")


def describe_copy_error(path: Path, exc: asyncpg.PostgresError) -> str:
    """COPY refused the file: say where, as a file line, in one line."""
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError):
        found = first_bad_byte(path)
        if found is not None:
            what = "a NUL byte" if found[1] == 0 else f"byte 0x{found[1]:02x}"
            return f"{path}: line {found[0]}: invalid UTF-8 ({what}); the file must be UTF-8 text"
        return f"{path}: invalid UTF-8; the file must be UTF-8 text"
    message = str(exc)
    # COPY counts physical lines of the data it was sent, which starts after the header line
    context = getattr(exc, "context", None) or ""
    match = re.search(rf"COPY {STAGING_TABLE}, line (\d+)", context)
    line = int(match[1]) + 1 if match else None
    if "unterminated CSV quoted field" in message:
        message = 'unterminated quoted field: a " opens a field that never closes'
        line = unclosed_quote_line(path) or line  # COPY notices at the end of the file
    return f"{path}: line {line}: {message}" if line is not None else f"{path}: {message}"
