"""One typed function per deal read query of sql/deals.sql.

Each takes a connection (a pooled one from Database.connection(), or the
transaction's in a write handler) and keyword-only parameters in $n order;
`filters` stands for $1-$6 (DealFilters). A page is one statement: the hotel
is joined and the category names aggregated in SQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
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
# Per filter shape, a query with unconditional predicates, whose one generic plan
# serves every value (`-- plan: generic`); the general queries above are custom.
LIST_ALL_DEALS_BY_ID = Many("list_all_deals_by_id")
# sort -> (the query with no filter, the keyset it starts after: before every row)
LIST_ALL_DEALS: dict[Sort, tuple[Many, Decimal | datetime]] = {
    "price": (Many("list_all_deals_by_price"), Decimal(0)),
    "-price": (Many("list_all_deals_by_price_desc"), Decimal(10) ** 8),  # > numeric(10,2)
    "created_at": (Many("list_all_deals_by_created_at"), datetime.min.replace(tzinfo=UTC)),
    "-created_at": (Many("list_all_deals_by_created_at_desc"), datetime.max.replace(tzinfo=UTC)),
}
LIST_DEALS_IN_CITY_BY_ID = Many("list_deals_in_city_by_id")
LIST_DEALS_IN_PRICE_RANGE_BY_ID = Many("list_deals_in_price_range_by_id")
LIST_DEALS_IN_CATEGORY_BY_ID = Many("list_deals_in_category_by_id")
# The price bounds that stand for a missing one: every price_per_night (numeric(10,2), > 0)
LOWEST_PRICE, HIGHEST_PRICE = Decimal(0), Decimal(10) ** 8
COUNT_DEALS_IN_PRICE_RANGE = Value("count_deals_in_price_range")
COUNT_CATEGORY_DEALS = Value("count_category_deals")
COUNT_DEALS_IN_CATEGORY = Value("count_deals_in_category")
ESTIMATE_ALL_DEALS = Value("estimate_all_deals")
# An offset page by id of the hot shapes (no filter, a city, a price range) as JSON text
# built by PostgreSQL, with the exact total in the same statement when asked.
LIST_ALL_DEALS_BY_ID_JSON = One("list_all_deals_by_id_json")
LIST_DEALS_IN_CITY_BY_ID_JSON = One("list_deals_in_city_by_id_json")
LIST_DEALS_IN_PRICE_RANGE_BY_ID_JSON = One("list_deals_in_price_range_by_id_json")


class DealFilters(msgspec.Struct, frozen=True):
    """The deal filters of GET /deals and GET /deals/stats (which has no city), in the
    $1-$6 order of the list and count queries."""

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


NO_FILTERS = DealFilters()


def city_only(filters: DealFilters) -> bool:
    """The filters are a city, with or without min_stars: the city shape."""
    return filters.city is not None and filters == DealFilters(
        city=filters.city, min_stars=filters.min_stars
    )


def price_only(filters: DealFilters) -> bool:
    """The filters are a price range (one bound or both) and nothing else."""
    return filters != NO_FILTERS and filters == DealFilters(
        price_min=filters.price_min, price_max=filters.price_max
    )


def category_only(filters: DealFilters) -> bool:
    """The filters are a category and nothing else."""
    return filters.category is not None and filters == DealFilters(category=filters.category)


def price_bounds(filters: DealFilters) -> tuple[Decimal, Decimal]:
    """The range's bounds, a missing one standing for every price."""
    low = LOWEST_PRICE if filters.price_min is None else filters.price_min
    high = HIGHEST_PRICE if filters.price_max is None else filters.price_max
    return low, high


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
    if sort == "id" and filters == NO_FILTERS:
        rows = await LIST_ALL_DEALS_BY_ID(conn, last_id or 0, limit, skip)
    elif filters == NO_FILTERS:
        query, start = LIST_ALL_DEALS[sort]
        after = (start, 0) if last_id is None else (key, last_id)
        rows = await query(conn, *after, limit, skip)
    elif sort == "id" and city_only(filters):
        rows = await LIST_DEALS_IN_CITY_BY_ID(
            conn, filters.city, filters.min_stars, last_id or 0, limit, skip
        )
    elif sort == "id" and price_only(filters):
        rows = await LIST_DEALS_IN_PRICE_RANGE_BY_ID(
            conn, *price_bounds(filters), last_id or 0, limit, skip
        )
    elif sort == "id" and category_only(filters):
        rows = await LIST_DEALS_IN_CATEGORY_BY_ID(conn, filters.category, last_id or 0, limit, skip)
    else:
        keyset = (last_id,) if sort == "id" else (key, last_id)
        rows = await LIST_DEALS[sort](conn, *filters.args(), *keyset, limit, skip)
    return [deal_from_row(row) for row in rows]


class PageJson(msgspec.Struct, frozen=True):
    """An offset page as PostgreSQL encoded it: its deals' JSON objects, comma-separated
    (each as a Deal encodes), and the exact total when it was asked for."""

    items: str
    total: int | None


def json_shape(sort: Sort, filters: DealFilters) -> bool:
    """Whether page_json serves an offset page of this sort and these filters."""
    return sort == "id" and (filters == NO_FILTERS or city_only(filters) or price_only(filters))


async def page_json(
    conn: Connection, *, filters: DealFilters, limit: int, skip: int, with_total: bool
) -> PageJson:
    """An offset page by id, for filters that json_shape accepts, as JSON text; with
    with_total, the exact total (count_deals' answer) in the same round trip."""
    if filters == NO_FILTERS:
        row = await LIST_ALL_DEALS_BY_ID_JSON(conn, 0, limit, skip, with_total)
    elif price_only(filters):
        row = await LIST_DEALS_IN_PRICE_RANGE_BY_ID_JSON(
            conn, *price_bounds(filters), 0, limit, skip, with_total
        )
    else:
        row = await LIST_DEALS_IN_CITY_BY_ID_JSON(
            conn, filters.city, filters.min_stars, 0, limit, skip, with_total
        )
    assert row is not None, "an aggregate query returns one row"
    return PageJson(row["items"], row["total"])


async def count_deals(conn: Connection, *, filters: DealFilters) -> int:
    """How many deals match, for filters deal_totals cannot answer (service/db/stats.py):
    a price range alone from deal_price_totals and the range's two partial units
    (count_deals_in_price_range), a category alone by its links; else the live count,
    with a category the one that starts from its links."""
    if filters == NO_FILTERS or price_only(filters):
        in_range: int = await COUNT_DEALS_IN_PRICE_RANGE(conn, *price_bounds(filters))
        return in_range
    if category_only(filters):
        in_category: int = await COUNT_CATEGORY_DEALS(conn, filters.category)
        return in_category
    query = COUNT_DEALS if filters.category is None else COUNT_DEALS_IN_CATEGORY
    count: int = await query(conn, *filters.args())
    return count


async def estimate_deals(conn: Connection, *, filters: DealFilters) -> int:
    """The planner's estimate of count_deals: EXPLAIN of the page query with no limit.
    With no filter, the same number read from pg_class as the planner reads it
    (estimate_all_deals), unless the planner would estimate otherwise there."""
    if filters == NO_FILTERS:
        estimate: int | None = await ESTIMATE_ALL_DEALS(conn)
        if estimate is not None:
            return estimate
        return await LIST_ALL_DEALS_BY_ID.estimate(conn, 0, None, 0)
    return await LIST_DEALS["id"].estimate(conn, *filters.args(), None, None, 0)
