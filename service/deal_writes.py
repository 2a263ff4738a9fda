"""POST, PATCH and DELETE /deals: one transaction per request, optimistic locking.

The version check and the write are one statement; only when it matches
nothing does a second read tell why (absent 404, stale 409/412, dates 422).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated, Any, TypeVar

import asyncpg
import msgspec
from litestar import Request, Response, delete, patch, post
from litestar.datastructures import State
from litestar.params import HeaderParameter

from service.categories import list_categories
from service.db import Connection, Database
from service.deal_requests import DealCreate, DealPatch, parse
from service.deals import get_deal
from service.errors import (
    ApiError,
    Conflict,
    NotFound,
    PreconditionFailed,
    Unprocessable,
    UnsupportedMediaType,
    error_responses,
)
from service.models import Deal, deal_etag
from service.openapi_bodies import json_body
from service.params import DealId
from service.sqlcat import q
from service.types import INT_MAX

INSERT_DEAL = q("insert_deal")
UPDATE_DEAL = q("update_deal")
DEAL_VERSION_AND_DATES = q("deal_version_and_dates")
REPLACE_DEAL_CATEGORIES = q("replace_deal_categories")
DELETE_DEAL = q("delete_deal")

T = TypeVar("T")


class VersionAndDates(msgspec.Struct, frozen=True, kw_only=True):
    version: int
    checkin_date: date
    checkout_date: date


async def insert_deal(conn: Connection, *, deal: DealCreate) -> int:
    new_id: int = await conn.fetchval(
        INSERT_DEAL.sql,
        deal.deal_id,
        deal.hotel_id,
        deal.room_type,
        deal.price_per_night,
        deal.original_price,
        deal.discount_percent,
        deal.checkin_date,
        deal.checkout_date,
        deal.is_available,
    )
    return new_id


def _sent(value: T | msgspec.UnsetType) -> T | None:
    return None if isinstance(value, msgspec.UnsetType) else value


async def update_deal(
    conn: Connection, *, deal_id: int, if_match: int | None, changes: DealPatch
) -> int | None:
    """The new version, or None when nothing matched (absent, stale or bad dates)."""
    version: int | None = await conn.fetchval(
        UPDATE_DEAL.sql,
        deal_id,
        if_match,
        _sent(changes.version),
        _sent(changes.hotel_id),
        _sent(changes.room_type),
        _sent(changes.price_per_night),
        _sent(changes.original_price),
        _sent(changes.discount_percent),
        _sent(changes.checkin_date),
        _sent(changes.checkout_date),
        _sent(changes.is_available),
        column=1,
    )
    return version


async def deal_version_and_dates(conn: Connection, *, deal_id: int) -> VersionAndDates | None:
    row = await conn.fetchrow(DEAL_VERSION_AND_DATES.sql, deal_id)
    if row is None:
        return None
    return VersionAndDates(
        version=row["version"], checkin_date=row["checkin_date"], checkout_date=row["checkout_date"]
    )


async def replace_deal_categories(conn: Connection, *, deal_id: int, names: list[str]) -> None:
    await conn.execute(REPLACE_DEAL_CATEGORIES.sql, deal_id, names)


async def delete_deal(conn: Connection, *, deal_id: int, if_match: int | None) -> bool:
    return await conn.fetchval(DELETE_DEAL.sql, deal_id, if_match) is not None


IF_MATCH_PATTERN = r'^\s*(\*|(W/)?"[^"]*")\s*$'
ENTITY_TAG = re.compile(r'^(W/)?"([^"]*)"$')


def parse_if_match(header: str | None) -> int | None:
    """The version an If-Match header demands; None when absent or `*`.

    Not one entity tag: 422. A weak tag, or one that is no version of ours,
    never matches strongly: 412, as HTTP says.
    """
    if header is None or header.strip() == "*":
        return None
    match = ENTITY_TAG.match(header.strip())
    if match is None:
        raise Unprocessable(
            'If-Match must be one entity tag such as "3", or *',
            details=[{"field": "If-Match", "source": "header", "message": "not an entity tag"}],
        )
    weak, tag = match[1], match[2]
    if weak or not tag.isdigit() or len(tag) > 10 or int(tag) > INT_MAX:
        raise PreconditionFailed(
            f"If-Match {header.strip()[:40]} matches no version; send the ETag of GET /deals/{{id}}"
        )
    return int(tag)


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


def why_nothing_matched(
    deal_id: int, stored: VersionAndDates | None, if_match: int | None, changes: DealPatch | None
) -> ApiError:
    if stored is None:
        return NotFound(f"deal {deal_id} does not exist")
    if if_match is not None and stored.version != if_match:
        return PreconditionFailed(
            f"deal {deal_id} is at version {stored.version}, not {if_match}",
            details=[{"current_version": stored.version}],
        )
    sent_version = None if changes is None else _sent(changes.version)
    if sent_version is not None and stored.version != sent_version:
        return Conflict(
            f"deal {deal_id} was changed: version {sent_version} is stale, "
            f"the current version is {stored.version}",
            code="VERSION_CONFLICT",
            details=[{"current_version": stored.version}],
        )
    return Unprocessable(
        "checkout_date must be after checkin_date (judged on the stored deal with the patch)",
        details=[{"field": "checkout_date", "message": "must be after checkin_date"}],
    )


async def read_json_body(request: Request[Any, Any, Any]) -> bytes:
    media_type = request.content_type[0]
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaType(
            f"send the body as application/json, not {media_type or 'nothing'}"
        )
    return await request.body()


def deal_response(deal: Deal, status_code: int = 200) -> Response[Deal]:
    headers = {"ETag": deal_etag(deal.version)}
    if status_code == 201:
        headers["Location"] = f"/deals/{deal.id}"
    return Response(deal, status_code=status_code, headers=headers)


async def fetch_written(conn: Connection, deal_id: int) -> Deal:
    deal = await get_deal(conn, deal_id=deal_id)
    assert deal is not None, "a deal written in this transaction is visible to it"
    return deal


IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        pattern=IF_MATCH_PATTERN,
        description='The ETag of the deal as last read ("3"); a stale one gets 412.',
    ),
]


class DealWriteHandlers:
    """POST, PATCH and DELETE /deals; DealsController inherits them, so that one
    controller owns the /deals paths (two would both claim OPTIONS)."""

    @post(
        "/",
        status_code=201,
        summary="Create a deal",
        operation_class=json_body(DealCreate, "The new deal; money as JSON strings."),
        responses=error_responses(400, 404, 409, 413, 415, 422, 503, 504),
    )
    async def create_deal(self, request: Request[Any, Any, Any], state: State) -> Response[Deal]:
        """201 with a Location header, the ETag and the deal as GET returns it."""
        new = parse(await read_json_body(request), DealCreate)
        db: Database = state.db
        async with db.transaction() as conn:
            await check_categories(conn, new.categories)
            try:
                deal_id = await insert_deal(conn, deal=new)
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
            await replace_deal_categories(conn, deal_id=deal_id, names=new.categories)
            deal = await fetch_written(conn, deal_id)
        return deal_response(deal, status_code=201)

    @patch(
        "/{deal_id:int}",
        summary="Change some fields of a deal",
        operation_class=json_body(DealPatch, "Only the fields sent change."),
        responses=error_responses(400, 404, 409, 412, 413, 415, 422, 503, 504),
    )
    async def update_deal(
        self,
        request: Request[Any, Any, Any],
        state: State,
        deal_id: DealId,
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
                    conn, deal_id=deal_id, if_match=expected, changes=changes
                )
            except asyncpg.ForeignKeyViolationError:
                raise NotFound(
                    f"hotel {changes.hotel_id} does not exist",
                    details=[{"field": "hotel_id", "message": "no such hotel"}],
                ) from None
            if version is None:
                stored = await deal_version_and_dates(conn, deal_id=deal_id)
                raise why_nothing_matched(deal_id, stored, expected, changes)
            if not isinstance(changes.categories, msgspec.UnsetType):
                await replace_deal_categories(conn, deal_id=deal_id, names=changes.categories)
            deal = await fetch_written(conn, deal_id)
        return deal_response(deal)

    @delete(
        "/{deal_id:int}",
        status_code=204,
        summary="Delete a deal",
        responses=error_responses(404, 412, 422, 503, 504),
    )
    async def delete_deal(self, state: State, deal_id: DealId, if_match: IfMatch = None) -> None:
        """204; the deal and its category links are gone from every read."""
        expected = parse_if_match(if_match)
        db: Database = state.db
        async with db.transaction() as conn:
            if not await delete_deal(conn, deal_id=deal_id, if_match=expected):
                stored = await deal_version_and_dates(conn, deal_id=deal_id)
                raise why_nothing_matched(deal_id, stored, expected, None)
