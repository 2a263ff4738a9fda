"""Optimistic locking over HTTP: the ETag of a deal, If-Match, and why a write matched nothing.

A deal's ETag is its version, quoted ("3"). A write checks the version and
writes in one statement; only when that matches nothing does a second read
tell the client why: absent 404, stale If-Match 412, stale body version 409,
or dates that are out of order once merged 422.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

from litestar.datastructures import ResponseHeader
from litestar.params import HeaderParameter

from service.api.errors import (
    ApiError,
    Conflict,
    NotFound,
    PreconditionFailed,
    PreconditionRequired,
    Unprocessable,
)
from service.db.deal_writes import VersionAndDates
from service.types import INT_MAX


def deal_etag(version: int) -> str:
    """The ETag of a deal at this version: the version, quoted ("3")."""
    return f'"{version}"'


ETAG_PATTERN = r'^"[1-9][0-9]*"$'
# The headers of a deal read or write, for `response_headers=`; their schemas
# are filled in by service/api/openapi.py (Litestar 2 documents none).
ETAG_HEADER = ResponseHeader(
    name="ETag",
    description='The deal\'s version, quoted ("3"): send it as If-Match to change the deal.',
    documentation_only=True,
    required=True,
)
LOCATION_HEADER = ResponseHeader(
    name="Location",
    description="The new deal's path, /deals/{id}.",
    documentation_only=True,
    required=True,
)


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


IfMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-Match",
        required=False,
        pattern=IF_MATCH_PATTERN,
        description='The ETag of the deal as last read ("3"); a stale one gets 412.',
    ),
]


IfNoneMatch = Annotated[
    str | None,
    HeaderParameter(
        name="If-None-Match",
        required=False,
        description=(
            'ETags the client holds ("3", W/"3", a list of them, or *): 304 with no body '
            "when one is the deal's current ETag."
        ),
    ),
]


def none_match(header: str | None, etag: str) -> bool:
    """Whether If-None-Match holds this ETag, by weak comparison as RFC 9110
    13.1.2 says: `*` matches any current deal, W/"3" matches "3". A header
    that is not a list of entity tags matches nothing: the client gets the
    deal (200), never an error for a cache header. Our tags are digits, so a
    comma always separates two tags."""
    if header is None:
        return False
    if header.strip() == "*":
        return True
    ours = ENTITY_TAG.match(etag)
    listed = [ENTITY_TAG.match(part.strip()) for part in header.split(",") if part.strip()]
    if ours is None or not listed or any(tag is None for tag in listed):
        return False
    return any(tag is not None and tag[2] == ours[2] for tag in listed)


def why_nothing_matched(
    deal_id: int,
    stored: VersionAndDates | None,
    if_match: int | None,
    sent_version: int | None,
    dates: tuple[date | None, date | None] = (None, None),
) -> ApiError | None:
    """Why a write matched no row; None when every check passes (a PATCH that changes nothing).

    dates are the patch's (checkin_date, checkout_date), None where not sent.
    """
    if stored is None:
        return NotFound(f"deal {deal_id} does not exist")
    if if_match is not None and stored.version != if_match:
        return PreconditionFailed(
            f"deal {deal_id} is at version {stored.version}, not {if_match}",
            details=[{"current_version": stored.version}],
        )
    if sent_version is not None and stored.version != sent_version:
        return Conflict(
            f"deal {deal_id} was changed: version {sent_version} is stale, "
            f"the current version is {stored.version}",
            code="VERSION_CONFLICT",
            details=[{"current_version": stored.version}],
        )
    checkin = dates[0] or stored.checkin_date
    checkout = dates[1] or stored.checkout_date
    if checkout > checkin:
        return None
    return Unprocessable(
        "checkout_date must be after checkin_date (judged on the stored deal with the patch)",
        details=[{"field": "checkout_date", "message": "must be after checkin_date"}],
    )


def require_precondition(if_match: str | None, sent_version: int | None) -> None:
    """428 when a write names no version: neither If-Match nor a body version."""
    if if_match is None and sent_version is None:
        raise PreconditionRequired(
            "send the version you last read: If-Match with the deal's ETag, "
            "or version in the body (PATCH), so that no change is overwritten blindly",
            details=[{"field": "If-Match", "source": "header", "message": "is required"}],
        )
