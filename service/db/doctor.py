"""One typed function per query of sql/doctor.sql (what `deals doctor` reads)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TypeVar

import msgspec

from service.db.catalogue import Connection, Exec, Many, One, Record

SERVER = One("doctor_server")
INSTALL_PG_STAT_STATEMENTS = Exec("doctor_install_pg_stat_statements")
SEQ_SCANNED_TABLES = Many("doctor_seq_scanned_tables")
STATEMENTS_ON_TABLE = Many("doctor_statements_on_table")
INDEX_NAMES = Many("doctor_index_names")
IDLE_IN_TRANSACTION = Many("doctor_idle_in_transaction")
CONNECTIONS = Many("doctor_connections")
TABLE_HEALTH = Many("doctor_table_health")

T = TypeVar("T")


class Server(msgspec.Struct, frozen=True, kw_only=True):
    database: str
    version: str
    max_connections: int
    reserved_connections: int
    statements_preloaded: bool
    statements_installed: bool


class SeqScannedTable(msgspec.Struct, frozen=True, kw_only=True):
    table_name: str
    live_rows: int
    pages: int
    seq_scan: int
    seq_tup_read: int
    idx_scan: int
    idx_tup_fetch: int


class Statement(msgspec.Struct, frozen=True, kw_only=True):
    name: str | None  # None: a statement sent without the catalogue's /* name */
    calls: int
    rows: int
    blocks: int
    blocks_read: int
    total_ms: float
    query: str


class IdleInTransaction(msgspec.Struct, frozen=True, kw_only=True):
    pid: int
    application_name: str
    state: str
    idle_seconds: float
    transaction_seconds: float
    query: str


class Connections(msgspec.Struct, frozen=True, kw_only=True):
    application_name: str
    connections: int


class TableHealth(msgspec.Struct, frozen=True, kw_only=True):
    table_name: str
    live_rows: int
    dead_rows: int
    changed_since_analyze: int
    estimated_rows: int
    pages: int
    all_visible_pages: int
    last_vacuum: datetime | None
    last_analyze: datetime | None
    options: list[str]


def _as(rows: Sequence[Record], struct: type[T]) -> list[T]:
    return [msgspec.convert(dict(row), struct) for row in rows]


async def server(conn: Connection) -> Server:
    row = await SERVER(conn)
    assert row is not None  # a SELECT without FROM has its one row
    return msgspec.convert(dict(row), Server)


async def install_pg_stat_statements(conn: Connection) -> None:
    await INSTALL_PG_STAT_STATEMENTS(conn)


async def seq_scanned_tables(
    conn: Connection, *, min_rows: int, min_rows_per_scan: int
) -> list[SeqScannedTable]:
    return _as(await SEQ_SCANNED_TABLES(conn, min_rows, min_rows_per_scan), SeqScannedTable)


async def statements_on_table(
    conn: Connection, *, table: str, min_blocks_per_call: int, limit: int
) -> list[Statement]:
    rows = await STATEMENTS_ON_TABLE(conn, table, min_blocks_per_call, limit)
    return _as(rows, Statement)


async def index_names(conn: Connection) -> set[str]:
    return {row["name"] for row in await INDEX_NAMES(conn)}


async def idle_in_transaction(conn: Connection, *, min_seconds: float) -> list[IdleInTransaction]:
    return _as(await IDLE_IN_TRANSACTION(conn, min_seconds), IdleInTransaction)


async def connections(conn: Connection) -> list[Connections]:
    return _as(await CONNECTIONS(conn), Connections)


async def table_health(conn: Connection, *, tables: Sequence[str]) -> list[TableHealth]:
    return _as(await TABLE_HEALTH(conn, list(tables)), TableHealth)
