"""`deals load`: a deals CSV (shared/spec/deals-csv.md) into the schema, in one transaction.

The file streams through COPY into a TEMP staging table (never whole in
Python memory); every rule of the spec is checked set-based in SQL there;
set-based INSERT ... SELECT statements then write hotels, categories, deals
(updated or inserted by deal_id) and links. Any failure, or the process
dying, rolls the whole load back. Every statement lives in sql/load.sql.

The public API: load_file() returns a LoadSummary or raises a LoadError.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import asyncpg
import msgspec

from service.db import load as sql
from service.db.catalogue import Connection, rowcount
from service.db.events import delete_expired_events
from service.load.errors import (
    BadRows,
    DatabaseUnavailable,
    DatabaseUnreachable,
    LoadBusy,
    LoadError,
    MalformedFile,
    ProblemLine,
    UsageError,
)
from service.load.report import (
    LoadSummary,
    Progress,
    RecordScanner,
    RejectedRow,
    write_rejects,
)
from service.load.source import STAGING_TABLE, BodySource, Source, describe_copy_error
from service.settings import redact_url

__all__ = [
    "BadRows",
    "DatabaseUnavailable",
    "LoadError",
    "LoadSummary",
    "MalformedFile",
    "ProblemLine",
    "UsageError",
    "load_file",
    "load_source",
]

REPORT_LIMIT = 20
REJECTED_LIMIT = 1000  # rejected records listed by number (the count is always exact)
WORK_MEM = "256MB"
APPLICATION_NAME = "deals-load"


async def connect(url: str, *, pooled: bool = False) -> asyncpg.Connection[Any]:
    """pooled: `url` is PgBouncer in transaction mode. The load is one transaction, so its
    advisory xact lock and its ON COMMIT DROP work tables hold there; the startup
    packet may carry application_name only, and no statement is cached (a named
    one would stay behind on a server connection another client gets next)."""
    settings = {
        "application_name": APPLICATION_NAME,
        # a killed loader's backend notices within a second and rolls back
        "client_connection_check_interval": "1000",
    }
    cache = 100  # asyncpg's default
    if pooled:  # PgBouncer closes the server connection of a client that vanishes mid-load
        del settings["client_connection_check_interval"]
        cache = 0
    try:
        return await asyncpg.connect(url, server_settings=settings, statement_cache_size=cache)
    except asyncpg.InvalidParameterValueError:  # a platform without the connection check
        del settings["client_connection_check_interval"]
        return await asyncpg.connect(url, server_settings=settings)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise DatabaseUnreachable(
            f"cannot connect to the database at {redact_url(url)}: {exc}"
        ) from None


def open_rejects(rejects: Path, stack: ExitStack) -> IO[str]:
    """Opened before the load starts, so an unwritable path fails before any work.

    write_rejects flushes and fsyncs before the commit; closing cannot fail after that,
    and when writing failed, its error is the one to report.
    """
    try:
        out = rejects.open("w", encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"{rejects}: cannot write: {exc.strerror or exc}") from None

    def close() -> None:
        with contextlib.suppress(OSError):
            out.close()

    stack.callback(close)
    return out


async def load_source(
    target: str | Connection,
    source: str | Path | Source | BodySource,
    *,
    skip_bad_rows: bool = False,
    rejects: str | Path | None = None,
    if_empty: bool = False,
    progress: Progress | None = None,
    notify: Callable[[str], None] | None = None,
    report_limit: int = REPORT_LIMIT,
    work_mem: str = WORK_MEM,
    row_fk_checks: bool = False,
    events_retention: timedelta = timedelta(days=7),
    lock_wait: float | None = None,
    rejected_rows: list[RejectedRow] | None = None,
    pooled: bool = False,
) -> LoadSummary:
    """Load a deals CSV; return the summary, or raise a LoadError having written nothing.

    source is a file's path (opened here, before anything else), an opened file
    (Source) or a request body (BodySource). target is a database URL or an
    open asyncpg connection that is not inside a transaction (the load commits
    its own). skip_bad_rows loads the good rows; rejects names a file that
    receives every bad row, written before the commit. if_empty loads only
    into an empty deals table. notify gets the "waiting for another load"
    message. row_fk_checks keeps the per-row foreign-key triggers even where
    the role could skip them (see may_skip_row_triggers in sql/load.sql).
    lock_wait bounds, in seconds, the wait for another load to end (LoadBusy
    after it); None waits as long as it takes. rejected_rows, when given,
    receives the first REJECTED_LIMIT rejected records (line and reasons).
    pooled: a `target` URL is PgBouncer in transaction mode (connect()).
    """
    started = time.perf_counter()
    progress = progress or Progress()
    with ExitStack() as stack:
        if isinstance(source, str | Path):
            source = stack.enter_context(Source(Path(source)))
        out = open_rejects(Path(rejects), stack) if rejects is not None else None
        stack.callback(progress.close)
        conn = await connect(target, pooled=pooled) if isinstance(target, str) else target
        watchdog = ConnectionWatchdog(conn)
        try:
            loader = Loader(
                conn,
                source,
                out,
                progress,
                skip_bad_rows,
                report_limit,
                row_fk_checks,
                events_retention,
                rejected_rows,
            )
            summary = await loader.run(
                if_empty=if_empty, notify=notify, work_mem=work_mem, lock_wait=lock_wait
            )
            if tables := changed_tables(summary):
                progress.phase("vacuum")
                await vacuum_after_commit(conn, watchdog, notify, tables)
        except (ConnectionError, asyncpg.ConnectionDoesNotExistError) as exc:
            raise DatabaseUnavailable(f"lost the database connection: {exc}") from None
        except (asyncio.CancelledError, asyncpg.InterfaceError):
            if not watchdog.lost:
                raise
            watchdog.forgive()
            raise DatabaseUnavailable(
                "lost the database connection mid-load (was the server restarted?); "
                "its transaction died with it, nothing was written"
            ) from None
        finally:
            watchdog.stop()
            if isinstance(target, str):
                await conn.close()
    seconds = time.perf_counter() - started
    return msgspec.structs.replace(
        summary,
        seconds=round(seconds, 3),
        rows_per_second=round(summary.rows_read / seconds, 1) if seconds > 0 else 0.0,
        rejects_file=str(rejects) if rejects is not None and not summary.skipped else None,
    )


# The CLI's and the tests' name: a file is the usual source.
load_file = load_source


LOADED_TABLES = ("hotels", "deals", "categories", "deal_categories")


def changed_tables(s: LoadSummary) -> tuple[str, ...]:
    """The tables a committed load wrote to, the ones its VACUUM (ANALYZE) needs:
    a reload that changed nothing vacuums nothing."""
    changed = {
        "hotels": s.hotels_new + s.hotels_updated,
        "deals": s.deals_new + s.deals_updated,
        "categories": s.categories_new,
        "deal_categories": s.category_links_added + s.category_links_removed,
    }
    return () if s.skipped else tuple(t for t in LOADED_TABLES if changed[t])


async def vacuum_after_commit(
    conn: Connection,
    watchdog: ConnectionWatchdog,
    notify: Callable[[str], None] | None,
    tables: tuple[str, ...] = LOADED_TABLES,
) -> bool:
    """VACUUM (ANALYZE) the tables the load wrote; False, with a warning, when that fails.

    The load is committed by then: a failure here (the server restarting, a
    lock, a cancel) must not report a failed load, only the step to run by hand.
    """
    try:
        await sql.flush_load_statistics(conn)
        for table in tables:
            await sql.vacuum_analyze(conn, table=table)
    except asyncio.CancelledError:
        if not watchdog.lost:
            raise
        watchdog.forgive()
        failure = "the connection was lost"
    except Exception as exc:  # whatever it is, the data is in: say so and go on
        failure = f"{exc.__class__.__name__}: {exc}"
    else:
        return True
    if notify is not None:
        notify(
            f"warning: the load is committed, but its VACUUM (ANALYZE) failed ({failure}); "
            f"run it by hand: VACUUM (ANALYZE) {', '.join(tables)}"
        )
    return False


class ConnectionWatchdog:
    """Cancels the load when its connection dies.

    asyncpg's COPY waits for the socket to accept more data and is never woken
    when the server goes away mid-COPY (seen when the server restarts under a
    load): the load would hang. Termination listeners are told; the load is
    cancelled, and reported as a lost connection.
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lost = False
        self.task = asyncio.current_task()
        conn.add_termination_listener(self._terminated)

    def _terminated(self, _conn: Any) -> None:
        self.lost = True
        if self.task is not None:
            self.task.cancel()

    def forgive(self) -> None:
        """The cancellation became a DatabaseUnavailable: withdraw the cancel request."""
        if self.task is not None and self.task.cancelling():
            self.task.uncancel()

    def stop(self) -> None:
        self.conn.remove_termination_listener(self._terminated)


class Loader:
    """One load, step by step inside one transaction; each step is a query of sql/load.sql."""

    def __init__(
        self,
        conn: Connection,
        source: Source | BodySource,
        out: IO[str] | None,
        progress: Progress,
        skip_bad_rows: bool,
        report_limit: int,
        row_fk_checks: bool = False,
        events_retention: timedelta = timedelta(days=7),
        rejected_rows: list[RejectedRow] | None = None,
    ) -> None:
        self.conn = conn
        self.rejected_rows = rejected_rows
        self.events_retention = events_retention
        self.source = source
        self.path = source.path  # read again only to find the lines of bad records
        self.label = source.label  # what messages call it
        self.out = out
        self.progress = progress
        self.skip_bad_rows = skip_bad_rows
        self.report_limit = report_limit
        self.row_fk_checks = row_fk_checks

    async def run(
        self,
        *,
        if_empty: bool,
        notify: Callable[[str], None] | None,
        work_mem: str,
        lock_wait: float | None = None,
    ) -> LoadSummary:
        conn, progress = self.conn, self.progress
        async with conn.transaction():
            await sql.configure_load(conn, work_mem=work_mem)
            if not await sql.try_load_lock(conn):
                if notify is not None:
                    notify("another load is running; waiting for it")
                await self.wait_for_lock(lock_wait)
            if if_empty and await sql.deals_exist(conn):
                return LoadSummary(file=self.label, skipped=True)
            await sql.create_work_tables(conn)

            progress.phase("reading")
            rows_read = await self.copy()

            progress.phase("checking")
            rejected, disagreeing = await self.check(rows_read)

            progress.phase("hotels")
            hotels_updated, hotels_new = await self.write_hotels()
            await sql.insert_load_links(conn)
            categories_new = await sql.insert_categories(conn)

            progress.phase("deals")
            # a first load builds the secondary indexes after the data (may_defer_indexes);
            # their ACCESS EXCLUSIVE lock is taken before any row lock of the load
            deferred = await sql.may_defer_indexes(conn)
            if deferred:
                await sql.drop_secondary_indexes(conn)
            fk_checks = await self.choose_fk_checks()
            deals_new, deals_updated = await self.write_deals(rows_read - rejected)

            progress.phase("links")
            links_removed = await sql.delete_stale_links(conn)
            links_added = await sql.insert_new_links(conn)
            links_added += await sql.insert_changed_links(conn)
            if deferred:
                progress.phase("indexes")
                await sql.build_deferred_indexes(conn)

            progress.phase("events")
            # Built first; then the expired ones go, outside the feed's order lock, at
            # least twice as many as this load adds (so the retention keeps up); then
            # the load's own are appended, its last write: the order lock is held from
            # there to the commit (sql/events.sql).
            events = await sql.build_load_events(conn)
            await delete_expired_events(
                conn, retention=self.events_retention, limit=2 * events + 1000
            )
            await sql.drop_work_tables(conn)  # not at the commit, which the lock spans
            if events:  # a load that changed nothing takes no lock and wakes no one
                progress.phase("feed")  # the order lock is held from here to the commit's end
                await sql.insert_load_events(conn)
            progress.phase("commit")
        loaded = rows_read - rejected
        return LoadSummary(
            file=self.label,
            rows_read=rows_read,
            rows_loaded=loaded,
            rows_rejected=rejected,
            hotels_new=hotels_new,
            hotels_updated=hotels_updated,
            hotels_disagreeing=disagreeing,
            deals_new=deals_new,
            deals_updated=deals_updated,
            deals_unchanged=loaded - deals_new - deals_updated,
            categories_new=categories_new,
            category_links_added=links_added,
            category_links_removed=links_removed,
            foreign_key_checks=fk_checks,
        )

    async def wait_for_lock(self, seconds: float | None) -> None:
        """Wait for the load holding the lock to end: at most `seconds` when given."""
        if seconds is None:
            await sql.wait_load_lock(self.conn)
            return
        await sql.set_lock_timeout(self.conn, lock_timeout=f"{max(1, round(seconds * 1000))}ms")
        try:
            await sql.wait_load_lock(self.conn)
        except asyncpg.LockNotAvailableError:
            raise LoadBusy(
                f"another load has been running for the {seconds:g} s this one may wait; "
                "nothing was written: try again later"
            ) from None
        await sql.set_lock_timeout(self.conn, lock_timeout="0")

    async def choose_fk_checks(self) -> str:
        """Skip the per-row foreign-key triggers of the deals and links writes when allowed.

        Those triggers re-check, one row at a time, what the load's joins already
        proved; at 1M rows they cost three seconds of every four spent writing
        links. The load holds their locks itself (lock_referenced_rows).
        """
        if self.row_fk_checks or not await sql.may_skip_row_triggers(self.conn):
            return "per-row"
        await sql.lock_referenced_rows(self.conn)
        await sql.skip_row_triggers(self.conn)
        return "set-based"

    async def copy(self) -> int:
        """Stream the data bytes into load_staging; return the records read."""
        try:
            status = await self.conn.copy_to_table(
                STAGING_TABLE,
                source=self.source.chunks(self.progress),
                columns=self.source.header,
                format="csv",
            )
        except (asyncpg.DataError, asyncpg.BadCopyFileFormatError) as exc:
            raise MalformedFile(describe_copy_error(self.path, exc, self.label)) from None
        return rowcount(status)

    async def check(self, rows_read: int) -> tuple[int, int]:
        """Every rule, set-based; returns (rejected rows, disagreeing phones).

        Strict mode raises BadRows when any row is bad; either way the rejects
        file, when asked for, has every bad row before anything is written.
        """
        conn = self.conn
        await self.type_rows()
        problems = await sql.find_bad_values(conn)
        if unexplained := await sql.count_unexplained_rows(conn):
            raise LoadError(
                f"{self.label}: {unexplained:,} rows failed the typed check with no rule naming "
                "a problem (insert_typed_rows and find_bad_values disagree: a bug); "
                "nothing was written"
            )
        problems += await sql.find_duplicate_deal_ids(conn)
        if problems:
            await sql.drop_rejected_rows(conn)
        _phones, disagreeing = await sql.resolve_hotels(conn)
        problems += await reject_hotel_conflicts(conn, self.path)
        rejected = await sql.count_rejected(conn) if problems else 0
        if self.out is not None:
            self.progress.phase("rejects")
            reasons = sql.rejected_records(conn) if rejected else _nothing()
            try:
                await write_rejects(self.out, self.path, self.source.header, reasons)
            except OSError as exc:
                raise UsageError(
                    f"{self.out.name}: cannot write the rejects: {exc.strerror or exc}"
                ) from None
        if rejected and not self.skip_bad_rows:
            raise await bad_rows(
                conn, self.path, rows_read, rejected, self.report_limit, self.label
            )
        if rejected and self.rejected_rows is not None:
            self.rejected_rows.extend(await first_rejected(conn, self.path, REJECTED_LIMIT))
        return rejected, disagreeing

    async def type_rows(self) -> None:
        """load_staging typed into load_rows: each value cast once (create_cast_values)
        in a savepoint; when one does not parse, back to the savepoint and typed again
        with each value tested before its cast (create_tested_values)."""
        conn = self.conn
        try:
            async with conn.transaction():
                await sql.create_cast_values(conn)
                await sql.insert_typed_rows(conn)
        except asyncpg.DataError:
            await sql.create_tested_values(conn)
            await sql.insert_typed_rows(conn)

    async def write_deals(self, loaded: int) -> tuple[int, int]:
        """(new, updated) deals of the `loaded` good records: changed ones updated in
        place, new ones inserted (no insert when the database has every one: a reload)."""
        conn = self.conn
        if existing := await sql.find_existing_deals(conn):
            await sql.find_changed_category_sets(conn)
            updated = await sql.update_deals(conn)
        else:
            updated = 0
        if existing == loaded:  # deal_id is unique in load_rows: none is new
            return 0, updated
        try:
            return await sql.insert_deals(conn), updated
        except asyncpg.UniqueViolationError as exc:
            raise LoadError(
                f"{self.label}: deals: {exc.detail or exc}, created by someone else during the "
                "load; nothing was written: run the load again"
            ) from None

    async def write_hotels(self) -> tuple[int, int]:
        """(updated, new) hotels."""
        try:
            return await sql.update_hotels(self.conn), await sql.insert_hotels(self.conn)
        except asyncpg.UniqueViolationError as exc:
            # e.g. two phones of the database swapping names: no order of updates works
            raise LoadError(
                f"{self.label}: hotels: {exc.detail or exc}; two hotels would share a "
                "(name, city, country): fix the file or the hotels table"
            ) from None


async def _nothing() -> AsyncIterator[Any]:
    return
    yield


async def reject_hotel_conflicts(conn: Connection, path: Path) -> int:
    """Reject the rows of phones whose hotel (name, city, country) another phone keeps.

    Rejecting a phone can hand its database hotel's old name back into play,
    so this repeats until no conflict is left. Returns the problems added.
    """
    added = 0
    while conflicts := await sql.find_hotel_conflicts(conn):
        keepers = sorted({c.keeper_record for c in conflicts if c.keeper_record is not None})
        with RecordScanner(path) as scanner:
            lines = {record: line for record, line, _ in scanner.find(keepers)}
        reasons = []
        for c in conflicts:
            if c.keeper_record is None:
                keeper = f"hotel {c.keeper_hotel_id} (phone {c.keeper_phone}) in the database"
            else:
                keeper = f"phone {c.keeper_phone} (line {lines.get(c.keeper_record, '?')})"
            reasons.append(f"hotel ({c.name}, {c.city}, {c.country}) belongs to {keeper}")
        added += await sql.reject_phones(conn, phones=[c.phone for c in conflicts], reasons=reasons)
    return added


async def first_rejected(conn: Connection, path: Path, limit: int) -> list[RejectedRow]:
    """The first `limit` rejected records in file order: line and reasons."""
    reasons = await sql.first_rejected_records(conn, limit=limit)
    with RecordScanner(path) as scanner:
        lines = {r: line for r, line, _ in scanner.find([row.record for row in reasons])}
    return [RejectedRow(line=lines.get(row.record), reason=row.reasons) for row in reasons]


async def bad_rows(
    conn: Connection, path: Path, rows_read: int, rejected: int, limit: int, label: str
) -> BadRows:
    problems = await sql.first_problems(conn, limit=limit)
    total = await sql.count_problems(conn)
    with RecordScanner(path) as scanner:
        lines = {r: line for r, line, _ in scanner.find(sorted({p.record for p in problems}))}
    shown = [
        ProblemLine(line=lines.get(p.record), column=p.column, value=p.value, reason=p.reason)
        for p in problems
    ]
    return BadRows(
        f"{label}: {rejected:,} of {rows_read:,} rows are bad ({total:,} problems); "
        "nothing was written",
        shown,
        total,
        rejected,
    )
