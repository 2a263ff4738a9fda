"""`deals sql list` and `deals sql explain`: the SQL catalogue, for SREs.

    deals sql list
    deals sql explain list_deals_by_id --param paris --param 3 --param null ...

explain runs EXPLAIN (ANALYZE, BUFFERS) of the named query with the given
values of $1, $2, ... converted to the types PostgreSQL infers for them
('null' is NULL; an array takes comma-separated items). ANALYZE executes the
query, so it runs in a transaction that is always rolled back: explaining a
write changes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import asyncpg

from service.cli.common import DatabaseUnreachable, say, session_url, unreachable
from service.db.catalogue import CATALOGUE, Query
from service.settings import Settings

TRUE = {"true", "t", "yes", "y", "on", "1"}
FALSE = {"false", "f", "no", "n", "off", "0"}


def print_catalogue() -> None:
    rows = [(q.name, q.kind, f"{q.file}:{q.line}", q.summary) for q in CATALOGUE.values()]
    rows.sort(key=lambda row: (row[2].split(":")[0], int(row[2].split(":")[1])))
    header = ("NAME", "KIND", "WHERE", "WHAT")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(3)]
    for row in [header, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), end=""
        )
        print(f"  {row[3]}".rstrip())


def convert(value: str, type_name: str) -> Any:
    """The text of one --param as the Python value asyncpg binds for this PostgreSQL type."""
    if value.lower() == "null":
        return None
    if type_name.endswith("[]"):
        element = type_name[:-2]
        return [convert(item.strip(), element) for item in value.split(",")] if value else []
    if type_name in {"int2", "int4", "int8", "oid"}:
        return int(value)
    if type_name == "numeric":
        try:
            return Decimal(value)
        except InvalidOperation:
            raise ValueError(f"{value!r} is not a number") from None
    if type_name in {"float4", "float8"}:
        return float(value)
    if type_name == "bool":
        if value.lower() in TRUE:
            return True
        if value.lower() in FALSE:
            return False
        raise ValueError(f"{value!r} is not a boolean (true/false)")
    if type_name == "date":
        return date.fromisoformat(value)
    if type_name in {"timestamptz", "timestamp"}:
        moment = datetime.fromisoformat(value)
        if type_name == "timestamptz" and moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment
    return value  # text, varchar and anything PostgreSQL can read from text


def describe(types: Sequence[str]) -> str:
    return ", ".join(f"${n} {t}" for n, t in enumerate(types, start=1)) or "none"


async def explain(url: str, query: Query, params: Sequence[str]) -> int:
    conn = await asyncpg.connect(url, server_settings={"application_name": "deals-sql-explain"})
    try:
        statement = await conn.prepare(query.sql)
        types = [t.name for t in statement.get_parameters()]
        if len(params) != len(types):
            say(
                f"error: {query.name} takes {len(types)} parameter(s) ({describe(types)}), "
                f"{len(params)} given; pass each with --param VALUE ('null' for NULL)"
            )
            return 2
        try:
            values = [convert(value, t) for value, t in zip(params, types, strict=True)]
        except ValueError as exc:
            say(f"error: {exc}; {query.name} takes {describe(types)}")
            return 2
        transaction = conn.transaction()
        await transaction.start()
        try:
            rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {query.sql}", *values)
        finally:
            await transaction.rollback()
    finally:
        await conn.close()
    print(f"-- {query.name} :{query.kind} ({query.file}:{query.line})")
    for row in rows:
        print(row[0])
    return 0


def cmd_sql(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        print_catalogue()
        return 0
    query = CATALOGUE.get(args.name)
    if query is None:
        say(f"error: no query named {args.name}; `deals sql list` shows them")
        return 2
    url = session_url(
        settings, "deals sql explain", "it prepares a named statement, then EXPLAINs it"
    )
    try:
        return asyncio.run(explain(url, query, args.param))
    except asyncpg.PostgresError as exc:
        what = unreachable(exc)  # no such database, role or password: exit 2 as for the others
        if what is not None:
            raise DatabaseUnreachable(url, what) from None
        say(f"error: {exc.__class__.__name__}: {exc}")
        return 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sql = subparsers.add_parser("sql", help="the named queries of sql/: list, explain")
    sub = sql.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="every named query: name, kind, file:line, first doc line")
    plan = sub.add_parser("explain", help="EXPLAIN (ANALYZE, BUFFERS) a named query (rolled back)")
    plan.add_argument("name", help="the query's name, as `deals sql list` shows it")
    plan.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="VALUE",
        help="the value of $1, then $2, ... in order; 'null' for NULL",
    )
    sql.set_defaults(handler=cmd_sql)
