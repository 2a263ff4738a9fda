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
from service.params import DealFilters, Sort
from service.sqlcat import Query, q

GET_DEAL = q("get_deal")
# The sort whitelist: each order of GET /deals is its own named query, served by its own index.
LIST_DEALS: dict[Sort, Query] = {
    "id": q("list_deals_by_id"),
    "price": q("list_deals_by_price"),
    "-price": q("list_deals_by_price_desc"),
    "created_at": q("list_deals_by_created_at"),
    "-created_at": q("list_deals_by_created_at_desc"),
}
COUNT_DEALS = q("count_deals")
COUNT_DEALS_IN_CATEGORY = q("count_deals_in_category")


async def get_deal(conn: Connection, *, deal_id: int) -> Deal | None:
    row = await conn.fetchrow(GET_DEAL.sql, deal_id)
    return None if row is None else deal_from_row(row)


async def list_deals(
    conn: Connection,
    *,
    sort: Sort,
    filters: DealFilters,
    key: Decimal | datetime | None,
    last_id: int | None,
    limit: int,
    skip: int,
) -> list[Deal]:
    """A page in this sort, after (key, last_id) when given.

    After the filters, the keyset: ($7 key, $8 id), or ($7 id) alone when sorting by id.
    """
    keyset = (last_id,) if sort == "id" else (key, last_id)
    rows = await conn.fetch(LIST_DEALS[sort].sql, *filters.args(), *keyset, limit, skip)
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
    return await estimate_rows(conn, LIST_DEALS["id"], *filters.args(), None, None, 0)
