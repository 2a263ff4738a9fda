"""Keyset cursors and planner estimates, for the listing endpoints.

A cursor is opaque to clients: urlsafe base64 (unpadded) of a msgspec-JSON
position [sort, last sort key, last id, filters fingerprint] followed by a
16-byte HMAC-SHA256 of it. The HMAC is for integrity, not secrecy: the key
is a constant of the code, so that every worker and every release accepts
the cursors of the others; forging one gains nothing, since a position only
says where a page starts and every value is a bound parameter. A cursor that
fails the HMAC, or was made for another sort or other filters, is a 422.

count=estimated reads the planner's row estimate from EXPLAIN (FORMAT JSON)
of the page query with no LIMIT, so it costs a plan, not a scan. Without
filters the planner estimates from pg_class.reltuples scaled to the table's
current size, so it is as fresh as the last (auto)ANALYZE.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from decimal import Decimal
from typing import Any

import msgspec

from service.db import Connection
from service.sqlcat import Query

CURSOR_KEY = b"deals-service keyset cursor v1"
MAC_BYTES = 16


class CursorError(ValueError):
    """The cursor is not one this service made for this request."""


class Position(msgspec.Struct, frozen=True, array_like=True):
    """Where the next keyset page starts: after (key, last_id) in this sort."""

    sort: str
    key: str | None  # the last row's sort value as text (Decimal or ISO 8601); None for id
    last_id: int
    filters: str  # fingerprint of the filters the cursor was made for


_encode = msgspec.json.Encoder().encode
_decode_position = msgspec.json.Decoder(Position).decode


def _mac(payload: bytes) -> bytes:
    return hmac.new(CURSOR_KEY, payload, hashlib.sha256).digest()[:MAC_BYTES]


def encode_cursor(position: Position) -> str:
    payload = _encode(position)
    return base64.urlsafe_b64encode(payload + _mac(payload)).rstrip(b"=").decode("ascii")


def decode_cursor(token: str, *, sort: str, filters: str) -> Position:
    """The position in a cursor made for this sort and these filters, or CursorError."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise CursorError("the cursor is not valid") from None
    if len(raw) <= MAC_BYTES:
        raise CursorError("the cursor is not valid")
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(payload)):
        raise CursorError("the cursor is not valid")
    try:
        position = _decode_position(payload)
    except msgspec.DecodeError:
        raise CursorError("the cursor is not valid") from None
    if position.sort != sort:
        raise CursorError(f"the cursor was made for sort={position.sort}, not sort={sort}")
    if position.filters != filters:
        raise CursorError("the cursor was made for other filters")
    return position


def fingerprint(*values: Any) -> str:
    """A short, stable digest of filter values; equal filters give equal digests."""
    canonical = [v.normalize() if isinstance(v, Decimal) else v for v in values]
    digest = hashlib.sha256(_encode(canonical)).digest()[:8]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def estimate_rows(conn: Connection, query: Query, *args: Any) -> int:
    """The planner's estimate of the rows the query returns (EXPLAIN, nothing runs)."""
    plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query.sql}", *args)
    rows = msgspec.json.decode(plan)[0]["Plan"]["Plan Rows"]
    return int(rows)
