"""The service through a real PgBouncer in transaction mode (DATABASE_POOLER=pgbouncer).

The API's own read, write and event tests run again here, imported: this module's
`settings` fixture points them at PgBouncer (a pool of 3 server connections, so
that clients hand server connections to each other between transactions), with
DATABASE_DIRECT_URL at PostgreSQL itself. Then what breaks without the pooler
mode, the settings that must become SET LOCAL, concurrency, the loader through
PgBouncer, the commands that refuse it, and GET /events?wait with and without a
direct URL.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import msgspec
import pytest

from service import migrate
from service.db.pool import Database, begin_statement, connect_kwargs
from service.load.steps import load_file
from service.settings import Settings, SettingsError
from tests import ROOT, loadkit, pg
from tests.conftest import Client, read_only
from tests.inloop import app_and_client, database_of
from tests.known import Known
from tests.pgbouncer import PgBouncer, pgbouncer
from tests.test_deal_concurrency import CLIENTS, assert_no_update_lost
from tests.test_deal_writes import (  # noqa: F401 (run again here, through PgBouncer)
    new_deal,
    test_check_violation_that_reaches_the_database_maps_to_422,
    test_create_returns_201_location_etag_and_the_deal_as_get,
    test_create_with_taken_deal_id_is_409,
    test_delete_removes_the_deal_from_every_read,
    test_failed_patch_changes_nothing,
    test_if_match_on_patch_and_delete,
    test_patch_replaces_categories_in_the_same_transaction,
    test_patch_with_stale_body_version_is_409_with_current_version,
)
from tests.test_deals import (  # noqa: F401
    test_bad_parameters_422,
    test_count_modes,
    test_deal_404,
    test_default_page_shape_and_order,
    test_each_filter_alone_and_combined,
    test_one_deal_exactly,
    test_pagination_edges,
    test_sorts_break_ties_by_id,
)
from tests.test_events import (  # noqa: F401
    feed,
    test_api_writes_append_one_event_each_with_the_deal_as_get_returns_it,
    test_wait_answers_at_the_commit_of_the_next_event,
)
from tests.test_health import assert_error
from tests.test_hotels import test_categories, test_hotels_page, test_one_hotel_and_404  # noqa: F401

POOL_SIZE = 3  # PgBouncer's server connections per database


@pytest.fixture(scope="module")
def bouncer(tmp_path_factory: pytest.TempPathFactory, admin_url: str) -> Iterator[PgBouncer]:
    with pgbouncer(tmp_path_factory.mktemp("pgbouncer"), admin_url, pool_size=POOL_SIZE) as b:
        yield b


@pytest.fixture(autouse=True)
def not_shared(request: pytest.FixtureRequest) -> None:
    """A read_only test would get the session's shared app over PostgreSQL, not PgBouncer."""
    assert not read_only(request), "a read_only test here would bypass PgBouncer"


def pooled(database_url: str, bouncer: PgBouncer, **overrides: object) -> Settings:
    fields: dict[str, object] = {
        "database_url": bouncer.url(database_url),
        "database_pooler": "pgbouncer",
        "database_direct_url": database_url,
        "pool_min_size": 1,
        "pool_max_size": 8,
        **overrides,
    }
    return msgspec.convert(fields, Settings)


@pytest.fixture
def settings(database_url: str, bouncer: PgBouncer) -> Settings:
    """The app of every test of this module (and of the imported ones) goes through PgBouncer."""
    return pooled(database_url, bouncer)


async def test_the_app_talks_to_pgbouncer(
    client: Client, known: Known, bouncer: PgBouncer, database_url: str
) -> None:
    assert (await client.get(f"/deals/{known.deals[0].id}")).status_code == 200
    name = urlsplit(database_url).path.lstrip("/")
    clients = [c for c in bouncer.show("CLIENTS") if c["database"] == name]
    assert {c["application_name"] for c in clients} == {"deals-api"}
    servers = [s for s in bouncer.show("SERVERS") if s["database"] == name]
    assert 1 <= len(servers) <= POOL_SIZE


# What breaks without DATABASE_POOLER=pgbouncer, and what the pooler mode changes


async def test_without_the_pooler_mode_the_startup_packet_is_refused(
    database_url: str, bouncer: PgBouncer
) -> None:
    settings = Settings(database_url=bouncer.url(database_url), pool_min_size=0)
    async with app_and_client(settings) as (_app, client):
        response = await client.get("/health")
    assert response.status_code == 503
    assert "unsupported startup parameter: statement_timeout" in bouncer.log()


async def test_named_statements_break_through_pgbouncer_and_unnamed_ones_do_not(
    database_url: str, bouncer: PgBouncer
) -> None:
    """Why connect_kwargs turns asyncpg's statement cache off: with it, a statement prepared
    on one server connection is executed on another."""
    url = bouncer.url(database_url)

    async def run(conns: list[asyncpg.Connection[asyncpg.Record]]) -> list[str]:
        failures: list[str] = []

        async def work(conn: asyncpg.Connection[asyncpg.Record], n: int) -> None:
            for i in range(30):
                try:
                    assert await conn.fetchval("SELECT $1::int + $2::int", i, n) == i + n
                except asyncpg.InvalidSQLStatementNameError as exc:
                    failures.append(str(exc).splitlines()[0])

        await asyncio.gather(*(work(c, n) for n, c in enumerate(conns)))
        for c in conns:
            await c.close()
        return failures

    # Deterministically: a statement prepared on the server connection the client had,
    # then that server held by another client's transaction (PgBouncer hands out its
    # most recently used idle server first), so the client's next run lands elsewhere.
    client = await asyncpg.connect(url)  # asyncpg's named-statement cache on, its default
    holder = await asyncpg.connect(url, statement_cache_size=0)
    try:
        assert await client.fetchval("SELECT $1::int + $2::int", 1, 2) == 3
        async with holder.transaction():
            assert await holder.fetchval("SELECT 1") == 1  # holds that server until the end
            with pytest.raises(asyncpg.InvalidSQLStatementNameError) as caught:
                await client.fetchval("SELECT $1::int + $2::int", 1, 2)
    finally:
        await client.close()
        await holder.close()
    first = str(caught.value).splitlines()[0]
    named = r'prepared statement "__asyncpg_stmt_[0-9a-f]+__" does not exist'  # hex counter
    assert re.fullmatch(named, first), first
    kwargs = connect_kwargs(pooled(database_url, bouncer), "deals-api", pooler=True)
    assert kwargs == {
        "server_settings": {"application_name": "deals-api"},
        "statement_cache_size": 0,
    }
    assert await run([await asyncpg.connect(url, **kwargs) for _ in range(8)]) == []


async def test_each_connection_is_a_transaction_with_the_settings_as_set_local(
    database_url: str, bouncer: PgBouncer
) -> None:
    settings = pooled(
        database_url, bouncer, statement_timeout_ms=1234, idle_in_transaction_timeout_ms=4321
    )
    assert begin_statement(settings) == (
        "BEGIN; SET LOCAL statement_timeout = '1234'; "
        "SET LOCAL idle_in_transaction_session_timeout = '4321'; "
        "SET LOCAL plan_cache_mode = 'force_custom_plan'"
    )
    db = Database(settings)
    await db.open()
    try:
        for context in (db.connection, db.transaction):
            async with context() as conn:
                assert conn.is_in_transaction()
                row = await conn.fetchrow(
                    "SELECT current_setting('statement_timeout'), "
                    "current_setting('idle_in_transaction_session_timeout'), "
                    "current_setting('plan_cache_mode'), current_setting('application_name')"
                )
                assert tuple(row or ()) == ("1234ms", "4321ms", "force_custom_plan", "deals-api")
    finally:
        await db.close()
    # nothing stays behind on PgBouncer's server connections
    url = bouncer.url(database_url)
    others = [await asyncpg.connect(url, statement_cache_size=0) for _ in range(POOL_SIZE)]
    try:
        seen = await asyncio.gather(
            *(o.fetchval("SELECT current_setting('statement_timeout')") for o in others)
        )
    finally:
        for o in others:
            await o.close()
    assert seen == ["0"] * POOL_SIZE


async def test_idle_in_transaction_timeout_as_set_local_ends_a_stuck_request(
    database_url: str, bouncer: PgBouncer
) -> None:
    """SET LOCAL idle_in_transaction_session_timeout arms for the transaction it is set in."""
    settings = pooled(database_url, bouncer, idle_in_transaction_timeout_ms=200, pool_max_size=1)
    db = Database(settings)
    await db.open()
    try:

        async def stuck() -> None:
            async with db.connection() as conn:
                await conn.fetchval("SELECT 1")
                await asyncio.sleep(1.5)  # a stuck handler, inside its transaction
                await conn.fetchval("SELECT 2")

        # PostgreSQL ends the session (FATAL 25P03); PgBouncer closes its client, and the
        # pool takes the connection back from under the handler
        with pytest.raises(asyncpg.InterfaceError, match="released back to the pool"):
            await stuck()
        name = urlsplit(database_url).path.lstrip("/")
        crashed = [
            line
            for line in bouncer.log().splitlines()
            if f" {name}/" in line and "closing because: server conn crashed?" in line
        ]
        assert crashed
        async with db.connection() as conn:  # the pool replaces the connection
            assert await conn.fetchval("SELECT 3") == 3
    finally:
        await db.close()


async def test_a_failed_statement_rolls_back_and_the_connection_serves_the_next_request(
    database_url: str, bouncer: PgBouncer, known: Known
) -> None:
    settings = pooled(database_url, bouncer, pool_max_size=1)
    async with app_and_client(settings) as (app, client):
        with pytest.raises(asyncpg.DivisionByZeroError):
            async with database_of(app).connection() as conn:
                await conn.execute("SELECT 1 / 0")
        response = await client.get(f"/deals/{known.deals[0].id}")
        assert response.status_code == 200
        assert response.json()["id"] == known.deals[0].id


async def test_statement_timeout_gives_504_through_pgbouncer(
    database_url: str, bouncer: PgBouncer, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    settings = pooled(database_url, bouncer, statement_timeout_ms=200)
    async with app_and_client(settings) as (_app, client):
        async with conn.transaction():
            await conn.execute("LOCK TABLE _yoyo_migration IN ACCESS EXCLUSIVE MODE")
            response = await client.get("/health/ready")
        assert response.status_code == 504
        assert_error(response.json(), "STATEMENT_TIMEOUT")
        assert (await client.get("/health/ready")).status_code == 200


# Concurrency: more clients than server connections


async def test_same_version_patches_at_once_exactly_one_wins_through_pgbouncer(
    database_url: str, bouncer: PgBouncer, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    deal = known.deals[4]
    settings = pooled(database_url, bouncer, pool_min_size=CLIENTS, pool_max_size=CLIENTS)
    async with app_and_client(settings) as (_app, client):
        responses = await asyncio.gather(
            *(
                client.patch(f"/deals/{deal.id}", json={"room_type": f"Room {n}", "version": 1})
                for n in range(CLIENTS)
            )
        )
    assert sorted(r.status_code for r in responses) == [200] + [409] * (CLIENTS - 1)
    losers = [r.json()["error"] for r in responses if r.status_code == 409]
    assert all(e["details"] == [{"current_version": 2}] for e in losers)
    winner = next(r for r in responses if r.status_code == 200).json()
    stored = await conn.fetchrow("SELECT room_type, version FROM deals WHERE id = $1", deal.id)
    assert tuple(stored or ()) == (winner["room_type"], 2)


async def test_read_modify_write_with_retries_loses_no_update_through_pgbouncer(
    database_url: str, bouncer: PgBouncer, known: Known, conn: asyncpg.Connection[asyncpg.Record]
) -> None:
    settings = pooled(database_url, bouncer, pool_min_size=4, pool_max_size=CLIENTS)
    await assert_no_update_lost(settings, known, conn)


async def test_many_concurrent_reads_share_few_server_connections(
    database_url: str, bouncer: PgBouncer, known: Known
) -> None:
    # 250 requests on 16 client connections over 3 server ones: on a busy machine the queue
    # outlasts the default 2 s acquire timeout, whose 503 is not what this test is about.
    settings = pooled(
        database_url, bouncer, pool_min_size=16, pool_max_size=16, pool_acquire_timeout=120
    )
    ids = [d.id for d in known.deals]
    async with app_and_client(settings) as (_app, client):
        responses = await asyncio.gather(
            *(client.get(f"/deals/{ids[n % len(ids)]}") for n in range(200)),
            *(client.get("/deals", params={"limit": "5", "skip": str(n % 7)}) for n in range(50)),
        )
    assert [r.status_code for r in responses] == [200] * 250
    assert [r.json()["id"] for r in responses[:200]] == [ids[n % len(ids)] for n in range(200)]
    name = urlsplit(database_url).path.lstrip("/")
    assert len([s for s in bouncer.show("SERVERS") if s["database"] == name]) <= POOL_SIZE


# The loader through PgBouncer: one transaction, so its xact lock and temp tables hold


@pytest.fixture
def single(tmp_path: Path, admin_url: str) -> Iterator[PgBouncer]:
    """A PgBouncer with one server connection: whatever a client leaves on it, the next sees."""
    with pgbouncer(tmp_path / "pgbouncer1", admin_url, pool_size=1) as b:
        yield b


async def test_a_load_through_pgbouncer_loads_exactly_and_leaves_nothing_behind(
    database_url: str, single: PgBouncer, conn: asyncpg.Connection[asyncpg.Record], tmp_path: Path
) -> None:
    url = single.url(database_url)
    path = loadkit.write(
        tmp_path / "a.csv", [*loadkit.rows(40), loadkit.row(41, price_per_night="-1")]
    )
    rejects = tmp_path / "rejects.csv"
    first = await load_file(url, path, pooled=True, skip_bad_rows=True, rejects=rejects)
    assert (first.rows_read, first.rows_loaded, first.rows_rejected) == (41, 40, 1)
    assert (first.deals_new, first.hotels_new, first.categories_new) == (40, 3, 2)
    assert len(rejects.read_text().splitlines()) == 2  # the header and line 42
    # a second load (a second asyncpg connection, its statements named alike) on the same
    # server connection: nothing of the first is left there to collide with
    again = await load_file(url, path, pooled=True, skip_bad_rows=True, rejects=rejects)
    assert (again.deals_new, again.deals_updated, again.deals_unchanged) == (0, 0, 40)
    assert await loadkit.counts(conn) == {
        "hotels": 3,
        "deals": 40,
        "categories": 2,
        "deal_categories": 80,
    }
    assert await conn.fetchval("SELECT count(*) FROM events") == 40
    left = await asyncpg.connect(url, statement_cache_size=0)  # the one server connection
    try:
        assert await left.fetchval("SELECT count(*) FROM pg_prepared_statements") == 0
        temp = "SELECT count(*) FROM pg_class WHERE relpersistence = 't'"
        assert await left.fetchval(temp) == 0
    finally:
        await left.close()


async def test_a_load_holds_its_lock_through_pgbouncer(
    database_url: str, bouncer: PgBouncer, tmp_path: Path
) -> None:
    """Two loads at once through PgBouncer: the second waits for the first's advisory lock."""
    url = bouncer.url(database_url)
    first = loadkit.write(tmp_path / "1.csv", loadkit.rows(30))
    second = loadkit.write(tmp_path / "2.csv", loadkit.rows(30, start=31))
    said: list[str] = []
    both_wait = asyncio.Event()

    def tell(message: str) -> None:
        said.append(message)
        if len(said) == 2:
            both_wait.set()

    holder = await asyncpg.connect(url, statement_cache_size=0)
    try:
        await holder.execute("BEGIN; SELECT pg_advisory_xact_lock(hashtext('deals.load'))")
        loads = [
            asyncio.create_task(load_file(url, p, pooled=True, notify=tell))
            for p in (first, second)
        ]
        await asyncio.wait_for(both_wait.wait(), 60)
        assert said == ["another load is running; waiting for it"] * 2
        assert not any(task.done() for task in loads)
        await holder.execute("COMMIT")
        summaries = await asyncio.gather(*loads)
    finally:
        await holder.close()
    assert sorted(s.deals_new for s in summaries) == [30, 30]


def test_deals_load_through_pgbouncer(
    database_url: str, bouncer: PgBouncer, tmp_path: Path
) -> None:
    path = loadkit.write(tmp_path / "cli.csv", loadkit.rows(12))
    done = cli_pooled(bouncer, database_url, "load", str(path), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["rows_loaded"], summary["deals_new"]) == (12, 12)


# Commands that need a session: DATABASE_DIRECT_URL, or a clear refusal


def cli_pooled(
    bouncer: PgBouncer, database_url: str, *args: str, direct: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`deals ...` with DATABASE_URL at PgBouncer (and DATABASE_DIRECT_URL when given)."""
    env = {"DATABASE_POOLER": "pgbouncer", "DATABASE_DIRECT_URL": direct or ""}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": bouncer.url(database_url), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def empty_database(admin_url: str) -> Iterator[str]:
    name = f"pgbouncer_empty_{os.getpid()}"
    pg.drop(admin_url, name)
    pg.admin_execute(admin_url, f'CREATE DATABASE "{name}"')
    yield pg.with_database(admin_url, name)
    pg.drop(admin_url, name)


@pytest.mark.parametrize(
    "args",
    [("migrate", "apply"), ("migrate", "status"), ("doctor",), ("sql", "explain", "get_deal")],
)
def test_commands_that_need_a_session_refuse_pgbouncer_without_a_direct_url(
    empty_database: str, bouncer: PgBouncer, args: tuple[str, ...]
) -> None:
    done = cli_pooled(bouncer, empty_database, *args)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    line = done.stderr.strip()
    assert line.startswith(f"error: deals {args[0]}")
    assert "PgBouncer in transaction mode does not give" in line
    assert line.endswith("set DATABASE_DIRECT_URL to PostgreSQL itself")
    assert migrate.status(empty_database) == [
        migrate.MigrationState(m, False) for m in migrate.migration_ids()
    ]


def test_migrations_use_the_direct_url(empty_database: str, bouncer: PgBouncer) -> None:
    done = cli_pooled(bouncer, empty_database, "migrate", "apply", direct=empty_database)
    assert done.returncode == 0, done.stderr
    ids = migrate.migration_ids()
    assert done.stdout.splitlines() == [
        *(f"applied {m}" for m in ids),
        f"{len(ids)} migration(s) applied",
    ]
    doctor = cli_pooled(bouncer, empty_database, "doctor", "--json", direct=empty_database)
    assert doctor.returncode == 0, doctor.stdout
    assert [c["name"] for c in json.loads(doctor.stdout)["checks"]] == [
        "n_plus_one",
        "missing_index",
        "pool",
        "bloat",
    ]


# GET /events?wait: LISTEN on DATABASE_DIRECT_URL, or polling without it


async def test_wait_without_a_direct_url_polls_and_still_answers_with_the_next_event(
    database_url: str, bouncer: PgBouncer, known: Known
) -> None:
    settings = pooled(database_url, bouncer, database_direct_url=None)
    async with app_and_client(settings) as (app, client):
        assert database_of(app).listener.url is None
        start = (await feed(client))["next_cursor"]

        async def write_later() -> None:
            await asyncio.sleep(0.3)
            await client.post("/deals", json=new_deal(known))

        writer = asyncio.create_task(write_later())
        waiters = [asyncio.create_task(feed(client, start, wait=20)) for _ in range(3)]
        pages = await asyncio.gather(*waiters)
        await writer
        assert [[e["type"] for e in p["items"]] for p in pages] == [["deal.created"]] * 3
        listeners = await database_of(app).pool.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'deals-api-events'"
        )
        assert listeners == 0
        assert not database_of(app).listener.listening


def test_pooler_settings_are_validated() -> None:
    env = {"DATABASE_URL": "postgresql://u@h/d"}
    assert Settings.from_env(env).database_pooler == "none"
    on = Settings.from_env({**env, "DATABASE_POOLER": "PgBouncer"})
    assert on.database_pooler == "pgbouncer"
    assert on.direct_url == "postgresql://u@h/d"
    with pytest.raises(SettingsError) as bad:
        Settings.from_env({**env, "DATABASE_POOLER": "pgpool"})
    assert str(bad.value) == "DATABASE_POOLER='pgpool' is not one of none, pgbouncer"
    with pytest.raises(SettingsError) as url:
        Settings.from_env({**env, "DATABASE_DIRECT_URL": "mysql://u:secret@h/d"})
    assert str(url.value) == (
        "DATABASE_DIRECT_URL='mysql://u:***@h/d' must start with postgresql:// or postgres://"
    )
    direct = Settings.from_env({**env, "DATABASE_DIRECT_URL": "postgresql://u@db/d"})
    assert direct.direct_url == "postgresql://u@db/d"
