"""The loader's foreign keys: set-based when the role may skip the per-row triggers.

A superuser, or a role granted SET on session_replication_role, writes deals and
links without the per-row foreign-key triggers; the load then holds the locks
those triggers would hold and writes only references its joins proved. Any other
role, a user trigger on the tables, or --row-fk-checks keeps the triggers.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypeAlias
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from service.db import load as sql
from service.load import generator as generate
from service.load.steps import load_file
from tests import loadkit, pg
from tests.loadkit import row, rows, write

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"

_roles = itertools.count()

ORPHANS = """
SELECT (SELECT count(*) FROM deals d
        WHERE NOT EXISTS (SELECT 1 FROM hotels h WHERE h.id = d.hotel_id))
     + (SELECT count(*) FROM deal_categories dc
        WHERE NOT EXISTS (SELECT 1 FROM deals d WHERE d.id = dc.deal_id)
           OR NOT EXISTS (SELECT 1 FROM categories c WHERE c.id = dc.category_id))
"""


def as_role(url: str, role: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}:{password}@{host}"))


@pytest.fixture
async def loader_role(database_url: str, conn: Conn) -> AsyncIterator[str]:
    """A login role that may read and write the tables, and nothing more: the URL."""
    role = f"loader_{os.getpid()}_{next(_roles)}"
    await conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD 'loader'")
    await conn.execute(
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
    )
    await conn.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {role}")
    try:
        yield as_role(database_url, role, "loader")
    finally:
        await conn.execute(f"REVOKE SET ON PARAMETER session_replication_role FROM {role}")
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")


@pytest.fixture
def other_database(admin_url: str, template_db: str) -> Iterator[str]:
    name, url = pg.clone(admin_url, template_db)
    yield url
    pg.drop(admin_url, name)


async def state(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the four tables without system columns, ids included."""
    conn = await asyncpg.connect(url)
    try:
        return {
            "hotels": [tuple(r) for r in await conn.fetch("SELECT * FROM hotels ORDER BY id")],
            "deals": [tuple(r) for r in await conn.fetch("SELECT * FROM deals ORDER BY id")],
            "categories": [
                tuple(r) for r in await conn.fetch("SELECT * FROM categories ORDER BY id")
            ],
            "links": [
                tuple(r) for r in await conn.fetch("SELECT * FROM deal_categories ORDER BY 1, 2")
            ],
        }
    finally:
        await conn.close()


async def test_set_based_and_per_row_loads_leave_the_same_state(
    database_url: str, other_database: str, conn: Conn, tmp_path: Path
) -> None:
    first = tmp_path / "first.csv"
    generate.generate(first, 3_000, 40, seed=7)
    # the second file changes values and category sets of some deals and adds new ones
    second = write(
        tmp_path / "second.csv",
        [row(n, categories="budget") for n in range(1, 21)] + rows(30, start=5_001),
    )
    superuser = await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")

    for path in (first, second):
        fast = await load_file(database_url, path)
        slow = await load_file(other_database, path, row_fk_checks=True)
        assert fast.foreign_key_checks == ("set-based" if superuser else "per-row")
        assert slow.foreign_key_checks == "per-row"
        counted = ("deals_new", "deals_updated", "category_links_added", "category_links_removed")
        assert [getattr(fast, f) for f in counted] == [getattr(slow, f) for f in counted]
    assert (fast.deals_new, fast.deals_updated) == (30, 20)
    assert fast.category_links_removed > 0
    assert await state(database_url) == await state(other_database)
    assert await conn.fetchval(ORPHANS) == 0


async def test_a_role_without_the_privilege_keeps_the_per_row_triggers(
    loader_role: str, conn: Conn, tmp_path: Path
) -> None:
    role = urlsplit(loader_role).username
    path = write(tmp_path / "a.csv", rows(40))
    summary = await load_file(loader_role, path)
    assert summary.foreign_key_checks == "per-row"
    assert await loadkit.counts(conn) == {
        "hotels": 3,
        "deals": 40,
        "categories": 2,
        "deal_categories": 80,
    }

    await conn.execute(f"GRANT SET ON PARAMETER session_replication_role TO {role}")
    summary = await load_file(loader_role, write(tmp_path / "b.csv", rows(10, start=41)))
    assert summary.foreign_key_checks == "set-based"
    assert (summary.deals_new, summary.category_links_added) == (10, 20)
    assert await conn.fetchval(ORPHANS) == 0


async def test_a_user_trigger_on_the_tables_keeps_the_per_row_triggers(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    await conn.execute(
        """
        CREATE TABLE audit (deal_id bigint NOT NULL);
        CREATE FUNCTION audit_deal() RETURNS trigger LANGUAGE plpgsql AS
            $$BEGIN INSERT INTO audit VALUES (NEW.deal_id); RETURN NULL; END$$;
        CREATE TRIGGER deals_audit AFTER INSERT ON deals
            FOR EACH ROW EXECUTE FUNCTION audit_deal();
        """
    )
    summary = await load_file(database_url, write(tmp_path / "a.csv", rows(25)))
    assert summary.foreign_key_checks == "per-row"
    assert await conn.fetchval("SELECT count(*) FROM audit") == 25  # it fired for every deal


async def test_the_load_holds_the_locks_the_skipped_triggers_would(
    database_url: str, conn: Conn
) -> None:
    phone, elsewhere = "+33 1 00 00 01", "+33 1 00 00 02"
    await conn.execute(
        """INSERT INTO hotels (name, city, country, phone, star_rating)
           VALUES ('In the file', 'Paris', 'France', $1, 3),
                  ('Not in the file', 'Paris', 'France', $2, 3)""",
        phone,
        elsewhere,
    )
    await conn.execute("INSERT INTO categories (name) VALUES ('luxury'), ('spa')")
    other = await asyncpg.connect(database_url)
    try:
        await other.execute("SET lock_timeout = '200ms'")
        async with conn.transaction():
            await sql.create_work_tables(conn)
            await conn.execute(
                """INSERT INTO load_hotels
                   (phone, name, city, country, star_rating, record, first_record, disagree)
                   VALUES ($1, 'In the file', 'Paris', 'France', 3, 1, 1, false)""",
                phone,
            )
            assert await sql.lock_referenced_rows(conn) == 3  # one hotel, two categories

            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.execute("DELETE FROM hotels WHERE phone = $1", phone)
            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.execute("UPDATE hotels SET phone = '+1 999' WHERE phone = $1", phone)
            with pytest.raises(asyncpg.LockNotAvailableError):
                await other.execute("DELETE FROM categories WHERE name = 'spa'")
            # what a foreign key allows stays allowed: a change that keeps the key,
            # and any change to a hotel the file does not name
            await other.execute("UPDATE hotels SET star_rating = 4 WHERE phone = $1", phone)
            assert (
                await other.execute("DELETE FROM hotels WHERE phone = $1", elsewhere) == "DELETE 1"
            )
    finally:
        await other.close()
