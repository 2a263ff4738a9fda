"""/deals: list, read, create, change and delete deals; one controller owns the path.

Reads take a pooled connection (Database.connection()) and no explicit
transaction: each statement is atomic on its own. A page is one statement,
plus one for the total when count is exact or estimated. Writes run in one
transaction per request, with optimistic locking (service/api/versions.py).

count=estimated reads the planner's row estimate from EXPLAIN (FORMAT JSON)
of the page query with no LIMIT, so it costs a plan, not a scan. Without
filters the planner estimates from pg_class.reltuples scaled to the table's
current size, so it is as fresh as the last (auto)ANALYZE.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State

from service.api.bodies import DealCreate, DealPatch, json_body, parse, read_json_body
from service.api.errors import Conflict, NotFound, Unprocessable, error_responses
from service.api.paging import (
    CursorError,
    Key,
    Position,
    decode_cursor,
    encode_cursor,
    fingerprint,
    parse_key,
    sort_key,
)
from service.api.params import (
    DEFAULT_LIMIT,
    CategoryName,
    City,
    Count,
    CountMode,
    Cursor,
    DealId,
    IsAvailable,
    Limit,
    MinStars,
    PriceMax,
    PriceMin,
    Skip,
    SortParam,
    invalid,
    price_range,
)
from service.api.responses import DealCursorPage, DealPage
from service.api.versions import (
    ETAG_HEADER,
    LOCATION_HEADER,
    IfMatch,
    deal_etag,
    parse_if_match,
    why_nothing_matched,
)
from service.db.catalogue import Connection
from service.db.categories import list_categories
from service.db.deal_writes import (
    deal_version_and_dates,
    delete_deal,
    insert_deal,
    replace_deal_categories,
    update_deal,
)
from service.db.deals import DealFilters, count_deals, estimate_deals, get_deal, list_deals
from service.db.pool import Database
from service.db.rows import Deal


async def total_deals(conn: Connection, count: CountMode, filters: DealFilters) -> int | None:
    if count == "exact":
        return await count_deals(conn, filters=filters)
    if count == "estimated":
        return await estimate_deals(conn, filters=filters)
    return None


async def check_categories(conn: Connection, names: list[str]) -> None:
    if not names:
        return
    known = [category.name for category in await list_categories(conn)]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise Unprocessable(
            f"unknown categories: {', '.join(unknown)}; known: {', '.join(known)}",
            details=[
                {
                    "field": "categories",
                    "message": "unknown names",
                    "unknown": unknown,
                    "known": known,
                }
            ],
        )


def deal_response(deal: Deal, status_code: int = 200) -> Response[Deal]:
    headers = {"ETag": deal_etag(deal.version)}
    if status_code == 201:
        headers["Location"] = f"/deals/{deal.id}"
    return Response(deal, status_code=status_code, headers=headers)


async def fetch_written(conn: Connection, id: int) -> Deal:
    deal = await get_deal(conn, id=id)
    assert deal is not None, "a deal written in this transaction is visible to it"
    return deal


class DealsController(Controller):
    path = "/deals"
    tags = ["deals"]  # noqa: RUF012

    @get(
        "/",
        summary="List deals",
        operation_id="listDeals",
        responses=error_responses(422, 503, 504),
    )
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
        "/{id:int}",
        summary="One deal",
        operation_id="getDeal",
        responses=error_responses(404, 422, 503, 504),
        response_headers=[ETAG_HEADER],
    )
    async def deal_by_id(self, state: State, id: DealId) -> Response[Deal]:
        """One deal with its hotel and category names; 404 when there is none."""
        db: Database = state.db
        async with db.connection() as conn:
            deal = await get_deal(conn, id=id)
        if deal is None:
            raise NotFound(f"deal {id} does not exist")
        return Response(deal, headers={"ETag": deal_etag(deal.version)})

    @post(
        "/",
        status_code=201,
        summary="Create a deal",
        operation_id="createDeal",
        operation_class=json_body(DealCreate, "The new deal; money as JSON strings."),
        responses=error_responses(400, 404, 409, 413, 415, 422, 503, 504),
        response_headers=[ETAG_HEADER, LOCATION_HEADER],
    )
    async def create_deal(self, request: Request[Any, Any, Any], state: State) -> Response[Deal]:
        """201 with a Location header, the ETag and the deal as GET returns it."""
        new = parse(await read_json_body(request), DealCreate)
        db: Database = state.db
        async with db.transaction() as conn:
            await check_categories(conn, new.categories)
            try:
                id = await insert_deal(conn, deal_id=new.deal_id, columns=new.columns())
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(
                    f"hotel {new.hotel_id} does not exist",
                    details=[{"field": "hotel_id", "message": "no such hotel"}],
                ) from None
            except asyncpg.UniqueViolationError:
                raise Conflict(
                    f"a deal with deal_id {new.deal_id} already exists",
                    details=[{"field": "deal_id", "message": "already taken"}],
                ) from None
            await replace_deal_categories(conn, id=id, names=new.categories)
            deal = await fetch_written(conn, id)
        return deal_response(deal, status_code=201)

    @patch(
        "/{id:int}",
        summary="Change some fields of a deal",
        operation_id="updateDeal",
        operation_class=json_body(DealPatch, "Only the fields sent change."),
        responses=error_responses(400, 404, 409, 412, 413, 415, 422, 503, 504),
        response_headers=[ETAG_HEADER],
    )
    async def update_deal(
        self,
        request: Request[Any, Any, Any],
        state: State,
        id: DealId,
        if_match: IfMatch = None,
    ) -> Response[Deal]:
        """200 with the new ETag. A stale body version gets 409 VERSION_CONFLICT, a stale
        If-Match 412; the checks and the write are one UPDATE."""
        expected = parse_if_match(if_match)
        changes = parse(await read_json_body(request), DealPatch)
        if not changes.changes_something():
            raise Unprocessable(
                "the patch changes nothing; send at least one field besides version",
                details=[{"field": "$", "message": "no field to change"}],
            )
        db: Database = state.db
        async with db.transaction() as conn:
            if not isinstance(changes.categories, msgspec.UnsetType):
                await check_categories(conn, changes.categories)
            try:
                version = await update_deal(
                    conn,
                    id=id,
                    if_match=expected,
                    version=changes.sent_version(),
                    columns=changes.columns(),
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(
                    f"hotel {changes.hotel_id} does not exist",
                    details=[{"field": "hotel_id", "message": "no such hotel"}],
                ) from None
            if version is None:
                stored = await deal_version_and_dates(conn, id=id)
                raise why_nothing_matched(id, stored, expected, changes.sent_version())
            if not isinstance(changes.categories, msgspec.UnsetType):
                await replace_deal_categories(conn, id=id, names=changes.categories)
            deal = await fetch_written(conn, id)
        return deal_response(deal)

    @delete(
        "/{id:int}",
        status_code=204,
        summary="Delete a deal",
        operation_id="deleteDeal",
        responses=error_responses(404, 412, 422, 503, 504),
    )
    async def delete_deal(self, state: State, id: DealId, if_match: IfMatch = None) -> None:
        """204; the deal and its category links are gone from every read."""
        expected = parse_if_match(if_match)
        db: Database = state.db
        async with db.transaction() as conn:
            if not await delete_deal(conn, id=id, if_match=expected):
                stored = await deal_version_and_dates(conn, id=id)
                raise why_nothing_matched(id, stored, expected, None)
