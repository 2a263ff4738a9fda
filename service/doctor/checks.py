"""The four checks of `deals doctor`, in ops.md's order: n_plus_one, missing_index,
pool, bloat. Each reads what it needs (sql/doctor.sql, /metrics) and ends in a
Check: ok, warn or fail, with its evidence and the fix."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from service.db import doctor as sql
from service.db.catalogue import CATALOGUE, Connection
from service.doctor.indexes import defined_indexes
from service.doctor.metrics import Metrics, MetricsError, fetch, parse
from service.doctor.report import Check, Status, Thresholds, worst

APPLICATION_NAME = "deals-doctor"
# the doctor only reads statistics: it must never queue behind a lock or run long
SESSION = {
    "application_name": APPLICATION_NAME,
    "statement_timeout": "10s",
    "lock_timeout": "1s",
}
CONNECT_TIMEOUT = 10.0
INDEX_NAME = re.compile(r"\b([a-z_][a-z0-9_]*_(?:idx|pkey|key))\b")


def plural(count: float, word: str) -> str:
    return f"{count:,.0f} {word}{'' if count == 1 else 's'}"


def ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = max(0.0, (now - moment).total_seconds())
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


# --- n_plus_one ------------------------------------------------------------------------


def n_plus_one(metrics: Metrics | None, error: str | None, t: Thresholds) -> Check:
    name = "n_plus_one"
    if error is not None:
        return Check(
            name=name,
            status="warn",
            summary=f"not checked: {error}",
            fix="point --api at the running service (METRICS_TOKEN when /metrics needs it)",
        )
    if metrics is None:
        return Check(name=name, status="ok", summary="not checked: pass --api URL (its /metrics)")
    routes = [r for r in metrics.routes.values() if r.count > 0]
    if not routes:
        return Check(
            name=name,
            status="warn",
            summary="not checked: /metrics counts no request in db_queries_per_request",
            fix="send the service some traffic, or upgrade it to a release that exports "
            "db_queries_per_request",
        )
    routes.sort(key=lambda r: (-r.mean, r.route))
    limit = t.max_queries_per_request
    evidence = [
        f"{r.route}: {r.mean:.1f} statements per request over {plural(r.count, 'request')}"
        f" (up to {r.most():g} in one)"
        for r in routes
    ]
    failing = [r for r in routes if r.mean > limit]
    spiking = [r for r in routes if r.mean <= limit and r.above(limit) > 0]
    if failing:
        worst_route = failing[0]
        return Check(
            name=name,
            status="fail",
            summary=f"{worst_route.route} runs {worst_route.mean:.1f} statements per request "
            f"(over {limit:g})"
            + (f"; {len(failing) - 1} more route(s) too" if len(failing) > 1 else ""),
            evidence=evidence,
            fix=f"{', '.join(r.route for r in failing)}: fetch what a page needs in one "
            "statement per kind (a join, or `= ANY($1::bigint[])` over the page's ids) "
            "instead of one per item; db_query_duration_seconds by query shows which repeats",
        )
    if spiking:
        r = spiking[0]
        return Check(
            name=name,
            status="warn",
            summary=f"{r.route}: {plural(r.above(limit), 'request')} ran more than {limit:g} "
            f"statements (up to {r.most():g}): does it grow with the page size?",
            evidence=evidence,
            fix=f"compare {r.route} at ?limit=1 and ?limit=100 in the access log's `queries`; "
            "fetch per page, not per item",
        )
    return Check(
        name=name,
        status="ok",
        summary=f"every route at most {limit:g} statements per request "
        f"(the most: {routes[0].route} {routes[0].mean:.1f})",
        evidence=evidence,
    )


# --- missing_index ---------------------------------------------------------------------


async def statements_available(conn: Connection, server: sql.Server) -> tuple[bool, str | None]:
    """Whether pg_stat_statements can be read, and a note when it cannot (or was installed)."""
    if server.statements_installed:
        return True, None
    if not server.statements_preloaded:
        return False, (
            "pg_stat_statements is not in shared_preload_libraries: evidence from "
            "pg_stat_user_tables only, no query names"
        )
    try:
        await sql.install_pg_stat_statements(conn)
    except asyncpg.PostgresError as exc:
        return False, (
            f"pg_stat_statements is preloaded but cannot be installed here ({exc}): "
            "evidence from pg_stat_user_tables only; CREATE EXTENSION pg_stat_statements "
            "as its owner to see query names"
        )
    return True, "installed the pg_stat_statements extension in this database (it was preloaded)"


def where(name: str | None) -> str:
    query = CATALOGUE.get(name or "")
    return f" ({query.file}:{query.line})" if query is not None else ""


async def missing_index(conn: Connection, server: sql.Server, t: Thresholds) -> Check:
    name = "missing_index"
    available, note = await statements_available(conn, server)
    notes = [note] if note else []
    tables = await sql.seq_scanned_tables(
        conn, min_rows=t.applies_from_rows, min_rows_per_scan=t.seq_scan_rows
    )
    if not tables:
        return Check(
            name=name,
            status="ok",
            summary=f"no table of {t.applies_from_rows:,}+ rows read by sequential scans of "
            f"{t.seq_scan_rows:,}+ rows (since the last statistics reset)",
            evidence=notes,
        )
    present = await sql.index_names(conn)
    defined = defined_indexes()
    evidence: list[str] = []
    statuses: list[Status] = []
    creates: list[str] = []
    queries: list[str] = []
    for table in tables:
        per_scan = table.seq_tup_read // table.seq_scan
        # most of the rows read from it come from sequential scans: fail
        statuses.append("fail" if table.seq_tup_read > table.idx_tup_fetch else "warn")
        evidence.append(
            f"{table.table_name}: {table.live_rows:,} rows; "
            f"{plural(table.seq_scan, 'sequential scan')} read {table.seq_tup_read:,} rows "
            f"({per_scan:,} per scan); "
            f"{plural(table.idx_scan, 'index scan')} fetched {table.idx_tup_fetch:,}"
        )
        lacking = [
            d for d in defined.values() if d.table == table.table_name and d.name not in present
        ]
        for d in lacking:
            evidence.append(f"  {d.name} ({d.migration}) is missing from {table.table_name}")
            creates.append(d.create_concurrently())
        if not available:
            continue
        minimum = max(1, int(table.pages * t.statement_page_share))
        statements = await sql.statements_on_table(
            conn, table=table.table_name, min_blocks_per_call=minimum, limit=3
        )
        for s in statements:
            label = s.name or f"(unnamed) {s.query}"
            if s.name:
                queries.append(s.name)
            evidence.append(
                f"  {label}{where(s.name)}: {plural(s.calls, 'call')}, "
                f"{s.blocks / s.calls:,.0f} blocks per call ({table.table_name} has "
                f"{table.pages:,} pages), {s.rows / s.calls:,.1f} rows per call, "
                f"{s.total_ms / s.calls:.2f} ms per call"
            )
            query = CATALOGUE.get(s.name or "")
            for index in INDEX_NAME.findall(query.doc if query else ""):
                if index not in present and index in defined:
                    evidence.append(f"  {s.name} relies on {index}, which this database lacks")
    evidence.extend(notes)
    first = tables[0]
    named = f" by {', '.join(dict.fromkeys(queries))}" if queries else ""
    summary = (
        f"{first.table_name}: {plural(first.seq_scan, 'sequential scan')} of "
        f"{first.seq_tup_read // first.seq_scan:,} rows{named}"
    )
    if len(tables) > 1:
        summary += f"; {len(tables) - 1} more table(s)"
    if creates:
        fix = "\n".join(
            [*creates, "(one at a time outside a transaction, e.g. in psql; see CONTRIBUTING.md)"]
        )
    else:
        target = first.table_name
        fix = (
            f"`deals sql explain NAME --param ...` the queries above, then index what they "
            f"filter and sort {target} by, in a migration of its own: CREATE INDEX "
            f"CONCURRENTLY IF NOT EXISTS {target}_<columns>_idx ON {target} (<columns>);"
        )
    return Check(name=name, status=worst(statuses), summary=summary, evidence=evidence, fix=fix)


# --- pool ------------------------------------------------------------------------------


def pool_from_metrics(
    metrics: Metrics | None, error: str | None, t: Thresholds
) -> tuple[Status, str, str | None]:
    """(status, evidence line, fix) for the API's pool as /metrics tells it."""
    if error is not None:
        return "ok", "API pool: not checked (/metrics unreadable, see n_plus_one)", None
    if metrics is None:
        return "ok", "API pool: not checked (pass --api URL)", None
    in_use, size, waiters = metrics.pool_in_use, metrics.pool_max_size, metrics.pool_waiters
    if in_use is None or not size:
        return "ok", "API pool: /metrics has no db_pool_connections or db_pool_max_size", None
    share = in_use / size
    waiting = waiters or 0.0
    line = (
        f"API pool: {in_use:.0f} of {size:.0f} connections in use ({share:.0%}), "
        f"{waiting:.0f} request(s) waiting for one"
    )
    fix = (
        "the API's pool is saturated: look for slow queries (db_query_duration_seconds) or "
        "requests holding a connection; then raise POOL_MAX_SIZE within max_connections"
    )
    if (waiting > 0 and in_use >= size) or share >= t.in_use_fail:
        return "fail", line, fix
    if waiting > 0 or share >= t.in_use_warn:
        return "warn", line, fix
    return "ok", line, None


async def pool(
    conn: Connection, server: sql.Server, metrics: Metrics | None, error: str | None, t: Thresholds
) -> Check:
    idle = await sql.idle_in_transaction(conn, min_seconds=t.idle_in_transaction_warn)
    statuses: list[Status] = []
    evidence: list[str] = []
    fixes: list[str] = []
    summaries: list[str] = []
    for s in idle:
        statuses.append("fail" if s.idle_seconds >= t.idle_in_transaction_fail else "warn")
        evidence.append(
            f"pid {s.pid} {s.application_name or '(no application_name)'}: {s.state} for "
            f"{s.idle_seconds:.1f} s (transaction open {s.transaction_seconds:.1f} s); "
            f"last query: {s.query}"
        )
    if idle:
        first = idle[0]
        summaries.append(
            f"{plural(len(idle), 'session')} idle in transaction: pid {first.pid} "
            f"({first.application_name or 'no application_name'}) for {first.idle_seconds:.0f} s"
        )
        fixes.append(
            " ".join(f"SELECT pg_terminate_backend({s.pid});" for s in idle)
            + " -- then find where "
            + ", ".join(dict.fromkeys(s.application_name or "(none)" for s in idle))
            + " leaves a transaction open; idle_in_transaction_session_timeout bounds it"
        )
    connections = await sql.connections(conn)
    used = sum(c.connections for c in connections)
    limit = max(1, server.max_connections - server.reserved_connections)
    share = used / limit
    by_app = ", ".join(f"{c.application_name} {c.connections}" for c in connections)
    evidence.append(
        f"connections: {used} of {limit} ({share:.0%}; max_connections "
        f"{server.max_connections} less {server.reserved_connections} reserved): {by_app}"
    )
    if share >= t.in_use_warn:
        statuses.append("fail" if share >= t.in_use_fail else "warn")
        summaries.append(f"{used} of {limit} connections in use")
        fixes.append(
            "fewer connections: smaller pools (POOL_MAX_SIZE x workers x instances) or "
            "PgBouncer in transaction mode (DATABASE_POOLER=pgbouncer)"
        )
    status, line, fix = pool_from_metrics(metrics, error, t)
    evidence.append(line)
    if status != "ok" and fix:
        statuses.append(status)
        summaries.append(line.removeprefix("API pool: ") + " in the API's pool")
        fixes.append(fix)
    if not summaries:
        summaries.append(
            f"no session idle in transaction; {used} of {limit} connections"
            + (f"; {line.removeprefix('API pool: ')}" if "in use" in line else "")
        )
    return Check(
        name="pool",
        status=worst(statuses),
        summary="; ".join(summaries),
        evidence=evidence,
        fix="\n".join(fixes),
    )


# --- bloat -----------------------------------------------------------------------------


async def bloat(conn: Connection, t: Thresholds) -> Check:
    rows = await sql.table_health(conn, tables=t.tables)
    now = datetime.now(UTC)
    statuses: list[Status] = []
    evidence: list[str] = []
    flagged: list[str] = []
    reset: list[str] = []
    summaries: list[str] = []
    for r in rows:
        problems: list[str] = []
        total = r.live_rows + r.dead_rows
        ratio = r.dead_rows / total if total else 0.0
        if r.dead_rows >= t.dead_rows_min and ratio >= t.dead_ratio_warn:
            statuses.append("fail" if ratio >= t.dead_ratio_fail else "warn")
            problems.append(f"{r.dead_rows:,} dead rows ({ratio:.0%})")
        stale_after = 50 + t.stale_analyze_share * max(r.estimated_rows, r.live_rows, 0)
        if r.estimated_rows < 0 and r.live_rows > 0:
            statuses.append("warn")
            problems.append("never analyzed")
        elif r.changed_since_analyze > stale_after:
            statuses.append("warn")
            problems.append(f"{r.changed_since_analyze:,} rows changed since its last analyze")
        visible = r.all_visible_pages / r.pages if r.pages else 1.0
        if r.pages >= t.visibility_min_pages and visible < t.all_visible_warn:
            statuses.append("warn")
            problems.append(
                f"{visible:.0%} of its pages all-visible (index-only scans read the heap)"
            )
        state = "; ".join(problems) if problems else "ok"
        size = max(r.live_rows, r.estimated_rows, 0)  # n_live_tup is 0 after pg_stat_reset()
        line = (
            f"{r.table_name}: {state} ({size:,} rows, {r.dead_rows:,} dead, "
            f"{r.all_visible_pages:,} of {r.pages:,} pages all-visible; vacuumed "
            f"{ago(r.last_vacuum, now)}, analyzed {ago(r.last_analyze, now)})"
        )
        autovacuum_off = "autovacuum_enabled=false" in r.options
        if autovacuum_off:
            line += "; autovacuum_enabled=false"
        evidence.append(line)
        if problems:
            flagged.append(r.table_name)
            summaries.append(f"{r.table_name}: {problems[0]}")
            if autovacuum_off:
                reset.append(f"ALTER TABLE {r.table_name} RESET (autovacuum_enabled);")
    if not flagged:
        return Check(
            name="bloat",
            status="ok",
            summary=f"{', '.join(r.table_name for r in rows)}: few dead rows, fresh "
            "statistics, pages all-visible",
            evidence=evidence,
        )
    fix = "\n".join([f"VACUUM (ANALYZE) {', '.join(flagged)};", *reset])
    return Check(
        name="bloat",
        status=worst(statuses),
        summary="; ".join(summaries),
        evidence=evidence,
        fix=fix,
    )


# --- all of them -----------------------------------------------------------------------


async def guarded(name: str, check: Any) -> Check:
    """The check, or a warn saying why it could not run (a permission, a timeout)."""
    try:
        result: Check = await check
    except asyncpg.PostgresError as exc:
        if (exc.sqlstate or "").startswith(("08", "57P")):
            raise  # the connection is gone: the run cannot go on
        return Check(
            name=name,
            status="warn",
            summary=f"could not check: {exc.__class__.__name__}: {exc}",
            fix="run `deals doctor` as a role that may read pg_stat_activity and the "
            "statistics views (pg_monitor)",
        )
    return result


def read_metrics(api: str | None, token: str | None) -> tuple[Metrics | None, str | None]:
    if api is None:
        return None, None
    try:
        return parse(fetch(api, token)), None
    except MetricsError as exc:
        return None, str(exc)


async def diagnose(
    url: str,
    *,
    api: str | None = None,
    token: str | None = None,
    thresholds: Thresholds | None = None,
) -> list[Check]:
    """Every check against the database at `url` (and the service at `api`)."""
    metrics, error = read_metrics(api, token)
    t = thresholds or Thresholds()
    conn = await asyncpg.connect(url, server_settings=SESSION, timeout=CONNECT_TIMEOUT)
    try:
        server = await sql.server(conn)
        return [
            n_plus_one(metrics, error, t),
            await guarded("missing_index", missing_index(conn, server, t)),
            await guarded("pool", pool(conn, server, metrics, error, t)),
            await guarded("bloat", bloat(conn, t)),
        ]
    finally:
        await conn.close()


def statuses_of(checks: Sequence[Check]) -> Status:
    return worst([c.status for c in checks])
