"""One typed function per deal read query of sql/deals.sql.

Each takes a connection (a pooled one from Database.connection(), or the
transaction's in a write handler) and keyword-only parameters in $n order;
`filters` stands for $1-$6 (DealFilters). A page is one statement: the hotel
is joined and the category names aggregated in SQL.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

import msgspec

from service.db.catalogue import Connection, Many, One, Value
from service.db.rows import Deal, deal_from_row

Sort = Literal["id", "price", "-price", "created_at", "-created_at"]

GET_DEAL = One("get_deal")
FIND_DEAL_BY_UPSTREAM_ID = One("find_deal_by_upstream_id")
# The sort whitelist: each order of GET /deals is its own named query, served by its own index.
LIST_DEALS: dict[Sort, Many] = {
    "id": Many("list_deals_by_id"),
    "price": Many("list_deals_by_price"),
    "-price": Many("list_deals_by_price_desc"),
    "created_at": Many("list_deals_by_created_at"),
    "-created_at": Many("list_deals_by_created_at_desc"),
}
COUNT_DEALS = Value("count_deals")
COUNT_DEALS_IN_CATEGORY = Value("count_deals_in_category")


class DealFilters(msgspec.Struct, frozen=True, kw_only=True):
    """The deal list filters, in the $1-$6 order of the list and count queries."""

    city: str | None = None
    min_stars: int | None = None
    price_min: Decimal | None = None
    price_max: Decimal | None = None
    category: str | None = None
    is_available: bool | None = None

    def args(
        self,
    ) -> tuple[str | None, int | None, Decimal | None, Decimal | None, str | None, bool | None]:
        return (
            self.city,
            self.min_stars,
            self.price_min,
            self.price_max,
            self.category,
            self.is_available,
        )


async def get_deal(conn: Connection, *, id: int) -> Deal | None:
    """The deal with this id (the service's own, not the upstream deal_id)."""
    row = await GET_DEAL(conn, id)
    return None if row is None else deal_from_row(row)


async def find_deal_by_upstream_id(
    conn: Connection, *, filters: DealFilters, deal_id: int
) -> Deal | None:
    """The deal whose upstream id is deal_id, when it passes the filters too."""
    row = await FIND_DEAL_BY_UPSTREAM_ID(conn, *filters.args(), deal_id)
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
    rows = await LIST_DEALS[sort](conn, *filters.args(), *keyset, limit, skip)
    return [deal_from_row(row) for row in rows]


async def count_deals(conn: Connection, *, filters: DealFilters) -> int:
    """How many deals match; with a category, the query that starts from its links."""
    query = COUNT_DEALS if filters.category is None else COUNT_DEALS_IN_CATEGORY
    count: int = await query(conn, *filters.args())
    return count


async def estimate_deals(conn: Connection, *, filters: DealFilters) -> int:
    """The planner's estimate of count_deals: EXPLAIN of list_deals_by_id with no limit."""
    return await LIST_DEALS["id"].estimate(conn, *filters.args(), None, None, 0)
