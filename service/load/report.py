"""What a load tells people: the progress bar, file line numbers, the rejects file, the summary.

Line numbers cost nothing on the happy path: the database knows each bad
record by its ordinal, and only when there are bad records does a second,
streaming pass over the file (the csv module) find where they start, which
differs from the ordinal once a quoted field holds a line break.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any, Self

import msgspec


class LoadSummary(msgspec.Struct, frozen=True, kw_only=True):
    file: str
    rows_read: int = 0
    rows_loaded: int = 0
    rows_rejected: int = 0
    hotels_new: int = 0
    hotels_updated: int = 0
    hotels_disagreeing: int = 0  # phones whose rows disagree; their latest row won
    deals_new: int = 0
    deals_updated: int = 0
    deals_unchanged: int = 0
    categories_new: int = 0
    category_links_added: int = 0
    category_links_removed: int = 0
    seconds: float = 0.0
    rows_per_second: float = 0.0
    rejects_file: str | None = None
    # "set-based": deals and links written without the per-row foreign-key triggers,
    # their references proven by the load's joins and locks; "per-row": by the triggers
    foreign_key_checks: str = "per-row"
    skipped: bool = False  # --if-empty found deals already: nothing was read


class RejectedRow(msgspec.Struct, frozen=True, kw_only=True):
    """A record a load skipped: the file line it starts on, and why."""

    line: int | None
    reason: str


class Progress:
    """Silent progress: the loader calls these hooks; subclasses show or act on them."""

    def advance(self, nbytes: int, nlines: int) -> None:
        """nbytes more of the file were sent to the database (nlines line breaks)."""

    def phase(self, name: str) -> None:
        """The load entered a phase: reading, checking, hotels, deals, links, events, feed
        (its events appended, under the feed's order lock), commit, vacuum."""

    def close(self) -> None:
        """The load ended (well or not)."""


class TerminalProgress(Progress):
    """A one-line bar on a terminal: bytes, rows so far, rate, time left; then the phase."""

    WIDTH = 24

    def __init__(self, total_bytes: int, stream: IO[str] = sys.stderr) -> None:
        self.total = max(total_bytes, 1)
        self.stream = stream
        self.done = 0
        self.lines = 0
        self.started = time.monotonic()
        self.shown = 0.0
        self.current = "reading"

    def advance(self, nbytes: int, nlines: int) -> None:
        self.done += nbytes
        self.lines += nlines
        now = time.monotonic()
        if now - self.shown >= 0.1 or self.done >= self.total:
            self.shown = now
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.started, 1e-6)
        share = min(self.done / self.total, 1.0)
        filled = int(share * self.WIDTH)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else 0.0
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self._show(
            f"reading [{bar}] {share:4.0%}  {self.done / 1e6:,.1f}/{self.total / 1e6:,.1f} MB"
            f"  ~{self.lines:,} rows  {rate / 1e6:,.1f} MB/s  {left:,.0f} s left"
        )

    def phase(self, name: str) -> None:
        self.current = name
        if name != "reading":
            elapsed = time.monotonic() - self.started
            self._show(f"{name}...  ({elapsed:,.1f} s)")

    def _show(self, text: str) -> None:
        self.stream.write("\r\x1b[2K" + text)
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\r\x1b[2K")
        self.stream.flush()


def progress_for(path: Path, stream: IO[str] = sys.stderr) -> Progress:
    """A bar when the stream is a terminal, silence otherwise (logs, pipes, CI)."""
    if stream.isatty():
        return TerminalProgress(path.stat().st_size, stream)
    return Progress()


class OpenFile:
    """A reader or writer of one open file: close() closes it, so does a with block's end."""

    file: IO[Any]

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordScanner(OpenFile):
    """Walks the file once, forwards: where each asked-for record starts, and its fields.

    Record 1 is the first data record after the header; a line is the
    physical 1-based line of the file. Ask for records in ascending order.
    """

    def __init__(self, path: Path) -> None:
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
        self.file = path.open(encoding="utf-8-sig", errors="replace", newline="")
        self.reader = csv.reader(self.file)
        next(self.reader, None)  # the header
        self.record = 0
        self.consumed = self.reader.line_num
        self.last: tuple[int, list[str]] = (0, [])

    def find(self, records: Iterable[int]) -> Iterator[tuple[int, int, list[str]]]:
        for target in records:
            while self.record < target:
                fields = next(self.reader, None)
                if fields is None:
                    return
                self.record += 1
                self.last = (self.consumed + 1, fields)
                self.consumed = self.reader.line_num
            if self.record == target:
                yield target, *self.last


def unclosed_quote_line(path: Path, chunk_size: int = 1 << 20) -> int | None:
    """The line where the record with a never-closed quote starts, read as COPY reads CSV.

    A record ends at a line break outside quotes; every quote toggles (a
    doubled quote toggles twice). Only run when COPY has refused the file.
    """
    in_quote = False
    line = 1
    record_start = 1
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            for match in QUOTE_OR_NEWLINE.finditer(chunk):
                if match[0] == b'"':
                    in_quote = not in_quote
                else:
                    line += 1
                    if not in_quote:
                        record_start = line
    return record_start if in_quote else None


QUOTE_OR_NEWLINE = re.compile(b'["\n]')


def first_bad_byte(path: Path, chunk_size: int = 1 << 20) -> tuple[int, int] | None:
    """(line, byte) of the first byte that is not valid UTF-8 text (NUL included), or None."""
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")("strict")
    line = 1
    with path.open("rb") as f:
        while chunk := f.read(chunk_size):
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk.count(b"\n", 0, exc.start)
                return line, chunk[exc.start]
            nul = text.find("\x00")
            if nul >= 0:
                return line + text.count("\n", 0, nul), 0
            line += text.count("\n")
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return line, 0
    return None


async def write_rejects(
    out: IO[str], path: Path, header: list[str], reasons: AsyncIterator[Any], batch: int = 5000
) -> int:
    """Write every bad record: its line, its reasons, then its original fields; return the count.

    `reasons` yields (record, reasons) rows in record order from a database
    cursor; the file is read alongside, so memory stays flat however many.
    """
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["line", "reason", *header])
    count = 0
    pending: list[tuple[int, str]] = []
    with RecordScanner(path) as scanner:

        def flush() -> None:
            found = {r: (line, fields) for r, line, fields in scanner.find(r for r, _ in pending)}
            for record, reason in pending:
                line, fields = found.get(record, (None, []))
                writer.writerow([line if line is not None else "", reason, *fields])
            pending.clear()

        async for row in reasons:
            pending.append((row[0], row[1]))
            count += 1
            if len(pending) >= batch:
                flush()
        flush()
    out.flush()
    os.fsync(out.fileno())
    return count


def summary_text(s: LoadSummary) -> str:
    lines = [
        f"loaded {s.file}",
        f"  rows      {s.rows_read:,} read, {s.rows_loaded:,} loaded, {s.rows_rejected:,} rejected",
        f"  hotels    {s.hotels_new:,} new, {s.hotels_updated:,} updated"
        f" ({s.hotels_disagreeing:,} phones whose rows disagree: latest created_at won)",
        f"  deals     {s.deals_new:,} new, {s.deals_updated:,} updated, "
        f"{s.deals_unchanged:,} unchanged",
        f"  links     {s.category_links_added:,} category links added, "
        f"{s.category_links_removed:,} removed ({s.categories_new:,} new categories)",
        f"  time      {s.seconds:,.2f} s, {s.rows_per_second:,.0f} rows/s "
        f"(foreign keys checked {s.foreign_key_checks})",
    ]
    if s.rejects_file:
        lines.append(f"  rejects   {s.rejects_file}")
    return "\n".join(lines)
