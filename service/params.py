"""Query parameters shared by the read endpoints, with the constraints OpenAPI shows.

Litestar checks each constraint before a handler runs and a failure becomes
a 422 VALIDATION_ERROR naming the field (service/errors.py). Cross-field
rules (price_min <= price_max) are checked here, before any SQL runs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

import msgspec
from litestar.params import Parameter

from service.errors import Unprocessable

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_SKIP = 2**31 - 1
MAX_ID = 2**63 - 1  # bigint

# Money in a query string: digits with at most 2 decimal places, at most the
# numeric(10, 2) maximum 99999999.99. Parsed into an exact Decimal.
PRICE_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,2})?$"

Sort = Literal["id", "price", "-price", "created_at", "-created_at"]
CountMode = Literal["exact", "estimated", "none"]

City = Annotated[
    str | None,
    Parameter(
        description="The hotel's city: a case-insensitive exact match.",
        min_length=1,
        max_length=200,
    ),
]
MinStars = Annotated[
    int | None, Parameter(description="Only hotels with at least this star rating.", ge=1, le=5)
]
PriceMin = Annotated[
    str | None,
    Parameter(
        description="Lowest price per night, inclusive: a decimal string such as 80 or 79.99.",
        pattern=PRICE_PATTERN,
    ),
]
PriceMax = Annotated[
    str | None,
    Parameter(
        description=(
            "Highest price per night, inclusive: a decimal string such as 150 or 149.99; "
            "not below price_min."
        ),
        pattern=PRICE_PATTERN,
    ),
]
CategoryName = Annotated[
    str | None,
    Parameter(
        description="Only deals in this category (by name, case-insensitive).",
        min_length=1,
        max_length=100,
    ),
]
IsAvailable = Annotated[
    bool | None, Parameter(description="Only available (true) or unavailable (false) deals.")
]
Skip = Annotated[
    int,
    Parameter(
        description="Offset pagination: rows to skip. Not allowed with cursor.",
        ge=0,
        le=MAX_SKIP,
    ),
]
Limit = Annotated[int, Parameter(description=f"Page size, 1 to {MAX_LIMIT}.", ge=1, le=MAX_LIMIT)]
Count = Annotated[
    CountMode,
    Parameter(
        description=(
            "How total is computed: exact (count(*)), estimated (the planner's row "
            "estimate, cheap on big results) or none (total is null). Ignored with cursor."
        )
    ),
]
SortParam = Annotated[
    Sort,
    Parameter(
        description=(
            "Order of the rows: id, price, -price, created_at, -created_at "
            "(a leading minus is descending); the id breaks ties."
        )
    ),
]
Cursor = Annotated[
    str | None,
    Parameter(
        description=(
            "Keyset pagination: empty for the first page, then the next_cursor of the "
            "previous page, with the same sort and filters. The answer is then "
            "{items, next_cursor}; next_cursor is null on the last page."
        ),
        max_length=512,
    ),
]


DealId = Annotated[int, Parameter(description="The deal's id.", ge=1, le=MAX_ID)]
HotelId = Annotated[int, Parameter(description="The hotel's id.", ge=1, le=MAX_ID)]


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


def invalid(field: str, message: str) -> Unprocessable:
    """A 422 for one query parameter, in the shape Litestar's own validation gives."""
    return Unprocessable(
        "the request is not valid",
        details=[{"field": field, "source": "query", "message": message}],
    )


def price_range(
    price_min: str | None, price_max: str | None
) -> tuple[Decimal | None, Decimal | None]:
    """The two prices as exact Decimals; 422 when price_min is above price_max."""
    low = Decimal(price_min) if price_min is not None else None
    high = Decimal(price_max) if price_max is not None else None
    if low is not None and high is not None and low > high:
        raise invalid("price_min", f"price_min {low} is above price_max {high}")
    return low, high
