"""Query parameters shared by the read endpoints, with the constraints OpenAPI shows.

Litestar checks each constraint before a handler runs and a failure becomes
a 422 VALIDATION_ERROR naming the field (service/errors.py). Cross-field
rules (price_min <= price_max) are checked here, before any SQL runs.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from litestar.params import Parameter

from service.api.errors import Unprocessable
from service.db.deals import DealFilters, Sort
from service.types import BIGINT_MAX, CATEGORY_NAME_MAX, CITY_MAX, INT_MAX, MONEY_PATTERN

DEFAULT_LIMIT = 20
MAX_LIMIT = 100

CountMode = Literal["exact", "estimated", "none"]

City = Annotated[
    str | None,
    Parameter(
        description=(
            "The hotel's city, matched whatever its case or Unicode normalization "
            "(MÜNCHEN and mu\\u0308nchen find München)."
        ),
        min_length=1,
        max_length=CITY_MAX,
    ),
]
MinStars = Annotated[
    int | None, Parameter(description="Only hotels with at least this star rating.", ge=1, le=5)
]
PriceMin = Annotated[
    str | None,
    Parameter(
        description="Lowest price per night, inclusive: a decimal string such as 80 or 79.99.",
        pattern=MONEY_PATTERN,
    ),
]
PriceMax = Annotated[
    str | None,
    Parameter(
        description=(
            "Highest price per night, inclusive: a decimal string such as 150 or 149.99; "
            "not below price_min."
        ),
        pattern=MONEY_PATTERN,
    ),
]
CategoryName = Annotated[
    str | None,
    Parameter(
        description="Only deals in this category (by name, case-insensitive).",
        min_length=1,
        max_length=CATEGORY_NAME_MAX,
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
        le=INT_MAX,
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


UpstreamDealId = Annotated[
    int | None,
    Parameter(
        description=(
            "Only the deal with this upstream id (Deal.deal_id, from the CSV): "
            "a page of zero or one item."
        ),
        ge=1,
        le=BIGINT_MAX,
    ),
]
DealId = Annotated[
    int,
    Parameter(
        description="The service's own id of the deal (`id`), not the upstream `deal_id`.",
        ge=1,
        le=BIGINT_MAX,
    ),
]
HotelId = Annotated[int, Parameter(description="The hotel's id.", ge=1, le=BIGINT_MAX)]


def invalid(field: str, message: str) -> Unprocessable:
    """A 422 for one query parameter, in the shape Litestar's own validation gives."""
    return Unprocessable(
        "the request is not valid",
        details=[{"field": field, "source": "query", "message": message}],
    )


def deal_filters(
    city: str | None,
    min_stars: int | None,
    price_min: str | None,
    price_max: str | None,
    category: str | None,
    is_available: bool | None,
) -> DealFilters:
    """The filters of GET /deals and GET /deals/stats as the queries bind them, prices as
    exact Decimals; 422 when price_min is above price_max."""
    low, high = price_range(price_min, price_max)
    return DealFilters(city, min_stars, low, high, category, is_available)


def price_range(
    price_min: str | None, price_max: str | None
) -> tuple[Decimal | None, Decimal | None]:
    """The two prices as exact Decimals; 422 when price_min is above price_max."""
    low = Decimal(price_min) if price_min is not None else None
    high = Decimal(price_max) if price_max is not None else None
    if low is not None and high is not None and low > high:
        raise invalid("price_min", f"price_min {low} is above price_max {high}")
    return low, high
