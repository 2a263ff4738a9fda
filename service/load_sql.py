"""One typed function per query of sql/load.sql, in the order a load runs them.

The loader's work tables are TEMP tables created inside the load's
transaction (ON COMMIT DROP); create_work_tables() makes them, which is also
what a test needs before it can prepare the queries that read them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec

from service.sqlcat import q

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"

CONFIGURE_LOAD = q("configure_load")
TRY_LOAD_LOCK = q("try_load_lock")
WAIT_LOAD_LOCK = q("wait_load_lock")
DEALS_EXIST = q("deals_exist")
CREATE_WORK_TABLES = tuple(
    q(name)
    for name in (
        "create_load_staging",
        "create_load_errors",
        "create_load_rows",
        "create_load_hotels",
        "create_load_links",
        "create_load_changed",
        "create_load_existing",
        "create_load_new_deals",
    )
)
INSERT_TYPED_ROWS = q("insert_typed_rows")
FIND_BAD_VALUES = q("find_bad_values")
COUNT_UNEXPLAINED_ROWS = q("count_unexplained_rows")
FIND_DUPLICATE_DEAL_IDS = q("find_duplicate_deal_ids")
DROP_REJECTED_ROWS = q("drop_rejected_rows")
RESOLVE_HOTELS = q("resolve_hotels")
FIND_HOTEL_CONFLICTS = q("find_hotel_conflicts")
REJECT_PHONES = q("reject_phones")
UPDATE_HOTELS = q("update_hotels")
INSERT_HOTELS = q("insert_hotels")
INSERT_LOAD_LINKS = q("insert_load_links")
INSERT_CATEGORIES = q("insert_categories")
MAY_SKIP_ROW_TRIGGERS = q("may_skip_row_triggers")
LOCK_REFERENCED_ROWS = q("lock_referenced_rows")
SKIP_ROW_TRIGGERS = q("skip_row_triggers")
FIND_EXISTING_DEALS = q("find_existing_deals")
FIND_CHANGED_CATEGORY_SETS = q("find_changed_category_sets")
UPDATE_DEALS = q("update_deals")
INSERT_DEALS = q("insert_deals")
DELETE_STALE_LINKS = q("delete_stale_links")
INSERT_NEW_LINKS = q("insert_new_links")
INSERT_CHANGED_LINKS = q("insert_changed_links")
COUNT_REJECTED = q("count_rejected")
FIRST_PROBLEMS = q("first_problems")
COUNT_PROBLEMS = q("count_problems")
REJECTED_RECORDS = q("rejected_records")
ANALYZE_LOADED_TABLES = q("analyze_loaded_tables")


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """One bad value: record is the data record's ordinal, not yet its file line."""

    record: int
    column: str
    value: str | None
    reason: str


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


def rowcount(status: str) -> int:
    """The row count of a command status such as 'INSERT 0 42' or 'DELETE 3'."""
    return int(status.rsplit(" ", 1)[-1])


async def configure_load(conn: Connection, *, work_mem: str) -> None:
    await conn.execute(CONFIGURE_LOAD.sql, work_mem)


async def try_load_lock(conn: Connection) -> bool:
    taken: bool = await conn.fetchval(TRY_LOAD_LOCK.sql)
    return taken


async def wait_load_lock(conn: Connection) -> None:
    await conn.execute(WAIT_LOAD_LOCK.sql)


async def deals_exist(conn: Connection) -> bool:
    exist: bool = await conn.fetchval(DEALS_EXIST.sql)
    return exist


async def create_work_tables(conn: Connection) -> None:
    for query in CREATE_WORK_TABLES:
        await conn.execute(query.sql)


async def insert_typed_rows(conn: Connection) -> int:
    return rowcount(await conn.execute(INSERT_TYPED_ROWS.sql))


async def find_bad_values(conn: Connection) -> int:
    return rowcount(await conn.execute(FIND_BAD_VALUES.sql))


async def find_duplicate_deal_ids(conn: Connection) -> int:
    return rowcount(await conn.execute(FIND_DUPLICATE_DEAL_IDS.sql))


async def count_unexplained_rows(conn: Connection) -> int:
    count: int = await conn.fetchval(COUNT_UNEXPLAINED_ROWS.sql)
    return count


async def drop_rejected_rows(conn: Connection) -> int:
    return rowcount(await conn.execute(DROP_REJECTED_ROWS.sql))


async def resolve_hotels(conn: Connection) -> tuple[int, int]:
    """(phones, phones whose records disagree on the hotel's values)."""
    row = await conn.fetchrow(RESOLVE_HOTELS.sql)
    assert row is not None
    return row["phones"], row["disagreeing"]


async def find_hotel_conflicts(conn: Connection) -> list[HotelConflict]:
    rows = await conn.fetch(FIND_HOTEL_CONFLICTS.sql)
    return [HotelConflict(**dict(row)) for row in rows]


async def reject_phones(conn: Connection, *, phones: list[str], reasons: list[str]) -> int:
    return rowcount(await conn.execute(REJECT_PHONES.sql, phones, reasons))


async def update_hotels(conn: Connection) -> int:
    return rowcount(await conn.execute(UPDATE_HOTELS.sql))


async def insert_hotels(conn: Connection) -> int:
    return rowcount(await conn.execute(INSERT_HOTELS.sql))


async def insert_load_links(conn: Connection) -> int:
    return rowcount(await conn.execute(INSERT_LOAD_LINKS.sql))


async def insert_categories(conn: Connection) -> int:
    return rowcount(await conn.execute(INSERT_CATEGORIES.sql))


async def may_skip_row_triggers(conn: Connection) -> bool:
    may: bool = await conn.fetchval(MAY_SKIP_ROW_TRIGGERS.sql)
    return may


async def lock_referenced_rows(conn: Connection) -> int:
    locked: int = await conn.fetchval(LOCK_REFERENCED_ROWS.sql)
    return locked


async def skip_row_triggers(conn: Connection) -> None:
    await conn.execute(SKIP_ROW_TRIGGERS.sql)


async def find_existing_deals(conn: Connection) -> int:
    return rowcount(await conn.execute(FIND_EXISTING_DEALS.sql))


async def find_changed_category_sets(conn: Connection) -> int:
    return rowcount(await conn.execute(FIND_CHANGED_CATEGORY_SETS.sql))


async def update_deals(conn: Connection) -> int:
    return rowcount(await conn.execute(UPDATE_DEALS.sql))


async def insert_deals(conn: Connection) -> int:
    return rowcount(await conn.execute(INSERT_DEALS.sql))


async def delete_stale_links(conn: Connection) -> int:
    return rowcount(await conn.execute(DELETE_STALE_LINKS.sql))


async def insert_new_links(conn: Connection) -> int:
    return rowcount(await conn.execute(INSERT_NEW_LINKS.sql))


async def insert_changed_links(conn: Connection) -> int:
    return rowcount(await conn.execute(INSERT_CHANGED_LINKS.sql))


async def count_rejected(conn: Connection) -> int:
    count: int = await conn.fetchval(COUNT_REJECTED.sql)
    return count


async def first_problems(conn: Connection, *, limit: int) -> list[Problem]:
    rows = await conn.fetch(FIRST_PROBLEMS.sql, limit)
    return [
        Problem(record=r["record"], column=r["col"], value=r["value"], reason=r["reason"])
        for r in rows
    ]


async def count_problems(conn: Connection) -> int:
    count: int = await conn.fetchval(COUNT_PROBLEMS.sql)
    return count


def rejected_records(conn: Connection, *, prefetch: int = 2000) -> Any:
    """An async cursor of (record, reasons), in file order; needs an open transaction."""
    return conn.cursor(REJECTED_RECORDS.sql, prefetch=prefetch)


async def analyze_loaded_tables(conn: Connection) -> None:
    await conn.execute(ANALYZE_LOADED_TABLES.sql)
