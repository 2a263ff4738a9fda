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

from service.load.errors import MalformedFile, TooLarge, UsageError
from service.load.report import OpenFile, Progress, first_bad_byte, unclosed_quote_line
from service.types import DEAL_VALUES

# The deals CSV's columns (shared/spec/deals-csv.md), in the order upstream writes them;
# the loader finds them by name, in any order.
COLUMNS = (
    "deal_id",
    "hotel_name",
    "hotel_city",
    "hotel_country",
    "hotel_phone",
    "hotel_star_rating",
    *DEAL_VALUES,
    "categories",
    "created_at",
)
CHUNK = 1 << 20  # bytes per COPY message
BOM = b"\xef\xbb\xbf"
STAGING_TABLE = "load_staging"


class Source(OpenFile):
    """The CSV file opened for streaming: header parsed, BOM stripped, data bytes to follow.

    label names it in messages; path is a file holding every byte of it, read
    again only to name the lines of bad records (see BodySource for a body).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.label = str(path)
        try:
            self.file: IO[bytes] = path.open("rb")
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file") from None
        except IsADirectoryError:
            raise UsageError(f"{path}: is a directory") from None
        except OSError as exc:
            raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
        try:
            head = self.file.read(CHUNK)
            more = b"" if has_data_after_header(head) else self.file.read(CHUNK)
            self.header, self.first = read_header(self.label, head, more)
        except BaseException:
            self.file.close()
            raise

    async def chunks(self, progress: Progress) -> AsyncIterator[bytes]:
        data = self.first
        while data:
            progress.advance(len(data), data.count(b"\n"))
            yield data
            data = self.file.read(CHUNK)


def has_data_after_header(head: bytes) -> bool:
    """Whether `head` (the first bytes) holds the header line and some data after it."""
    end = head.find(b"\n")
    return end >= 0 and bool(head[end + 1 :].strip())


def read_header(label: str, head: bytes, more: bytes) -> tuple[list[str], bytes]:
    """(column names, the data bytes after the header) from the first bytes read.

    head is the first CHUNK of the file (less when it is shorter); more is
    what was read after it (the next CHUNK when head holds no data rows).
    """
    full = len(head) == CHUNK
    if head.startswith(BOM):
        head = head[len(BOM) :]
    end = head.find(b"\n")
    if end < 0 and full:
        raise MalformedFile(f"{label}: line 1: no end of line in the first MiB: not a CSV")
    raw, rest = (head, b"") if end < 0 else (head[:end], head[end + 1 :])
    if not raw.strip() and not rest.strip():
        raise MalformedFile(f"{label}: the file is empty (no header, no rows)")
    try:
        text = raw.rstrip(b"\r").decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedFile(
            f"{label}: line 1: invalid UTF-8 (byte 0x{raw[exc.start]:02x}) in the header"
        ) from None
    names = [name.strip().lower() for name in next(csv.reader([text]), [])]
    check_columns(label, names)
    if not rest.strip() and not more.strip():
        raise MalformedFile(f"{label}: no data rows after the header")
    return names, rest + more


class BodySource(OpenFile):
    """A request body as the loader's source: streamed into COPY as it arrives.

    Every byte also goes to a temporary file (spool), on disk, never held in
    memory: the loader reads it again only when it has bad records to name by
    line. More than max_bytes raises TooLarge, before or while streaming.
    """

    def __init__(
        self, body: AsyncIterator[bytes], spool: Path, max_bytes: int, label: str = "body"
    ) -> None:
        self.body = body
        self.path = spool
        self.label = label
        self.max_bytes = max_bytes
        self.received = 0
        self.file: IO[bytes] = spool.open("wb")
        self.header: list[str] = []
        self.first = b""

    async def _next(self) -> bytes:
        """The next non-empty piece of the body, spooled; b"" at its end."""
        async for piece in self.body:
            if piece:
                self.received += len(piece)
                if self.received > self.max_bytes:
                    raise TooLarge(self.max_bytes)
                self.file.write(piece)
                return piece
        return b""

    async def _read(self, size: int) -> bytes:
        """At least size bytes (fewer only at the end of the body)."""
        parts, total = [], 0
        while total < size:
            piece = await self._next()
            if not piece:
                break
            parts.append(piece)
            total += len(piece)
        return b"".join(parts)

    async def open(self) -> BodySource:
        """Read and check the header, as Source does from a file; the rest waits for chunks().

        Reads until the header line and some data are in (or a MiB, or the end),
        so the COPY starts with the first piece of data rather than after a MiB.
        """
        buffer = b""
        while not has_data_after_header(buffer) and len(buffer) < CHUNK:
            piece = await self._next()
            if not piece:
                break
            buffer += piece
        head, more = buffer[:CHUNK], buffer[CHUNK:]
        if not has_data_after_header(head) and len(head) == CHUNK:
            more += await self._read(CHUNK)
        self.header, self.first = read_header(self.label, head, more)
        return self

    async def chunks(self, progress: Progress) -> AsyncIterator[bytes]:
        data = self.first
        self.first = b""
        while data:
            progress.advance(len(data), data.count(b"\n"))
            yield data
            data = await self._next()
        self.file.flush()


def check_columns(label: str, names: list[str]) -> None:
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
        raise MalformedFile(f"{label}: header: {'; '.join(problems)}")


def describe_copy_error(path: Path, exc: asyncpg.PostgresError, label: str | None = None) -> str:
    """COPY refused the file (path, named label in messages): say where, as a file line."""
    label = str(path) if label is None else label
    if isinstance(exc, asyncpg.CharacterNotInRepertoireError):
        found = first_bad_byte(path)
        if found is not None:
            what = "a NUL byte" if found[1] == 0 else f"byte 0x{found[1]:02x}"
            return f"{label}: line {found[0]}: invalid UTF-8 ({what}); the file must be UTF-8 text"
        return f"{label}: invalid UTF-8; the file must be UTF-8 text"
    message = str(exc)
    # COPY counts physical lines of the data it was sent, which starts after the header line
    context = getattr(exc, "context", None) or ""
    match = re.search(rf"COPY {STAGING_TABLE}, line (\d+)", context)
    line = int(match[1]) + 1 if match else None
    if "unterminated CSV quoted field" in message:
        message = 'unterminated quoted field: a " opens a field that never closes'
        line = unclosed_quote_line(path) or line  # COPY notices at the end of the file
    return f"{label}: line {line}: {message}" if line is not None else f"{label}: {message}"
