"""The SQL catalogue parses strictly, and every query prepares against the migrated schema."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from service.db import catalogue as sqlcat
from service.db import load as load_sql


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "x.sql").write_text(text)
    return tmp_path


def test_parses_header_doc_and_kind(tmp_path: Path) -> None:
    cat = sqlcat.load(
        write(
            tmp_path,
            "-- name: get_thing :one\n-- Serves GET /thing.\n-- Uses pk.\nSELECT $1::int\n",
        )
    )
    query = cat["get_thing"]
    assert query.kind == "one"
    assert query.doc == "Serves GET /thing.\nUses pk."
    assert query.sql == "-- name: get_thing :one\nSELECT /* get_thing */ $1::int"
    assert (query.file, query.line, query.params) == ("x.sql", 1, 1)


def test_duplicate_name_fails(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("-- name: same :exec\nSELECT 1\n")
    (tmp_path / "b.sql").write_text("-- name: same :exec\nSELECT 2\n")
    with pytest.raises(sqlcat.CatalogueError, match="duplicate query name same"):
        sqlcat.load(tmp_path)


def test_unknown_kind_fails(tmp_path: Path) -> None:
    with pytest.raises(sqlcat.CatalogueError, match="unknown kind :some"):
        sqlcat.load(write(tmp_path, "-- name: q :some\nSELECT 1\n"))


def test_placeholder_gap_fails(tmp_path: Path) -> None:
    with pytest.raises(sqlcat.CatalogueError, match="gap"):
        sqlcat.load(write(tmp_path, "-- name: q :one\nSELECT $1::int, $3::int\n"))


def test_placeholders_in_strings_and_comments_do_not_count(tmp_path: Path) -> None:
    cat = sqlcat.load(write(tmp_path, "-- name: q :one\nSELECT '$2', $1::int -- $5\n"))
    assert cat["q"].params == 1


async def test_every_query_prepares(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    assert sqlcat.CATALOGUE, "the catalogue is empty"
    async with conn.transaction():
        # the loader's queries read its TEMP work tables, which live inside a load's transaction
        await load_sql.create_work_tables(conn)
        # the doctor reads pg_stat_statements, which it installs where it is preloaded
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for query in sqlcat.CATALOGUE.values():
            statement = await conn.prepare(query.sql)
            assert len(statement.get_parameters()) == query.params, query.name


async def test_pg_stat_statements_names_the_query(
    conn: asyncpg.Connection[asyncpg.Record],
) -> None:
    preloaded = await conn.fetchval("SHOW shared_preload_libraries")
    if "pg_stat_statements" not in preloaded:
        pytest.skip("this server does not preload pg_stat_statements")
    await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    query = sqlcat.CATALOGUE["get_deal"]
    await conn.fetch(query.sql, 1)
    texts = await conn.fetch(
        "SELECT query FROM pg_stat_statements WHERE query LIKE '%/* get_deal */%' "
        "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )
    assert len(texts) == 1
