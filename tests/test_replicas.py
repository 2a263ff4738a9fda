"""Read replicas against a real streaming replica of the test server (tests/replica.py).

Where a read ran is read from each server's own pg_stat_statements: every
query carries its sql/ name (`SELECT /* get_deal */ ...`), and the replica's
counts are its own. The app runs on the test's loop (tests/inloop.py), so a
test can look at its replicas and stop the standby (in a thread) while
requests are in flight. Waits poll with a deadline; the checks run every
second (service/db/replicas.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.db.replicas import CHECK_EVERY, lag_seconds
from service.settings import Settings, database_address
from tests import pg
from tests.client import assert_invalid
from tests.inloop import app_and_client, database_of
from tests.known import Known
from tests.replica import Standby, StandbyError
from tests.test_deal_writes import new_deal

T = TypeVar("T")
Client = httpx.AsyncClient
PRIMARY = {"X-Read-Consistency": "primary"}


# --- the lag, as a function -----------------------------------------------------------


def test_an_idle_primary_with_a_caught_up_replica_is_no_lag_however_old_its_last_commit() -> None:
    samples = deque([(100, 0.0), (100, 1.0), (100, 3600.0)])
    assert lag_seconds(100, 3600.0, samples, now=3600.0) == 0.0


def test_a_write_after_an_hour_idle_is_a_lag_of_one_check_not_of_an_hour() -> None:
    samples = deque([(100, 0.0), (100, 3599.0), (180, 3600.0)])
    assert lag_seconds(100, 3600.0, samples, now=3600.0) == 1.0


def test_under_steady_writes_the_last_replayed_commit_bounds_the_lag() -> None:
    samples = deque([(100, 0.0), (200, 1.0), (300, 2.0)])
    assert lag_seconds(290, 0.05, samples, now=2.0) == 0.05


def test_a_paused_replay_grows_with_the_time_since_the_last_position_it_reached() -> None:
    samples = deque([(100, 0.0), (150, 1.0), (150, 2.0), (150, 3.0)])
    assert lag_seconds(100, 9.0, samples, now=3.0) == 3.0
    samples.append((150, 9.0))
    assert lag_seconds(100, 15.0, samples, now=9.0) == 9.0


def test_while_the_primary_does_not_answer_the_lag_counts_from_its_last_answer() -> None:
    samples = deque([(100, 0.0), (100, 1.0)])
    assert lag_seconds(100, 60.0, samples, now=7.5) == 6.5


def test_behind_every_sample_kept_the_lag_is_the_last_commit_or_at_least_the_oldest() -> None:
    samples = deque([(100, 10.0), (200, 11.0)])
    assert lag_seconds(50, 30.0, samples, now=11.0) == 30.0
    assert lag_seconds(50, None, samples, now=11.0) == 1.0
    assert lag_seconds(50, None, deque(), now=11.0) is None
    assert lag_seconds(50, 4.0, deque(), now=11.0) == 4.0


def test_a_replica_is_named_by_host_and_port_never_its_credentials() -> None:
    assert database_address("postgresql://app:s3cret@replica-1:5433/deals") == "replica-1:5433"
    assert database_address("postgres://app@10.0.0.7/deals") == "10.0.0.7:5432"
    assert database_address("postgresql://postgres@/deals?host=/run/pg&port=5434") == (
        "/run/pg:5434"
    )


# --- the header, without replicas ---------------------------------------------------------


@pytest.mark.read_only
async def test_read_consistency_other_than_primary_is_a_422_naming_the_header(
    client: Any, known: Known
) -> None:
    deal = known.deals[0]
    response = await client.get(f"/deals/{deal.id}", headers={"X-Read-Consistency": "strong"})
    message = "X-Read-Consistency must be primary (or left out); it is 'strong'"
    assert_invalid(response, message, "X-Read-Consistency", "header", "must be primary")
    assert (await client.get(f"/deals/{deal.id}", headers=PRIMARY)).json() == deal.json()
    for path in ("/deals", "/hotels", "/categories", "/deals/stats"):
        assert (await client.get(path, headers=PRIMARY)).status_code == 200, path
        assert (await client.get(path, headers={"X-Read-Consistency": ""})).status_code == 422
    # where every read is on the primary anyway, the header is not read
    for path in ("/events", "/health", "/health/ready"):
        response = await client.get(path, headers={"X-Read-Consistency": "strong"})
        assert response.status_code == 200, path


@pytest.mark.read_only
async def test_the_header_is_checked_on_exactly_the_gets_the_document_declares_it_on(
    client: Any, known: Known
) -> None:
    """The paths that check the header come from the routes at start-up, and the document,
    built on first use, declares it: the two agree, path by path."""
    document = (await client.get("/docs/openapi.json")).json()
    ids = {"/deals/{id}": known.deals[0].id, "/hotels/{id}": known.hotels[0]["id"]}
    checked, declared = set(), set()
    for path, item in document["paths"].items():
        if "get" not in item:
            continue
        names = {parameter["name"] for parameter in item["get"].get("parameters", [])}
        if "X-Read-Consistency" in names:
            declared.add(path)
        url = path.replace("{id}", str(ids[path])) if path in ids else path
        response = await client.get(url, headers={"X-Read-Consistency": "strong"})
        if response.status_code == 422:
            assert response.json()["error"]["details"][0]["field"] == "X-Read-Consistency"
            checked.add(path)
    assert checked == declared
    assert declared == {
        "/categories", "/deals", "/deals/stats", "/deals/{id}", "/hotels", "/hotels/{id}",
    }  # fmt: skip


# --- a real replica -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def standby(admin_url: str, seeded_template: tuple[str, Known]) -> Iterator[Standby]:
    """A hot standby of the test server for this module (the seeded template included)."""
    replica = Standby(admin_url)
    try:
        try:
            replica.create()
        except StandbyError as exc:
            if "host" in parse_qs(urlsplit(admin_url).query):  # the embedded server: a bug
                raise
            pytest.skip(f"no streaming replica of this test server: {exc}")
        replica.start()
        yield replica
    finally:
        replica.remove()


@pytest.fixture
async def replica_url(database_url: str, standby: Standby) -> str:
    """This test's database on the standby, once replayed there (pg_stat_statements in it)."""
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()
    await asyncio.to_thread(standby.caught_up)
    return standby.url(urlsplit(database_url).path.lstrip("/"))


def replica_settings(database_url: str, replica_url: str, **changes: Any) -> Settings:
    return Settings(
        database_url=database_url,
        pool_min_size=1,
        pool_max_size=4,
        database_replica_urls=(replica_url,),
        **changes,
    )


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[Client]:
    async with app_and_client(settings) as (_app, client):
        yield client


async def calls(url: str, name: str) -> int:
    """How often the server at `url` ran the named query in that database (its own counts)."""
    conn = await asyncpg.connect(url)
    try:
        value: int = await conn.fetchval(
            "SELECT coalesce(sum(calls), 0)::int FROM pg_stat_statements "
            "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND query LIKE $1",
            f"%/* {name} */%",
        )
        return value
    finally:
        await conn.close()


async def until(check: Callable[[], Awaitable[T | None]], what: str, within: float = 15) -> T:
    """The first truthy answer of `check`, polled every 0.1 s; an AssertionError at the deadline."""
    deadline = time.monotonic() + within
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s (last: {found!r})")
        await asyncio.sleep(0.1)


def answered(statuses: list[int], count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return len(statuses) >= count

    return check


async def replica_entry(client: Client) -> dict[str, Any]:
    response = await client.get("/health/ready")
    assert response.status_code == 200, response.text
    databases = response.json()["databases"]
    assert databases[0] == {"name": "primary", "role": "primary", "state": "up", "lag_seconds": 0.0}
    assert len(databases) == 2
    entry: dict[str, Any] = databases[1]
    return entry


def caught_up(client: Client) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    async def check() -> dict[str, Any] | None:
        entry = await replica_entry(client)
        return entry if entry["lag_seconds"] == 0.0 else None

    return check


def in_state(client: Client, state: str) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    async def check() -> dict[str, Any] | None:
        entry = await replica_entry(client)
        return entry if entry["state"] == state else None

    return check


async def gauges(client: Client, replica: str) -> tuple[float, float]:
    """(db_replica_lag_seconds, db_replica_up) of the replica on GET /metrics."""
    response = await client.get("/metrics")
    assert response.status_code == 200
    found = {
        sample.name: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.labels.get("replica") == replica
    }
    return found["db_replica_lag_seconds"], found["db_replica_up"]


async def test_reads_are_served_by_the_replica_and_seen_in_its_own_statistics(
    database_url: str, replica_url: str, known: Known
) -> None:
    deal = known.deals[0]
    async with serving(replica_settings(database_url, replica_url)) as client:
        # The standby replays the whole primary cluster, which other tests of this worker
        # write to: its first check may find it a fraction of a second behind.
        entry = await until(caught_up(client), "the replica caught up (lag 0)")
        assert entry == {
            "name": database_address(replica_url),
            "role": "replica",
            "state": "up",
            "lag_seconds": 0.0,
        }
        on_replica = await calls(replica_url, "get_deal")
        on_primary = await calls(database_url, "get_deal")
        pages = await calls(replica_url, "list_deals_in_city_by_id_json")
        for _ in range(5):
            response = await client.get(f"/deals/{deal.id}")
            assert response.status_code == 200
            assert response.json() == deal.json()
        page = await client.get("/deals", params={"city": "Paris", "count": "none"})
        assert page.status_code == 200
        assert [d["id"] for d in page.json()["items"]] == [
            d.id for d in known.select(city="Paris")
        ][:20]
        assert await calls(replica_url, "get_deal") == on_replica + 5
        assert await calls(replica_url, "list_deals_in_city_by_id_json") == pages + 1
        assert await calls(database_url, "get_deal") == on_primary
        # X-Read-Consistency: primary reads on the primary
        assert (await client.get(f"/deals/{deal.id}", headers=PRIMARY)).status_code == 200
        assert await calls(database_url, "get_deal") == on_primary + 1
        assert await calls(replica_url, "get_deal") == on_replica + 5


async def test_writes_go_to_the_primary_and_read_consistency_primary_sees_them_at_once(
    database_url: str, replica_url: str, standby: Standby, known: Known
) -> None:
    body = new_deal(known, categories=["luxury"])
    # replay paused: what the replica serves stays as it is, whatever the primary writes
    async with serving(replica_settings(database_url, replica_url)) as client, paused(standby):
        inserts = await calls(database_url, "insert_deal")
        created = await client.post("/deals", json=body)
        assert created.status_code == 201, created.text  # the replica is read-only: a 500 there
        id = created.json()["id"]
        assert await calls(database_url, "insert_deal") == inserts + 1
        stale = await client.get(f"/deals/{id}")  # on the replica, which has not replayed it
        assert stale.status_code == 404
        fresh = await client.get(f"/deals/{id}", headers=PRIMARY)
        assert fresh.status_code == 200
        assert fresh.json() == created.json()
        assert fresh.headers["ETag"] == '"1"'


@asynccontextmanager
async def paused(standby: Standby) -> AsyncIterator[None]:
    """Replay paused on the standby (WAL still arrives, nothing is applied) for the block."""
    conn = await asyncpg.connect(standby.url())
    try:
        await conn.execute("SELECT pg_wal_replay_pause()")

        async def paused_now() -> bool:
            state: str = await conn.fetchval("SELECT pg_get_wal_replay_pause_state()")
            return state == "paused"

        await until(paused_now, "replay paused", within=10)
        yield
    finally:
        await conn.execute("SELECT pg_wal_replay_resume()")
        await conn.close()


async def test_a_paused_replay_beyond_the_lag_limit_sends_reads_to_the_primary(
    database_url: str, replica_url: str, standby: Standby, known: Known
) -> None:
    deal = known.deals[1]
    name = database_address(replica_url)
    settings = replica_settings(database_url, replica_url, replica_max_lag_seconds=1.0)
    async with serving(settings) as client:
        async with paused(standby):
            changed = await client.patch(
                f"/deals/{deal.id}", json={"room_type": "Penthouse"}, headers={"If-Match": '"1"'}
            )
            assert changed.status_code == 200, changed.text
            lagging = await until(in_state(client, "lagging"), "the replica lagging")
            assert lagging["lag_seconds"] >= 1.0  # past the limit (shown to the millisecond)
            on_replica = await calls(replica_url, "get_deal")
            on_primary = await calls(database_url, "get_deal")
            for _ in range(3):  # from the primary: the change shows without the header
                response = await client.get(f"/deals/{deal.id}")
                assert response.status_code == 200
                assert response.json()["room_type"] == "Penthouse"
            assert await calls(replica_url, "get_deal") == on_replica
            assert await calls(database_url, "get_deal") == on_primary + 3

            async def lag_gauge() -> tuple[float, float] | None:
                lag, up = await gauges(client, name)
                return (lag, up) if lag > 1.0 else None

            _lag, up = await until(lag_gauge, "the lag gauge above the limit", within=5)
            assert up == 1.0
        # replay resumed: caught up at once, and used again
        back = await until(in_state(client, "up"), "the replica back in use")
        assert back["lag_seconds"] < 1.0
        on_replica = await calls(replica_url, "get_deal")
        response = await client.get(f"/deals/{deal.id}")
        assert response.json()["room_type"] == "Penthouse"
        assert await calls(replica_url, "get_deal") == on_replica + 1


async def test_an_idle_primary_with_a_caught_up_replica_reports_no_lag(
    database_url: str, replica_url: str, standby: Standby
) -> None:
    """Timestamps alone would call the replica as far behind as the primary has been idle."""
    replica = await asyncpg.connect(replica_url)
    try:

        async def idle_for_two_seconds() -> bool:
            age = await replica.fetchval(
                "SELECT extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8"
            )
            return age is not None and age >= 2.0

        # No clone made or dropped in the background (tests.pg.Spares) while the primary idles.
        await asyncio.to_thread(pg.settle_spares)
        async with serving(replica_settings(database_url, replica_url)) as client:
            await until(idle_for_two_seconds, "the primary idle for 2 s")
            lags = []
            for _ in range(3):  # three checks apart
                lags.append((await replica_entry(client))["lag_seconds"])
                await asyncio.sleep(1.0)
            # The standby replays the whole test cluster, where the server itself may write
            # (a checkpoint, autovacuum) between two checks: the replica is then honestly
            # behind by one check, measured as CHECK_EVERY plus the checks' own delay
            # ([0.0, 1.003, 0.0] on a busy machine), so under two checks. Timestamps alone
            # would say 2 s or more at the first check, and growing by a check each time.
            assert all(lag < 2 * CHECK_EVERY for lag in lags), lags
            lag, up = await gauges(client, database_address(replica_url))
            assert lag < 2 * CHECK_EVERY
            assert up == 1.0
    finally:
        await replica.close()


async def test_a_stopped_replica_costs_no_failed_request_and_a_restarted_one_is_used_again(
    database_url: str, replica_url: str, standby: Standby, known: Known
) -> None:
    ids = [deal.id for deal in known.deals[:10]]
    name = database_address(replica_url)
    async with app_and_client(replica_settings(database_url, replica_url)) as (app, client):
        statuses: list[int] = []
        stop = asyncio.Event()

        async def drive(worker: int) -> None:
            turn = worker
            while not stop.is_set():
                turn += 1
                if turn % 3:
                    response = await client.get(f"/deals/{ids[turn % len(ids)]}")
                else:
                    response = await client.get("/deals", params={"city": "Paris"})
                statuses.append(response.status_code)

        on_replica = await calls(replica_url, "get_deal")
        drivers = [asyncio.create_task(drive(worker)) for worker in range(4)]
        try:
            await until(answered(statuses, 40), "40 reads before the stop")
            await asyncio.to_thread(standby.stop, "fast")  # the reads go on meanwhile
            down = await until(in_state(client, "down"), "the replica marked down")
            await until(answered(statuses, len(statuses) + 100), "100 reads after the stop")
        finally:
            stop.set()
            await asyncio.gather(*drivers)
        assert down["lag_seconds"] is None
        assert len(statuses) >= 140
        assert set(statuses) == {200}, {s: statuses.count(s) for s in set(statuses)}

        async def gauges_down() -> bool:
            lag, up = await gauges(client, name)
            return math.isnan(lag) and up == 0.0

        await until(gauges_down, "db_replica_up 0 and the lag unknown (NaN)", within=5)
        replicas = database_of(app).replicas
        assert replicas is not None
        assert [(r.name, r.state) for r in replicas.replicas] == [(name, "down")]

        await asyncio.to_thread(standby.start)
        await until(in_state(client, "up"), "the restarted replica back in use", within=30)
        served = await calls(replica_url, "get_deal")
        assert served > on_replica  # it served before it stopped
        for id in ids[:3]:
            assert (await client.get(f"/deals/{id}")).status_code == 200
        assert await calls(replica_url, "get_deal") == served + 3


async def test_a_replica_that_is_not_a_standby_or_not_reachable_is_skipped(
    database_url: str, known: Known
) -> None:
    """A promoted replica (here: the primary itself, spelt otherwise) parts from the
    primary's data, and one that does not answer cannot serve: reads go to the primary."""
    parts = urlsplit(database_url)
    itself = parts._replace(query=f"{parts.query}&application_name=itself").geturl()
    unreachable = "postgresql://postgres@127.0.0.1:1/deals"
    settings = Settings(
        database_url=database_url,
        pool_min_size=1,
        pool_max_size=4,
        pool_acquire_timeout=1.0,
        database_replica_urls=(itself, unreachable),
    )
    async with serving(settings) as client:
        ready = await client.get("/health/ready")
        assert ready.status_code == 200
        assert [(d["name"], d["state"], d["lag_seconds"]) for d in ready.json()["databases"]] == [
            ("primary", "up", 0.0),
            (database_address(itself), "down", None),
            ("127.0.0.1:1", "down", None),
        ]
        deal = known.deals[0]
        for _ in range(3):
            response = await client.get(f"/deals/{deal.id}")
            assert response.status_code == 200
            assert response.json() == deal.json()
