"""Keyset cursors for the listing endpoints.

A cursor is opaque to clients: urlsafe base64 (unpadded) of a msgspec-JSON
position [sort, last sort key, last id, filters fingerprint] followed by a
16-byte HMAC-SHA256 of it. The HMAC is for integrity, not secrecy: the key
is a constant of the code, so that every worker and every release accepts
the cursors of the others; forging one gains nothing, since a position only
says where a page starts and every value is a bound parameter. A cursor that
fails the HMAC, or was made for another sort or other filters, is a 422.

"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from service.db.deals import Sort
from service.db.rows import Deal

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


Key = Decimal | datetime | None


def sort_key(sort: Sort, deal: Deal) -> str | None:
    """The last row's value of the sort column, as the cursor keeps it."""
    if sort in ("price", "-price"):
        return str(deal.price_per_night)
    if sort in ("created_at", "-created_at"):
        return deal.created_at.isoformat()
    return None


def parse_key(sort: Sort, key: str | None) -> Key:
    """The cursor's sort value with its type back; CursorError when it does not fit the sort."""
    if sort == "id":
        if key is None:
            return None
    elif key is not None:
        try:
            return Decimal(key) if sort in ("price", "-price") else datetime.fromisoformat(key)
        except (InvalidOperation, ValueError):
            pass
    raise CursorError("the cursor is not valid")
