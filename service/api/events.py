"""/events: the change feed, every committed change of a deal in commit order.

A page is one statement (sql/events.sql, list_events): the events after
the cursor's id, oldest first. Ids are drawn under a lock held to commit,
so id order is commit order and `id > last` skips nothing (sql/events.sql
says why). With wait, an empty page waits for the worker's one LISTEN
connection (service/db/listener.py) to hear a commit, then reads again;
nothing polls.

The cursor is opaque: urlsafe base64 of [last id, a time in microseconds]
and an HMAC, as for /deals. The time is that of the last event handed out,
or, on an empty page, the read's time less CLOCK_MARGIN: no event after the
cursor is older than it, so once it is older than EVENTS_RETENTION events
the consumer has not seen may be gone, and the answer is a 410
CURSOR_EXPIRED instead of a silent gap. Writers delete expired events
(service/api/deals.py, the loader) and list_events hides any not yet deleted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
from litestar import Controller, Response
from litestar.datastructures import State
from litestar.params import Parameter

from service.api.errors import Gone, read
from service.api.params import invalid
from service.db.events import EventRow, EventType, list_events
from service.db.pool import Database
from service.db.rows import Deal

CURSOR_KEY = b"deals-service events cursor v1"
MAC_BYTES = 16
MAX_WAIT = 30
MAX_EVENTS_LIMIT = 1000
DEFAULT_EVENTS_LIMIT = 100
# An empty page's cursor is dated this much before the read: a writer's event is
# dated as its id is drawn, a moment before its commit, and the clocks of the app
# and the database may differ by a little.
CLOCK_MARGIN = timedelta(minutes=5)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

After = Annotated[
    str | None,
    Parameter(
        description=(
            "The next_cursor of the previous answer; absent or empty: the oldest event kept."
        ),
        max_length=200,
    ),
]
EventsLimit = Annotated[
    int,
    Parameter(
        description=f"Most events in the answer, 1 to {MAX_EVENTS_LIMIT}.",
        ge=1,
        le=MAX_EVENTS_LIMIT,
    ),
]
Wait = Annotated[
    int,
    Parameter(
        description=(
            f"Seconds, 0 to {MAX_WAIT}: when no event follows the cursor, wait up to this "
            "long for the next commit instead of answering an empty page at once."
        ),
        ge=0,
        le=MAX_WAIT,
    ),
]


class DealRef(msgspec.Struct, frozen=True, kw_only=True):
    id: int
    deal_id: Annotated[int | None, msgspec.Meta(description="The upstream id, if any.")]
    version: Annotated[
        int,
        msgspec.Meta(description="The version after the change; for a delete, the one deleted."),
    ]


class Event(msgspec.Struct, frozen=True, kw_only=True):
    id: Annotated[int, msgspec.Meta(description="Rises in commit order; gaps are possible.")]
    type: EventType
    deal: DealRef
    at: Annotated[datetime, msgspec.Meta(description="When it was written, just before commit.")]
    data: Annotated[
        Deal | None,
        msgspec.Meta(
            description="The deal as GET /deals/{id} returned it after the change; "
            "null for a delete."
        ),
    ]


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    items: Annotated[list[Event], msgspec.Meta(description="Oldest first.")]
    next_cursor: Annotated[
        str, msgspec.Meta(description="Send it as after= for what follows; never null.")
    ]


class FeedPosition(msgspec.Struct, frozen=True, array_like=True):
    last_id: int
    at_us: int  # microseconds since the epoch, UTC


_encode = msgspec.json.Encoder().encode
_decode_position = msgspec.json.Decoder(FeedPosition).decode
_decode_deal = msgspec.json.Decoder(Deal).decode


def _mac(payload: bytes) -> bytes:
    return hmac.new(CURSOR_KEY, payload, hashlib.sha256).digest()[:MAC_BYTES]


def micros(at: datetime) -> int:
    delta = at - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def encode_cursor(position: FeedPosition) -> str:
    payload = _encode(position)
    return base64.urlsafe_b64encode(payload + _mac(payload)).rstrip(b"=").decode("ascii")


def decode_cursor(token: str) -> FeedPosition:
    """The position in a cursor this service made, or a 422 naming after."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
        if len(raw) > MAC_BYTES and hmac.compare_digest(mac, _mac(payload)):
            return _decode_position(payload)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        pass
    raise invalid("after", "the cursor is not valid")


def to_event(row: EventRow) -> Event:
    return Event(
        id=row.id,
        type=row.type,
        deal=DealRef(id=row.deal, deal_id=row.deal_id, version=row.version),
        at=row.at,
        data=None if row.data is None else _decode_deal(row.data),
    )


class EventsController(Controller):
    path = "/events"
    tags = ["events"]  # noqa: RUF012

    @read("/", "The change feed", "listEvents", 410, 422, 503, 504)
    async def list_events(
        self,
        state: State,
        after: After = None,
        limit: EventsLimit = DEFAULT_EVENTS_LIMIT,
        wait: Wait = 0,
    ) -> Response[EventPage]:
        """Every committed change of a deal (created, updated, deleted; by the API or a
        load), each once and in commit order, for a consumer that sends each answer's
        next_cursor as `after`. A cursor older than EVENTS_RETENTION is a 410
        CURSOR_EXPIRED: start again without one."""
        db: Database = state.db
        retention: timedelta = state.settings.events_retention
        position = FeedPosition(last_id=0, at_us=0)
        if after:
            position = decode_cursor(after)
            expired = datetime.now(UTC) - retention
            if position.at_us < micros(expired):
                raise Gone(
                    "the cursor is older than the events kept "
                    f"(EVENTS_RETENTION {retention}); start again without after",
                    details=[{"field": "after", "source": "query", "message": "expired"}],
                )
        deadline = time.monotonic() + wait
        listening = wait > 0 and await db.listener.start()
        while True:
            changed = db.listener.changed()  # taken before the read: no commit slips between
            # the primary's: its wake-ups come from the primary, a replica's feed may lag
            async with db.primary() as conn:
                rows = await list_events(
                    conn, after=position.last_id, limit=limit, retention=retention
                )
            remaining = deadline - time.monotonic()
            if rows or not listening or remaining <= 0:
                break
            try:
                await asyncio.wait_for(changed.wait(), remaining)
            except TimeoutError:
                break
            if db.listener.stopping:  # the worker drains: answer with what there is
                break
            listening = await db.listener.start()
        if rows:
            last = rows[-1]
            cursor = FeedPosition(last_id=last.id, at_us=micros(last.at))
        else:  # nothing new: the same place, dated now (less the margin) so a quiet feed
            # does not expire a follower that has missed nothing
            now = micros(datetime.now(UTC) - CLOCK_MARGIN)
            cursor = FeedPosition(last_id=position.last_id, at_us=max(now, position.at_us))
        page = EventPage(items=[to_event(row) for row in rows], next_cursor=encode_cursor(cursor))
        return Response(page)
