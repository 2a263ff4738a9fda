"""/deals: list, read, create, change and delete deals; one controller owns the path.

Reads take a pooled connection (Database.connection()) and no explicit
transaction: each statement is atomic on its own. A page is one statement,
plus one for the total when count is exact or estimated; the first page and the
city page (offset pages by id) are one statement with their exact total, whose
JSON PostgreSQL builds (docs/query-plans.md). Writes run in one
transaction per request, with optimistic locking (service/api/versions.py).

count=estimated reads the planner's row estimate from EXPLAIN (FORMAT JSON)
of the page query with no LIMIT, so it costs a plan, not a scan. Without
filters the planner estimates from pg_class.reltuples scaled to the table's
current size, so it is as fresh as the last (auto)ANALYZE.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import asyncpg
import msgspec
from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import ResponseHeader, State
from litestar.openapi.datastructures import ResponseSpec

from service.api.bodies import (
    DealCreate,
    DealPatch,
    decode_json,
    json_body,
    names_categories,
    parse,
    read_json_body,
)
from service.api.errors import Conflict, NotFound, Unprocessable, error_responses, read
from service.api.http import next_link
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
    UpstreamDealId,
    deal_filters,
    invalid,
)
from service.api.responses import DealCursorPage, DealPage, deal_page_json
from service.api.versions import (
    ETAG_HEADER,
    LOCATION_HEADER,
    IfMatch,
    IfNoneMatch,
    deal_etag,
    none_match,
    parse_if_match,
    require_precondition,
    why_nothing_matched,
)
from service.db.catalogue import Connection
from service.db.categories import list_categories
from service.db.deal_writes import (
    bump_deal_version,
    deal_version_and_dates,
    delete_deal,
    insert_deal,
    replace_deal_categories,
    update_deal,
)
from service.db.deals import (
    DealFilters,
    count_deals,
    estimate_deals,
    find_deal_by_upstream_id,
    get_deal,
    json_shape,
    list_deals,
    page_json,
)
from service.db.events import DELETE_PER_WRITE, EventType, delete_expired_events, insert_deal_event
from service.db.pool import Database
from service.db.rows import Deal
from service.db.stats import count_deals_from_totals, totals_answer

S = TypeVar("S", DealCreate, DealPatch)


async def total_deals(conn: Connection, count: CountMode, filters: DealFilters) -> int | None:
    if count == "exact":
        if totals_answer(filters):  # exact from deal_totals (migration 0010), in step
            return await count_deals_from_totals(conn, filters)
        return await count_deals(conn, filters=filters)
    if count == "estimated":
        return await estimate_deals(conn, filters=filters)
    return None


async def read_deal_body(request: Request[Any, Any, Any], conn: Connection, struct: type[S]) -> S:
    """The body as `struct`; category names are judged in the same 422 as the other fields."""
    raw = decode_json(await read_json_body(request))
    known = None
    if names_categories(raw):
        known = [category.name for category in await list_categories(conn)]
    return parse(raw, struct, known_categories=known)


def json_response(body: bytes) -> Response[DealPage | DealCursorPage]:
    """A page whose JSON is already encoded (DealPage's, byte for byte): Litestar sends
    bytes as they are, with the handler's media type."""
    return cast("Response[DealPage | DealCursorPage]", Response(body))


def deal_response(deal: Deal, status_code: int = 200) -> Response[Deal]:
    headers = {"ETag": deal_etag(deal.version)}
    if status_code == 201:
        headers["Location"] = f"/deals/{deal.id}"
    return Response(deal, status_code=status_code, headers=headers)


async def record_event(
    conn: Connection,
    state: State,
    type: EventType,
    *,
    deal: Deal | None = None,
    id: int = 0,
    deal_id: int | None = None,
    version: int = 0,
) -> None:
    """At most DELETE_PER_WRITE expired events go (the retention), then the change's
    event: the transaction's last write, as it holds the feed's order lock to commit."""
    if deal is not None:
        id, deal_id, version = deal.id, deal.deal_id, deal.version
    data = None if deal is None else _encode_json(deal).decode()
    await delete_expired_events(
        conn, retention=state.settings.events_retention, limit=DELETE_PER_WRITE
    )
    await insert_deal_event(conn, type=type, deal=id, deal_id=deal_id, version=version, data=data)


_encode_json = msgspec.json.Encoder().encode


async def fetch_written(conn: Connection, id: int) -> Deal:
    deal = await get_deal(conn, id=id)
    assert deal is not None, "a deal written in this transaction is visible to it"
    return deal


class DealsController(Controller):
    path = "/deals"
    tags = ["deals"]  # noqa: RUF012

    @read(
        "/",
        "List deals",
        "listDeals",
        422,
        503,
        504,
        response_headers=[
            ResponseHeader(
                name="Link",
                description=(
                    'On a cursor page that has a next page: </deals?...&cursor=...>; rel="next", '
                    "this request's path and query with cursor set to next_cursor."
                ),
                required=False,
                documentation_only=True,
            )
        ],
    )
    async def list_deals(
        self,
        request: Request[Any, Any, Any],
        state: State,
        city: City = None,
        min_stars: MinStars = None,
        price_min: PriceMin = None,
        price_max: PriceMax = None,
        category: CategoryName = None,
        is_available: IsAvailable = None,
        deal_id: UpstreamDealId = None,
        sort: SortParam = "id",
        skip: Skip = 0,
        limit: Limit = DEFAULT_LIMIT,
        count: Count = "exact",
        cursor: Cursor = None,
    ) -> Response[DealPage | DealCursorPage]:
        """Deals matching every filter given, each with its hotel and category names.

        Without cursor: an offset page {items, total, skip, limit}. With cursor
        (empty for the first page): a keyset page {items, next_cursor}, which
        costs the same however deep it is. With deal_id, the page holds the one
        deal with that upstream id, if it passes the other filters.
        """
        filters = deal_filters(city, min_stars, price_min, price_max, category, is_available)
        db: Database = state.db
        if deal_id is not None:
            if cursor is not None and skip:
                raise invalid("skip", "skip cannot be combined with cursor")
            async with db.connection() as conn:
                found = await find_deal_by_upstream_id(conn, filters=filters, deal_id=deal_id)
            matches = [] if found is None else [found]
            if cursor is not None:  # one page holds every match: no next cursor
                return Response(DealCursorPage(items=matches, next_cursor=None))
            total = None if count == "none" else len(matches)
            page = DealPage(items=matches[skip : skip + limit], total=total, skip=skip, limit=limit)
            return Response(page)
        if cursor is None and json_shape(sort, filters) and count != "estimated":
            # The hot shapes: PostgreSQL encodes the page and counts it in one statement.
            async with db.connection() as conn:
                encoded = await page_json(
                    conn, filters=filters, limit=limit, skip=skip, with_total=count == "exact"
                )
            return json_response(deal_page_json(encoded.items, encoded.total, skip, limit))
        if cursor is None:
            async with db.connection() as conn:
                items = await list_deals(
                    conn, sort=sort, filters=filters, key=None, last_id=None, limit=limit, skip=skip
                )
                total = await total_deals(conn, count, filters)
            return Response(DealPage(items=items, total=total, skip=skip, limit=limit))

        if skip:
            raise invalid("skip", "skip cannot be combined with cursor")
        digest = fingerprint(
            city.lower() if city is not None else None,
            min_stars,
            filters.price_min,
            filters.price_max,
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
        link = {"Link": next_link(request, next_cursor)} if next_cursor is not None else None
        return Response(DealCursorPage(items=items, next_cursor=next_cursor), headers=link)

    @get(
        "/{id:int}",
        summary="One deal",
        operation_id="getDeal",
        responses={
            304: ResponseSpec(
                data_container=None,
                description="If-None-Match holds the current ETag: no body, the ETag again",
            ),
            **error_responses(404, 422, 503, 504),
        },
        response_headers=[ETAG_HEADER],
    )
    async def deal_by_id(
        self, state: State, id: DealId, if_none_match: IfNoneMatch = None
    ) -> Response[Deal]:
        """One deal with its hotel and category names; 404 when there is none.
        304 with no body when If-None-Match holds its ETag."""
        db: Database = state.db
        async with db.connection() as conn:
            deal = await get_deal(conn, id=id)
        if deal is None:
            raise NotFound(f"deal {id} does not exist")
        etag = deal_etag(deal.version)
        if none_match(if_none_match, etag):
            return Response(None, status_code=304, headers={"ETag": etag})  # type: ignore[arg-type]
        return Response(deal, headers={"ETag": etag})

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
        db: Database = state.db
        async with db.transaction() as conn:
            new = await read_deal_body(request, conn, DealCreate)
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
            await record_event(conn, state, "deal.created", deal=deal)
        return deal_response(deal, status_code=201)

    @patch(
        "/{id:int}",
        summary="Change some fields of a deal",
        operation_id="updateDeal",
        operation_class=json_body(DealPatch, "Only the fields sent change."),
        responses=error_responses(400, 404, 409, 412, 413, 415, 422, 428, 503, 504),
        response_headers=[ETAG_HEADER],
    )
    async def update_deal(
        self,
        request: Request[Any, Any, Any],
        state: State,
        id: DealId,
        if_match: IfMatch = None,
    ) -> Response[Deal]:
        """200 with the new ETag; a patch that changes nothing keeps the version.

        A stale body version gets 409 VERSION_CONFLICT, a stale If-Match 412, and
        neither 428; the checks and the write are one UPDATE.
        """
        expected = parse_if_match(if_match)
        db: Database = state.db
        async with db.transaction() as conn:
            changes = await read_deal_body(request, conn, DealPatch)
            require_precondition(if_match, changes.sent_version())
            if not changes.changes_something():
                raise Unprocessable(
                    "the patch changes nothing; send at least one field besides version",
                    details=[{"field": "$", "message": "no field to change"}],
                )
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
                dates = (changes.column("checkin_date"), changes.column("checkout_date"))
                error = why_nothing_matched(id, stored, expected, changes.sent_version(), dates)
                if error is not None:
                    raise error
            changed = version is not None
            if not isinstance(changes.categories, msgspec.UnsetType):
                relinked = await replace_deal_categories(conn, id=id, names=changes.categories)
                if relinked and version is None:
                    await bump_deal_version(conn, id=id)
                    changed = True
            deal = await fetch_written(conn, id)
            if changed:  # a patch that changes nothing writes no event
                await record_event(conn, state, "deal.updated", deal=deal)
        return deal_response(deal)

    @delete(
        "/{id:int}",
        status_code=204,
        summary="Delete a deal",
        operation_id="deleteDeal",
        responses=error_responses(404, 412, 422, 428, 503, 504),
    )
    async def delete_deal(self, state: State, id: DealId, if_match: IfMatch = None) -> None:
        """204; the deal and its category links are gone from every read. If-Match is required."""
        require_precondition(if_match, None)
        expected = parse_if_match(if_match)
        db: Database = state.db
        async with db.transaction() as conn:
            deleted = await delete_deal(conn, id=id, if_match=expected)
            if deleted is None:
                stored = await deal_version_and_dates(conn, id=id)
                # a DELETE that matched nothing: absent or stale (never "nothing to change")
                raise why_nothing_matched(id, stored, expected, None) or NotFound(
                    f"deal {id} does not exist"
                )
            await record_event(
                conn,
                state,
                "deal.deleted",
                id=deleted.id,
                deal_id=deleted.deal_id,
                version=deleted.version,
            )
