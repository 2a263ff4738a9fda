"""One typed function per query of sql/deal_writes.sql: POST, PATCH and DELETE /deals.

Each request runs them in one transaction. The version check and the write
are one statement; only when it matches nothing does deal_version_and_dates
tell why.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import msgspec

from service.db.catalogue import Connection, Exec, One

INSERT_DEAL = One("insert_deal")
UPDATE_DEAL = One("update_deal")
DEAL_VERSION_AND_DATES = One("deal_version_and_dates")
REPLACE_DEAL_CATEGORIES = Exec("replace_deal_categories")
DELETE_DEAL = One("delete_deal")


class VersionAndDates(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    checkin_date: date
    checkout_date: date


async def insert_deal(
    conn: Connection,
    *,
    deal_id: int | None,
    hotel_id: int,
    room_type: str,
    price_per_night: Decimal,
    original_price: Decimal,
    discount_percent: Decimal,
    checkin_date: date,
    checkout_date: date,
    is_available: bool,
) -> int:
    """The new deal's id."""
    row = await INSERT_DEAL(
        conn,
        deal_id,
        hotel_id,
        room_type,
        price_per_night,
        original_price,
        discount_percent,
        checkin_date,
        checkout_date,
        is_available,
    )
    assert row is not None, "INSERT ... RETURNING gives its row"
    new_id: int = row["id"]
    return new_id


async def update_deal(
    conn: Connection,
    *,
    deal_id: int,
    if_match: int | None,
    version: int | None,
    hotel_id: int | None,
    room_type: str | None,
    price_per_night: Decimal | None,
    original_price: Decimal | None,
    discount_percent: Decimal | None,
    checkin_date: date | None,
    checkout_date: date | None,
    is_available: bool | None,
) -> int | None:
    """The new version, or None when nothing matched (absent, stale or bad dates).

    None in a column leaves it as it is; if_match and version are checked when given.
    """
    row = await UPDATE_DEAL(
        conn,
        deal_id,
        if_match,
        version,
        hotel_id,
        room_type,
        price_per_night,
        original_price,
        discount_percent,
        checkin_date,
        checkout_date,
        is_available,
    )
    return None if row is None else int(row["version"])


async def deal_version_and_dates(conn: Connection, *, deal_id: int) -> VersionAndDates | None:
    row = await DEAL_VERSION_AND_DATES(conn, deal_id)
    if row is None:
        return None
    return VersionAndDates(
        version=row["version"], checkin_date=row["checkin_date"], checkout_date=row["checkout_date"]
    )


async def replace_deal_categories(conn: Connection, *, deal_id: int, names: list[str]) -> None:
    await REPLACE_DEAL_CATEGORIES(conn, deal_id, names)


async def delete_deal(conn: Connection, *, deal_id: int, if_match: int | None) -> bool:
    return await DELETE_DEAL(conn, deal_id, if_match) is not None
