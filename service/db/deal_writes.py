"""One typed function per query of sql/deal_writes.sql: POST, PATCH and DELETE /deals.

`id` is always the service's own id of a deal; `deal_id` the upstream one.

Each request runs them in one transaction. The version check and the write
are one statement; only when it matches nothing does deal_version_and_dates
tell why.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

import msgspec

from service.db.catalogue import Connection, One, Value
from service.types import DEAL_VALUES

INSERT_DEAL = One("insert_deal")
UPDATE_DEAL = One("update_deal")
DEAL_VERSION_AND_DATES = One("deal_version_and_dates")
REPLACE_DEAL_CATEGORIES = Value("replace_deal_categories")
BUMP_DEAL_VERSION = One("bump_deal_version")
DELETE_DEAL = One("delete_deal")

# A deal's own columns, in the $n order of insert_deal ($2-$9) and update_deal ($4-$11).
DEAL_COLUMNS = ("hotel_id", *DEAL_VALUES)


class VersionAndDates(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    checkin_date: date
    checkout_date: date


async def insert_deal(conn: Connection, *, deal_id: int | None, columns: Mapping[str, Any]) -> int:
    """The new deal's id; `columns` holds every name of DEAL_COLUMNS."""
    row = await INSERT_DEAL(conn, deal_id, *(columns[name] for name in DEAL_COLUMNS))
    assert row is not None, "INSERT ... RETURNING gives its row"
    new_id: int = row["id"]
    return new_id


async def update_deal(
    conn: Connection,
    *,
    id: int,
    if_match: int | None,
    version: int | None,
    columns: Mapping[str, Any],
) -> int | None:
    """The new version, or None when nothing matched (absent, stale, bad dates, or no change).

    `columns` holds the columns that change; the others stay as they are.
    if_match and version are checked when given.
    """
    row = await UPDATE_DEAL(
        conn, id, if_match, version, *(columns.get(name) for name in DEAL_COLUMNS)
    )
    return None if row is None else int(row["version"])


async def deal_version_and_dates(conn: Connection, *, id: int) -> VersionAndDates | None:
    row = await DEAL_VERSION_AND_DATES(conn, id)
    if row is None:
        return None
    return VersionAndDates(
        version=row["version"], checkin_date=row["checkin_date"], checkout_date=row["checkout_date"]
    )


async def replace_deal_categories(conn: Connection, *, id: int, names: list[str]) -> int:
    """The number of links dropped and added: 0 when the deal had exactly these."""
    changed: int = await REPLACE_DEAL_CATEGORIES(conn, id, names)
    return changed


async def bump_deal_version(conn: Connection, *, id: int) -> int:
    """The deal's new version, for a change that touched only its categories."""
    row = await BUMP_DEAL_VERSION(conn, id)
    assert row is not None, "the deal was just read in this transaction"
    return int(row["version"])


class DeletedDeal(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    deal_id: int | None
    version: int


async def delete_deal(conn: Connection, *, id: int, if_match: int | None) -> DeletedDeal | None:
    """The deal deleted (its ids and last version), or None when nothing matched."""
    row = await DELETE_DEAL(conn, id, if_match)
    if row is None:
        return None
    return DeletedDeal(id=row["id"], deal_id=row["deal_id"], version=row["version"])
