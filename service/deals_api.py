"""GET /deals and GET /deals/{id}.

Reads take a pooled connection (Database.connection()) and no explicit
transaction: each statement is atomic on its own. A page is one statement,
plus one for the total when count is exact or estimated.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal, InvalidOperation

from litestar import Controller, Response, get
from litestar.datastructures import ResponseHeader, State

from service.db import Connection, Database
from service.deal_writes import DealWriteHandlers
from service.deals import (
    count_deals,
    count_deals_in_category,
    estimate_deals,
    get_deal,
    list_deals,
)
from service.errors import NotFound, error_responses
from service.models import Deal, DealCursorPage, DealPage, deal_etag
from service.paging import CursorError, Position, decode_cursor, encode_cursor, fingerprint
from service.params import (
    DEFAULT_LIMIT,
    CategoryName,
    City,
    Count,
    CountMode,
    Cursor,
    DealFilters,
    DealId,
    IsAvailable,
    Limit,
    MinStars,
    PriceMax,
    PriceMin,
    Skip,
    Sort,
    SortParam,
    invalid,
    price_range,
)

Key = Decimal | datetime | None


def sort_key(sort: Sort, deal: Deal) -> str | None:
    """The last row's value of the sort column, as the cursor keeps it."""
    if sort in ("price", "-price"):
        return str(deal.price_per_night)
    if sort in ("created_at", "-created_at"):
        return deal.created_at.isoformat()
    return None


def parse_key(sort: Sort, key: str | None) -> Key:
    """The cursor's sort value with its type back; CursorError when it does not fit the sort."""
    if sort == "id":
        if key is None:
            return None
    elif key is not None:
        try:
            return Decimal(key) if sort in ("price", "-price") else datetime.fromisoformat(key)
        except (InvalidOperation, ValueError):
            pass
    raise CursorError("the cursor is not valid")


async def total_deals(conn: Connection, count: CountMode, filters: DealFilters) -> int | None:
    if count == "exact":
        if filters.category is not None:
            return await count_deals_in_category(conn, filters=filters)
        return await count_deals(conn, filters=filters)
    if count == "estimated":
        return await estimate_deals(conn, filters=filters)
    return None


class DealsController(DealWriteHandlers, Controller):
    path = "/deals"
    tags = ["deals"]  # noqa: RUF012

    @get("/", summary="List deals", responses=error_responses(422, 503, 504))
    async def list_deals(
        self,
        state: State,
        city: City = None,
        min_stars: MinStars = None,
        price_min: PriceMin = None,
        price_max: PriceMax = None,
        category: CategoryName = None,
        is_available: IsAvailable = None,
        sort: SortParam = "id",
        skip: Skip = 0,
        limit: Limit = DEFAULT_LIMIT,
        count: Count = "exact",
        cursor: Cursor = None,
    ) -> DealPage | DealCursorPage:
        """Deals matching every filter given, each with its hotel and category names.

        Without cursor: an offset page {items, total, skip, limit}. With cursor
        (empty for the first page): a keyset page {items, next_cursor}, which
        costs the same however deep it is.
        """
        low, high = price_range(price_min, price_max)
        filters = DealFilters(
            city=city,
            min_stars=min_stars,
            price_min=low,
            price_max=high,
            category=category,
            is_available=is_available,
        )
        db: Database = state.db
        if cursor is None:
            async with db.connection() as conn:
                items = await list_deals(
                    conn, sort=sort, filters=filters, key=None, last_id=None, limit=limit, skip=skip
                )
                total = await total_deals(conn, count, filters)
            return DealPage(items=items, total=total, skip=skip, limit=limit)

        if skip:
            raise invalid("skip", "skip cannot be combined with cursor")
        digest = fingerprint(
            city.lower() if city is not None else None,
            min_stars,
            low,
            high,
            category.lower() if category is not None else None,
            is_available,
        )
        key: Key = None
        last_id: int | None = None
        if cursor:
            try:
                position = decode_cursor(cursor, sort=sort, filters=digest)
                key = parse_key(sort, position.key)
            except CursorError as exc:
                raise invalid("cursor", str(exc)) from None
            last_id = position.last_id
        async with db.connection() as conn:
            # One row more than asked tells whether another page follows.
            items = await list_deals(
                conn, sort=sort, filters=filters, key=key, last_id=last_id, limit=limit + 1, skip=0
            )
        next_cursor = None
        if len(items) > limit:
            items = items[:limit]
            last = items[-1]
            next_cursor = encode_cursor(
                Position(sort=sort, key=sort_key(sort, last), last_id=last.id, filters=digest)
            )
        return DealCursorPage(items=items, next_cursor=next_cursor)

    @get(
        "/{deal_id:int}",
        summary="One deal",
        responses=error_responses(404, 422, 503, 504),
        response_headers=[
            ResponseHeader(
                name="ETag",
                description='The deal\'s version, quoted ("3"): send it as If-Match to change it.',
                documentation_only=True,
            )
        ],
    )
    async def deal_by_id(self, state: State, deal_id: DealId) -> Response[Deal]:
        """One deal with its hotel and category names; 404 when there is none."""
        db: Database = state.db
        async with db.connection() as conn:
            deal = await get_deal(conn, deal_id=deal_id)
        if deal is None:
            raise NotFound(f"deal {deal_id} does not exist")
        return Response(deal, headers={"ETag": deal_etag(deal.version)})
