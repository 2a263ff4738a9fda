"""Where the tests get PostgreSQL, and per-test databases cloned from a migrated template.

Order: DEALS_TEST_DATABASE_URL when set; a testcontainers PostgreSQL when a
Docker engine answers; otherwise an embedded server in a temporary folder
(never the developer's .data/). That throwaway server runs with fsync=off:
nothing in it has to survive a crash of the machine, and every CREATE and
DROP DATABASE would otherwise wait on the disk.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psycopg

from service import migrate
from service.embedded import EmbeddedPostgres

_counter = itertools.count()


@contextlib.asynccontextmanager
async def connected(url: str) -> AsyncIterator[asyncpg.Connection[asyncpg.Record]]:
    """An asyncpg connection to `url`, closed when the block ends."""
    connection = await asyncpg.connect(url)
    try:
        yield connection
    finally:
        await connection.close()


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=2)
        client.ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def server() -> Iterator[tuple[str, str]]:
    """Yield (admin URL, where it came from) for the whole session."""
    with _located() as (url, source):
        try:
            yield url, source
        finally:
            close_admin(url)


@contextlib.contextmanager
def _located() -> Iterator[tuple[str, str]]:
    url = os.environ.get("DEALS_TEST_DATABASE_URL")
    if url:
        yield url, "DEALS_TEST_DATABASE_URL"
        return
    if docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:18-alpine", driver=None) as container:
            yield container.get_connection_url(), "testcontainers"
        return
    with tempfile.TemporaryDirectory(prefix="deals-test-pg-") as tmp:
        embedded = EmbeddedPostgres(Path(tmp))
        embedded.start()
        admin = embedded.url("postgres")
        try:
            # fsync is reloadable; a crash of this server alone still loses nothing.
            admin_execute(admin, "ALTER SYSTEM SET fsync = off")
            admin_execute(admin, "SELECT pg_reload_conf()")
            yield admin, "embedded"
        finally:
            close_admin(admin)
            embedded.stop()


_admin: dict[str, psycopg.Connection[tuple[object, ...]]] = {}


def admin_execute(admin_url: str, sql: str) -> None:
    """Run one statement as the admin, on a connection kept open for the session."""
    _admin[admin_url] = execute_on(_admin.get(admin_url), admin_url, sql)


def execute_on(
    conn: psycopg.Connection[tuple[object, ...]] | None, admin_url: str, sql: str
) -> psycopg.Connection[tuple[object, ...]]:
    """Run one statement on conn, opened (again) first when it is missing or gone;
    returns the connection it ran on, to be kept for the next statement."""
    if conn is None or conn.closed or conn.broken:
        conn = psycopg.connect(admin_url, autocommit=True)
    conn.execute(sql.encode())
    return conn


def close_admin(admin_url: str) -> None:
    conn = _admin.pop(admin_url, None)
    if conn is not None:
        conn.close()


def create_template(admin_url: str, name: str) -> str:
    """A migrated database that per-test databases are cloned from."""
    admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    migrate.apply(url)
    return url


_file_copy: dict[str, bool] = {}


def clone(admin_url: str, template: str, name: str | None = None) -> tuple[str, str]:
    """A new database copied from `template`: (its name, its URL)."""
    return _clone(lambda sql: admin_execute(admin_url, sql), admin_url, template, name)


def _clone(
    execute: Callable[[str], None], admin_url: str, template: str, name: str | None = None
) -> tuple[str, str]:
    """STRATEGY FILE_COPY copies the few megabytes of a small database as files instead
    of writing each block to the WAL (PostgreSQL 15+); an older server that refuses it
    gets a plain copy."""
    name = name or f"test_{os.getpid()}_{next(_counter)}"
    create = f'CREATE DATABASE "{name}" TEMPLATE "{template}"'
    if _file_copy.get(admin_url, True):
        try:
            execute(f"{create} STRATEGY FILE_COPY")
            _file_copy[admin_url] = True
            return name, with_database(admin_url, name)
        except psycopg.errors.SyntaxError:  # before PostgreSQL 15: no STRATEGY option
            _file_copy[admin_url] = False
    execute(create)
    return name, with_database(admin_url, name)


def refuse_writes(admin_url: str, name: str) -> None:
    """Sessions opened on `name` from now on refuse writes (default_transaction_read_only):
    a test that shares the database and writes by mistake fails instead of changing what
    the other tests read."""
    admin_execute(admin_url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')


def drop_sql(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


def drop(admin_url: str, name: str) -> None:
    admin_execute(admin_url, drop_sql(name))


class Spares:
    """Clones of one template made one test ahead, and dropped after their test, in a
    thread of their own: a test that needs a database of its own takes the one made
    while the test before it ran, instead of waiting for CREATE DATABASE (and for the
    DROP of the one before). The thread has its own admin connection; nothing else
    changes: each test still gets a fresh copy of the template, and no database is left."""

    made: ClassVar[list[Spares]] = []  # every one of this process, for settle_spares()

    def __init__(self, admin_url: str, template: str) -> None:
        Spares.made.append(self)
        self.admin_url = admin_url
        self.template = template
        self.thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"spares-{template}")
        self.next: Future[tuple[str, str]] | None = None
        self.connection: psycopg.Connection[tuple[object, ...]] | None = None

    def _execute(self, sql: str) -> None:  # in the thread only
        self.connection = execute_on(self.connection, self.admin_url, sql)

    def _clone(self) -> tuple[str, str]:
        return _clone(self._execute, self.admin_url, self.template)

    def take(self) -> tuple[str, str]:
        """A fresh clone (name, URL); the next one starts at once. A clone that failed
        (a test restarted the server while it was made) is made again, once."""
        ready = self.next or self.thread.submit(self._clone)
        self.next = None
        try:
            made = ready.result()
        except psycopg.OperationalError:
            made = self.thread.submit(self._clone).result()
        self.next = self.thread.submit(self._clone)
        return made

    def give_back(self, name: str) -> None:
        """Drop the clone, after the test, without waiting for it."""
        self.thread.submit(self._execute, drop_sql(name))

    def settle(self) -> None:
        """Wait until the work asked of the thread so far (a clone, drops) is done."""
        self.thread.submit(lambda: None).result()

    def close(self) -> None:
        if self.next is not None:
            with contextlib.suppress(psycopg.OperationalError):
                name, _url = self.next.result()
                self.give_back(name)
        self.thread.submit(self._close_connection).result()
        self.thread.shutdown()
        Spares.made.remove(self)

    def _close_connection(self) -> None:
        if self.connection is not None:
            self.connection.close()


def settle_spares() -> None:
    """Wait until no spare is being made or dropped: for a test that needs the server
    idle (a standby with nothing to replay)."""
    for spares in Spares.made:
        spares.settle()
