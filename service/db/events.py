"""One typed function per query of sql/events.sql: the change feed's outbox.

insert_deal_event is a write request's last statement before its commit:
it takes the 'deals.events' advisory lock that makes id order commit order
(sql/events.sql says why), and pg_notify() wakes the listeners at commit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

import msgspec

from service.db.catalogue import Connection, Exec, ExecRows, Many

EventType = Literal["deal.created", "deal.updated", "deal.deleted"]

CHANNEL = "deals_events"  # the NOTIFY channel of sql/events.sql
# At most this many expired events go with each write (a load deletes them all).
DELETE_PER_WRITE = 100

INSERT_DEAL_EVENT = Exec("insert_deal_event")
DELETE_EXPIRED_EVENTS = ExecRows("delete_expired_events")
LIST_EVENTS = Many("list_events")


class EventRow(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    type: EventType
    deal: int  # deals.id
    deal_id: int | None  # upstream id
    version: int
    at: datetime
    data: str | None  # the deal as JSON text; None for a delete


async def insert_deal_event(
    conn: Connection,
    *,
    type: EventType,
    deal: int,
    deal_id: int | None,
    version: int,
    data: str | None,
) -> None:
    """Append one event; call it last in the transaction (it holds the order lock to commit)."""
    await INSERT_DEAL_EVENT(conn, type, deal, deal_id, version, data)


async def delete_expired_events(conn: Connection, *, retention: timedelta, limit: int) -> int:
    """Delete at most `limit` events older than `retention`; the number deleted."""
    return await DELETE_EXPIRED_EVENTS(conn, retention, limit)


async def list_events(
    conn: Connection, *, after: int, limit: int, retention: timedelta
) -> list[EventRow]:
    rows = await LIST_EVENTS(conn, after, limit, retention)
    return [
        EventRow(
            id=r["id"],
            type=r["type"],
            deal=r["deal"],
            deal_id=r["deal_id"],
            version=r["version"],
            at=r["at"],
            data=r["data"],
        )
        for r in rows
    ]
