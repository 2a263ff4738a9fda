"""The constrained types and limits of the edges, defined once.

Request Structs, query parameters, row Structs and the loader use these.
msgspec checks what it can (ints, strings, lengths, patterns) while decoding;
it cannot constrain a Decimal, so the money and percent rules (finite, range,
at most 2 places) are checked by `decimal_problem`, field by field, so that a
422 names every failing field. The same rules hold as CHECK constraints in
the database.

Money and percentages travel as JSON strings in one plain form, the one
answers use: digits, no sign, exponent or leading zero, and at most 2
decimal places. PRICE_PATTERN and PERCENT_PATTERN state that form and the
range, so that the OpenAPI schema allows exactly what a write accepts.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated

import msgspec

BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1
PRICE_MAX = Decimal("99999999.99")  # numeric(10, 2)
PERCENT_MAX = Decimal(100)
# A price filter as text: digits with at most 2 decimal places, at most numeric(10, 2)'s maximum.
MONEY_PATTERN = r"^[0-9]{1,8}(\.[0-9]{1,2})?$"
# A price in a body or an answer: above 0 and at most 99999999.99, in the plain form.
PRICE_PATTERN = r"^([1-9][0-9]{0,7}(\.[0-9]{1,2})?|0\.(0[1-9]|[1-9][0-9]?))$"
# A percentage in a body or an answer: 0 to 100, in the plain form.
PERCENT_PATTERN = r"^(100(\.0{1,2})?|[1-9]?[0-9](\.[0-9]{1,2})?)$"
NOT_BLANK_PATTERN = r"\S"
CATEGORY_NAME_MAX = 100  # a longer name in a query or a body is refused before any SQL
CITY_MAX = 200
# A deal's own values, in the deals CSV's order (shared/spec/deals-csv.md): the CSV, the
# API's bodies and the deals table name them alike (load/source.COLUMNS, db/deal_writes).
DEAL_VALUES = (
    "room_type",
    "price_per_night",
    "original_price",
    "discount_percent",
    "checkin_date",
    "checkout_date",
    "is_available",
)

Stars = Annotated[int, msgspec.Meta(ge=1, le=5)]

Id = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]
UpstreamId = Annotated[
    int,
    msgspec.Meta(ge=1, le=BIGINT_MAX, description="The deal's id in the upstream system."),
]
Version = Annotated[
    int,
    msgspec.Meta(
        ge=1,
        le=INT_MAX,
        description="The version the client last read; a stale one gets 409 VERSION_CONFLICT.",
    ),
]
RoomType = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=100,
        pattern=NOT_BLANK_PATTERN,
        description="Standard, Deluxe, Suite, ...",
    ),
]
Money = Annotated[
    Decimal,
    msgspec.Meta(
        description=(
            "Greater than 0 and at most 99999999.99, with at most 2 decimal places; "
            "sent and returned as a JSON string."
        ),
        examples=["129.99"],
        extra_json_schema={"pattern": PRICE_PATTERN},
    ),
]
Percent = Annotated[
    Decimal,
    msgspec.Meta(
        description="0 to 100, with at most 2 decimal places; sent and returned as a JSON string.",
        examples=["15.5"],
        extra_json_schema={"pattern": PERCENT_PATTERN},
    ),
]
CategoryName = Annotated[str, msgspec.Meta(min_length=1, max_length=CATEGORY_NAME_MAX)]
CategoryNames = Annotated[
    list[CategoryName],
    msgspec.Meta(max_length=20, description="Known category names; duplicates are ignored."),
]
Day = Annotated[date, msgspec.Meta(description="YYYY-MM-DD")]


def decimal_problem(value: Decimal, *, low: Decimal, high: Decimal, low_open: bool) -> str | None:
    """Why a money or percent value breaks its rule, or None."""
    if not value.is_finite():
        return "must be a finite number"
    if (value <= low) if low_open else (value < low):
        return f"must be greater than {low}" if low_open else f"must be at least {low}"
    if value > high:
        return f"must be at most {high}"
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -2 and value != value.quantize(Decimal("0.01")):
        return "must have at most 2 decimal places"
    return None


def price_problem(value: Decimal) -> str | None:
    return decimal_problem(value, low=Decimal(0), high=PRICE_MAX, low_open=True)


def percent_problem(value: Decimal) -> str | None:
    return decimal_problem(value, low=Decimal(0), high=PERCENT_MAX, low_open=False)


def normalize_categories(names: list[str]) -> list[str]:
    """Trimmed, lower-cased, deduplicated, empty items dropped, sorted."""
    return sorted({name.strip().lower() for name in names if name.strip()})
