"""The pages the listing endpoints answer with; their items are the row Structs of db/rows.py."""

from __future__ import annotations

from typing import Annotated

import msgspec

from service.db.rows import Deal, Hotel

Total = Annotated[
    int | None,
    msgspec.Meta(
        description="Rows matching the filters: exact, the planner's estimate, or null (count=)."
    ),
]


class DealPage(msgspec.Struct, frozen=True, kw_only=True):
    """An offset page of deals."""

    items: list[Deal]
    total: Total
    skip: int
    limit: int


def deal_page_json(items: str, total: int | None, skip: int, limit: int) -> bytes:
    """The JSON of DealPage(items=..., total=total, skip=skip, limit=limit), byte for byte,
    around items already encoded (the deals' JSON objects, comma-separated, as
    PostgreSQL builds them: service/db/deals.py page_json)."""
    count = b"null" if total is None else str(total).encode()
    return b"".join(
        (b'{"items":[', items.encode(), b'],"total":', count,
         b',"skip":', str(skip).encode(), b',"limit":', str(limit).encode(), b"}")
    )  # fmt: skip


class DealCursorPage(msgspec.Struct, frozen=True, kw_only=True):
    """A keyset page of deals; next_cursor is null on the last page."""

    items: list[Deal]
    next_cursor: str | None


class HotelPage(msgspec.Struct, frozen=True, kw_only=True):
    """An offset page of hotels."""

    items: list[Hotel]
    total: Total
    skip: int
    limit: int
