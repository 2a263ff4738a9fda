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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
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
    conn = _admin.get(admin_url)
    if conn is None or conn.closed or conn.broken:
        conn = _admin[admin_url] = psycopg.connect(admin_url, autocommit=True)
    conn.execute(sql.encode())


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
    """A new database copied from `template`: STRATEGY FILE_COPY copies the few
    megabytes of a small database as files instead of writing each block to the
    WAL (PostgreSQL 15+); an older server that refuses it gets a plain copy."""
    name = name or f"test_{os.getpid()}_{next(_counter)}"
    create = f'CREATE DATABASE "{name}" TEMPLATE "{template}"'
    if _file_copy.get(admin_url, True):
        try:
            admin_execute(admin_url, f"{create} STRATEGY FILE_COPY")
            _file_copy[admin_url] = True
            return name, with_database(admin_url, name)
        except psycopg.errors.SyntaxError:  # before PostgreSQL 15: no STRATEGY option
            _file_copy[admin_url] = False
    admin_execute(admin_url, create)
    return name, with_database(admin_url, name)


def refuse_writes(admin_url: str, name: str) -> None:
    """Sessions opened on `name` from now on refuse writes (default_transaction_read_only):
    a test that shares the database and writes by mistake fails instead of changing what
    the other tests read."""
    admin_execute(admin_url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')


def drop(admin_url: str, name: str) -> None:
    admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
