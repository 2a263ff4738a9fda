"""One typed function per deal read query of sql/deals.sql.

Each takes a connection (a pooled one from Database.connection(), or the
transaction's in a write handler) and keyword-only parameters in $n order;
`filters` stands for $1-$6 (params.DealFilters). A page is one statement:
the hotel is joined and the category names aggregated in SQL.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from service.db import Connection
from service.models import Deal, deal_from_row
from service.paging import estimate_rows
from service.params import DealFilters
from service.sqlcat import q

GET_DEAL = q("get_deal")
LIST_DEALS_BY_ID = q("list_deals_by_id")
LIST_DEALS_BY_PRICE = q("list_deals_by_price")
LIST_DEALS_BY_PRICE_DESC = q("list_deals_by_price_desc")
LIST_DEALS_BY_CREATED_AT = q("list_deals_by_created_at")
LIST_DEALS_BY_CREATED_AT_DESC = q("list_deals_by_created_at_desc")
COUNT_DEALS = q("count_deals")
COUNT_DEALS_IN_CATEGORY = q("count_deals_in_category")


async def get_deal(conn: Connection, *, deal_id: int) -> Deal | None:
    row = await conn.fetchrow(GET_DEAL.sql, deal_id)
    return None if row is None else deal_from_row(row)


async def list_deals_by_id(
    conn: Connection, *, filters: DealFilters, after_id: int | None, limit: int, skip: int
) -> list[Deal]:
    rows = await conn.fetch(LIST_DEALS_BY_ID.sql, *filters.args(), after_id, limit, skip)
    return [deal_from_row(row) for row in rows]


async def list_deals_by_price(
    conn: Connection,
    *,
    filters: DealFilters,
    after_price: Decimal | None,
    after_id: int | None,
    limit: int,
    skip: int,
) -> list[Deal]:
    rows = await conn.fetch(
        LIST_DEALS_BY_PRICE.sql, *filters.args(), after_price, after_id, limit, skip
    )
    return [deal_from_row(row) for row in rows]


async def list_deals_by_price_desc(
    conn: Connection,
    *,
    filters: DealFilters,
    before_price: Decimal | None,
    before_id: int | None,
    limit: int,
    skip: int,
) -> list[Deal]:
    rows = await conn.fetch(
        LIST_DEALS_BY_PRICE_DESC.sql, *filters.args(), before_price, before_id, limit, skip
    )
    return [deal_from_row(row) for row in rows]


async def list_deals_by_created_at(
    conn: Connection,
    *,
    filters: DealFilters,
    after_created_at: datetime | None,
    after_id: int | None,
    limit: int,
    skip: int,
) -> list[Deal]:
    rows = await conn.fetch(
        LIST_DEALS_BY_CREATED_AT.sql, *filters.args(), after_created_at, after_id, limit, skip
    )
    return [deal_from_row(row) for row in rows]


async def list_deals_by_created_at_desc(
    conn: Connection,
    *,
    filters: DealFilters,
    before_created_at: datetime | None,
    before_id: int | None,
    limit: int,
    skip: int,
) -> list[Deal]:
    rows = await conn.fetch(
        LIST_DEALS_BY_CREATED_AT_DESC.sql,
        *filters.args(),
        before_created_at,
        before_id,
        limit,
        skip,
    )
    return [deal_from_row(row) for row in rows]


async def count_deals(conn: Connection, *, filters: DealFilters) -> int:
    count: int = await conn.fetchval(COUNT_DEALS.sql, *filters.args())
    return count


async def count_deals_in_category(conn: Connection, *, filters: DealFilters) -> int:
    """count_deals for filters with a category (filters.category is not None)."""
    count: int = await conn.fetchval(COUNT_DEALS_IN_CATEGORY.sql, *filters.args())
    return count


async def estimate_deals(conn: Connection, *, filters: DealFilters) -> int:
    """The planner's estimate of count_deals: EXPLAIN of list_deals_by_id with no limit."""
    return await estimate_rows(conn, LIST_DEALS_BY_ID, *filters.args(), None, None, 0)
