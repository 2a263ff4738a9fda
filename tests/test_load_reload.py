"""A reload touches only what changed: no write, no event, no VACUUM for an unchanged file;
and `deals load` starts without the web stack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import TypeAlias

import asyncpg

from service.load.report import Progress
from service.load.steps import load_file
from tests import loadkit
from tests.loadkit import row, rows, write

Conn: TypeAlias = "asyncpg.Connection[asyncpg.Record]"


class Phases(Progress):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def phase(self, name: str) -> None:
        self.seen.append(name)


async def vacuum_counts(conn: Conn) -> dict[str, int]:
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    found = await conn.fetch(
        "SELECT relname, vacuum_count FROM pg_stat_user_tables WHERE relname = ANY($1::text[])",
        list(loadkit.TABLES),
    )
    return {r["relname"]: r["vacuum_count"] for r in found}


async def test_an_unchanged_reload_writes_nothing_and_vacuums_nothing(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    path = write(tmp_path / "a.csv", rows(30))
    await load_file(database_url, path)
    before, vacuumed = await loadkit.snapshot(conn), await vacuum_counts(conn)
    events = await conn.fetchval("SELECT count(*) FROM events")

    phases = Phases()
    summary = await load_file(database_url, path, progress=phases)

    assert (summary.deals_unchanged, summary.deals_updated, summary.deals_new) == (30, 0, 0)
    assert "vacuum" not in phases.seen
    assert await loadkit.snapshot(conn) == before  # same xmin: no row rewritten
    assert await vacuum_counts(conn) == vacuumed
    assert await conn.fetchval("SELECT count(*) FROM events") == events == 30


async def test_a_reload_vacuums_only_the_tables_it_changed(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    await load_file(database_url, write(tmp_path / "a.csv", rows(30)))
    vacuumed = await vacuum_counts(conn)

    changed = [row(n, price_per_night="99.00") if n == 7 else row(n) for n in range(1, 31)]
    summary = await load_file(database_url, write(tmp_path / "b.csv", changed))

    assert (summary.deals_updated, summary.deals_unchanged) == (1, 29)
    after = await vacuum_counts(conn)
    assert {t: after[t] - vacuumed[t] for t in after} == {
        "hotels": 0,
        "deals": 1,
        "categories": 0,
        "deal_categories": 0,
    }
    assert await conn.fetchval("SELECT count(*) FROM events WHERE type = 'deal.updated'") == 1


def test_deals_load_imports_no_web_stack() -> None:
    """Process start counts in the 50,000-row goal: `deals load` builds its parser and
    imports the loader, never Litestar, uvicorn, redis or PyJWT (about a second)."""
    code = (
        "import sys\n"
        "from service.cli import main\n"
        "import service.load.steps\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'litestar', 'uvicorn', 'redis', 'jwt'})\n"
        "print(','.join(heavy))\n"
    )
    assert printed_by_a_fresh_python(code) == ""


def test_the_deals_parser_imports_no_other_commands_work() -> None:
    """`deals load` counts its process start: building the parser loads neither the
    embedded server's module (only without DATABASE_URL) nor the CSV generator."""
    code = (
        "import sys\n"
        "from service.cli import main\n"
        "main.build_parser()\n"
        "print(','.join(m for m in ('service.embedded', 'service.load.generator') "
        "if m in sys.modules))\n"
    )
    assert printed_by_a_fresh_python(code) == ""


def printed_by_a_fresh_python(code: str) -> str:
    """What `code` prints in a new interpreter: one whose sys.modules this suite has not filled."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return done.stdout.strip()


def test_the_token_help_names_every_scope() -> None:
    from service.api.auth import SCOPES
    from service.cli.token import SCOPES_HELP

    assert ", ".join(SCOPES) == SCOPES_HELP


async def indexes(conn: Conn) -> dict[str, tuple[int, str]]:
    found = await conn.fetch(
        "SELECT c.relname, c.oid::bigint AS oid, pg_get_indexdef(c.oid) AS ddl "
        "FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
        "WHERE i.indrelid IN ('deals'::regclass, 'deal_categories'::regclass)"
    )
    return {r["relname"]: (r["oid"], r["ddl"]) for r in found}


async def test_a_first_load_builds_the_secondary_indexes_after_the_data(
    database_url: str, conn: Conn, tmp_path: Path
) -> None:
    """Into an empty deals table the secondary indexes are dropped and built again in
    the load's transaction (new index oids, the same definitions); a later load keeps
    them (it never blocks readers), and the primary and unique keys always stay."""
    before = await indexes(conn)
    first = Phases()
    await load_file(database_url, write(tmp_path / "a.csv", rows(30)), progress=first)
    after = await indexes(conn)
    assert {n: ddl for n, (_oid, ddl) in after.items()} == {
        n: ddl for n, (_oid, ddl) in before.items()
    }
    rebuilt = {n for n in after if after[n][0] != before[n][0]}
    assert rebuilt == {
        "deals_hotel_id_id_idx",
        "deals_price_id_idx",
        "deals_created_at_id_idx",
        "deal_categories_category_id_idx",
    }
    assert "indexes" in first.seen
    again = Phases()
    await load_file(database_url, write(tmp_path / "b.csv", rows(40)), progress=again)
    assert await indexes(conn) == after
    assert "indexes" not in again.seen
    assert await conn.fetchval("SELECT count(*) FROM deals") == 40
