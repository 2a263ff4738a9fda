"""One typed function per query of sql/load.sql, in the order a load runs them.

The loader's work tables are TEMP tables created inside the load's
transaction (ON COMMIT DROP); create_work_tables() makes them, which is also
what a test needs before it can prepare the queries that read them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from service.db.catalogue import Connection, Exec, ExecRows, Many, One, Value

CONFIGURE_LOAD = Exec("configure_load")
TRY_LOAD_LOCK = Value("try_load_lock")
WAIT_LOAD_LOCK = Exec("wait_load_lock")
SET_LOCK_TIMEOUT = Exec("set_lock_timeout")
DEALS_EXIST = Value("deals_exist")
CREATE_WORK_TABLES = tuple(
    Exec(name)
    for name in (
        "create_load_staging",
        "create_load_errors",
        "create_load_rows",
        "create_load_hotels",
        "create_load_links",
        "create_load_changed",
        "create_load_existing",
        "create_load_new_deals",
        "create_load_updated_deals",
        "create_load_events",
    )
)
INSERT_TYPED_ROWS = ExecRows("insert_typed_rows")
FIND_BAD_VALUES = ExecRows("find_bad_values")
COUNT_UNEXPLAINED_ROWS = Value("count_unexplained_rows")
FIND_DUPLICATE_DEAL_IDS = ExecRows("find_duplicate_deal_ids")
DROP_REJECTED_ROWS = ExecRows("drop_rejected_rows")
RESOLVE_HOTELS = One("resolve_hotels")
FIND_HOTEL_CONFLICTS = Many("find_hotel_conflicts")
REJECT_PHONES = ExecRows("reject_phones")
UPDATE_HOTELS = ExecRows("update_hotels")
INSERT_HOTELS = ExecRows("insert_hotels")
INSERT_LOAD_LINKS = ExecRows("insert_load_links")
INSERT_CATEGORIES = ExecRows("insert_categories")
MAY_SKIP_ROW_TRIGGERS = Value("may_skip_row_triggers")
LOCK_REFERENCED_ROWS = Value("lock_referenced_rows")
SKIP_ROW_TRIGGERS = Exec("skip_row_triggers")
MAY_DEFER_INDEXES = Value("may_defer_indexes")
DROP_SECONDARY_INDEXES = Exec("drop_secondary_indexes")
BUILD_DEFERRED_INDEXES = Exec("build_deferred_indexes")
FIND_EXISTING_DEALS = ExecRows("find_existing_deals")
FIND_CHANGED_CATEGORY_SETS = ExecRows("find_changed_category_sets")
UPDATE_DEALS = ExecRows("update_deals")
INSERT_DEALS = ExecRows("insert_deals")
DELETE_STALE_LINKS = ExecRows("delete_stale_links")
INSERT_NEW_LINKS = ExecRows("insert_new_links")
INSERT_CHANGED_LINKS = ExecRows("insert_changed_links")
BUILD_LOAD_EVENTS = ExecRows("build_load_events")
DROP_WORK_TABLES = Exec("drop_work_tables")
INSERT_LOAD_EVENTS = ExecRows("insert_load_events")
COUNT_REJECTED = Value("count_rejected")
FIRST_PROBLEMS = Many("first_problems")
COUNT_PROBLEMS = Value("count_problems")
REJECTED_RECORDS = Many("rejected_records")
FIRST_REJECTED_RECORDS = Many("first_rejected_records")
FLUSH_LOAD_STATISTICS = Exec("flush_load_statistics")
VACUUM_ANALYZE = {
    table: Exec(f"vacuum_analyze_{table}")
    for table in ("hotels", "deals", "categories", "deal_categories")
}


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One bad value: record is the data record's ordinal, not yet its file line."""

    record: int
    column: str
    value: str | None
    reason: str


class RejectedRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A rejected record (its ordinal) and its reasons joined by '; '."""

    record: int
    reasons: str


class HotelConflict(msgspec.Struct, frozen=True, kw_only=True):
    """A phone whose hotel (name, city, country) another phone keeps."""

    phone: str
    name: str
    city: str
    country: str
    record: int  # the record whose values the phone's hotel would take
    keeper_phone: str
    keeper_record: int | None  # None: the keeper is a hotel of the database
    keeper_hotel_id: int | None


async def configure_load(conn: Connection, *, work_mem: str) -> None:
    await CONFIGURE_LOAD(conn, work_mem)


async def try_load_lock(conn: Connection) -> bool:
    taken: bool = await TRY_LOAD_LOCK(conn)
    return taken


async def wait_load_lock(conn: Connection) -> None:
    await WAIT_LOAD_LOCK(conn)


async def set_lock_timeout(conn: Connection, *, lock_timeout: str) -> None:
    await SET_LOCK_TIMEOUT(conn, lock_timeout)


async def deals_exist(conn: Connection) -> bool:
    exist: bool = await DEALS_EXIST(conn)
    return exist


async def create_work_tables(conn: Connection) -> None:
    for query in CREATE_WORK_TABLES:
        await query(conn)


async def insert_typed_rows(conn: Connection) -> int:
    return await INSERT_TYPED_ROWS(conn)


async def find_bad_values(conn: Connection) -> int:
    return await FIND_BAD_VALUES(conn)


async def find_duplicate_deal_ids(conn: Connection) -> int:
    return await FIND_DUPLICATE_DEAL_IDS(conn)


async def count_unexplained_rows(conn: Connection) -> int:
    count: int = await COUNT_UNEXPLAINED_ROWS(conn)
    return count


async def drop_rejected_rows(conn: Connection) -> int:
    return await DROP_REJECTED_ROWS(conn)


async def resolve_hotels(conn: Connection) -> tuple[int, int]:
    """(phones, phones whose records disagree on the hotel's values)."""
    row = await RESOLVE_HOTELS(conn)
    assert row is not None
    return row["phones"], row["disagreeing"]


async def find_hotel_conflicts(conn: Connection) -> list[HotelConflict]:
    rows = await FIND_HOTEL_CONFLICTS(conn)
    return [HotelConflict(**dict(row)) for row in rows]


async def reject_phones(conn: Connection, *, phones: list[str], reasons: list[str]) -> int:
    return await REJECT_PHONES(conn, phones, reasons)


async def update_hotels(conn: Connection) -> int:
    return await UPDATE_HOTELS(conn)


async def insert_hotels(conn: Connection) -> int:
    return await INSERT_HOTELS(conn)


async def insert_load_links(conn: Connection) -> int:
    return await INSERT_LOAD_LINKS(conn)


async def insert_categories(conn: Connection) -> int:
    return await INSERT_CATEGORIES(conn)


async def may_skip_row_triggers(conn: Connection) -> bool:
    may: bool = await MAY_SKIP_ROW_TRIGGERS(conn)
    return may


async def lock_referenced_rows(conn: Connection) -> int:
    locked: int = await LOCK_REFERENCED_ROWS(conn)
    return locked


async def skip_row_triggers(conn: Connection) -> None:
    await SKIP_ROW_TRIGGERS(conn)


async def may_defer_indexes(conn: Connection) -> bool:
    may: bool = await MAY_DEFER_INDEXES(conn)
    return may


async def drop_secondary_indexes(conn: Connection) -> None:
    """A first load's: the secondary indexes of deals and deal_categories go until
    build_deferred_indexes (their definitions kept in load_deferred_indexes)."""
    await DROP_SECONDARY_INDEXES(conn)


async def build_deferred_indexes(conn: Connection) -> None:
    await BUILD_DEFERRED_INDEXES(conn)


async def find_existing_deals(conn: Connection) -> int:
    return await FIND_EXISTING_DEALS(conn)


async def find_changed_category_sets(conn: Connection) -> int:
    return await FIND_CHANGED_CATEGORY_SETS(conn)


async def update_deals(conn: Connection) -> int:
    return await UPDATE_DEALS(conn)


async def insert_deals(conn: Connection) -> int:
    return await INSERT_DEALS(conn)


async def delete_stale_links(conn: Connection) -> int:
    return await DELETE_STALE_LINKS(conn)


async def insert_new_links(conn: Connection) -> int:
    return await INSERT_NEW_LINKS(conn)


async def insert_changed_links(conn: Connection) -> int:
    return await INSERT_CHANGED_LINKS(conn)


async def build_load_events(conn: Connection) -> int:
    """The load's events into load_events (no lock yet): their number."""
    return await BUILD_LOAD_EVENTS(conn)


async def drop_work_tables(conn: Connection) -> None:
    """Every work table but load_events, before the feed's order lock is taken."""
    await DROP_WORK_TABLES(conn)


async def insert_load_events(conn: Connection) -> int:
    """The load's events, its last write (it takes the feed's order lock to commit)."""
    return await INSERT_LOAD_EVENTS(conn)


async def count_rejected(conn: Connection) -> int:
    count: int = await COUNT_REJECTED(conn)
    return count


async def first_problems(conn: Connection, *, limit: int) -> list[Problem]:
    rows = await FIRST_PROBLEMS(conn, limit)
    return [
        Problem(record=r["record"], column=r["col"], value=r["value"], reason=r["reason"])
        for r in rows
    ]


async def count_problems(conn: Connection) -> int:
    count: int = await COUNT_PROBLEMS(conn)
    return count


def rejected_records(conn: Connection, *, prefetch: int = 2000) -> Any:
    """An async cursor of (record, reasons), in file order; needs an open transaction."""
    return REJECTED_RECORDS.cursor(conn, prefetch=prefetch)


async def first_rejected_records(conn: Connection, *, limit: int) -> list[RejectedRecord]:
    rows = await FIRST_REJECTED_RECORDS(conn, limit)
    return [RejectedRecord(record=r["record"], reasons=r["reasons"]) for r in rows]


async def flush_load_statistics(conn: Connection) -> None:
    await FLUSH_LOAD_STATISTICS(conn)


async def vacuum_analyze(conn: Connection, *, table: str) -> None:
    """VACUUM (ANALYZE) of one table a load wrote (hotels, deals, categories or
    deal_categories); outside any transaction (after the commit)."""
    await VACUUM_ANALYZE[table](conn)
