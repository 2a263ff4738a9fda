"""Where the tests get PostgreSQL, and per-test databases cloned from a migrated template.

Order: DEALS_TEST_DATABASE_URL when set; a testcontainers PostgreSQL when a
Docker engine answers; otherwise an embedded server in a temporary folder
(never the developer's .data/).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

from service import migrate
from service.embedded import EmbeddedPostgres

_counter = itertools.count()


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
        try:
            yield embedded.url("postgres"), "embedded"
        finally:
            embedded.stop()


def admin_execute(admin_url: str, sql: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.encode())


def create_template(admin_url: str, name: str) -> str:
    """A migrated database that per-test databases are cloned from."""
    admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    url = with_database(admin_url, name)
    migrate.apply(url)
    return url


def clone(admin_url: str, template: str) -> tuple[str, str]:
    name = f"test_{os.getpid()}_{next(_counter)}"
    admin_execute(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name, with_database(admin_url, name)


def drop(admin_url: str, name: str) -> None:
    admin_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
