"""The change feed's wake-up: one LISTEN connection per worker, shared by every waiting request.

GET /events?wait=n reads a page; when it is empty it waits on this
listener, not on the table: writers NOTIFY in their transaction
(sql/events.sql), PostgreSQL delivers it at commit, and every waiting
request of the worker wakes and reads again. Nothing polls.

The connection opens on the first wait (a worker that serves no waits holds
none) and again after it is lost; losing it wakes every waiter, so that
none sleeps through an event it can no longer be told about. When the
worker begins to drain (SIGTERM) or closes, every wait ends at once with what
it has, and no new one waits: the graceful shutdown is not held up by them.

LISTEN needs a session of its own: through PgBouncer in transaction mode the
server connection that ran it goes back to the pool, and PgBouncer drops the
notification ("got packet 'A' from server when not linked"). With no URL of
PostgreSQL itself (DATABASE_POOLER=pgbouncer without DATABASE_DIRECT_URL) the
listener polls instead: every POLL_SECONDS while a request waits, every waiter
of the worker wakes and reads the feed again (one query each).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import asyncpg

from service.compat import DRAIN_HOOKS
from service.db.events import CHANNEL
from service.settings import redact_url

log = logging.getLogger("service.db")

POLL_SECONDS = 1.0  # no LISTEN (url None): how often waiting requests read the feed again


class EventListener:
    def __init__(self, url: str | None, connect_timeout: float) -> None:
        self.url = url  # None: poll every POLL_SECONDS instead of LISTEN
        self.connect_timeout = connect_timeout
        self._conn: asyncpg.Connection[Any] | None = None
        self._opening = asyncio.Lock()
        self._changed = asyncio.Event()
        self._tick: asyncio.TimerHandle | None = None
        self.stopping = False

    @property
    def listening(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def start(self) -> bool:
        """Listen (once per worker); False when stopping or the database cannot be reached."""
        if self.url is None or self.listening or self.stopping:
            return not self.stopping
        async with self._opening:
            if self.listening or self.stopping:
                return not self.stopping
            url = self.url
            assert url is not None
            try:
                conn = await asyncpg.connect(
                    url,
                    timeout=self.connect_timeout,
                    server_settings={"application_name": "deals-api-events"},
                )
                await conn.add_listener(CHANNEL, self._notified)
            except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
                log.warning(
                    "cannot LISTEN for events on %s (%s): waits answer at once",
                    redact_url(url),
                    exc.__class__.__name__,
                )
                return False
            conn.add_termination_listener(self._lost)
            self._conn = conn
            if self.stop not in DRAIN_HOOKS:
                DRAIN_HOOKS.append(self.stop)
            return True

    def changed(self) -> asyncio.Event:
        """Set at the next notification: take it before reading, wait on it after.

        Polling, it is set POLL_SECONDS after the first waiter since the last tick took it.
        """
        if self.url is None and self._tick is None and not self.stopping:
            self._tick = asyncio.get_running_loop().call_later(POLL_SECONDS, self._ticked)
        return self._changed

    def _ticked(self) -> None:
        self._tick = None
        self._wake()

    def _wake(self) -> None:
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    def _notified(self, *_args: Any) -> None:
        self._wake()

    def _lost(self, _conn: Any) -> None:
        self._conn = None
        self._wake()

    def stop(self) -> None:
        """No more waiting: every wait ends now, and later ones answer at once."""
        self.stopping = True
        if self._tick is not None:
            self._tick.cancel()
            self._tick = None
        self._wake()

    async def close(self) -> None:
        self.stop()
        if self.stop in DRAIN_HOOKS:
            DRAIN_HOOKS.remove(self.stop)
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.remove_termination_listener(self._lost)
            await conn.close()
