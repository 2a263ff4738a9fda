"""One typed function per query of sql/load.sql, in the order a load runs them.

A query that takes only the connection and returns what its kind returns
(:exec nothing, :execrows the row count, :val a Flag's bool or a Count's int)
is its own function: the lowercase statement object below; the others get a
wrapper that names and types their arguments and results.

The loader's work tables are TEMP tables created inside the load's
transaction (ON COMMIT DROP); create_work_tables() makes them, which is also
what a test needs before it can prepare the queries that read them.
"""

from __future__ import annotations

from typing import Any

import msgspec

from service.db.catalogue import Connection, Exec, ExecRows, Many, One, Value


class Flag(Value):
    """A :val query whose value is a boolean."""

    async def __call__(self, conn: Connection, *args: Any) -> bool:
        flag: bool = await super().__call__(conn, *args)
        return flag


class Count(Value):
    """A :val query whose value is a number of rows."""

    async def __call__(self, conn: Connection, *args: Any) -> int:
        count: int = await super().__call__(conn, *args)
        return count


CONFIGURE_LOAD = Exec("configure_load")
try_load_lock = Flag("try_load_lock")
wait_load_lock = Exec("wait_load_lock")
SET_LOCK_TIMEOUT = Exec("set_lock_timeout")
deals_exist = Flag("deals_exist")
CREATE_WORK_TABLES = tuple(
    Exec(name)
    for name in (
        "create_load_staging",
        "create_load_errors",
        "create_load_rows",
        "create_load_hotels",
        "create_load_links",
        "create_load_category_sets",
        "create_load_changed",
        "create_load_existing",
        "create_load_new_deals",
        "create_load_updated_deals",
        "create_load_events",
    )
)
# How insert_typed_rows types the values (the view load_values): each cast once, which
# raises (asyncpg.DataError) when one does not parse; or each tested before its cast.
create_cast_values = Exec("create_cast_values")
create_tested_values = Exec("create_tested_values")
insert_typed_rows = ExecRows("insert_typed_rows")
find_bad_values = ExecRows("find_bad_values")
count_unexplained_rows = Count("count_unexplained_rows")
find_duplicate_deal_ids = ExecRows("find_duplicate_deal_ids")
drop_rejected_rows = ExecRows("drop_rejected_rows")
RESOLVE_HOTELS = One("resolve_hotels")
FIND_HOTEL_CONFLICTS = Many("find_hotel_conflicts")
REJECT_PHONES = ExecRows("reject_phones")
update_hotels = ExecRows("update_hotels")
insert_hotels = ExecRows("insert_hotels")
insert_load_links = ExecRows("insert_load_links")
insert_categories = ExecRows("insert_categories")
may_skip_row_triggers = Flag("may_skip_row_triggers")
lock_referenced_rows = Count("lock_referenced_rows")
skip_row_triggers = Exec("skip_row_triggers")
may_defer_indexes = Flag("may_defer_indexes")
# A first load's: the secondary indexes of deals and deal_categories go until
# build_deferred_indexes (their definitions kept in load_deferred_indexes).
drop_secondary_indexes = Exec("drop_secondary_indexes")
build_deferred_indexes = Exec("build_deferred_indexes")
find_existing_deals = ExecRows("find_existing_deals")
find_changed_category_sets = ExecRows("find_changed_category_sets")
update_deals = ExecRows("update_deals")
insert_deals = ExecRows("insert_deals")
delete_stale_links = ExecRows("delete_stale_links")
insert_new_links = ExecRows("insert_new_links")
insert_changed_links = ExecRows("insert_changed_links")
# The load's events into load_events (no lock yet): their number.
build_load_events = ExecRows("build_load_events")
# Every work table but load_events, before the feed's order lock is taken.
drop_work_tables = Exec("drop_work_tables")
# The load's events, its last write (it takes the feed's order lock to commit).
insert_load_events = ExecRows("insert_load_events")
count_rejected = Count("count_rejected")
FIRST_PROBLEMS = Many("first_problems")
count_problems = Count("count_problems")
REJECTED_RECORDS = Many("rejected_records")
FIRST_REJECTED_RECORDS = Many("first_rejected_records")
flush_load_statistics = Exec("flush_load_statistics")
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


async def set_lock_timeout(conn: Connection, *, lock_timeout: str) -> None:
    await SET_LOCK_TIMEOUT(conn, lock_timeout)


async def create_work_tables(conn: Connection) -> None:
    for query in CREATE_WORK_TABLES:
        await query(conn)


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


async def first_problems(conn: Connection, *, limit: int) -> list[Problem]:
    rows = await FIRST_PROBLEMS(conn, limit)
    return [
        Problem(record=r["record"], column=r["col"], value=r["value"], reason=r["reason"])
        for r in rows
    ]


def rejected_records(conn: Connection, *, prefetch: int = 2000) -> Any:
    """An async cursor of (record, reasons), in file order; needs an open transaction."""
    return REJECTED_RECORDS.cursor(conn, prefetch=prefetch)


async def first_rejected_records(conn: Connection, *, limit: int) -> list[RejectedRecord]:
    rows = await FIRST_REJECTED_RECORDS(conn, limit)
    return [RejectedRecord(record=r["record"], reasons=r["reasons"]) for r in rows]


async def vacuum_analyze(conn: Connection, *, table: str) -> None:
    """VACUUM (ANALYZE) of one table a load wrote (hotels, deals, categories or
    deal_categories); outside any transaction (after the commit)."""
    await VACUUM_ANALYZE[table](conn)
