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
