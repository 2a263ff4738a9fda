"""The SQL catalogue: every named query of sql/*.sql, parsed once at start-up,
and the one place a query runs.

A query starts at a header line `-- name: list_deals :many`; the comment
lines right under it are its documentation; the SQL runs to the next
header. The text sent to PostgreSQL keeps the header and carries the name
in a comment after the first keyword (`SELECT /* get_deal */ ...`), so the
server log, pg_stat_activity and pg_stat_statements show which query ran.

A query runs only through the helper of its declared kind (sqlc's rule):
`One("get_deal")` is a callable that returns a row or None, `Many` a list,
`Value` one value, `Exec` nothing, `ExecRows` a row count.
Asking for a query with another kind fails at import time, so a module
that calls a query the wrong way cannot even load.

A line `-- plan: generic` or `-- plan: custom` among the comment lines says
which plan PostgreSQL runs the query with, the words after it why: `generic`
where the plan cannot depend on the values (a key lookup, a query per filter
shape whose predicates are all unconditional), planned once per connection
and reused; `custom` where it does (optional `($n IS NULL OR ...)` filters
that only a plan made with the values folds away), planned on every run;
`any` where every plan is cheap (a few hundred summary rows), so the query
runs in whatever mode its session is in and never costs a switch. A
query without the line runs as `custom`. Every query is a named prepared
statement (asyncpg's statement cache) and plan_cache_mode, read by PostgreSQL
when it binds one, is a session setting: the pool's sessions start in
force_custom_plan (service/db/pool.py) and a statement whose plan differs from
its session's mode first sends `SET plan_cache_mode`, outside a transaction
only (a rollback would undo it). Requests of one shape therefore run with no
extra round trip; a connection alternating between a generic and a custom
shape pays one SET per change (measured in bench/bench_sql.py). Rejected,
measured there too: `auto` (PostgreSQL switches a custom shape to a generic
plan once that costs less than the custom ones did, and keeps a LIMIT $n query
custom forever), unnamed statements (always custom, but a Parse round trip
each, 0.2-0.4 ms more per statement through asyncpg).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, TypeVar
from weakref import WeakKeyDictionary

import msgspec

from service import PackageDataError, data_dir

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.cursor import CursorFactory
    from asyncpg.pool import PoolConnectionProxy

# A connection of the pool or one of its own (the loader's, a test's).
Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"
Record: TypeAlias = "asyncpg.Record"
T = TypeVar("T")

Kind = Literal["one", "many", "val", "exec", "execrows"]
KINDS: frozenset[str] = frozenset({"one", "many", "val", "exec", "execrows"})

HEADER = re.compile(r"^--\s*name:\s*(?P<name>[a-z_][a-z0-9_]*)\s+:(?P<kind>\w+)\s*$")
PLAN_LINE = re.compile(r"^plan:\s*(?P<plan>\S*)")
Plan = Literal["generic", "custom", "any"]
PLANS: frozenset[str] = frozenset({"generic", "custom", "any"})
PLACEHOLDER = re.compile(r"\$(\d+)")
STRIP = re.compile(r"'(?:[^']|'')*'|--[^\n]*")


class CatalogueError(ValueError):
    """sql/ holds a query the service refuses to start with, or code asks for one wrongly."""


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    kind: Kind
    sql: str  # the header line and the statement, as sent to PostgreSQL
    doc: str
    file: str
    line: int
    params: int  # number of $n placeholders
    plan: Plan | None = None  # the `-- plan:` line; None: PostgreSQL's auto choice

    @property
    def summary(self) -> str:
        return self.doc.splitlines()[0] if self.doc else ""


FIRST_WORD = re.compile(r"^(\w+)")


def tag(statement: str, name: str) -> str:
    """The statement with its name in a comment after the first keyword.

    pg_stat_statements keeps only the statement's own text, dropping comments
    before it, so the header line alone shows in logs and pg_stat_activity
    but not there; a comment inside the statement shows everywhere.
    """
    return FIRST_WORD.sub(rf"\1 /* {name} */", statement, count=1)


def parse_file(path: Path) -> list[Query]:
    queries: list[Query] = []
    current: dict[str, object] | None = None
    body: list[str] = []
    doc: list[str] = []

    def finish() -> None:
        if current is None:
            return
        statement = "\n".join(body).strip().rstrip(";").strip()
        name = str(current["name"])
        if not statement:
            raise CatalogueError(f"{path.name}:{current['line']}: query {name} has no SQL")
        numbers = {int(n) for n in PLACEHOLDER.findall(STRIP.sub("", statement))}
        if numbers != set(range(1, len(numbers) + 1)):
            raise CatalogueError(
                f"{path.name}:{current['line']}: query {name} has a gap in its $n placeholders"
            )
        plans = [m["plan"] for m in map(PLAN_LINE.match, doc) if m]
        if len(plans) > 1:
            raise CatalogueError(f"{path.name}:{current['line']}: query {name} has two plan lines")
        if plans and plans[0] not in PLANS:
            raise CatalogueError(
                f"{path.name}:{current['line']}: query {name} has plan: {plans[0]}; "
                "expected plan: generic, custom or any"
            )
        queries.append(
            Query(
                name=name,
                kind=current["kind"],  # type: ignore[arg-type]
                sql=f"-- name: {name} :{current['kind']}\n{tag(statement, name)}",
                doc="\n".join(doc),
                file=path.name,
                line=int(str(current["line"])),
                params=len(numbers),
                plan=plans[0] if plans else None,  # type: ignore[arg-type]
            )
        )

    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        match = HEADER.match(line.strip())
        if match:
            finish()
            kind = match["kind"]
            if kind not in KINDS:
                raise CatalogueError(f"{path.name}:{lineno}: unknown kind :{kind}")
            current, body, doc = {"name": match["name"], "kind": kind, "line": lineno}, [], []
            continue
        if current is None:
            continue
        stripped = line.strip()
        if not body and stripped.startswith("--"):
            doc.append(stripped[2:].strip())
        elif body or stripped:
            body.append(line)
    finish()
    return queries


def load(directory: Path | None = None) -> MappingProxyType[str, Query]:
    """Every named query of the folder (service.sql by default); an empty catalogue is an error."""
    directory = data_dir("service.sql") if directory is None else directory
    found: dict[str, Query] = {}
    files = sorted(directory.glob("*.sql"))
    for path in files:
        for query in parse_file(path):
            if query.name in found:
                other = found[query.name]
                raise CatalogueError(
                    f"duplicate query name {query.name}: {other.file}:{other.line} "
                    f"and {query.file}:{query.line}"
                )
            found[query.name] = query
    if not found:
        where = f"{len(files)} .sql file(s)" if files else "no .sql file"
        raise PackageDataError(
            f"the SQL catalogue is empty: {directory} holds {where} with a named query; "
            "the service cannot start without its queries"
        )
    return MappingProxyType(found)


CATALOGUE = load()


def q(name: str, kind: Kind | None = None) -> Query:
    """The named query; a typo, or a kind other than the declared one, fails at import time."""
    try:
        query = CATALOGUE[name]
    except KeyError:
        raise CatalogueError(f"no query named {name} in the SQL catalogue") from None
    if kind is not None and query.kind != kind:
        raise CatalogueError(
            f"query {name} is declared :{query.kind} ({query.file}:{query.line}) "
            f"but is called as :{kind}"
        )
    return query


def rowcount(status: str) -> int:
    """The row count of a command status such as 'INSERT 0 42' or 'DELETE 3'."""
    return int(status.rsplit(" ", 1)[-1])


# Called after every statement run through a kind helper, with the query's name, its
# duration in seconds, and the SQLSTATE (or exception class) when it failed: metrics
# and per-request counters hook in here, so every query is measured in one place.
QueryObserver = Callable[[str, float, str | None], None]
QUERY_OBSERVERS: list[QueryObserver] = []


def observe_queries(observer: QueryObserver) -> None:
    """Register an observer of every statement (once, however often it is asked)."""
    if observer not in QUERY_OBSERVERS:
        QUERY_OBSERVERS.append(observer)


# plan_cache_mode per plan line; SESSION_MODE is the pool's start-up setting.
PLAN_MODES: dict[str, str] = {"generic": "force_generic_plan", "custom": "force_custom_plan"}
SESSION_MODE = PLAN_MODES["custom"]
# The mode each open connection's session is in, when it is not SESSION_MODE.
_session_modes: WeakKeyDictionary[object, str] = WeakKeyDictionary()
# Off where sessions are shared by clients (a transaction-pooling PgBouncer):
# a SET there would reach other clients' statements.
PLAN_SWITCHING = True


async def use_plan(conn: Connection, mode: str) -> None:
    """Put the connection's session in this plan_cache_mode unless it already is,
    or a transaction is open (a rollback would undo the SET behind our back)."""
    raw = getattr(conn, "_con", None) or conn  # a pool's proxy, or the connection
    if _session_modes.get(raw, SESSION_MODE) == mode or conn.is_in_transaction():
        return
    await conn.execute(f"SET plan_cache_mode = {mode}")
    _session_modes[raw] = mode


def session_mode(conn: Connection) -> str:
    """The plan_cache_mode the catalogue last put this connection's session in."""
    return _session_modes.get(getattr(conn, "_con", None) or conn, SESSION_MODE)


class _Statement:
    kind: Kind

    def __init__(self, name: str) -> None:
        self.query = q(name, self.kind)
        self.sql = self.query.sql
        self.name = name
        # Without a parameter PostgreSQL plans a statement once whatever the mode; a
        # `plan: any` query is cheap either way and runs in the session's mode as it is.
        plan = self.query.plan or "custom"
        self.mode = PLAN_MODES[plan] if self.query.params and plan != "any" else None

    def __repr__(self) -> str:
        return f"<{self.name} :{self.kind}>"

    async def _timed(
        self, conn: Connection, run: Callable[[], Awaitable[T]], *, planned: bool = True
    ) -> T:
        if planned and self.mode is not None and PLAN_SWITCHING:
            await use_plan(conn, self.mode)
        if not QUERY_OBSERVERS:
            return await run()
        started = perf_counter()
        try:
            result = await run()
        except Exception as exc:
            failed = getattr(exc, "sqlstate", None) or exc.__class__.__name__
            for observe in QUERY_OBSERVERS:
                observe(self.name, perf_counter() - started, failed)
            raise
        for observe in QUERY_OBSERVERS:
            observe(self.name, perf_counter() - started, None)
        return result


class One(_Statement):
    """:one: the row, or None when there is none."""

    kind = "one"

    async def __call__(self, conn: Connection, *args: Any) -> Record | None:
        return await self._timed(conn, lambda: conn.fetchrow(self.sql, *args))


class Many(_Statement):
    """:many: every row, as a list; or a cursor that streams them; or the planner's count."""

    kind = "many"

    async def __call__(self, conn: Connection, *args: Any) -> list[Record]:
        return await self._timed(conn, lambda: conn.fetch(self.sql, *args))

    def cursor(self, conn: Connection, *args: Any, prefetch: int) -> CursorFactory[Record]:
        """The rows streamed in batches of `prefetch`; needs an open transaction."""
        return conn.cursor(self.sql, *args, prefetch=prefetch)

    async def estimate(self, conn: Connection, *args: Any) -> int:
        """The planner's estimate of the rows it returns (EXPLAIN: nothing runs)."""
        # EXPLAIN plans with the values whatever the session's plan_cache_mode: no switch
        plan = await self._timed(
            conn,
            lambda: conn.fetchval(f"EXPLAIN (FORMAT JSON) {self.sql}", *args),
            planned=False,
        )
        return int(msgspec.json.decode(plan)[0]["Plan"]["Plan Rows"])


class Value(_Statement):
    """:val: the first column of the first row (None when there is no row)."""

    kind = "val"

    async def __call__(self, conn: Connection, *args: Any) -> Any:
        return await self._timed(conn, lambda: conn.fetchval(self.sql, *args))


class Exec(_Statement):
    """:exec: run it; nothing comes back."""

    kind = "exec"

    async def __call__(self, conn: Connection, *args: Any) -> None:
        await self._timed(conn, lambda: conn.execute(self.sql, *args))


class ExecRows(_Statement):
    """:execrows: run it; the number of rows it wrote."""

    kind = "execrows"

    async def __call__(self, conn: Connection, *args: Any) -> int:
        return rowcount(await self._timed(conn, lambda: conn.execute(self.sql, *args)))
