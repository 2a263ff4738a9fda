"""yoyo-migrations over the plain SQL files in migrations/."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyo import get_backend, read_migrations
from yoyo.migrations import MigrationList

from service import data_dir


@dataclass(frozen=True)
class MigrationState:
    id: str
    applied: bool


APPLICATION_NAME = "deals-migrate"


def yoyo_url(database_url: str) -> str:
    """yoyo picks its driver from the scheme: psycopg 3 for PostgreSQL. The connection
    names itself deals-migrate, so that pg_stat_activity tells who is who."""
    scheme, rest = database_url.split("://", 1)
    if scheme in {"postgres", "postgresql"}:
        scheme = "postgresql+psycopg"
    if "application_name=" not in rest:
        rest += ("&" if "?" in rest else "?") + f"application_name={APPLICATION_NAME}"
    return f"{scheme}://{rest}"


def migrations_dir() -> Path:
    """migrations/ of the checkout, or service/migrations of the installed wheel."""
    return data_dir("service.migrations")


def migration_ids(directory: Path | None = None) -> list[str]:
    folder = directory or migrations_dir()
    return sorted(p.stem for p in folder.glob("*.sql") if not p.stem.endswith(".rollback"))


@contextmanager
def _open(database_url: str, directory: Path | None) -> Iterator[tuple[Any, Any]]:
    backend = get_backend(yoyo_url(database_url))
    try:
        found = read_migrations(str(directory or migrations_dir()))
        # The folder is also a package (its __init__.py ships it in the wheel): not a migration.
        yield backend, MigrationList([m for m in found if m.id != "__init__"])
    finally:
        backend.connection.close()


def apply(database_url: str, directory: Path | None = None) -> list[str]:
    with _open(database_url, directory) as (backend, migrations), backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def rollback(database_url: str, count: int | None = 1, directory: Path | None = None) -> list[str]:
    """Roll back the newest `count` applied migrations (all of them when None)."""
    with _open(database_url, directory) as (backend, migrations), backend.lock():
        applied = backend.to_rollback(migrations)
        chosen = applied if count is None else applied[:count]
        backend.rollback_migrations(chosen)
    return [m.id for m in chosen]


def status(database_url: str, directory: Path | None = None) -> list[MigrationState]:
    with _open(database_url, directory) as (backend, migrations):
        applied = {m.id for m in backend.to_rollback(migrations)}
        return [MigrationState(m.id, m.id in applied) for m in migrations]


# What `deals migrate new` writes under the header: the rules, then the timeouts, which
# squawk (make lint) asks for. SET LOCAL lasts until yoyo commits this file's transaction.
LOCK_TIMEOUT = "5s"
STATEMENT_TIMEOUT = "1min"
TIMEOUTS = (
    f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';\n"
    f"SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}';\n"
)
FORWARD_RULES = """\
--
-- Rules (CONTRIBUTING.md, "Adding a migration"); `make lint` runs squawk on this file.
-- * Keep the two SET LOCAL lines first: a statement that waits longer than
--   lock_timeout for its lock fails (run it again later) instead of queueing
--   every query of the table behind it. Raise statement_timeout only for a
--   backfill that needs it.
-- * Expand, migrate, contract: add (a nullable column, a table) in one
--   migration, backfill in the next, drop the old shape only once no deployed
--   release reads it.
-- * A constraint on an existing table: ADD CONSTRAINT ... NOT VALID here,
--   VALIDATE CONSTRAINT in a later migration. NOT NULL: a CHECK (c IS NOT
--   NULL) NOT VALID, validated, then SET NOT NULL.
-- * An index on an existing table: CREATE INDEX CONCURRENTLY IF NOT EXISTS,
--   one per migration, in a file of its own that starts with the directive
--   `-- transactional: false` (and `-- squawk-disable-assume-in-transaction`)
--   and uses plain SET: SET LOCAL does nothing outside a transaction.
-- * Never edit a migration once it is applied anywhere: write a new one.
"""
ROLLBACK_RULES = """\
-- The same rules as the forward file: it runs on the live database too.
-- Dropping what the forward file added loses what was written to it since:
-- say so in a `-- squawk-ignore ban-drop-column` line over the statement.
"""


def new(name: str, directory: Path | None = None) -> tuple[Path, Path]:
    """Create the next numbered migration and its rollback, depending on the newest one."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not slug:
        raise ValueError("a migration needs a name made of letters or digits")
    directory = directory or migrations_dir()
    ids = migration_ids(directory)
    number = int(ids[-1].split("_", 1)[0]) + 1 if ids else 1
    stem = f"{number:04d}_{slug}"
    forward = directory / f"{stem}.sql"
    backward = directory / f"{stem}.rollback.sql"
    depends = f"-- depends: {ids[-1]}\n" if ids else ""
    forward.write_text(
        f"{depends}-- Why this change is needed, in a line or two.\n{FORWARD_RULES}{TIMEOUTS}\n"
    )
    backward.write_text(f"-- Undo {stem} exactly.\n{ROLLBACK_RULES}{TIMEOUTS}\n")
    return forward, backward
